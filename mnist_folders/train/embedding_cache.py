"""Backbone embeddings of image files, computed once and cached on disk by the files' content.

A frozen pretrained backbone maps each image to one feature vector
(``(1280,)`` float32 for EfficientNet-Lite0). The few-shot path fits a
classifier head on those vectors; computing them is most of its time, so
each is kept in the cache folder of :func:`mnist_folders.networks.pretrained_weights.cache_root`,
under ``embeddings/<backbone>-<H>x<W>x<C>-<key>/<aa>/<sha256>.npy``, where
the key covers everything that changes a vector (backbone, weights, input
shape, colour mode, resize method, dtype policy) and ``<sha256>`` is the
file's content hash: a second training on the same folder (or on a renamed
or partly changed copy) embeds only the new files. Entries are written to a
temporary file then renamed, so concurrent runs and kills never leave half an
entry; an unreadable entry is computed again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..data.decoding import decode_chunks
from ..data.images import scale
from ..settings import Setting
from ..networks.pretrained_weights import SOURCES, cache_root

BATCH = 64  # images per forward pass of the backbone


@dataclass
class Embedded:
    """Embeddings of some of a list of files: ``vectors[i]`` is the file ``paths[kept[i]]``."""

    vectors: np.ndarray  # (N, features) float32
    kept: np.ndarray  # (N,) int64 indexes into the paths given
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): unreadable files
    cached: int = 0  # how many vectors came from the cache
    seconds: float = 0.0  # wall time of the whole call


def file_digest(path: str) -> str | None:
    """SHA-256 (hex) of a file's bytes; ``None`` when it cannot be read (decoding then reports why)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


class EmbeddingCache:
    """The cache folder of one backbone at one input configuration."""

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def for_setting(cls, setting: Setting, policy: str, root: Path | None = None) -> "EmbeddingCache":
        """The cache of ``setting.model``'s backbone at the Setting's input shape, colour mode and resize method,
        computed under dtype ``policy`` (a Keras policy name)."""
        h, w, c = setting.input_shape
        key = repr((setting.model, SOURCES[setting.model].sha256, setting.input_shape, setting.color_mode,
                    setting.resize_method, policy))
        name = f"{setting.model}-{h}x{w}x{c}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
        return cls((root or cache_root()) / "embeddings" / name)

    def _path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.npy"

    def get(self, digest: str) -> np.ndarray | None:
        try:
            return np.load(self._path(digest), allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, digest: str, vector: np.ndarray) -> None:
        """Store ``vector``; a cache that cannot be written is skipped (the vector is still used)."""
        path = self._path(digest)
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.npy")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(temporary, vector)
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)


def embed_files(backbone: Any, paths: list[str], setting: Setting, cache: EmbeddingCache,
                progress: bool = True, description: str = "embed") -> Embedded:
    """The backbone's vectors of ``paths``, decoded at the Setting's input shape; cached ones read, not computed.

    ``backbone`` maps float32 ``(N, H, W, C)`` images in [0, 1] to ``(N, F)``
    features. Unreadable files are listed in ``failed`` and left out.
    """
    import time

    started = time.perf_counter()
    digests = [file_digest(p) for p in paths]
    found = {i: cache.get(d) for i, d in enumerate(digests) if d is not None}
    found = {i: v for i, v in found.items() if v is not None}
    missing = [i for i in range(len(paths)) if i not in found]
    failed: list[tuple[str, str]] = []
    with tqdm(total=len(missing), desc=description, unit="img", disable=not progress or not missing) as bar:
        with decode_chunks([paths[i] for i in missing], setting, processes=False) as chunks:
            for chunk in chunks:
                failed.extend(chunk.failed)
                for start in range(0, len(chunk.images), BATCH):
                    batch = chunk.images[start : start + BATCH]
                    vectors = np.asarray(backbone.predict_on_batch(scale(batch)), dtype=np.float32)
                    for row, vector in zip(chunk.kept[start : start + BATCH], vectors):
                        i = missing[row]
                        found[i] = vector
                        if digests[i] is not None:
                            cache.put(digests[i], vector)
                    bar.update(len(batch))
    kept = np.array(sorted(found), dtype=np.int64)
    width = next(iter(found.values())).shape[-1] if found else 0
    vectors = np.stack([found[i] for i in kept]) if len(kept) else np.zeros((0, width), dtype=np.float32)
    return Embedded(vectors, kept, sorted(failed), len(paths) - len(missing), time.perf_counter() - started)
