"""The model directory: how a training run's files are written and read back (JSON, CSV, the Setting and
the class names), claimed, staged and promoted. The layout itself, every file name once, is
:mod:`mnist_folders.layout`; the Keras checkpoints are :mod:`mnist_folders.networks.saved`.

Every file is written to a temporary name and renamed (see
:mod:`mnist_folders.atomic`), so a reader never sees a half-written one. A
fresh run into a directory that holds a model trains in ``.staging/`` and
replaces the previous run's files only once its first checkpoint exists
(:func:`promote`); the locks of :mod:`mnist_folders.locking` keep two runs
apart and readers consistent.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from .atomic import atomic_path, write_text
from .errors import CheckpointError
from .names import MODEL_DIR_MARKER, class_name_problem, display
from .settings import DEFAULT_DATA_DIR, Setting, default_model_dir
from .layout import (BEST_INFO, BEST_WEIGHTS, CALIBRATION, CLASS_NAMES, DATASET, EXPORT, HISTORY,
                     HISTORY_FIELDS, HISTORY_REQUIRED, REPORTS, RUN_FILES, SETTING, STAGING)


MARKER = MODEL_DIR_MARKER  # written first into every model directory this tool trains: what makes a folder ours


def check_outside_data(model_dir: Path, folders: dict[str, Path | None]) -> None:
    """Refuse a model directory that is, or is inside, one of the data ``folders`` a command reads
    (``{"train": path, ...}``; ``None`` values skipped): its figures and files would be listed with the
    images (a class called ``models``, the model's own pictures predicted).

    Raises:
        CheckpointError: naming the model directory and the folder it is inside.
    """
    where = Path(os.path.realpath(model_dir))
    for what, folder in folders.items():
        if folder is not None and where.is_relative_to(os.path.realpath(folder)):
            raise CheckpointError(f"{display(model_dir)}: the model directory is inside the {what} folder "
                                  f"{display(folder)}, whose files are read as images; choose a --model-dir "
                                  "outside the data folders")


def ensure_writable(folder: Path, what: str = "model directory") -> None:
    """Create ``folder`` and prove a file can be written there, before any long work.

    Raises:
        CheckpointError: the folder cannot be created or written.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ".write-test") as probe:
            probe.write_bytes(b"ok\n")
        (folder / ".write-test").unlink(missing_ok=True)
    except OSError as exc:
        raise CheckpointError(f"{display(folder)}: {what} is not writable ({exc.strerror})") from None


def check_creatable(folder: Path, what: str) -> None:
    """Check, creating nothing, that ``folder`` exists as a writable folder or could be made: its nearest
    existing ancestor is a folder this process may write.

    Raises:
        CheckpointError: a file stands where a folder must be, or the ancestor is not writable.
    """
    ancestor = Path(os.path.abspath(folder))
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise CheckpointError(f"{display(folder)}: {what} is not writable ({display(ancestor)} is a file)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise CheckpointError(f"{display(folder)}: {what} is not writable (permission denied in "
                              f"{display(ancestor)})")


def check_output_csv(path: Path, model_dir: Path) -> None:
    """Refuse a predictions CSV path that is a folder, lies in a folder that cannot be made or written, or is
    a file of the model directory: one of its own files (the run's files, its reports, the marker), or
    anything in its sub-folders (``export``, ``logs``, ...); ``predictions.csv`` there is the default.
    Links are followed: a link to ``best.weights.h5`` is that file.

    Raises:
        CheckpointError: as above, before anything is predicted or written.
    """
    if path.is_dir():
        raise CheckpointError(f"{display(path)}: a folder; --output names the CSV file to write")
    check_creatable(path.parent, what="folder for the predictions CSV")
    own = {*RUN_FILES, *REPORTS, MARKER, EXPORT, STAGING}
    target, model = path.resolve(), Path(model_dir).resolve()
    if (target.parent == model and (target.name in own or path.name in own)) or \
            (target.parent != model and target.is_relative_to(model)):
        raise CheckpointError(f"{display(path)}: a file of the model itself; --output names another file")


def write_json(path: Path, data: Any) -> None:
    """Atomically write ``data`` as UTF-8 JSON; names with undecodable bytes are kept as ``\\udcXX`` escapes."""
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a surrogate-escaped file name: ASCII escapes round-trip exactly
        text = json.dumps(data, indent=2, ensure_ascii=True) + "\n"
    write_text(path, text)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; train first (mnist_keras.py --mode train)") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None


def holds_model(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a trained model (a best checkpoint)."""
    return (model_dir / BEST_WEIGHTS).exists()


def check_free_space(folder: Path, needed: int) -> None:
    """Raise :class:`CheckpointError` when ``folder``'s file system has less than ``needed`` bytes free.

    Checked before each checkpoint: HDF5 (under ``.weights.h5``) has been
    seen to crash the process when the disk fills mid-write.
    """
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CheckpointError(f"{display(folder)}: disk full ({free / 2**20:.1f} MiB free, a checkpoint needs "
                              f"about {needed / 2**20:.1f} MiB); the last complete checkpoint is kept")


def save_metadata(model_dir: Path, setting: Setting, class_names: list[str]) -> None:
    """Write ``setting.json`` and ``class_names.json``."""
    write_json(model_dir / SETTING, setting.to_dict())
    write_json(model_dir / CLASS_NAMES, list(class_names))


def load_setting(model_dir: Path) -> Setting:
    """The Setting saved with a model. Raises :class:`CheckpointError` if missing or invalid."""
    data = read_json(model_dir / SETTING)
    if not isinstance(data, dict):
        raise CheckpointError(f"{model_dir / SETTING}: invalid (expected a JSON object of settings)")
    if "precision" in data:  # the dtype policy's name before version 0.2
        data.setdefault("dtype_policy", data.pop("precision"))
    try:
        return Setting.from_dict(data, source=str(model_dir / SETTING))
    except Exception as exc:  # SettingError or TypeError from a hand-edited file
        raise CheckpointError(f"{model_dir / SETTING}: invalid ({exc})") from None


def setting_for_model(chosen: dict[str, Any]) -> Setting:
    """The Setting of a trained model directory with the user's ``chosen`` values applied.

    ``chosen`` holds what the user gave (TOML keys and flags, see
    :func:`mnist_folders.settings.chosen_values`); its ``model_dir``, or the
    default one of its ``data_dir`` (:func:`~mnist_folders.settings.default_model_dir`),
    names the model.

    Raises:
        CheckpointError: no trained model there.
        SettingError: ``chosen`` contradicts the trained model (see :meth:`Setting.for_model`).
    """
    model_dir = Path(chosen.get("model_dir") or default_model_dir(chosen.get("data_dir", DEFAULT_DATA_DIR)))
    return Setting.for_model(load_trained_setting(model_dir), {**chosen, "model_dir": str(model_dir)})


def load_class_names(model_dir: Path) -> list[str]:
    """The class names saved with a model, in label order."""
    names = read_json(model_dir / CLASS_NAMES)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) < 2:
        raise CheckpointError(f"{model_dir / CLASS_NAMES}: expected a list of at least 2 class names")
    check_class_names(names, model_dir / CLASS_NAMES)
    return names


def check_class_names(names: list[str], source: Path) -> None:
    """Refuse class names read from a model directory that could not be folder names (a model folder someone
    else gave you could otherwise make ``--sort-into`` write outside its folder).

    Raises:
        CheckpointError: naming ``source`` and the first bad name.
    """
    for name in names:
        problem = class_name_problem(name)
        if problem:
            raise CheckpointError(f"{display(source)}: {problem}; this model directory cannot be used")


def best_val_accuracy(model_dir: Path) -> float | None:
    """The val_accuracy recorded with ``best.weights.h5``, or ``None`` if there is none."""
    path = model_dir / BEST_INFO
    if not path.exists():
        return None
    try:
        return float(read_json(path)["val_accuracy"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{display(path)}: invalid (expected an epoch and its val_accuracy)") from None


def read_history(model_dir: Path) -> list[dict[str, float]]:
    """Rows of ``history.csv`` as dicts of floats (``epoch`` 1-based); ``[]`` when absent.

    Strict, since a resumed run's best epoch, patience and epoch count come
    from it: the columns of :data:`HISTORY_FIELDS` only (``seconds`` and
    ``steps`` may be missing), every row complete, epochs ``1..n`` written
    as integers, finite numbers, losses and seconds not negative,
    accuracies in [0, 1], ``steps`` whole and not decreasing.

    Raises:
        CheckpointError: the file breaks any of these (one line naming it and the first problem).
    """
    path = model_dir / HISTORY
    if not path.exists():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            unknown = [c for c in columns if c not in HISTORY_FIELDS]
            missing = [c for c in HISTORY_REQUIRED if c not in columns]
            if unknown or missing or len(set(columns)) != len(columns):
                raise ValueError(f"columns {columns}, expected {HISTORY_FIELDS}")
            rows = [_history_row(n, row) for n, row in enumerate(reader, start=1)]
        steps = [row["steps"] for row in rows if "steps" in row]
        if steps != sorted(steps):
            raise ValueError("steps decrease from one epoch to the next")
        return rows
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{display(path)}: invalid history ({exc}); train without --resume") from None


def _history_row(expected: int, row: dict[str | None, Any]) -> dict[str, float]:
    """One ``history.csv`` row (the ``expected``-th) as floats. Raises ValueError naming what is wrong."""
    if None in row or row.get("epoch") != str(expected):  # None: more cells than columns
        raise ValueError(f"row {expected} is not epoch {expected} (epochs are 1, 2, 3, ...)")
    values = {k: float(v) for k, v in row.items() if v not in (None, "")}
    absent = [k for k in HISTORY_REQUIRED if k not in values]
    if absent:
        raise ValueError(f"epoch {expected} has no {', '.join(absent)}")
    if not all(math.isfinite(v) for v in values.values()):
        raise ValueError(f"epoch {expected} holds a value that is not a finite number")
    if any(values[k] < 0 for k in ("loss", "val_loss", "seconds", "steps") if k in values):
        raise ValueError(f"epoch {expected} holds a negative loss, time or step count")
    if not all(0.0 <= values[k] <= 1.0 for k in ("accuracy", "val_accuracy")):
        raise ValueError(f"epoch {expected} has an accuracy outside [0, 1]")
    if "steps" in values and not values["steps"].is_integer():
        raise ValueError(f"epoch {expected} has a step count that is not a whole number")
    return values


def rounded(value: float) -> float:
    """``value`` as ``history.csv`` stores it (6 significant digits)."""
    return float(f"{float(value):.6g}")


def write_history(model_dir: Path, rows: list[dict[str, float]]) -> None:
    """Atomically rewrite ``history.csv`` with ``rows``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (int(row[k]) if k in ("epoch", "steps") else f"{row[k]:.6g}") for k in HISTORY_FIELDS
                         if k in row})
    write_text(model_dir / HISTORY, buffer.getvalue())


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


def light_background_share(model_dir: Path) -> float:
    """The share of training images with a light background (0.0 when unrecorded)."""
    path = model_dir / DATASET
    if not path.exists():
        return 0.0
    try:
        return float(read_json(path).get("light_background", 0.0))
    except (AttributeError, TypeError, ValueError):
        raise CheckpointError(f"{display(path)}: invalid (expected a JSON object)") from None


def load_temperature(model_dir: Path) -> float:
    """The softmax temperature of ``calibration.json`` (1.0, no change, when the model has none).

    Raises:
        CheckpointError: the file is there but holds no positive number.
    """
    path = model_dir / CALIBRATION
    if not path.exists():
        return 1.0
    data = read_json(path)
    temperature = data.get("temperature") if isinstance(data, dict) else None
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise CheckpointError(f"{display(path)}: invalid (expected a positive \"temperature\")")
    return float(temperature)
