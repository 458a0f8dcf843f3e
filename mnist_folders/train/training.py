"""Train a model from a class-per-folder tree: ``fit`` with checkpoints and history.

:func:`train` takes the model directory (:class:`~.run_directory.RunDirectory`)
and runs a :class:`TrainingRun`, whose :meth:`~TrainingRun.run` reads like the
keras-io MNIST example: settings, model, data, callbacks, ``fit``, report.
What ``auto`` chooses is :mod:`.choices`, what ``--resume`` checks is
:mod:`.resume`, and what train and the learning-rate finder prepare alike is
:mod:`.preparation`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from .. import artifacts, layout, plots
from ..data.folders import FolderIndex
from ..data.image_cache import remove_cache
from ..data.pipeline import TrainingData
from ..errors import TrainingError
from ..names import display
from ..networks.build import build_model
from ..registry import MODELS
from ..settings import Setting
from . import multi_worker, resume as resuming, schedules
from .callbacks import EpochCheckpoint, StopRule, training_callbacks
from .choices import balanced_class_weights, describe_budget, describe_choices, inherit_automatic, resolve_settings
from .distribute import strategy_for
from .fine_tuning import pretrained_head
from .preparation import dataset_summary, load_training_data, prepare_index, seed_and_policy
from .run_directory import RunDirectory
from .transfer import initialise_from


STEPS_PER_EXECUTION = 16  # training steps per call into the compiled graph, at most


def steps_per_execution(steps_per_epoch: int) -> int:
    """Training steps ``fit`` runs per call into its compiled graph: :data:`STEPS_PER_EXECUTION`, fewer for
    short epochs.

    Fewer Python round-trips per step: 1.18x the images/s of float32 training
    and 1.07x of bfloat16 at 16 (``bench/experiments/levers.py``, MNIST, batch 256), the
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
          then: Callable[[FinishedRun], None] | None = None) -> TrainResult:
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
            another training run, holds a model of other classes (without
            ``overwrite``), or ``resume`` finds no usable checkpoint or
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
    index = prepare_index(setting, log)
    directory = RunDirectory.claim(setting.model_path, role, index.class_names, fresh=not resume, overwrite=overwrite)
    if strategy.num_replicas_in_sync > 1:
        log(f"training {placement}; each batch is split across the replicas")
    with directory.held():
        with multi_worker.lost_contact(role), strategy.scope():
            finished = TrainingRun(setting, index, directory, resume, log, progress, strict).run(verbose)
        # What follows (calibration, export) runs outside the strategy: plain forward passes.
        if directory.chief and finished.result.history and then is not None:
            then(finished)
    return finished.result


class TrainingRun:
    """One training run in a held :class:`~.run_directory.RunDirectory` (see :func:`train` for the arguments)."""

    def __init__(self, setting: Setting, index: FolderIndex, directory: RunDirectory, resume: bool, log=print,
                 progress: bool = True, strict: bool = False):
        self.chosen, self.index, self.directory = setting, index, directory
        self.resume, self.log, self.progress, self.strict = resume, log, progress, strict
        self.model_dir = directory.model_dir

    def run(self, verbose: int | str = "auto") -> FinishedRun:
        """Settings, model, data, callbacks, fit, report; returns the finished run."""
        setting = self.settings()
        policy = seed_and_policy(setting)
        pretrained = MODELS[setting.model].pretrained
        # Model: new (built first: a size it cannot take fails before the data is read), or the last epoch's.
        model = None if self.resume else self.new_model(setting)
        data = self.data(setting, policy)
        if self.resume:
            resuming.check_same_count(self.model_dir, data)
            model, initial_epoch, history, best = resuming.resume_state(setting, data.steps_per_epoch, pretrained)
            limit = f"at most {setting.max_epochs}" if setting.epochs == "auto" else setting.epochs
            self.log(f"resuming after epoch {initial_epoch} of {limit} (best val_accuracy so far: {best})")
        else:
            initial_epoch, history, best = 0, [], None
        workdir = self.directory.workdir
        artifacts.save_metadata(workdir, setting, self.index.class_names)
        artifacts.write_json(workdir / layout.DATASET, dataset_summary(setting, self.index, data))

        # Callbacks: schedule, per-epoch seeds, NaN guard, atomic checkpoints, the stop rule.
        checkpoint = EpochCheckpoint(workdir, history, best, self.directory.promote_to)
        stop = StopRule(setting, checkpoint.history, self.log)
        # TensorBoard: the chief's logs only
        logs = [tensorboard_logs(self.model_dir, self.resume)] if setting.tensorboard and self.directory.chief else []
        callbacks = training_callbacks(setting, data.set_epoch, checkpoint, stop, *logs, history=checkpoint.history)
        class_weight = self.class_weight(setting, data)
        if pretrained and not self.resume:  # epoch 1: the head, fitted on the backbone's embeddings
            checkpoint.set_model(model)
            checkpoint.on_epoch_begin(0)
            line, head_logs = pretrained_head(setting, model, self.index, data.failed, class_weight, str(policy),
                                              self.progress)
            self.log(line)
            checkpoint.on_epoch_end(0, head_logs)
            initial_epoch = 1

        self.fit(setting, model, data, checkpoint.history, initial_epoch, callbacks, class_weight, verbose)
        if checkpoint.diverged:
            kept = (f"kept the checkpoints of epoch {len(checkpoint.history)}" if checkpoint.history
                    else "no checkpoint written; a previous model there is kept")
            raise TrainingError(f"{display(self.model_dir)}: training diverged (loss NaN or infinite in epoch "
                                f"{checkpoint.diverged}); {kept}. Lower learning_rate (now {setting.learning_rate:g})")
        return FinishedRun(self.report(checkpoint, initial_epoch), setting, self.index, data.failed)

    def settings(self) -> Setting:
        """The chosen Setting with every ``auto`` resolved; on ``--resume``, checked against the saved run."""
        setting = self.chosen
        if self.resume:  # what "auto" chose then stays chosen: the rules may have changed since
            resuming.check_nothing_staged(self.model_dir)
            resuming.check_history(self.model_dir)
            setting = inherit_automatic(setting, artifacts.load_setting(self.model_dir))
        resolved = resolve_settings(setting, self.index)
        if self.resume:
            resolved = resuming.check_resumable(resolved, self.log)
            resuming.check_same_images(self.model_dir, self.index)
        else:
            for line in describe_choices(setting, resolved):
                self.log(line)
        return resolved

    def new_model(self, setting: Setting) -> keras.Model:
        """A fresh run's model (warm-started by ``init_from``), and its workspace in the run directory."""
        model = build_model(setting.model, setting.input_shape, len(self.index.class_names),
                            setting.optimizer, setting.learning_rate, setting.backbone_weights,
                            setting.label_smoothing, pretrained=not setting.init_from, log=self.log)
        if setting.init_from:
            self.log(initialise_from(model, setting.init_from))
        self.directory.begin_fresh()
        return model

    def data(self, setting: Setting, policy: str) -> TrainingData:
        """The training and validation subsets of the tree, and the line that says what trains on what."""
        try:
            data = load_training_data(setting, self.index, self.progress, self.strict, self.log)
        except Exception:  # refused (e.g. --strict): this run never began, the previous model stays resumable
            if not self.resume:
                self.directory.abandon()
            raise
        self.log(f"training on {data.train_count} images, validating on {data.validation_count} "
                 f"(batch_size={setting.batch_size}, pipeline={setting.pipeline}, dtype_policy={policy}); "
                 f"{describe_budget(setting)}")
        if data.cache_note:
            self.log(data.cache_note)
        return data

    def class_weight(self, setting: Setting, data: TrainingData) -> dict[int, float] | None:
        """``class_weight`` for ``fit`` (``balanced``: inverse class frequency), said in one line; ``None``."""
        if setting.class_weight != "balanced":
            return None
        weights = balanced_class_weights(data.train_labels, len(self.index.class_names))
        self.log("class weights: " + ", ".join(f"{self.index.class_names[c]}: {w:.3g}" for c, w in weights.items()))
        return weights

    def fit(self, setting: Setting, model: keras.Model, data: TrainingData, history: list[dict[str, float]],
            initial_epoch: int, callbacks: list, class_weight: dict[int, float] | None, verbose: int | str) -> None:
        """``model.fit`` from ``initial_epoch`` (the multi-worker loop across processes), unless the run had
        already finished (a resumed run) or reached its epoch limit."""
        finished = schedules.should_stop(setting, history)
        if finished:
            if self.resume:
                self.log(f"already finished: {finished}")
            return
        epochs = schedules.epoch_limit(setting)
        if initial_epoch >= epochs:
            return
        role = self.directory.role
        if role is not None:
            multi_worker.fit(tf.distribute.get_strategy(), role, model, data.train, data.validation,
                             data.steps_per_epoch, epochs, initial_epoch, callbacks, setting.label_smoothing,
                             class_weight, self.log)
            return
        # The attribute compile(steps_per_execution=...) sets: a resumed model comes compiled from last.keras.
        # One step per execution over several replicas: with more, Keras 3.15's multi-step loop under
        # MirroredStrategy fails in TF 2.21 ("You must feed a value for placeholder tensor ...").
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        model.steps_per_execution = steps_per_execution(data.steps_per_epoch) if replicas == 1 else 1
        model.fit(
            data.train,
            validation_data=data.validation,
            epochs=epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            class_weight=class_weight,
            verbose=verbose,
            shuffle=False,  # both pipelines shuffle themselves; fit's own shuffle would only warn
        )

    def report(self, checkpoint: EpochCheckpoint, initial_epoch: int) -> TrainResult:
        """The run's result; on the chief, the curves of every epoch so far, and the disk cache removed (kept
        only for a ``--resume`` after a kill)."""
        epochs_run = len(checkpoint.history) - initial_epoch
        if not self.directory.chief:  # its files are thrown away
            return TrainResult(epochs_run, checkpoint.best, checkpoint.history, self.model_dir)
        remove_cache(self.model_dir)
        curves = (plots.training_curves(checkpoint.history, self.model_dir / layout.TRAINING_CURVES)
                  if checkpoint.history else None)
        return TrainResult(epochs_run, checkpoint.best, checkpoint.history, self.model_dir, curves)


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


def lr_find(setting: Setting, progress: bool = True, strict: bool = False, log=print):
    """``--mode lr_find``: the learning-rate sweep of :mod:`mnist_folders.train.lr_finder` on the training subset,
    prepared as a training run is (the same index, claim, resolved settings, seed, policy and data).

    Returns the :class:`~mnist_folders.train.lr_finder.LRSweep`. Raises as :func:`train` does for the data.
    """
    from .lr_finder import find_learning_rate

    index = prepare_index(setting, log)
    RunDirectory.claim(setting.model_path, None, index.class_names, fresh=False)  # writes lr_find.*, no model
    setting = resolve_settings(setting, index)
    seed_and_policy(setting)
    data = load_training_data(setting, index, progress, strict, log)
    return find_learning_rate(setting, data, len(index.class_names), log=log)
