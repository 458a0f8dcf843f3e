"""The model a long-running server answers with, replaced when a new training run lands.

A server must never answer with a half-read model, nor stop answering while
a new one is written. :class:`LiveModel` loads the model directory's files
under its readers' lock (:func:`mnist_folders.locking.files_lock`, the lock
``train`` takes exclusively while it replaces them), notices a change by the
files' size, inode and modification time (checked at most once a second),
and swaps to the new model only once it has loaded completely. With an
exported runtime it waits until the export matches the new weights (training
exports after the new weights land): meanwhile the previous model answers.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import artifacts, layout
from ..errors import CheckpointError
from ..locking import files_lock
from ..names import display
from ..settings import Setting
from .prediction import Predictor, load_predictor

CHECK_SECONDS = 1.0  # how often the files are looked at, at most
# The files whose change means another model: the weights, the temperature, and the export built from them.
WATCHED = (layout.BEST_WEIGHTS, layout.CALIBRATION, f"{layout.EXPORT}/preprocessing.json")
# What decoding an upload depends on: a new model that differs here needs a restart of the server.
INPUT_SETTINGS = ("image_height", "image_width", "color_mode", "resize_method")


@dataclass(frozen=True)
class Loaded:
    """One loaded model: what predicts, and what ``/health`` and ``/metadata`` say about it."""

    predictor: Predictor
    weights_sha256: str
    temperature: float
    signature: tuple  # (size, inode, mtime ns) of each WATCHED file when it was loaded; None where missing
    loaded_at: float  # time.time() of the load


def files_signature(model_dir: Path) -> tuple:
    """``(size, inode, mtime in ns)`` of each watched file, None for a missing one: it changes when any is
    replaced (the writes are atomic renames: a new inode)."""
    result = []
    for name in WATCHED:
        try:
            info = os.stat(model_dir / name)
            result.append((info.st_size, info.st_ino, info.st_mtime_ns))
        except OSError:
            result.append(None)
    return tuple(result)


class LiveModel:
    """The current model of ``setting.model_path`` on ``runtime`` (``keras``, ``onnx``, ...; resolved
    already: ``auto`` would switch to Keras, and load TensorFlow, while a new export is being written).

    Raises (from the constructor):
        CheckpointError: no trained model, or no current export for ``runtime``.
    """

    def __init__(self, setting: Setting, runtime: str, log: Callable[[str], None] = print):
        self.setting, self.runtime, self.log = setting.replace(runtime=runtime), runtime, log
        self.pending: str | None = None  # why a changed model directory is not served yet
        self._lock = threading.Lock()
        self._checked = time.monotonic()
        self._inputs: tuple | None = None  # INPUT_SETTINGS of the first model loaded
        self.current = self._load()

    def _load(self) -> Loaded:
        model_dir = self.setting.model_path
        with files_lock(model_dir, exclusive=False):  # train replaces the files under the exclusive lock
            signature = files_signature(model_dir)
            trained = artifacts.load_trained_setting(model_dir)
            inputs = tuple(getattr(trained, name) for name in INPUT_SETTINGS)
            if self._inputs is None:
                self._inputs = inputs
            elif inputs != self._inputs:  # the server decodes every upload for the model it started with
                raise CheckpointError(f"{display(model_dir)}: the new model takes other inputs ("
                                      + ", ".join(f"{n}={v}" for n, v in zip(INPUT_SETTINGS, inputs))
                                      + "); restart the server to serve it")
            predictor = load_predictor(self.setting)
            if self.runtime == "keras":
                from .deploy import weights_digest

                digest, temperature = weights_digest(model_dir), artifacts.load_temperature(model_dir)
            else:  # what the export was built from: its weights, and the temperature inside its graph
                from .runtime import ExportedModel

                recorded = ExportedModel(model_dir, self.runtime).preprocessing
                digest, temperature = recorded["source_weights_sha256"], float(recorded.get("temperature", 1.0))
        return Loaded(predictor, digest, temperature, signature, time.time())

    def refresh(self, now: float | None = None) -> Loaded:
        """The model to answer with: the same one, or a new one when the files changed and it loads.

        Call it from the thread that predicts (the swap happens between two batches). A model directory
        caught mid-change (an export not yet matching the new weights, a file removed) keeps the
        previous model; the reason is in :attr:`pending` and logged once.
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._checked < CHECK_SECONDS:
                return self.current
            self._checked = now
            if files_signature(self.setting.model_path) == self.current.signature:
                return self.current
            try:
                loaded = self._load()
            except (CheckpointError, OSError, KeyError, TypeError, ValueError) as exc:
                reason = str(exc)
                if reason != self.pending:
                    self.log(f"model directory changed; still serving the previous model: {reason}")
                self.pending = reason
                return self.current
            self.current, self.pending = loaded, None
            self.log(f"serving the new model of {display(self.setting.model_path)} "
                     f"(weights {loaded.weights_sha256[:12]})")
            return loaded
