"""What ``--resume`` checks before it continues a run, and the state it continues from: the saved settings,
the same images, a history and a ``last.keras`` that agree, the epoch to start at."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import keras

from .. import artifacts, layout
from ..atomic import remove_stale_temporaries
from ..data.folders import FolderIndex
from ..data.pipeline import TrainingData
from ..errors import CheckpointError
from ..names import display
from ..networks import saved
from ..settings import RESUME_FIXED, Setting, options


def check_resumable(setting: Setting, log=print) -> Setting:
    """Compare a resumed run's settings with the saved ones, before anything is written.

    Settings that define the model or its data (:data:`~mnist_folders.settings.RESUME_FIXED`) must
    not change; the others (epochs, patience, learning rate, ...) apply to
    the remaining epochs, are listed, and are recorded in ``setting.json``.

    Raises:
        CheckpointError: no saved run, or a fixed setting differs (all are named).
    """
    model_dir = setting.model_path
    before = artifacts.load_setting(model_dir)
    changed = [name for name in RESUME_FIXED if getattr(before, name) != getattr(setting, name)]
    if changed:
        details = ", ".join(f"{name}={getattr(setting, name)!r} (saved: {getattr(before, name)!r})" for name in changed)
        raise CheckpointError(f"{display(model_dir / layout.SETTING)}: --resume cannot change {details}; "
                              "resume with the before values, or train without --resume")
    updated = [name for name in options() if name not in RESUME_FIXED and name not in ("model_dir",)
               and getattr(before, name) != getattr(setting, name)]
    if updated:
        log("resuming with " + ", ".join(f"{n}={getattr(setting, n)!r} (was {getattr(before, n)!r})" for n in updated))
    return setting


def check_nothing_staged(model_dir: Path) -> None:
    """Refuse ``--resume`` beside a fresh run that was stopped before its first checkpoint.

    That run made ``.staging/`` before reading its images and trained there;
    the files of ``model_dir`` are still the previous run's, which
    ``--resume`` would continue with the new run's data and settings.

    Raises:
        CheckpointError: ``<model_dir>/.staging`` exists (the model it would continue is described).
    """
    if (model_dir / layout.STAGING).exists():
        raise CheckpointError(f"{display(model_dir / layout.STAGING)}: a fresh run was stopped before its first "
                              "epoch was saved, so there is nothing of it to resume; --resume would continue "
                              f"{describe_model(model_dir)}; train again without --resume")


def describe_model(model_dir: Path) -> str:
    """The model a directory holds, for a message: "the previous run's model (best epoch 3, val_accuracy
    0.97, trained on data/train)", from ``best.json`` and ``dataset.json`` where readable."""
    try:
        best, dataset = _recorded(model_dir / layout.BEST_INFO), _recorded(model_dir / layout.DATASET)
    except CheckpointError:  # unreadable: the message says less
        best, dataset = {}, {}
    facts = []
    if {"epoch", "val_accuracy"} <= set(best):
        facts.append(f"best epoch {best['epoch']}, val_accuracy {best['val_accuracy']}")
    if "train_dir" in dataset:
        facts.append(f"trained on {display(dataset['train_dir'])}")
    return "the previous run's model" + (f" ({', '.join(facts)})" if facts else "")


def _recorded(path: Path) -> dict:
    """The JSON object of ``path``; ``{}`` when it is missing or holds no object. Raises CheckpointError when
    unreadable."""
    data = artifacts.read_json(path) if path.exists() else {}
    return data if isinstance(data, dict) else {}


def training_files(index: FolderIndex) -> dict[str, int | str]:
    """What identifies the training images: their number and the SHA-256 of the sorted ``relative path, size``
    lines (``dataset.json``'s ``files``). Cheap: one ``stat`` per file, nothing read."""
    lines = []
    for path in index.paths:
        try:
            size = os.stat(path).st_size
        except OSError:  # a broken link: listed, unreadable
            size = -1
        lines.append(f"{os.path.relpath(path, index.root)}\0{size}\n")
    digest = hashlib.sha256("".join(sorted(lines)).encode("utf-8", "surrogateescape")).hexdigest()
    return {"count": len(lines), "sha256": digest}


def check_same_images(model_dir: Path, index: FolderIndex) -> None:
    """Refuse ``--resume`` when the training images differ from those the run began with.

    The validation split is drawn from the files, and the epoch length from
    their number: with other files neither would be the run's any more.
    Compared: ``dataset.json``'s images per class and, where recorded, its
    ``files`` (:func:`training_files`: names and sizes).

    Raises:
        CheckpointError: the counts per class or the files differ (the first classes that changed are named).
    """
    recorded = _recorded(model_dir / layout.DATASET)
    counted, now = recorded.get("class_counts"), index.class_counts()
    if isinstance(counted, dict) and counted != now:
        changes = [f"{name}: {counted.get(name, 0)} -> {now.get(name, 0)}" for name in sorted({*counted, *now})
                   if counted.get(name) != now.get(name)]
        more = f" and {len(changes) - 3} more classes" if len(changes) > 3 else ""
        what = f"{', '.join(changes[:3])}{more}"
    elif "files" in recorded and recorded["files"] != training_files(index):
        what = "as many per class, but other files or sizes"
    else:
        return
    raise CheckpointError(f"{display(index.root)}: the training images changed since this run began ({what}); "
                          "its epochs and validation split would not hold; train without --resume "
                          f"(--init-from {display(model_dir)} starts from its weights)")


def check_same_count(model_dir: Path, data: TrainingData) -> None:
    """Refuse ``--resume`` when fewer or more images are readable than when the run began (files damaged or
    mended in place, their names and sizes unchanged): the epochs and the validation would differ.

    Raises:
        CheckpointError: ``dataset.json``'s ``train_images`` or ``validation_images`` differ from ``data``'s.
    """
    path = model_dir / layout.DATASET
    recorded = _recorded(path)
    for what, now in (("train", data.train_count), ("validation", data.validation_count)):
        before = recorded.get(f"{what}_images")
        if isinstance(before, int) and before != now:
            raise CheckpointError(f"{display(path)}: the run began with {before} readable {what} images, {now} "
                                  "now; its epochs and validation would not hold; train without --resume")


def resume_state(setting: Setting, steps_per_epoch: int, pretrained: bool = False,
                 ) -> tuple[keras.Model, int, list[dict[str, float]], float | None]:
    """The model, completed epochs, history and best val_accuracy to resume from.

    The completed epochs are those of ``history.csv`` up to the row whose
    ``steps`` equal the optimizer's step count saved in ``last.keras``
    (:func:`checkpoint_epoch`). A kill between an epoch's history row and
    its ``last.keras`` leaves one row more, which is dropped.

    Raises:
        CheckpointError: ``last.keras`` is missing, unreadable, or matches no epoch of the history.
    """
    model_dir = setting.model_path
    remove_stale_temporaries(model_dir, layout.RUN_FILES)  # a writer killed mid-checkpoint leaves one
    model = saved.load_last_model(model_dir)
    model.optimizer.learning_rate.assign(setting.learning_rate)  # a changed rate applies from here on
    history = artifacts.read_history(model_dir)
    done = checkpoint_epoch(model_dir, history, int(model.optimizer.iterations.numpy()), steps_per_epoch,
                            pretrained)
    return model, done, history[:done], artifacts.best_val_accuracy(model_dir)


def checkpoint_epoch(model_dir: Path, history: list[dict[str, float]], iterations: int, steps_per_epoch: int,
                     pretrained: bool = False) -> int:
    """The epoch ``last.keras`` completed, found in ``history`` by the optimizer's step count ``iterations``.

    Rows record the step count after their epoch (``steps``); a history of
    an older version without it counts ``steps_per_epoch`` steps an epoch
    (plus a pretrained model's epoch 1, which takes none). Either way the
    answer is the last row's epoch or the one before (a kill between the
    row and the checkpoint): anything else is a history and a checkpoint
    of different runs, or other training images.

    Raises:
        CheckpointError: as above (both files named, with the two counts).
    """
    n = len(history)
    if all("steps" in row for row in history) and history:
        matching = [int(row["epoch"]) for row in history if int(row["steps"]) == iterations]
        done = matching[-1] if matching else -1
    else:
        done = iterations // max(1, steps_per_epoch) + int(pretrained)
    if done not in (n, n - 1):
        raise CheckpointError(f"{display(model_dir / layout.LAST_MODEL)}: its {iterations} optimizer steps "
                              f"match no epoch of {layout.HISTORY} ({n} epochs): the training images or these "
                              "files changed since the run began; train without --resume")
    return done


def check_history(model_dir: Path) -> None:
    """Refuse ``--resume`` on a ``history.csv`` edited by hand or not of this checkpoint, before any work.

    Its rows are checked by :func:`mnist_folders.artifacts.read_history`.
    With ``best.json``'s epoch ``E`` and ``val_accuracy`` ``B``: no row may
    record a ``val_accuracy`` above ``B`` (such a row would keep every real
    improvement from being saved), and row ``E`` must record ``B``. ``E``
    may be one past the last row: ``best.json`` is written just before its
    epoch's row, so a kill between the two leaves it so.

    Raises:
        CheckpointError: as above, or an invalid row.
    """
    history = artifacts.read_history(model_dir)
    best = artifacts.best_val_accuracy(model_dir)
    if best is None:
        return
    path = display(model_dir / layout.HISTORY)
    top = max(history, key=lambda row: row["val_accuracy"], default=None)
    if top is not None and top["val_accuracy"] > artifacts.rounded(best) + 1e-9:
        raise CheckpointError(f"{path}: epoch {int(top['epoch'])} records val_accuracy {top['val_accuracy']:g}, "
                              f"above the best checkpoint's {best:g} ({layout.BEST_INFO}); train without --resume")
    epoch = artifacts.read_json(model_dir / layout.BEST_INFO).get("epoch")
    if not isinstance(epoch, int) or not 1 <= epoch <= len(history) + 1:
        raise CheckpointError(f"{path}: {len(history)} epochs, but {layout.BEST_INFO} names epoch {epoch!r} as "
                              "the best; train without --resume")
    if epoch <= len(history) and abs(history[epoch - 1]["val_accuracy"] - artifacts.rounded(best)) > 1e-9:
        raise CheckpointError(f"{path}: epoch {epoch} records val_accuracy {history[epoch - 1]['val_accuracy']:g}, "
                              f"the best checkpoint's is {best:g} ({layout.BEST_INFO}); train without --resume")
