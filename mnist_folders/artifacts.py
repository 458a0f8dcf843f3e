"""The model directory: what a training run leaves and how it is read back.

A model directory is self-describing; ``evaluate`` and ``predict`` need
nothing else::

    <model_dir>/
      setting.json        the Setting used (image size, color mode, model, ...)
      class_names.json    class names in label (output index) order
      best.weights.h5     weights of the epoch with the best val_accuracy
      best.json           that epoch and its val_accuracy
      last.keras          the full model (optimizer state included) after the
                          last completed epoch: what --resume continues from
      history.csv         one row per completed epoch: loss, accuracy,
                          val_loss, val_accuracy, seconds
      dataset.json        the training images: counts per class, files
                          ignored or unreadable, share with a light background
      evaluation.json     written by evaluate
      predictions.csv     written by predict

Every file is written to a temporary name and renamed (see
:mod:`mnist_folders.atomic`), so a reader never sees a half-written one.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .atomic import atomic_path, write_text
from .errors import CheckpointError
from .settings import Setting

SETTING = "setting.json"
CLASS_NAMES = "class_names.json"
BEST_WEIGHTS = "best.weights.h5"
BEST_INFO = "best.json"
LAST_MODEL = "last.keras"
HISTORY = "history.csv"
DATASET = "dataset.json"
EVALUATION = "evaluation.json"
PREDICTIONS = "predictions.csv"
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]


def ensure_writable(model_dir: Path) -> None:
    """Create ``model_dir`` and prove a file can be written there, before any long work.

    Raises:
        CheckpointError: the folder cannot be created or written.
    """
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        write_text(model_dir / ".write-test", "ok\n")
        (model_dir / ".write-test").unlink()
    except OSError as exc:
        raise CheckpointError(f"{model_dir}: model directory is not writable ({exc.strerror})") from None


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; train first (mnist_keras.py --mode train)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None


def save_metadata(model_dir: Path, setting: Setting, class_names: list[str]) -> None:
    """Write ``setting.json`` and ``class_names.json``."""
    write_text(model_dir / SETTING, setting.to_json())
    write_json(model_dir / CLASS_NAMES, list(class_names))


def load_setting(model_dir: Path) -> Setting:
    """The Setting saved with a model. Raises :class:`CheckpointError` if missing or invalid."""
    data = read_json(model_dir / SETTING)
    try:
        return Setting.from_dict(data, source=str(model_dir / SETTING))
    except Exception as exc:  # SettingError or TypeError from a hand-edited file
        raise CheckpointError(f"{model_dir / SETTING}: invalid ({exc})") from None


def load_class_names(model_dir: Path) -> list[str]:
    """The class names saved with a model, in label order."""
    names = read_json(model_dir / CLASS_NAMES)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) < 2:
        raise CheckpointError(f"{model_dir / CLASS_NAMES}: expected a list of at least 2 class names")
    return names


def save_best_weights(model_dir: Path, model: Any, epoch: int, val_accuracy: float) -> None:
    """Atomically write ``best.weights.h5`` then ``best.json`` (1-based ``epoch``)."""
    with atomic_path(model_dir / BEST_WEIGHTS, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    write_json(model_dir / BEST_INFO, {"epoch": epoch, "val_accuracy": val_accuracy})


def save_last_model(model_dir: Path, model: Any) -> None:
    """Atomically write the full model (with optimizer state) to ``last.keras``."""
    with atomic_path(model_dir / LAST_MODEL, suffix=".keras") as tmp:
        model.save(tmp)


def best_val_accuracy(model_dir: Path) -> float | None:
    """The val_accuracy recorded with ``best.weights.h5``, or ``None`` if there is none."""
    path = model_dir / BEST_INFO
    return float(read_json(path)["val_accuracy"]) if path.exists() else None


def read_history(model_dir: Path) -> list[dict[str, float]]:
    """Rows of ``history.csv`` as dicts of floats (``epoch`` 1-based); ``[]`` when absent."""
    path = model_dir / HISTORY
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return [{k: float(v) for k, v in row.items() if v not in (None, "")} for row in csv.DictReader(handle)]


def write_history(model_dir: Path, rows: list[dict[str, float]]) -> None:
    """Atomically rewrite ``history.csv`` with ``rows``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(row[k]) if k == "epoch" else f"{row[k]:.6g}") for k in HISTORY_FIELDS if k in row})
    write_text(model_dir / HISTORY, buffer.getvalue())


def load_last_model(model_dir: Path) -> Any:
    """Load ``last.keras`` with Keras' ``safe_mode`` (no arbitrary code runs).

    Raises:
        CheckpointError: missing or unreadable file.
    """
    import keras

    path = model_dir / LAST_MODEL
    if not path.exists():
        raise CheckpointError(f"{path}: no checkpoint to resume from; train without --resume first")
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as exc:  # Keras raises several types for a corrupt archive
        raise CheckpointError(f"{path}: cannot load ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def load_trained_setting(model_dir: Path) -> Setting:
    """The Setting of a model directory that holds a best checkpoint.

    Raises:
        CheckpointError: no directory, no ``best.weights.h5`` or no valid ``setting.json``.
    """
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir}: no model directory; train first (mnist_keras.py --mode train)")
    weights = model_dir / BEST_WEIGHTS
    if not weights.exists():
        raise CheckpointError(f"{weights}: no checkpoint; train first (mnist_keras.py --mode train)")
    return load_setting(model_dir)


def load_trained_model(model_dir: Path, setting: Setting | None = None) -> tuple[Any, Setting, list[str]]:
    """The best model of a model directory, with its Setting and class names.

    Rebuilds the architecture from ``setting.json`` (or ``setting``, when the
    caller has already read it with :func:`load_trained_setting`) and loads
    ``best.weights.h5`` into it: no code is read from the directory.

    Raises:
        CheckpointError: the directory, a file, or a match between them is
            missing (e.g. weights for a different number of classes).
    """
    from . import precision
    from .models import build_model

    setting = setting or load_trained_setting(model_dir)
    weights = model_dir / BEST_WEIGHTS
    class_names = load_class_names(model_dir)
    precision.apply(setting.precision)  # weights are float32 under either policy
    model = build_model(setting.model, setting.input_shape, len(class_names), None, setting.learning_rate)
    try:
        # skip_mismatch=False: a file for another architecture or class count must fail, not half-load.
        model.load_weights(weights)
    except Exception as exc:  # h5py/Keras raise several types for mismatched or corrupt files
        raise CheckpointError(
            f"{weights}: does not fit model {setting.model!r} with {len(class_names)} classes "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    return model, setting, class_names


def light_background_share(model_dir: Path) -> float:
    """The share of training images with a light background (0.0 when unrecorded)."""
    path = model_dir / DATASET
    return float(read_json(path).get("light_background", 0.0)) if path.exists() else 0.0
