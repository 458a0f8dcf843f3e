"""The check's fingerprints of each image, computed in worker processes: an exact-pixel digest, a 256-bit
perceptual hash (pHash) and the low-frequency spectrum behind it; and the near-duplicate search over them.

Pure NumPy and Pillow (no TensorFlow, no matplotlib: spawned workers start light). pHash: the bits of
``imagehash.phash(image, hash_size=16)``, computed here with NumPy; a 64-bit difference hash cannot tell
handwritten digits from copies of them (``bench/README.md``, ``check_speed.py``).
"""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..data.decoding import PARALLEL_MIN_FILES
from ..data.images import ImageReadError, convert_mode, opened
from ..data.workers import die_with_parent

PHASH_BITS_SIDE = 16  # pHash: the 16 x 16 lowest DCT frequencies, 256 bits
PHASH_SAMPLE = 64  # pHash: images are resized to 64 x 64 grayscale first (imagehash's highfreq_factor 4)
NEAR_DISTANCE = 16  # near duplicates: at most this many of the 256 pHash bits differ
# ... or at most this many, with a cosine of the low frequencies (:func:`spectra`) of at least NEAR_COSINE.
NEAR_LOOSE_DISTANCE, NEAR_COSINE = 24, 0.997
CHUNK_FILES = 1024  # files per worker task
DIGEST_STRIP_PIXELS = 1 << 20  # pixels converted at a time for the exact-duplicate digest

# DCT-II basis, scipy.fftpack's scaling: row k = 2 cos(pi k (2n + 1) / 2N), the lowest 16 frequencies of 64.
_FREQUENCY, _SAMPLE = np.arange(PHASH_BITS_SIDE)[:, None], np.arange(PHASH_SAMPLE)
_DCT = 2 * np.cos(np.pi * _FREQUENCY * (2 * _SAMPLE + 1) / (2 * PHASH_SAMPLE))


def pixel_digest(image: Image.Image, color_mode: str) -> bytes:
    """16-byte BLAKE2b of ``image``'s size, mode and pixel bytes once converted to ``color_mode``: equal for
    equal pixels, whatever the file format.

    Converted strip by strip: a 9000x9000 grayscale image is not copied whole into RGB (243 MB) and again
    into bytes.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = convert_mode(image, "grayscale")  # scaled by the whole image's range, as convert_mode does
    width, height = image.size
    digest = hashlib.blake2b(f"{width}x{height} {'L' if color_mode == 'grayscale' else 'RGB'}".encode(),
                             digest_size=16)
    rows = max(1, DIGEST_STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        digest.update(convert_mode(image.crop((0, top, width, min(height, top + rows))), color_mode).tobytes())
    return digest.digest()


def _low_frequencies(gray: np.ndarray) -> np.ndarray:
    """``(N, 256)`` float64: the 16 x 16 lowest frequencies of the 2-D DCT-II of ``(N, 64, 64)`` images."""
    return (_DCT @ gray.astype(np.float64) @ _DCT.T).reshape(len(gray), PHASH_BITS_SIDE**2)


def perceptual_hashes(gray: np.ndarray) -> np.ndarray:
    """pHash of ``(N, 64, 64)`` grayscale images: ``(N, 32)`` uint8, 256 bits each.

    The 16 x 16 lowest frequencies of each image's 2-D DCT-II, each bit
    telling whether a coefficient is above their median, as
    ``imagehash.phash(image, hash_size=16)``.
    """
    flat = _low_frequencies(gray)
    return np.packbits(flat > np.median(flat, axis=1, keepdims=True), axis=1)


def spectra(gray: np.ndarray) -> np.ndarray:
    """``(N, 255)`` float16: the pHash's frequencies of ``(N, 64, 64)`` images without the mean (DC), scaled
    to unit length (zero for a flat image); the dot product of two rows is their cosine similarity."""
    ac = _low_frequencies(gray)[:, 1:]
    norm = np.linalg.norm(ac, axis=1, keepdims=True)
    return np.divide(ac, norm, out=np.zeros_like(ac), where=norm > 0).astype(np.float16)


@dataclass
class Inspected:
    """What :func:`inspect_files` found, one row per input path.

    Attributes:
        sizes: ``(N, 2)`` int32 width and height as decoded (0 when unreadable).
        modes: Pillow mode as stored (``""`` when unreadable).
        digests: ``(N, 16)`` uint8 :func:`pixel_digest` rows.
        hashes: ``(N, 32)`` uint8 :func:`perceptual_hashes` rows.
        spectra: ``(N, 255)`` float16 :func:`spectra` rows.
        failed: ``(row, reason)`` for each unreadable file.
    """

    sizes: np.ndarray
    modes: list[str]
    digests: np.ndarray
    hashes: np.ndarray
    spectra: np.ndarray
    failed: list[tuple[int, str]] = field(default_factory=list)

    @staticmethod
    def concatenate(parts: list["Inspected"]) -> "Inspected":
        offsets = np.cumsum([0] + [len(p.modes) for p in parts])
        return Inspected(
            np.concatenate([p.sizes for p in parts]).reshape(-1, 2),
            [m for p in parts for m in p.modes],
            np.concatenate([p.digests for p in parts]).reshape(-1, 16),
            np.concatenate([p.hashes for p in parts]).reshape(-1, PHASH_BITS_SIDE**2 // 8),
            np.concatenate([p.spectra for p in parts]).reshape(-1, PHASH_BITS_SIDE**2 - 1),
            [(int(start) + row, reason) for p, start in zip(parts, offsets) for row, reason in p.failed],
        )


def inspect_files(paths: list[str], color_mode: str) -> Inspected:
    """Decode each file once; return its size, mode, pixel digest, perceptual hash and spectrum.

    Runs in worker processes: NumPy and Pillow only.
    """
    n = len(paths)
    found = Inspected(np.zeros((n, 2), np.int32), [""] * n, np.zeros((n, 16), np.uint8),
                      np.zeros((n, PHASH_BITS_SIDE**2 // 8), np.uint8),
                      np.zeros((n, PHASH_BITS_SIDE**2 - 1), np.float16))
    thumbnails = np.zeros((n, PHASH_SAMPLE, PHASH_SAMPLE), np.uint8)
    for row, path in enumerate(paths):
        try:
            with opened(path) as (image, found.modes[row]):  # in its stored mode: no full-size converted copy
                found.sizes[row] = image.size
                found.digests[row] = np.frombuffer(pixel_digest(image, color_mode), np.uint8)
                gray = convert_mode(image, "grayscale")
        except ImageReadError as exc:
            found.sizes[row], found.modes[row] = 0, ""
            found.failed.append((row, str(exc)))
            continue
        small = gray.resize((PHASH_SAMPLE, PHASH_SAMPLE), Image.Resampling.LANCZOS, reducing_gap=3.0)
        thumbnails[row] = np.frombuffer(small.tobytes(), np.uint8).reshape(PHASH_SAMPLE, PHASH_SAMPLE)
    found.hashes[:] = perceptual_hashes(thumbnails)
    found.spectra[:] = spectra(thumbnails)
    found.hashes[[row for row, _ in found.failed]] = 0
    found.spectra[[row for row, _ in found.failed]] = 0
    return found


def inspect_all(paths: list[str], color_mode: str, progress: bool = False) -> Inspected:
    """:func:`inspect_files` over every path; one spawned worker per core from PARALLEL_MIN_FILES files."""
    chunks = [paths[k : k + CHUNK_FILES] for k in range(0, len(paths), CHUNK_FILES)]
    workers = min(len(os.sched_getaffinity(0)), len(chunks))
    pool = None
    if workers > 1 and len(paths) >= PARALLEL_MIN_FILES:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent)
    try:
        results = (pool.map if pool else map)(inspect_files, chunks, itertools.repeat(color_mode))
        parts = [inspect_files([], color_mode)]
        with tqdm(total=len(paths), desc="check", unit="img", disable=not progress) as bar:
            for part in results:
                parts.append(part)
                bar.update(len(part.modes))
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return Inspected.concatenate(parts)


# ---------------------------------------------------------------- duplicates

def near_pairs(hashes: np.ndarray, max_distance: int, batch: int = 1 << 20) -> np.ndarray:
    """Rows of ``hashes`` at Hamming distance ``<= max_distance``: ``(P, 3)`` int64 ``(i, j, distance)``, i < j.

    ``hashes`` is ``(N, B)`` uint8, bit-packed. Multi-index hashing
    (Norouzi, Punjani and Fleet, CVPR 2012): bit ``b`` goes to chunk
    ``b mod (max_distance + 1)``; two hashes differing in at most
    ``max_distance`` bits agree on at least one whole chunk (pigeonhole),
    so only pairs sharing a chunk value are compared on all bits, ``batch``
    pairs at a time. On MNIST's 70,000 pHashes at distance 16 that is
    7.9 million comparisons instead of 2.4 billion.
    """
    bits = np.unpackbits(hashes, axis=1)
    words = _as_words(hashes)
    found = [np.zeros((0, 3), np.int64)]
    for chunk in range(max_distance + 1):
        keys = _as_words(np.packbits(bits[:, chunk :: max_distance + 1], axis=1))
        if keys.shape[1] > 1:  # chunks over 64 bits (max_distance < 3): number the distinct rows
            keys = np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1, 1)
        for first, second in _pairs_within_groups(keys[:, 0], batch):
            distance = np.zeros(len(first), np.int64)
            for w in range(words.shape[1]):  # word by word, dropping pairs already too far apart
                distance += np.bitwise_count(words[first, w] ^ words[second, w])
                near = distance <= max_distance
                first, second, distance = first[near], second[near], distance[near]
            found.append(np.stack([first, second, distance], axis=1))
    pairs = np.concatenate(found)
    pairs[:, :2].sort(axis=1)
    _, unique = np.unique(pairs[:, 0] * len(hashes) + pairs[:, 1], return_index=True)
    return pairs[unique]


def near_duplicate_pairs(hashes: np.ndarray, spectrum: np.ndarray) -> np.ndarray:
    """Near duplicates among rows of :func:`perceptual_hashes` and :func:`spectra`: ``(P, 3)`` int64
    ``(i, j, pHash distance)``, i < j.

    A pair is near when its pHashes differ in at most :data:`NEAR_DISTANCE`
    bits, or in at most :data:`NEAR_LOOSE_DISTANCE` with a cosine of at least
    :data:`NEAR_COSINE` between their spectra. Why the second rule: a bit
    whose coefficient lies near the median flips with little noise, and
    low-contrast images (a faint scan, a smooth photo) have many such bits;
    a 31x31 JPEG copied at 61x61, quality 80, then differs by up to 34 bits.
    Measured on 400 such copies of crops of
    matplotlib's sample photos: 6 missed by the first rule, 1 by both; the
    second adds no pair among MNIST's 70,000 images (the closest distinct
    pair within 24 bits has a cosine of 0.9968).
    """
    pairs = near_pairs(hashes, NEAR_LOOSE_DISTANCE)
    loose = np.flatnonzero(pairs[:, 2] > NEAR_DISTANCE)
    cosine = np.einsum("ij,ij->i", spectrum[pairs[loose, 0]], spectrum[pairs[loose, 1]], dtype=np.float32)
    keep = np.ones(len(pairs), dtype=bool)
    keep[loose] = cosine >= NEAR_COSINE
    return pairs[keep]


def _as_words(packed: np.ndarray) -> np.ndarray:
    """``(N, B)`` uint8 -> ``(N, ceil(B / 8))`` uint64, zero-padded."""
    return np.ascontiguousarray(np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))).view(np.uint64)


def _pairs_within_groups(group: np.ndarray, batch: int):
    """Yield ``(first, second)`` index arrays of every pair of positions with equal ``group``, ``batch`` or so at a time."""
    order = np.argsort(group, kind="stable")
    sorted_group = group[order]
    run_end = np.searchsorted(sorted_group, sorted_group, side="right")  # one past each element's run
    later = run_end - np.arange(len(group)) - 1  # partners after each sorted position
    cumulative = np.cumsum(later)
    cuts = np.searchsorted(cumulative, np.arange(batch, cumulative[-1] if len(cumulative) else 0, batch))
    for start, stop in zip(np.r_[0, cuts], np.r_[cuts, len(group)]):
        counts = later[start:stop]
        if not counts.sum():
            continue
        first = np.repeat(np.arange(start, stop), counts)
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        yield order[first], order[first + 1 + offset]


def components(n: int, pairs: np.ndarray) -> list[tuple[list[int], int]]:
    """Connected components of 2 or more nodes of the graph on ``range(n)`` with edges ``pairs``.

    ``pairs`` is ``(P, 3)``: ``(i, j, distance)``. Returns ``(members, smallest distance)``.
    """
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs[:, :2].tolist():
        parent[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in np.unique(pairs[:, :2]).tolist():  # the nodes with an edge, ascending
        members.setdefault(root(i), []).append(i)
    closest: dict[int, int] = {}
    for i, distance in zip(pairs[:, 0].tolist(), pairs[:, 2].tolist()):
        r = root(i)
        closest[r] = min(distance, closest.get(r, distance))
    return [(nodes, closest[r]) for r, nodes in members.items()]
