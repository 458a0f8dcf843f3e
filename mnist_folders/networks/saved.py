"""A model directory's Keras checkpoints, written and read back: ``best.weights.h5`` (with ``best.json``),
``last.keras`` (with the optimizer state, for ``--resume``), and the best model rebuilt from its Setting.

The rest of the directory (JSON, CSV, staging and promotion) is :mod:`mnist_folders.artifacts`; the file
names are :mod:`mnist_folders.layout`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import artifacts
from ..atomic import atomic_path
from ..errors import CheckpointError
from ..layout import BEST_INFO, BEST_WEIGHTS, LAST_MODEL
from ..locking import files_lock
from ..names import display
from ..settings import MODEL_DEFINING, Setting
from . import dtype_policy
from .build import build_model


@contextlib.contextmanager
def _checkpoint_errors(final: Path) -> Iterator[None]:
    """Turn a failed checkpoint write (disk full, file too large, I/O error) into one line naming ``final``."""
    try:
        yield
    except (OSError, RuntimeError, ValueError) as exc:
        reason = os.strerror(exc.errno) if getattr(exc, "errno", None) else str(exc).strip().splitlines()[0][:160]
        raise CheckpointError(f"{display(final)}: cannot write the checkpoint ({reason}); "
                              "the previous complete checkpoint is kept") from None


def checkpoint_bytes(model: Any) -> int:
    """About how many bytes ``last.keras`` takes: weights plus optimizer slots (float32), and room to spare."""
    return 3 * 4 * model.count_params() + 2**20


def save_best_weights(model_dir: Path, model: Any, epoch: int, val_accuracy: float) -> None:
    """Atomically write ``best.weights.h5`` then ``best.json`` (1-based ``epoch``).

    Raises:
        CheckpointError: not enough free disk space (checked first).
    """
    artifacts.check_free_space(model_dir, checkpoint_bytes(model))
    final = model_dir / BEST_WEIGHTS
    with _checkpoint_errors(final), atomic_path(final, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    artifacts.write_json(model_dir / BEST_INFO, {"epoch": epoch, "val_accuracy": val_accuracy})


def save_last_model(model_dir: Path, model: Any) -> None:
    """Atomically write the full model (with optimizer state) to ``last.keras``.

    Raises:
        CheckpointError: not enough free disk space (checked first).
    """
    artifacts.check_free_space(model_dir, checkpoint_bytes(model))
    with _checkpoint_errors(model_dir / LAST_MODEL), atomic_path(model_dir / LAST_MODEL, suffix=".keras") as tmp:
        model.save(tmp)


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


def load_trained_model(model_dir: Path, setting: Setting | None = None,
                       policy: str | None = None) -> tuple[Any, Setting, list[str]]:
    """The best model of a model directory, with its Setting and class names.

    Rebuilds the architecture from ``setting.json`` (or ``setting``, when the
    caller has already read it with :func:`~mnist_folders.artifacts.load_trained_setting`) and loads
    ``best.weights.h5`` into it: no code is read from the directory. The
    model is built under the trained dtype policy, or ``policy`` (e.g.
    ``"float32"`` for the exporters, which do not take bfloat16).

    Raises:
        CheckpointError: the directory, a file, or a match between them is
            missing (e.g. weights for a different number of classes).
    """
    weights = model_dir / BEST_WEIGHTS
    # Shared lock: a training run cannot swap in a new model while these files are read together.
    with files_lock(model_dir, exclusive=False):
        saved = artifacts.load_trained_setting(model_dir)
        if setting is not None and any(getattr(saved, k) != getattr(setting, k) for k in MODEL_DEFINING):
            raise CheckpointError(f"{display(model_dir)}: the model was replaced by a new training run "
                                  "while it was being read; run the command again")
        setting = setting or saved
        class_names = artifacts.load_class_names(model_dir)
        dtype_policy.apply(policy or setting.dtype_policy)  # weights are float32 under either policy
        model = build_model(setting.model, setting.input_shape, len(class_names))
        try:
            # skip_mismatch=False: a file for another architecture or class count must fail, not half-load.
            model.load_weights(weights)
        except Exception as exc:  # h5py/Keras raise several types for mismatched or corrupt files
            raise CheckpointError(
                f"{display(weights)}: does not fit model {setting.model!r} with {len(class_names)} classes "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            ) from None
    return model, setting, class_names
