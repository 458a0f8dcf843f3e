"""Build and compile a registered model (see :mod:`mnist_folders.registry`): its builder from
:mod:`mnist_folders.networks.architectures`, the optimizer and the loss (categorical cross-entropy), and
the ImageNet weights of a pretrained one. Keras is imported only when a model is built."""

from typing import Any

from ..errors import SettingError
from ..registry import MODELS, too_small


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
    :mod:`mnist_folders.networks.pretrained_weights`; ``log`` gets that line);
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
