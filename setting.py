"""The Setting class: paths, image shape, class names and hyperparameters.

The class itself lives in the library (``mnist_folders/settings.py``, where
each field is described once) so the library never imports a top-level
script; this module is the documented place to read the defaults and to
build a Setting in your own code::

    from setting import Setting
    s = Setting(train_dir="my_data/train", test_dir="my_data/test",
                image_height=64, image_width=64, color_mode="rgb")
    print(s.input_shape)        # (64, 64, 3)

To change defaults without editing code, pass ``--config my.toml`` (flat
``key = value`` lines with the field names below) or flags to ``mnist_keras.py``
(``--field-name``; ``python mnist_keras.py --help`` lists them).

Fields and defaults (MNIST exported by ``parse_mnist.py``), generated from the
field descriptions by ``python -m mnist_folders.commands.settings_docs``:

.. settings-table:start
================  =======================================================  ========================================
field             default                                                  meaning
================  =======================================================  ========================================
data_dir          mnist_data                                               root holding train/, test/, tmp/
train_dir         <data_dir>/train                                         class-per-folder training images
test_dir          <data_dir>/test                                          class-per-folder test images (evaluate)
val_dir           none                                                     class-per-folder validation images; none: a validation_split of train_dir
predict_dir       <data_dir>/tmp                                           images to predict, any layout
model_dir         models/<name of data_dir> (models/mnist for mnist_data)  checkpoints, history and reports; by default it follows the data folder
image_height      auto                                                     model input height in pixels; auto: from the training images and the model (their own size up to 48 px, so 28 for MNIST; 160-224 for the pretrained model; at most 96 for cnn_fast) [integer [1, 2048] or auto]
image_width       auto                                                     model input width in pixels; auto: as image_height [integer [1, 2048] or auto]
color_mode        auto                                                     channels the model sees: grayscale (1), rgb (3), or auto: rgb when more than 5 % of (up to 200) training images have colour [auto, grayscale, rgb]
resize_method     stretch                                                  how other sizes are fitted: stretch, pad (black margins) or crop (centre); pad and crop need pipeline=tfdata [stretch, pad, crop]
invert            auto                                                     predict: invert dark-on-light images; auto: when their polarity differs from most training images [auto, true, false]
class_names       train sub-folders, sorted                                classes in output order (flag: comma-separated)
class_weight      auto                                                     balanced: weight each class's loss by n / (classes x n_class); auto: balanced when the largest class has 2x the images of the smallest [auto, none, balanced]
model             auto                                                     registered model (see the Models table); auto: strong or cnn_64_128_256 for images up to 48 px (by their number and size), above: efficientnet_lite0 (ImageNet weights) when its weights package is installed, else cnn_fast [auto, cnn_64_128_256, mlp, cnn_small, cnn_large, cnn_64_32, cnn_32_64_64, strong, cnn_fast, mobilenet_v3_small, efficientnet_lite0, efficientnet_b0]
fine_tune         auto                                                     pretrained models: after the head is fitted on cached embeddings, none (the few-shot path: frozen backbone), top (unfreeze the last blocks) or all; auto: none under 5 training images per class, all up to 1,000, else top [auto, none, top, all]
backbone_weights  none (random)                                            a local .h5 file of ImageNet weights (no top) for a Keras Applications model
init_from         none                                                     start from these weights: a model directory, a .keras or a .weights.h5 file; a different class count gets a new head
epochs            auto                                                     passes over the training subset; auto: until val_accuracy stops improving (patience), within max_epochs and max_minutes [integer >= 1 or auto]
patience          auto                                                     epochs = auto: epochs without a better val_accuracy before stopping; auto: enough for 600 steps, at least 3 [integer >= 1 or auto]
max_epochs        auto                                                     epochs = auto: the most epochs; auto: enough for 8,000 steps, 15 to 400 [integer >= 1 or auto]
max_minutes       0.0                                                      epochs = auto: stop after the epoch that passes this wall-clock time (0: no limit) [>= 0]
batch_size        auto                                                     images per training step; auto: the model's default (256 for the reference model), halved while an epoch has under 25 steps [integer >= 1 or auto]
validation_split  0.2                                                      fraction of each class held out for validation [(0, 1)]
split_order       shuffled                                                 which files validation_split holds out: shuffled (a seeded random choice per class) or sorted (the first of each class, as ImageDataGenerator) [shuffled, sorted]
optimizer         model's own (rmsprop for the reference model)            optimizer [rmsprop, adam, sgd]
learning_rate     model's own (0.002 for the reference model)              the optimizer's step size [> 0]
lr_schedule       constant                                                 constant (times lr_decay per epoch), cosine (decay to 0 over epochs or max_epochs) or plateau (halve after patience / 2 epochs without a better validation result) [constant, cosine, plateau]
warmup_epochs     0                                                        epochs of linear learning-rate warm-up before the schedule [>= 0]
lr_decay          model's own (1.0 for the reference model)                learning-rate factor applied after every epoch [(0, 1]]
label_smoothing   model's own (0.0 for the reference model)                share of each target spread over the other classes (0: one-hot targets) [[0, 1)]
rotation_range    model's own (0.0 for the reference model)                augmentation: random rotation, degrees [[0, 180]]
shift_range       model's own (0.0 for the reference model)                augmentation: random shift, fraction of the size [[0, 1)]
zoom_range        model's own (0.0 for the reference model)                augmentation: random zoom, fraction [[0, 1)]
tensorboard       false                                                    train: also write TensorBoard logs (loss, accuracy, learning rate per epoch) to <model_dir>/logs/; view with tensorboard --logdir <model_dir>/logs [true, false]
runtime           auto                                                     predict with keras (TensorFlow), or without TensorFlow from --mode export's files: onnx (onnxruntime), tflite or tflite_int8 (LiteRT); auto: onnx when a current export is there (training writes model.onnx unless --format says otherwise), else keras [auto, keras, onnx, tflite, tflite_int8]
min_confidence    0.0                                                      predict: a top probability below this is written as class 'uncertain' (0: never) [[0, 1]]
host              127.0.0.1                                                serve: the address to listen on; 127.0.0.1 answers this machine only, 0.0.0.0 every network it is on (set MNIST_FOLDERS_TOKEN then)
port              8000                                                     serve: the TCP port (0: any free port, printed at start) [[0, 65535]]
serve_batch       64                                                       serve: most images per forward pass; concurrent requests are batched together up to it [[1, 4096]]
serve_wait_ms     2.0                                                      serve: how long the first image of a batch waits for others, milliseconds [[0, 1000]]
serve_max_files   64                                                       serve: most images in one request [[1, 10000]]
serve_max_mb      32.0                                                     serve: largest request body, MiB (larger: HTTP 413) [(0, 4096]]
seed              1337                                                     seeds Python, NumPy, TensorFlow and the shuffles [[0, 2147483647]]
pipeline          tfdata                                                   tfdata (decode once, in memory) or idg (ImageDataGenerator) [tfdata, idg]
cache             auto                                                     tfdata: where decoded training images stay between epochs: memory, disk (a file under <model_dir>/.cache, removed after training), none (decoded again per batch); auto: memory up to a quarter of the available memory, else disk [auto, memory, disk, none]
strategy          auto                                                     tf.distribute strategy: one_device, mirrored (every local GPU; two logical CPU devices without GPUs), multi_worker (the processes TF_CONFIG lists); auto: multi_worker under such a TF_CONFIG, else mirrored with 2 or more GPUs [auto, one_device, mirrored, multi_worker]
dtype_policy      model's own (auto for the reference model)               Keras dtype policy: float32, mixed_bfloat16, or auto (bfloat16 on CPUs with AVX-512 BF16 or AMX) [auto, float32, mixed_bfloat16]
================  =======================================================  ========================================
.. settings-table:end
"""

from mnist_folders.settings import Setting

__all__ = ["Setting"]
