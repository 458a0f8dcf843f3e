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
- :func:`appender_lock`: held by ``predict`` (``--watch`` or not) on its CSV.

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
def appender_lock(path: Path, create: bool = True) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on the file ``path`` itself (created empty if missing and
    ``create``, never truncated) while one process writes it: two watchers on one CSV would predict every
    file twice, and a batch predict replacing a watcher's CSV let a second watcher in. Without ``create`` a
    missing file is not locked (no watcher can hold it).

    Raises:
        CheckpointError: another process holds it (its PID named where ``/proc/locks`` tells).
    """
    try:
        # Read-only without create: flock needs no write access, and a CSV made read-only is replaced all the same.
        fd = os.open(path, os.O_RDWR | os.O_CREAT if create else os.O_RDONLY, 0o644)
    except FileNotFoundError:
        if create:
            raise
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointError(f"{display(path)}: in use by another predict run (PID {flock_holder(fd)}); "
                                  "stop that one or choose another --output") from None
        yield
    finally:
        os.close(fd)


def flock_holder(fd: int) -> str:
    """The PID holding an flock on the open file ``fd``, from Linux's ``/proc/locks``, or ``"unknown"``
    (another system; a holder in another PID namespace)."""
    info = os.fstat(fd)
    me = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:  # "1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF"
                fields = line.split()
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == me and fields[4] != "0":
                    return fields[4]
    except OSError:
        pass
    return "unknown"
