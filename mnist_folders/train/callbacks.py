"""Training callbacks: atomic per-epoch checkpoints, per-epoch seeding, and
the one list of callbacks that every training loop (``train``, the benchmarks) uses."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import schedules
from .. import artifacts
from ..networks import saved
from .run_directory import promote


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: best weights (:func:`mnist_folders.train.schedules.best_epoch`), the full model, the
    history.

    Keras' ``ModelCheckpoint`` and ``CSVLogger`` write in place; this writes
    every file atomically (temporary file, then rename), so a kill at any
    moment leaves a complete, resumable directory.
    """

    def __init__(self, model_dir: Path, history: list[dict[str, float]], best: float | None,
                 promote_to: Path | None = None):
        super().__init__()
        self.model_dir = model_dir
        # A fresh run in a staging folder: after its first saved epoch it replaces promote_to's model.
        self.promote_to = promote_to
        self.history = history
        self.best = best
        self.diverged: int | None = None  # the 1-based epoch whose loss was NaN or infinite
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if not all(math.isfinite(float(v)) for k, v in logs.items() if k.endswith("loss")):
            # Diverged: keep the last good checkpoint and history untouched.
            self.diverged = epoch + 1
            self.model.stop_training = True
            return
        # Rounded as history.csv stores them, so a resumed run compares the same numbers.
        # steps: what last.keras of this epoch will hold, so that --resume finds its epoch in the history.
        row = {"epoch": epoch + 1, **{k: artifacts.rounded(v) for k, v in logs.items()},
               "seconds": time.perf_counter() - self._started, "steps": int(self.model.optimizer.iterations.numpy())}
        self.history.append(row)
        if "val_accuracy" in row and schedules.best_epoch(self.history) == epoch + 1:
            self.best = row["val_accuracy"]
            saved.save_best_weights(self.model_dir, self.model, epoch + 1, row["val_accuracy"])
        # last.keras is written last: it is the commit point of the epoch.
        # A kill before it leaves history one row ahead, which resume trims.
        artifacts.write_history(self.model_dir, self.history)
        saved.save_last_model(self.model_dir, self.model)
        if self.promote_to is not None:
            promote(self.model_dir, self.promote_to)
            self.model_dir, self.promote_to = self.promote_to, None


def reseed(variables: list, seed: int, epoch: int) -> None:
    """Set every Keras ``SeedGenerator`` state among ``variables`` from ``(seed, epoch)``."""
    for i, variable in enumerate(v for v in variables if v.path.endswith("seed_generator_state")):
        variable.assign(np.array([seed * 1009 + i, epoch << 24], dtype=variable.dtype))


class EpochSeeds(keras.callbacks.Callback):
    """Make each epoch's randomness a function of ``(seed, epoch)``: data order and dropout masks.

    ``last.keras`` does not keep the dropout layers' random-generator state,
    and the tfdata order would otherwise restart; reseeding both at every
    epoch start makes a resumed run train exactly like an uninterrupted one.
    """

    def __init__(self, seed: int, set_data_epoch: Callable[[int], Any] | None = None):
        super().__init__()
        self.seed = seed
        self.set_data_epoch = set_data_epoch

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        reseed(self.model.non_trainable_variables, self.seed, epoch)
        if self.set_data_epoch is not None:
            self.set_data_epoch(epoch)


def learning_rate_schedule(setting: Any,
                           history: list[dict[str, float]] | None = None) -> keras.callbacks.Callback | None:
    """The per-epoch learning-rate callback of ``setting`` (``None`` when constant).

    A function of the epoch index and the completed epochs' ``history`` only
    (:func:`mnist_folders.train.schedules.learning_rate_at`), so a resumed run
    continues the same schedule.
    """
    if setting.lr_schedule == "constant" and setting.lr_decay >= 1.0 and not setting.warmup_epochs:
        return None
    return keras.callbacks.LearningRateScheduler(lambda epoch: schedules.learning_rate_at(setting, epoch, history))


class StopRule(keras.callbacks.Callback):
    """Stop when :func:`mnist_folders.train.schedules.should_stop` says so, or at the wall-clock deadline.

    Reads the history that :class:`EpochCheckpoint` keeps (restored on
    resume), so the patience count survives a kill.
    """

    def __init__(self, setting: Any, history: list[dict[str, float]], log: Callable[[str], Any] = print):
        super().__init__()
        self.setting = setting
        self.history = history
        self.deadline = schedules.Deadline(setting.max_minutes if setting.epochs == "auto" else 0.0)
        self.log = log
        self.reason: str | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.reason = schedules.should_stop(self.setting, self.history)
        if self.reason is None and self.deadline.passed():
            self.reason = f"max_minutes={self.setting.max_minutes} reached"
        if self.reason:
            self.log(f"stopping after epoch {epoch + 1}: {self.reason}")
            self.model.stop_training = True


def training_callbacks(setting: Any, set_data_epoch: Callable[[int], Any] | None,
                       *extra: keras.callbacks.Callback,
                       history: list[dict[str, float]] | None = None) -> list[keras.callbacks.Callback]:
    """A training run's callbacks, in order: schedule, seeds, NaN guard, then ``extra`` (checkpoints, stop rule)."""
    schedule = learning_rate_schedule(setting, history)
    return [*([schedule] if schedule else []), EpochSeeds(setting.seed, set_data_epoch),
            keras.callbacks.TerminateOnNaN(), *extra]
