"""Decode many image files into one uint8 array, on every core for large sets.

Pillow's decoders hold Python's global interpreter lock for most of the work
on small images, so threads do not help. Large sets are therefore split into
chunks decoded by worker processes; small ones, and prediction's (its model
keeps the cores busy meanwhile), by one background thread of this process,
since starting workers costs about what they save there (the measurements
are in ``bench/README.md``, "Measurements behind the code").

Spawned workers import the caller's main script again, as every
``multiprocessing`` "spawn" worker does: a script that calls the library
must keep its work under ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from tqdm import tqdm

from .images import load_images
from ..settings import Setting
from .workers import die_with_parent

PARALLEL_MIN_FILES = 8192  # below this, starting workers costs about what they save
CHUNK_BYTES = 16 * 2**20  # most decoded bytes per chunk sent back by a worker (1,024 images at most)
AHEAD = 8  # chunks decoded ahead of the caller, at most


@dataclass
class DecodedImages:
    """Images decoded into memory.

    Attributes:
        images: ``(N, H, W, C)`` uint8, the readable files in input order.
        kept: ``(N,)`` indices into the input paths of the readable files.
        failed: ``(path, reason)`` for each file that could not be read.
    """

    images: np.ndarray
    kept: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)


@contextmanager
def decode_chunks(paths: list[str], setting: Setting, processes: bool = True) -> Iterator[Iterator[DecodedImages]]:
    """Start decoding ``paths``; yield an iterator over consecutive chunks, in order.

    Each chunk is a :class:`DecodedImages` whose ``kept`` indexes into the
    whole of ``paths``. Decoding starts on entry, so the caller can load a
    model meanwhile, and runs ahead while the caller works on the chunks
    already taken. With ``processes`` and from :data:`PARALLEL_MIN_FILES`
    files on, one worker process per core decodes (spawned, not forked: the
    parent may run TensorFlow's threads, which a fork does not copy safely);
    otherwise one background thread does. Pass ``processes=False`` when the
    caller keeps the cores busy itself (prediction: TensorFlow releases the
    GIL, and worker processes would cost start-up and compete for the same
    cores). A few chunks are decoded ahead of the caller, no more, so memory
    stays bounded whatever the number of files. Leaving the block stops the
    workers.
    """
    h, w, c = setting.input_shape
    size = max(16, min(1024, CHUNK_BYTES // (h * w * c)))
    chunks = -(-len(paths) // size)
    load = partial(load_images, height=h, width=w, color_mode=setting.color_mode,
                   resize_method=setting.resize_method)
    workers = max(1, min(len(os.sched_getaffinity(0)), chunks))
    pool: Executor
    if processes and workers > 1 and len(paths) >= PARALLEL_MIN_FILES:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent)
    else:
        pool = ThreadPoolExecutor(1)
    # At most AHEAD chunks (16 MB each) decoded and not yet taken: memory stays bounded when the caller is
    # slower. The first ones are submitted now, so decoding runs while the caller prepares (loads a model).
    ahead, starts = max(AHEAD, 2 * workers), iter(range(0, len(paths), size))
    pending = deque((start, pool.submit(load, paths[start : start + size])) for start in itertools.islice(starts, ahead))

    def in_order() -> Iterator[DecodedImages]:
        while pending:
            start, future = pending.popleft()
            for following in itertools.islice(starts, 1):
                pending.append((following, pool.submit(load, paths[following : following + size])))
            images, bad = future.result()
            yield _chunk(paths, start, images, bad)

    try:
        yield in_order()
    finally:
        pool.shutdown(cancel_futures=True)


def _chunk(paths: list[str], start: int, images: np.ndarray, bad: list[tuple[int, str]]) -> DecodedImages:
    """One chunk's :func:`~mnist_folders.data.images.load_images` result as :class:`DecodedImages`."""
    if not bad:
        return DecodedImages(images, start + np.arange(len(images)))
    ok = np.ones(len(images), dtype=bool)
    ok[[i for i, _ in bad]] = False
    return DecodedImages(images[ok], start + np.flatnonzero(ok), [(paths[start + i], reason) for i, reason in bad])


def decode_images(paths: list[str], setting: Setting, progress: bool = False,
                  description: str = "decode") -> DecodedImages:
    """Decode ``paths`` with :func:`~mnist_folders.data.images.load_image` at the Setting's input shape.

    Unreadable files are reported in ``failed`` and left out, never raised.
    See :func:`decode_chunks` for when worker processes are used.
    """
    h, w, c = setting.input_shape
    parts, kept, failed = [np.zeros((0, h, w, c), dtype=np.uint8)], [np.zeros(0, dtype=np.int64)], []
    with tqdm(total=len(paths), desc=description, unit="img", disable=not progress) as bar:
        with decode_chunks(paths, setting) as chunks:
            for chunk in chunks:
                parts.append(chunk.images)
                kept.append(chunk.kept)
                failed.extend(chunk.failed)
                bar.update(len(chunk.images) + len(chunk.failed))
    return DecodedImages(np.concatenate(parts), np.concatenate(kept), sorted(failed))
