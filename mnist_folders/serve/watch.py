"""``--mode predict --watch``: predict each image as it lands in the predict folder.

The folder (sub-folders included) is polled every :data:`POLL_SECONDS`:
polling, not file-system events, because it works the same on local disks,
network shares and container mounts, where inotify events are often missing.
A poll lists the files only when a folder's modification time changed (a
file was added, removed or renamed there), and at least every
:data:`FULL_LISTING_SECONDS`; otherwise it looks at the folders and the
files still settling only, so an idle watcher over a large folder costs
next to nothing. A file is taken once its size and
modification time have not changed for :data:`SETTLE_SECONDS` (a writer
still copying it changes them); names with a temporary suffix
(:data:`IN_PROGRESS_SUFFIXES`) or a leading dot wait for their rename.

Each prediction is appended to the CSV as one complete line, flushed to disk
before the next batch. The CSV is the memory: a restarted watcher reads it
back and predicts only the files not in it. SIGTERM and Ctrl-C stop after the
batch in progress, with every row written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import artifacts, layout, locking
from ..atomic import atomic_path
from ..errors import CheckpointError, DatasetError, SettingError
from ..data.folders import is_model_dir, list_files
from ..data.images import load_images
from ..names import class_name_problem, display, safe_cell
from .prediction import TOP_K, UNCERTAIN, Prediction, Predictor, csv_header, rank, to_csv
from ..settings import Setting

POLL_SECONDS = 0.25
SETTLE_SECONDS = 0.5  # unchanged size and mtime for this long: the writer has finished
IDLE_AFTER_SECONDS = 2.0  # a folder unchanged this long is polled less often...
IDLE_POLL_SECONDS = 2.0  # ... down to once every this many seconds (the longest wait for a new file)
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".!qb")
BATCH = 256  # images per forward pass at most; a burst is split into batches
FULL_LISTING_SECONDS = 30.0  # a full listing at least this often, whatever the folders' mtimes say
MTIME_SLACK_NS = 2 * 10**9  # a folder changed this recently is listed again: mtime clocks can be coarse (FAT: 2 s)


@dataclass
class WatchState:
    """What the watcher has done: predicted rows (this run), skipped files and why."""

    predicted: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # path -> reason
    done: set[str] = field(default_factory=set)  # CSV path cells already written (earlier runs included)
    seen: dict[str, tuple[int, int, float]] = field(default_factory=dict)  # path -> (size, mtime_ns, since)
    last_change: float = field(default_factory=time.monotonic)  # when a file last appeared or changed
    folders: dict[str, int] = field(default_factory=dict)  # folder -> mtime_ns at the last full listing
    listed_at: float = float("-inf")  # when the last full listing was (monotonic seconds)


def path_cell(path: str) -> str:
    """The ``path`` cell the CSV holds for ``path`` (see :func:`mnist_folders.serve.prediction.to_csv`)."""
    return safe_cell(display(path))


def read_done(csv_path: Path, header: list[str]) -> set[str]:
    """The path cells of an existing predictions CSV; a trailing partial line (or header) is cut off first.

    Raises:
        DatasetError: the file's header is not ``header`` (another kind of
            file, or a CSV of a model with another number of classes).
    """
    if not csv_path.exists():
        return set()
    data = csv_path.read_bytes()
    if (",".join(header) + "\r\n").encode().startswith(data):  # empty, or the first write cut by a kill
        with open(csv_path, "r+b") as f:
            f.truncate(0)
        return set()
    # The header first, before anything is changed: a file that is not ours is never touched.
    end = data.find(b"\r\n")
    try:
        first = next(csv.reader(io.StringIO(data[: end if end >= 0 else len(data)].decode("utf-8"), newline="")),
                     [])
    except (UnicodeDecodeError, csv.Error):
        first = ["(not UTF-8 text)"]
    if end < 0 or first != header:
        raise DatasetError(f"{display(csv_path)}: not a predictions CSV of this model (header {first[:4]}...); "
                           "left untouched; choose another --output")
    complete = data[: complete_records_end(data)]
    if complete != data:  # a row cut off by a kill: drop it, it is predicted again
        with open(csv_path, "r+b") as f:
            f.truncate(len(complete))
    rows = list(csv.reader(io.StringIO(complete.decode("utf-8", "surrogateescape"), newline="")))
    return {row[0] for row in rows[1:] if row}


def complete_records_end(data: bytes) -> int:
    """The length of ``data``'s prefix of whole CSV records: up to the last CRLF outside quotes (RFC 4180).

    A path cell may hold a quoted CRLF: the last CRLF of a row cut off inside such a name is not a record's
    end (cutting there kept half a row, and the restarted watcher appended to it).
    """
    inside, end = False, 0
    for found in re.finditer(rb'"|\r\n', data):
        if found.group() == b'"':
            inside = not inside  # an escaped quote ("") toggles twice
        elif not inside:
            end = found.end()
    return end


def append_rows(csv_path: Path, predictions: list[Prediction]) -> None:
    """Append ``predictions`` to the CSV (header first when new), flushed and fsynced."""
    text = to_csv(predictions)
    if csv_path.exists() and csv_path.stat().st_size:
        text = text.split("\r\n", 1)[1]  # the header is there already
    with open(csv_path, "a", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def copy_into_class_folder(prediction: Prediction, root: Path) -> Path:
    """Copy the image into ``root/<class>/`` (``root/uncertain/`` when uncertain), atomically.

    A different file of the same name already there is kept; the copy gets
    ``_1``, ``_2``, ... before its suffix.
    """
    source = Path(prediction.path)
    name = UNCERTAIN if prediction.uncertain else prediction.class_name
    folder = root / name
    if class_name_problem(name) or folder.resolve().parent != root.resolve():  # the last guard: never outside
        raise CheckpointError(f"{display(folder)}: a class folder outside {display(root)}; not written")
    target, n = folder / source.name, 0
    while target.exists():
        n += 1
        target = folder / f"{source.stem}_{n}{source.suffix}"
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def folder_mtimes(folder: Path) -> dict[str, int]:
    """``folder``'s and each sub-folder's mtime (ns): the folders :func:`list_files` walks."""
    mtimes = {}
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not is_model_dir(os.path.join(dirpath, d))]
        with contextlib.suppress(OSError):
            mtimes[dirpath] = os.stat(dirpath).st_mtime_ns
    return mtimes


def folders_unchanged(state: WatchState, now: float) -> bool:
    """True when no folder listed last time changed since (nor so recently that a change in the same clock
    tick could hide), and the last full listing is under :data:`FULL_LISTING_SECONDS` old."""
    if not state.folders or now - state.listed_at >= FULL_LISTING_SECONDS:
        return False
    recent = time.time_ns() - MTIME_SLACK_NS
    for path, mtime in state.folders.items():
        try:
            current = os.stat(path).st_mtime_ns
        except OSError:
            return False
        if current != mtime or current >= recent:
            return False
    return True


def check_sort_into(root: Path, class_names: list[str], predict_folder: Path, watching: bool) -> None:
    """Refuse, before anything is predicted, a ``--sort-into`` folder ``root`` whose copies would be predicted
    again (``root`` inside ``predict_folder``, or ``predict_folder`` a class folder ``root/<class>``), or a
    folder or class folder (``root/<class>``, ``root/uncertain``) that cannot be made or written: found while
    copying, a watcher stopped with the rows of its batch written, and those images were never sorted.

    Raises:
        SettingError: the copies would be predicted again (a watcher: at once, forever).
        CheckpointError: a folder that cannot be made or written, named with why.
    """
    again = "at once" if watching else "by the next run"
    folder = predict_folder.resolve()
    inside = [root] if root.resolve().is_relative_to(folder) else \
        [root / name for name in [*class_names, UNCERTAIN] if folder.is_relative_to((root / name).resolve())]
    if inside:
        raise SettingError(f"--sort-into {display(root)} puts copies in {display(inside[0])}, inside the "
                           f"{'watched' if watching else 'predict'} folder {display(predict_folder)}: each copy "
                           f"would be predicted and copied again ({again}); choose a folder outside it")
    artifacts.check_creatable(root, what="--sort-into folder")
    for name in [*class_names, UNCERTAIN]:
        artifacts.check_creatable(root / name, what="--sort-into class folder")


def ready_files(folder: Path, state: WatchState, now: float, settle: float,
                ignore: frozenset[tuple[int, int]] = frozenset()) -> list[str]:
    """The files of ``folder`` not yet predicted nor skipped whose size and mtime settled ``settle`` seconds;
    ``ignore``: ``(st_dev, st_ino)`` of files left out (the watcher's own CSV, when it lies in the folder,
    under whatever name: ``folder`` may be reached through a link).

    The folder is listed only when :func:`folders_unchanged` says it may have changed; otherwise only the
    files of ``state.seen`` (still settling, or skipped: a skipped file rewritten is tried again) are looked at.
    """
    if folders_unchanged(state, now):
        candidates = list(state.seen)
    else:
        state.folders, state.listed_at = folder_mtimes(folder), now
        files, _ = list_files(folder)
        candidates = [path for path in files
                      if not path.lower().endswith(IN_PROGRESS_SUFFIXES) and path_cell(path) not in state.done]
    ready = []
    for path in candidates:
        try:
            info = os.stat(path)
        except OSError:  # renamed or removed since the listing
            state.seen.pop(path, None)
            continue
        if (info.st_dev, info.st_ino) in ignore:
            continue
        signature = (info.st_size, info.st_mtime_ns)
        previous = state.seen.get(path)
        if previous is None or previous[:2] != signature:
            state.seen[path] = (*signature, now)
            state.skipped.pop(path, None)  # a file rewritten after it failed is tried again
            state.last_change = now
        elif now - previous[2] >= settle and path not in state.skipped:
            ready.append(path)
    return ready


def poll_interval(state: WatchState, now: float, poll: float) -> float:
    """Seconds to wait before the next listing: ``poll`` while files arrive, then longer the longer the folder
    stays unchanged (up to :data:`IDLE_POLL_SECONDS`): listing 20,000 predicted files 4 times a second kept
    31 % of a core busy in an idle watcher."""
    idle = now - state.last_change
    return poll if idle < IDLE_AFTER_SECONDS else min(IDLE_POLL_SECONDS, max(poll, idle / 10))


def watch(setting: Setting, predictor: Predictor, output: Path | None = None, sort_into: Path | None = None,
          log=print, warn=print, poll: float = POLL_SECONDS, settle: float = SETTLE_SECONDS,
          stop: threading.Event | None = None) -> WatchState:
    """Predict the images of ``setting.predict_path`` as they arrive, until SIGTERM, Ctrl-C or ``stop``.

    Args:
        setting: the trained model's Setting (image size, colour mode, min_confidence).
        predictor: the model (:func:`mnist_folders.serve.prediction.load_predictor`).
        output: the CSV appended to; default ``<model_dir>/predictions.csv``.
        sort_into: also copy each image into ``sort_into/<class>/``.
        log: one line per prediction (``path<TAB>class<TAB>confidence``).
        warn: one line per skipped file (``skipped <path>: <reason>``).
        poll: seconds between listings while files arrive (up to IDLE_POLL_SECONDS when idle: poll_interval).
        settle: seconds a file's size and mtime must stay unchanged.
        stop: set it to stop (tests); the signal handlers set it too.

    Raises:
        DatasetError: the predict folder does not exist, or ``output`` is
            not a predictions CSV of this model.
        CheckpointError: another predict run writes ``output`` (its PID named), or it is a
            folder or a file of the model itself.
    """
    folder = setting.predict_path
    if not folder.is_dir():
        raise DatasetError(f"{display(folder)}: no such folder to watch")
    csv_path = Path(output) if output else setting.model_path / layout.PREDICTIONS
    artifacts.check_output_csv(csv_path, setting.model_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)  # as batch predict: --output may name a new folder
    stop = stop or threading.Event()
    h, w, _ = setting.input_shape
    # A second watcher on this CSV stops here, before it reads (and may mend) the CSV or predicts anything.
    with locking.appender_lock(csv_path):
        state = WatchState(done=read_done(csv_path, csv_header(min(TOP_K, len(predictor.class_names)))))
        own = os.stat(csv_path)  # the CSV grows after each batch: inside the folder it would be "skipped" each time
        handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not stop.is_set():
                ready = ready_files(folder, state, time.monotonic(), settle, frozenset({(own.st_dev, own.st_ino)}))
                for start in range(0, len(ready), BATCH):
                    batch = ready[start : start + BATCH]
                    images, failed = load_images(batch, h, w, setting.color_mode, setting.resize_method)
                    bad = {i for i, _ in failed}
                    for i, reason in failed:
                        state.skipped[batch[i]] = reason
                        warn(f"skipped {display(batch[i])}: {reason}")
                    keep = [i for i in range(len(batch)) if i not in bad]
                    if not keep:
                        continue
                    predictions = rank(predictor.probabilities(images[keep]), predictor.class_names,
                                       [batch[i] for i in keep], setting.min_confidence)
                    append_rows(csv_path, predictions)
                    for p in predictions:
                        state.done.add(path_cell(p.path))
                        state.seen.pop(p.path, None)  # done: never looked at again
                        if sort_into is not None:
                            copy_into_class_folder(p, sort_into)
                        log(f"{display(p.path)}\t{display(p.class_name)}\t{p.confidence:.4f}")
                    state.predicted += len(predictions)
                stop.wait(poll_interval(state, time.monotonic(), poll))
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
    return state
