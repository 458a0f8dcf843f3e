"""Training callbacks: atomic per-epoch checkpoints and per-epoch seeding."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from . import artifacts


class EpochCheckpoint(keras.callbacks.Callback):
    """After each epoch: best weights (by ``val_accuracy``), the full model, the history.

    Keras' ``ModelCheckpoint`` and ``CSVLogger`` write in place; this writes
    every file atomically (temporary file, then rename), so a kill at any
    moment leaves a complete, resumable directory.
    """

    def __init__(self, model_dir: Path, history: list[dict[str, float]], best: float | None):
        super().__init__()
        self.model_dir = model_dir
        self.history = history
        self.best = best
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}, "seconds": time.perf_counter() - self._started}
        val_accuracy = row.get("val_accuracy")
        if val_accuracy is not None and (self.best is None or val_accuracy > self.best):
            self.best = val_accuracy
            artifacts.save_best_weights(self.model_dir, self.model, epoch + 1, val_accuracy)
        self.history.append(row)
        # last.keras is written last: it is the commit point of the epoch.
        # A kill before it leaves history one row ahead, which resume trims.
        artifacts.write_history(self.model_dir, self.history)
        artifacts.save_last_model(self.model_dir, self.model)


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
