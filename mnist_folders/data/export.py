"""Write image arrays as a class-per-folder PNG tree.

Layout written by :func:`export_split`::

    <root>/<label>/<index>.png      8-bit grayscale, <index> zero-padded

``<index>`` is the image's position in the source array, padded so that
lexicographic order (the order Keras' directory iterators use) is numeric
order. Each PNG is encoded in memory, written to a hidden temporary file in the
same folder and renamed, so an interrupted export never leaves a truncated PNG;
a re-run skips files that exist (``force`` rewrites them). Work is spread over
processes, one per core by default.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..atomic import remove_stale_temporaries, write_bytes
from .workers import die_with_parent

_CHUNK = 2000  # images per task: large enough to amortise pickling, small enough for a live progress bar


@dataclass
class ExportStats:
    """What an export did: file counts."""

    written: int = 0
    skipped: int = 0

    def __add__(self, other: "ExportStats") -> "ExportStats":
        return ExportStats(self.written + other.written, self.skipped + other.skipped)


# zlib level 3 instead of Pillow's 6: faster at about the same size (bench/README.md).
PNG_COMPRESS_LEVEL = 3


def encode_png(image: np.ndarray) -> bytes:
    """Encode a ``(H, W)`` uint8 array as 8-bit grayscale PNG bytes (Pillow)."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _write_chunk(paths: Sequence[str], images: np.ndarray, force: bool) -> ExportStats:
    stats = ExportStats()
    for path, image in zip(paths, images):
        if not force and os.path.exists(path):
            stats.skipped += 1
            continue
        write_bytes(path, encode_png(image))
        stats.written += 1
    return stats


def image_paths(root: Path, labels: np.ndarray) -> list[str]:
    """The PNG path of each image: ``<root>/<label>/<index>.png``."""
    width = len(str(max(len(labels) - 1, 0)))
    return [os.path.join(root, str(int(label)), f"{i:0{width}d}.png") for i, label in enumerate(labels)]


def export_split(
    images: np.ndarray,
    labels: np.ndarray,
    root: str | Path,
    force: bool = False,
    workers: int | None = None,
    progress: bool = True,
    description: str = "export",
) -> ExportStats:
    """Write ``images`` ``(N, H, W)`` uint8 with ``labels`` ``(N,)`` under ``root``.

    Args:
        images: ``(N, H, W)`` uint8 array.
        labels: ``(N,)`` integer labels; each becomes a folder name.
        root: the split's folder (e.g. ``mnist_data/train``).
        force: rewrite files that already exist.
        workers: processes to use (default and most: the number of usable cores).
        progress: show a tqdm bar.
        description: the bar's label.

    Returns:
        :class:`ExportStats` with the number of files written and skipped.

    Raises:
        ValueError: shapes or dtypes that are not as above.
        OSError: the tree cannot be written (e.g. permission denied).
    """
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be (N, H, W) uint8. Received: {images.shape} {images.dtype}")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    root = Path(root)
    for label in np.unique(labels):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder)
    paths = image_paths(root, labels)
    cores = len(os.sched_getaffinity(0))
    workers = min(workers or cores, cores)  # PNG encoding is CPU-bound: more processes than cores only add start-up
    stats = ExportStats()
    bar = tqdm(total=len(paths), desc=description, unit="img", disable=not progress)
    starts = range(0, len(paths), _CHUNK)
    if workers <= 1:
        for s in starts:
            stats += _write_chunk(paths[s : s + _CHUNK], images[s : s + _CHUNK], force)
            bar.update(min(_CHUNK, len(paths) - s))
    else:
        with ProcessPoolExecutor(max_workers=workers, initializer=die_with_parent) as pool:
            futures = [pool.submit(_write_chunk, paths[s : s + _CHUNK], images[s : s + _CHUNK], force) for s in starts]
            for future in futures:
                result = future.result()
                stats += result
                bar.update(result.written + result.skipped)
    bar.close()
    return stats


def export_samples(images: np.ndarray, labels: np.ndarray, folder: str | Path) -> list[Path]:
    """Write the first image of each class as ``<folder>/sample_<label>.png``.

    These are the images ``predict`` shows in the demo. Returns the paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for label in np.unique(labels):
        index = int(np.flatnonzero(labels == label)[0])
        path = folder / f"sample_{int(label)}.png"
        write_bytes(path, encode_png(images[index]))
        written.append(path)
    return written
