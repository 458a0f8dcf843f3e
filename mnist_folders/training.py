"""Train a model from a class-per-folder tree: ``fit`` with checkpoints and history."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from . import artifacts, plots, precision
from .callbacks import EpochCheckpoint, EpochSeeds
from .decoding import decode_images
from .errors import CheckpointError, DatasetError
from .folders import FolderIndex, find_class_names, index_tree
from .images import lighter_borders
from .models import build_model
from .pipeline import TrainingData, training_data
from .settings import Setting


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """``n / (num_classes * n_c)`` per class present (scikit-learn's "balanced" rule)."""
    counts = np.bincount(labels, minlength=num_classes)
    return {c: float(len(labels) / (num_classes * n)) for c, n in enumerate(counts) if n}


def dataset_summary(setting: Setting, index: FolderIndex, data: TrainingData, sample: int = 500) -> dict:
    """What ``dataset.json`` records about the training images.

    ``light_background`` is the share of (up to ``sample``, evenly spaced)
    training images whose border is lighter than their centre; ``predict``
    with ``invert="auto"`` uses it to recognise images of the other polarity.
    """
    picked = [index.paths[i] for i in np.linspace(0, len(index) - 1, min(sample, len(index))).astype(int)]
    decoded = decode_images(picked, setting)
    light = lighter_borders(decoded.images)
    return {
        "train_dir": str(index.root),
        "class_counts": index.class_counts(),
        "train_images": data.train_count,
        "validation_images": data.validation_count,
        "ignored_files": len(index.ignored),
        "unreadable_files": [path for path, _ in data.failed],
        "light_background": float(np.mean(light)) if len(light) else 0.0,
    }


@dataclass
class TrainResult:
    """Summary of a training run."""

    epochs_run: int
    best_val_accuracy: float | None
    history: list[dict[str, float]]
    model_dir: Path
    curves: Path | None = None


def prepare_index(setting: Setting) -> FolderIndex:
    """Index the train tree with the Setting's class names (or the folders' own, sorted)."""
    class_names = setting.class_names or find_class_names(setting.train_path)
    if len(class_names) < 2:
        raise DatasetError(f"{setting.train_path}: only one class folder {class_names}; a classifier needs at least 2")
    return index_tree(setting.train_path, class_names)


def _resume_state(setting: Setting, steps_per_epoch: int) -> tuple[keras.Model, int, list[dict[str, float]], float | None]:
    """The model, completed epochs, history and best val_accuracy to resume from."""
    model_dir = setting.model_path
    model = artifacts.load_last_model(model_dir)
    # The optimizer's step counter is saved inside last.keras, so it cannot
    # disagree with the weights: it tells how many epochs that file completed.
    done = int(model.optimizer.iterations.numpy()) // steps_per_epoch
    history = [row for row in artifacts.read_history(model_dir) if row["epoch"] <= done]
    best = artifacts.best_val_accuracy(model_dir)
    return model, done, history, best


def train(setting: Setting, resume: bool = False, verbose: int | str = "auto", log=print,
          progress: bool = True, strict: bool = False) -> TrainResult:
    """Train ``setting.model`` on ``setting.train_path`` into ``setting.model_path``.

    Args:
        setting: the run's configuration; its class names, when ``None``, are
            taken from the train folder.
        resume: continue from ``last.keras`` at the epoch after the last
            completed one, with the optimizer state and the best-so-far
            ``val_accuracy``; a finished run is not extended.
        verbose: Keras' ``fit`` verbosity (0 silent, 1 progress bar, 2 a line per epoch).
        log: where one-line messages go.
        progress: show a tqdm bar while images are decoded.
        strict: refuse to train when any image file is unreadable, instead of
            skipping and listing it.

    Raises:
        DatasetError: the train tree is missing, has fewer than 2 classes, a
            class without images, or (with ``strict``) an unreadable file.
        CheckpointError: the model directory is not writable, or ``resume``
            finds no usable checkpoint or one for other classes.
    """
    model_dir = setting.model_path
    index = prepare_index(setting)
    setting = setting.replace(class_names=index.class_names)
    artifacts.ensure_writable(model_dir)
    if resume:
        saved = artifacts.load_class_names(model_dir)
        if saved != index.class_names:
            raise CheckpointError(f"{model_dir / artifacts.CLASS_NAMES}: classes {saved} differ from the train folder's {index.class_names}")
    counts = ", ".join(f"{name}: {n}" for name, n in index.class_counts().items())
    log(f"{len(index)} images in {len(index.class_names)} classes under {index.root} ({counts})")
    if index.ignored:
        log(f"ignored {len(index.ignored)} non-image files, e.g. {index.ignored[0]}")
    keras.utils.set_random_seed(setting.seed)
    policy = precision.apply(setting.precision)
    data = training_data(setting, index, progress=progress)
    if data.failed and strict:
        path, reason = data.failed[0]
        raise DatasetError(f"{path}: {reason} ({len(data.failed)} unreadable files; --strict refuses to skip them)")
    for path, reason in data.failed:
        log(f"skipped {path}: {reason}")
    log(f"training on {data.train_count} images, validating on {data.validation_count} "
        f"(validation_split={setting.validation_split}, pipeline={setting.pipeline}, precision={policy})")

    if resume:
        model, initial_epoch, history, best = _resume_state(setting, data.steps_per_epoch)
        log(f"resuming after epoch {initial_epoch} of {setting.epochs} (best val_accuracy so far: {best})")
    else:
        model = build_model(setting.model, setting.input_shape, len(index.class_names),
                            setting.optimizer, setting.learning_rate)
        initial_epoch, history, best = 0, [], None
        for stale in (artifacts.BEST_WEIGHTS, artifacts.BEST_INFO, artifacts.LAST_MODEL, artifacts.HISTORY):
            (model_dir / stale).unlink(missing_ok=True)
    artifacts.save_metadata(model_dir, setting, index.class_names)

    artifacts.write_json(model_dir / artifacts.DATASET, dataset_summary(setting, index, data))
    class_weight = balanced_class_weights(data.train_labels, len(index.class_names)) \
        if setting.class_weight == "balanced" else None
    if class_weight:
        log("class weights: " + ", ".join(f"{index.class_names[c]}: {w:.3g}" for c, w in class_weight.items()))

    checkpoint = EpochCheckpoint(model_dir, history, best)
    callbacks: list[keras.callbacks.Callback] = [EpochSeeds(setting.seed, data.set_epoch), checkpoint]
    if setting.lr_decay < 1.0:
        # A function of the epoch index, so a resumed run continues the same schedule.
        base, decay = setting.learning_rate, setting.lr_decay
        callbacks.insert(0, keras.callbacks.LearningRateScheduler(lambda epoch: base * decay**epoch))
    if initial_epoch < setting.epochs:
        model.fit(
            data.train,
            validation_data=data.validation,
            epochs=setting.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            class_weight=class_weight,
            verbose=verbose,
            shuffle=False,  # both pipelines shuffle themselves; fit's own shuffle would only warn
        )
    curves = plots.training_curves(checkpoint.history, model_dir / plots.TRAINING_CURVES) if checkpoint.history else None
    return TrainResult(setting.epochs - initial_epoch, checkpoint.best, checkpoint.history, model_dir, curves)
