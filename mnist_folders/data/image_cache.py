"""Where the decoded training images live between epochs: in memory, in a file, or nowhere.

The ``cache`` setting:

* ``memory``: every readable file decoded once into one ``(N, H, W, C)``
  uint8 array (47 MB for MNIST; 30 GB for 200,000 RGB photos at 224x224).
* ``disk``: decoded once, chunk by chunk, into one file of fixed-size rows
  (``<model_dir>/.cache/``), then read back by row every epoch with
  ``os.pread``: the page cache, not this process, holds what fits, so the
  process's memory stays flat however large the data. The file is reused by
  ``--resume`` and removed when training ends. (``tf.data``'s
  ``cache(filename)`` and ``snapshot`` replay one fixed order through a
  shuffle buffer; rows read by index keep the exact per-(seed, epoch) order
  of the other modes.)
* ``none``: every file decoded once to find the unreadable ones (nothing
  kept), then read and decoded again whenever a batch needs it: no memory
  and no disk, for data read once or twice.
* ``auto``: ``memory`` while the decoded bytes stay under
  :data:`MEMORY_SHARE` of the memory available now, else ``disk``.

Every mode serves the same rows: row ``k`` is the ``k``-th readable file, so
the validation split, the batch order, class weights and augmentation do not
depend on the mode. NumPy and Pillow only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_path, write_text
from .decoding import decode_chunks, decode_images
from ..errors import CheckpointError
from .images import load_images
from ..names import display
from ..settings import Setting

CACHE_MODES = ("auto", "memory", "disk", "none")
MEMORY_SHARE = 0.25  # auto: hold in memory below this share of the available memory
CACHE_DIR = ".cache"  # under the model directory; hidden from image listings


def available_memory(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), or None where unknown."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def choose_mode(setting: Setting, images: int) -> tuple[str, str]:
    """``(mode, why)`` for ``setting.cache`` and ``images`` files: ``auto`` resolved by their decoded size."""
    h, w, c = setting.input_shape
    decoded = images * h * w * c
    if setting.cache != "auto":
        return setting.cache, f"cache={setting.cache}: {decoded / 2**20:,.0f} MiB decoded"
    available = available_memory()
    if available is None or decoded <= MEMORY_SHARE * available:
        room = "" if available is None else f", under {MEMORY_SHARE:.0%} of the {available / 2**30:.1f} GiB available"
        return "memory", f"cache=auto -> memory: {decoded / 2**20:,.0f} MiB decoded{room}"
    return "disk", (f"cache=auto -> disk: {decoded / 2**30:.1f} GiB decoded is over {MEMORY_SHARE:.0%} of the "
                    f"{available / 2**30:.1f} GiB available")


@dataclass
class ImageRows:
    """The readable files of a list, decoded on demand: ``rows(indices)`` -> ``(len, H, W, C)`` uint8.

    Attributes:
        mode: ``memory``, ``disk`` or ``none``.
        count: readable files (rows).
        kept: ``(count,)`` indices of the readable files in the list given.
        failed: ``(path, reason)`` of the unreadable ones.
        array: the ``memory`` mode's array (None otherwise).
    """

    mode: str
    count: int
    kept: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)
    array: np.ndarray | None = None
    _file: Path | None = None
    _paths: list[str] | None = None
    _setting: Setting | None = None

    def rows(self, indices: np.ndarray) -> np.ndarray:
        """The images of rows ``indices`` (any order, repeats allowed), ``(len(indices), H, W, C)`` uint8."""
        indices = np.asarray(indices, dtype=np.int64)
        if self.array is not None:
            return self.array[indices]
        h, w, c = self._setting.input_shape
        if self._file is not None:
            size = h * w * c
            out = np.empty((len(indices), h, w, c), dtype=np.uint8)
            fd = os.open(self._file, os.O_RDONLY)
            try:
                for k, row in enumerate(indices):
                    out[k] = np.frombuffer(os.pread(fd, size, int(row) * size), dtype=np.uint8).reshape(h, w, c)
            finally:
                os.close(fd)
            return out
        images, failed = load_images([self._paths[i] for i in indices], h, w, self._setting.color_mode,
                                     self._setting.resize_method)
        if failed:  # readable when checked, not now: the file changed during training
            i, reason = failed[0]
            raise CheckpointError(f"{display(self._paths[indices[i]])}: became unreadable during training ({reason})")
        return images


def cache_key(paths: list[str], setting: Setting) -> str:
    """A digest of the files (path, size, mtime) and the decoding settings: a cache file is reused only if equal."""
    digest = hashlib.sha256(repr((setting.input_shape, setting.color_mode, setting.resize_method)).encode())
    for path in paths:
        try:
            info = os.stat(path)
            digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{path}\0missing\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:24]


def _decode_to_file(paths: list[str], setting: Setting, folder: Path, progress: bool,
                    description: str) -> ImageRows:
    """The ``disk`` mode: rows written chunk by chunk into ``folder/<key>.u8`` (reused when there)."""
    h, w, c = setting.input_shape
    key = cache_key(paths, setting)
    data, info = folder / f"{key}.u8", folder / f"{key}.json"
    if data.exists() and info.exists():
        saved = json.loads(info.read_text(encoding="utf-8"))
        if data.stat().st_size == saved["count"] * h * w * c:
            return ImageRows("disk", saved["count"], np.asarray(saved["kept"], dtype=np.int64),
                             [tuple(f) for f in saved["failed"]], _file=data, _setting=setting)
    folder.mkdir(parents=True, exist_ok=True)
    needed = len(paths) * h * w * c
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CheckpointError(f"{display(folder)}: disk full for cache=disk ({free / 2**30:.2f} GiB free, the decoded "
                              f"images need {needed / 2**30:.2f} GiB); use cache=none or another --model-dir")
    kept, failed = [], []
    with atomic_path(data) as tmp, open(tmp, "wb") as out, \
            tqdm(total=len(paths), desc=description, unit="img", disable=not progress) as bar:
        with decode_chunks(paths, setting) as chunks:
            for chunk in chunks:
                out.write(np.ascontiguousarray(chunk.images).tobytes())
                kept.append(chunk.kept)
                failed.extend(chunk.failed)
                bar.update(len(chunk.images) + len(chunk.failed))
    kept_all = np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)
    write_text(info, json.dumps({"count": int(len(kept_all)), "kept": kept_all.tolist(), "failed": failed}))
    return ImageRows("disk", len(kept_all), kept_all, sorted(failed), _file=data, _setting=setting)


def decode_rows(paths: list[str], setting: Setting, mode: str, cache_folder: Path, progress: bool = False,
                description: str = "decode") -> ImageRows:
    """Decode ``paths`` for ``mode`` (``memory``, ``disk`` or ``none``; see the module docstring).

    Raises:
        CheckpointError: ``disk`` without the room for the decoded images.
    """
    if mode == "disk":
        return _decode_to_file(paths, setting, cache_folder, progress, description)
    if mode == "memory":
        decoded = decode_images(paths, setting, progress, description)
        return ImageRows("memory", len(decoded.kept), decoded.kept, decoded.failed, array=decoded.images)
    kept, failed = [np.zeros(0, dtype=np.int64)], []  # none: decode to check, keep nothing
    with tqdm(total=len(paths), desc=f"{description} (check)", unit="img", disable=not progress) as bar, \
            decode_chunks(paths, setting) as chunks:
        for chunk in chunks:
            kept.append(chunk.kept)
            failed.extend(chunk.failed)
            bar.update(len(chunk.images) + len(chunk.failed))
    readable = np.concatenate(kept)
    return ImageRows("none", len(readable), readable, sorted(failed), _paths=[paths[i] for i in readable],
                     _setting=setting)


def remove_cache(model_dir: Path) -> None:
    """Delete ``<model_dir>/.cache`` (the ``disk`` mode's files) once training no longer needs them."""
    shutil.rmtree(model_dir / CACHE_DIR, ignore_errors=True)
