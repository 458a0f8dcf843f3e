"""Warm start and transfer: initialise a new model from another one's weights (``init_from``).

The source is a model directory of this tool (its best checkpoint), a
``.keras`` file (loaded with Keras' ``safe_mode``: no code runs), or a
``.weights.h5`` file for the same model and class count. Layers are matched
in order; every layer whose weights have the same shapes is copied. When the
number of classes differs, the classifier head (the last layer) keeps its
fresh initialisation and the run says so.
"""

from pathlib import Path
from typing import Any

from ..errors import SettingError
from ..names import display


def load_source(path: Path) -> Any:
    """The Keras model whose weights ``init_from`` names.

    Raises:
        SettingError: missing or unreadable source.
    """
    from ..errors import CheckpointError
    from ..networks import saved

    if path.is_dir():
        try:
            return saved.load_trained_model(path)[0]
        except CheckpointError as exc:
            raise SettingError(f"init_from: {exc}") from None
    if not path.is_file():
        raise SettingError(f"{display(path)}: init_from names no model directory or file")
    import keras

    try:
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises several types for corrupt or foreign files
        raise SettingError(f"{display(path)}: cannot load as a Keras model "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None


def initialise_from(model: Any, init_from: str) -> str:
    """Copy the weights of ``init_from`` into ``model`` (in place); return a one-line summary.

    Raises:
        SettingError: the source cannot be read, or a layer other than the
            head does not fit (another architecture or image shape).
    """
    path = Path(init_from)
    if path.name.endswith(".weights.h5"):
        try:
            model.load_weights(path)
        except Exception as exc:  # h5py/Keras raise several types
            raise SettingError(f"{display(path)}: does not fit this model ({type(exc).__name__}); a .weights.h5 "
                               "file must be for the same model and classes: use a model directory or a .keras "
                               "file to change the head") from None
        return f"initialised every layer from {display(path)}"
    source = load_source(path)
    target_layers = [layer for layer in model.layers if layer.weights]
    source_layers = [layer for layer in source.layers if layer.weights]
    if len(source_layers) != len(target_layers):
        raise SettingError(f"{display(path)}: {len(source_layers)} layers with weights, this model has "
                           f"{len(target_layers)}; init_from needs the same architecture")
    copied, head = 0, None
    for i, (src, dst) in enumerate(zip(source_layers, target_layers)):
        weights = src.get_weights()
        if [w.shape for w in weights] == [tuple(w.shape) for w in dst.weights]:
            dst.set_weights(weights)
            copied += 1
        elif i == len(target_layers) - 1:
            head = f"; new classifier head ({dst.weights[-1].shape[-1]} classes, the source had {weights[-1].shape[-1]})"
        else:
            raise SettingError(f"{display(path)}: layer {src.name!r} does not fit {dst.name!r} "
                               "(another architecture or image shape)")
    return f"initialised {copied} of {len(target_layers)} layers from {display(path)}{head or ''}"
