"""The Setting class: paths, image shape, class names and hyperparameters.

The class itself lives in the library (``mnist_folders/settings.py``) so the
library never imports a top-level script; this module is the documented place
to read the defaults and to build a Setting in your own code::

    from setting import Setting
    s = Setting(train_dir="my_data/train", test_dir="my_data/test",
                image_height=64, image_width=64, color_mode="rgb")
    print(s.input_shape)        # (64, 64, 3)

To change defaults without editing code, pass ``--config my.toml`` (flat
``key = value`` lines with the field names below) or flags to ``mnist_keras.py``.

Fields and defaults (MNIST exported by ``parse_mnist.py``):

=================  ==================  =========================================
field              default             meaning
=================  ==================  =========================================
data_dir           mnist_data          root holding train/, test/, tmp/
train_dir          <data_dir>/train    one sub-folder per class
test_dir           <data_dir>/test     one sub-folder per class
predict_dir        <data_dir>/tmp      images to predict, any layout
model_dir          models/mnist        checkpoints, history, reports
image_height       28                  pixels
image_width        28                  pixels
color_mode         grayscale           grayscale (1 channel) or rgb (3)
class_names        None                None: train sub-folder names, sorted
model              cnn_64_128_256      see mnist_folders/models.py
epochs             (see settings.py)   passes over the training subset
batch_size         (see settings.py)   images per step (reference model: 256)
validation_split   0.2                 fraction of each class held out
optimizer          (see settings.py)   rmsprop (reference model), adam or sgd
learning_rate      (see settings.py)   reference model: 0.002
seed               1337                seeds every random number generator
pipeline           tfdata              tfdata or idg (ImageDataGenerator)
precision          (see settings.py)   float32, mixed_bfloat16, or auto (bfloat16
                                       where the CPU has it; the reference model's)
=================  ==================  =========================================
"""

from mnist_folders.settings import Setting

__all__ = ["Setting"]
