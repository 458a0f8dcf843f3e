"""Locks on a model directory (``fcntl.flock``, Linux and macOS), so that two
runs never write one model directory and readers never load a half-replaced one.

- :func:`training_lock`: held by ``train`` for its whole run, exclusive and
  non-blocking: a second ``train`` on the same directory stops at once with
  the holder's PID.
- :func:`files_lock`: held briefly, shared by readers while they load a
  model's files, exclusive by ``train`` while it replaces the previous model
  with a new one (see :func:`mnist_folders.artifacts.promote`).
- :func:`export_lock`: held by an export while it writes ``export/``,
  exclusive and non-blocking.
- :func:`appender_lock`: held by ``predict --watch`` on its CSV.

``flock`` locks belong to the open file and vanish with the process, so a
killed run never leaves a stale lock behind. The lock files are hidden.
"""

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import CheckpointError
from .names import display

TRAINING_LOCK = ".train.lock"
FILES_LOCK = ".files.lock"
EXPORT_LOCK = ".export.lock"


@contextlib.contextmanager
def _pid_lock(path: Path, busy: Callable[[str], str]) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``path``, writing our PID into it.

    Raises:
        CheckpointError: another process holds it: ``busy(its PID)``.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise CheckpointError(busy(holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def training_lock(model_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``model_dir``'s training lock.

    Raises:
        CheckpointError: another process holds it (its PID is named).
    """
    return _pid_lock(model_dir / TRAINING_LOCK, lambda pid: f"{display(model_dir)}: in use by another training "
                     f"run (PID {pid}); wait for it or choose another --model-dir")


def export_lock(model_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Hold ``model_dir``'s export lock while ``export/`` is written: two exports at once removed each other's
    files half-written (one SavedModel staging folder, each other's temporaries).

    Raises:
        CheckpointError: another export of this model directory is running (its PID is named).
    """
    return _pid_lock(model_dir / EXPORT_LOCK, lambda pid: f"{display(model_dir)}: another export of this "
                     f"model is running (PID {pid}); wait for it")


@contextlib.contextmanager
def files_lock(model_dir: Path, exclusive: bool) -> Iterator[None]:
    """Hold ``model_dir``'s files lock, shared (readers) or exclusive (replacing the model); blocks.

    A directory that does not exist or cannot be written is read without a lock.
    """
    try:
        fd = os.open(model_dir / FILES_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        if exclusive:
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def appender_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on the file ``path`` itself (created empty if missing, never
    truncated) while one process appends to it: two watchers on one CSV would predict every file twice.

    Raises:
        CheckpointError: another process holds it.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(f"{display(path)}: another watcher appends to it; stop that one or choose "
                                  "another --output") from None
        yield
    finally:
        os.close(fd)
