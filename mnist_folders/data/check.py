"""Audit a dataset before training on it, and point at its likely label errors after.

:func:`run_check` reads the three folders of a :class:`~mnist_folders.settings.Setting`
(``train`` and ``test``, one sub-folder per class; ``predict``, any layout)
and reports, without training anything:

- images per class and split, the imbalance ratio (largest / smallest
  non-empty train class), classes present in one of train and test only;
- folders that look unintended: hidden (training skips them), empty, very
  small (fewer images than :data:`SMALL_CLASS_SHARE` of the split's median
  class), not a class of ``Setting.class_names``;
- files that do not decode (with the reason training gives: both read
  files with :func:`~mnist_folders.data.images.decode`), and files that are not
  images by extension or are hidden (training ignores them);
- a histogram of stored image sizes and Pillow modes, and the share of
  images that will be enlarged or shrunk by more than :data:`SCALE_LIMIT`
  along an axis to reach the Setting's size;
- **exact duplicates**: identical pixels after decoding (EXIF orientation
  applied) and conversion to the Setting's ``color_mode``, at the file's own
  size, whatever the format: a PNG and a BMP of one picture match, the same
  picture resized or re-encoded as JPEG does not (that is a near duplicate).
  Key: BLAKE2b-128 of the image's size, mode and pixel bytes;
- **near duplicates**: perceptual hashes within :data:`NEAR_DISTANCE` bits,
  or within :data:`NEAR_LOOSE_DISTANCE` bits when their low frequencies
  agree closely (cosine of at least :data:`NEAR_COSINE`, see
  :func:`near_duplicate_pairs`), grouped transitively (one file stands for
  each exact group).

A group of duplicates is **leakage** when it has files in train and in test
or predict (copies only between test and predict are reported, not called
leakage: ``parse_mnist.py``'s ``tmp/`` samples are test images), and a
**label conflict** when its labelled files name more than one class.
Everything is written to ``<model_dir>/check.json`` and the worst groups
are drawn side by side in ``check_duplicates.png``.

Perceptual hash: a 256-bit DCT hash (pHash, the bits of
``imagehash.phash(image, hash_size=16)``, computed here with NumPy) within
distance 16. A 64-bit difference hash cannot tell handwritten digits from
copies of them; the measurements behind the choice are in
``bench/README.md`` (``check_speed.py``).

Images are decoded once, by :func:`inspect_files` in worker processes for
large trees (spawned, as in :mod:`mnist_folders.data.decoding`); this module
imports neither TensorFlow nor matplotlib at import time, so workers start
light.

:func:`find_suspect_labels` needs a trained model: it ranks the train
tree's images by the probability the model gives their label, lowest first
(confident learning's "self-confidence"), marking the validation split's
images as out of sample.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import itertools
import json
import multiprocessing
import os
import shutil
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from .. import artifacts
from ..atomic import atomic_path, write_text
from .decoding import PARALLEL_MIN_FILES, decode_images
from ..errors import DatasetError
from .folders import FolderIndex, find_class_names, index_tree, list_files
from .images import IMAGE_EXTENSIONS, ImageReadError, convert_mode, decode, opened
from ..names import display, safe_cell
from ..settings import Setting
from .workers import die_with_parent

CHECK_JSON = "check.json"
CHECK_FIGURE = "check_duplicates.png"
SUSPECT_CSV = "suspect_labels.csv"
SUSPECT_FIGURE = "suspect_labels.png"
QUARANTINE_MANIFEST = "manifest.json"

SMALL_CLASS_SHARE = 0.1  # "very small": fewer images than this share of the split's median class
SCALE_LIMIT = 2.0  # count images resized by more than this factor along an axis
TOP_SIZES = 20  # sizes listed one by one in the report; the rest are counted as "other"
SIDE_BINS = (32, 64, 128, 256, 512, 1024, 2048, 4096)  # upper edges of the longer-side histogram, pixels
PHASH_BITS_SIDE = 16  # pHash: the 16 x 16 lowest DCT frequencies, 256 bits
PHASH_SAMPLE = 64  # pHash: images are resized to 64 x 64 grayscale first (imagehash's highfreq_factor 4)
NEAR_DISTANCE = 16  # near duplicates: at most this many of the 256 pHash bits differ
# ... or at most this many, with a cosine of the low frequencies (:func:`spectra`) of at least NEAR_COSINE.
NEAR_LOOSE_DISTANCE, NEAR_COSINE = 24, 0.997
CHUNK_FILES = 1024  # files per worker task
DIGEST_STRIP_PIXELS = 1 << 20  # pixels converted at a time for the exact-duplicate digest
FIGURE_GROUPS, FIGURE_FILES = 12, 6  # rows (groups) and images per row in check_duplicates.png
FIGURE_THUMBNAIL = 128  # px, longest side of each image drawn in check_duplicates.png
SUSPECT_ROWS, SUSPECT_SHOWN = 500, 40  # rows of suspect_labels.csv, images in suspect_labels.png

# DCT-II basis, scipy.fftpack's scaling: row k = 2 cos(pi k (2n + 1) / 2N), the lowest 16 frequencies of 64.
_FREQUENCY, _SAMPLE = np.arange(PHASH_BITS_SIDE)[:, None], np.arange(PHASH_SAMPLE)
_DCT = 2 * np.cos(np.pi * _FREQUENCY * (2 * _SAMPLE + 1) / (2 * PHASH_SAMPLE))


# ---------------------------------------------------------------- decoding and hashing (worker side)

def pixel_digest(image: Image.Image, color_mode: str) -> bytes:
    """16-byte BLAKE2b of ``image``'s size, mode and pixel bytes once converted to ``color_mode``: equal for
    equal pixels, whatever the file format.

    Converted strip by strip: a 9000x9000 grayscale image is not copied whole into RGB (243 MB) and again
    into bytes (issue 24, M9).
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
    a 31x31 JPEG copied at 61x61, quality 80, then differs by up to 34 bits
    (issue 24, M11). Measured on 400 such copies of crops of
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


def _components(n: int, pairs: np.ndarray) -> list[tuple[list[int], int]]:
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


@dataclass
class DuplicateGroup:
    """Files that are exact or near copies of each other.

    Attributes:
        kind: ``exact`` (identical pixels) or ``near`` (see
            :func:`near_duplicate_pairs`).
        files: paths, in listing order (train, test, predict).
        splits: each file's split (``train``, ``test``, ``predict``).
        classes: each file's class folder (``None`` in predict).
        distance: 0 for exact groups; for near ones the smallest Hamming
            distance between two of the files.
    """

    kind: str
    files: list[str]
    splits: list[str]
    classes: list[str | None]
    distance: int = 0

    @property
    def leak(self) -> bool:
        """Files in train and in test or predict: evaluation or prediction sees training images."""
        return "train" in self.splits and len(set(self.splits)) > 1

    @property
    def conflict(self) -> bool:
        """Labelled files in more than one class."""
        return len({c for c in self.classes if c is not None}) > 1

    def problem(self) -> str:
        """``leakage``, ``label conflict`` (or both), else where the copies are:
        ``test and predict``, ``within a class`` or ``within predict``."""
        named = [name for flag, name in ((self.leak, "leakage"), (self.conflict, "label conflict")) if flag]
        if named:
            return " and ".join(named)
        if len(set(self.splits)) > 1:
            return "test and predict"
        return "within predict" if self.splits[0] == "predict" else "within a class"

    def severity(self) -> tuple:
        """Sort key, worst first: conflicts, leaks, exact before near, closer, larger."""
        return (not self.conflict, not self.leak, self.kind != "exact", self.distance, -len(self.files))

    def to_dict(self) -> dict[str, Any]:
        return {"problem": self.problem(), "distance": self.distance,
                "files": [{"path": display(p), "split": s, "class": c if c is None else display(c)}
                          for p, s, c in zip(self.files, self.splits, self.classes)]}


# ---------------------------------------------------------------- the folders

@dataclass
class SplitAudit:
    """One split's listing.

    Attributes:
        root: the folder.
        exists: whether it exists (test and predict are optional).
        class_counts: image files per class folder, empty folders included
            (train and test; ``{}`` for predict).
        images: image files (by extension) found.
        not_images: files training or prediction leave out: other
            extensions, hidden files, entries that are not regular files.
        unreadable: ``(path, reason)`` for image files that do not decode.
    """

    root: str
    exists: bool
    class_counts: dict[str, int] = field(default_factory=dict)
    images: int = 0
    not_images: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"root": display(self.root), "exists": self.exists, "images": self.images,
                "class_counts": {display(c): n for c, n in self.class_counts.items()}, "not_images": [display(p) for p in self.not_images],
                "unreadable": [{"path": display(p), "reason": r} for p, r in self.unreadable]}


@dataclass
class _Listing:
    """Every image file to inspect, with its split and class, and the folders flagged on the way."""

    paths: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    classes: list[str | None] = field(default_factory=list)
    folders: list[tuple[str, str]] = field(default_factory=list)


def _root_entries(root: Path, listing: _Listing, audit: SplitAudit) -> None:
    """Hidden folders and loose files directly in a class-per-folder root: training skips both."""
    with os.scandir(root) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir() and entry.name.startswith("."):
            listing.folders.append((entry.path, "hidden folder: training skips it"))
        elif not entry.is_dir():
            audit.not_images.append(entry.path)


def _split_left_out(left_out: list[str], unlistable: list[tuple[str, str]], listing: _Listing,
                    audit: SplitAudit) -> None:
    """Sort a lister's left-out entries into folders it could not list and hidden folders (both flagged), and
    files (not images)."""
    # A folder deeper than PATH_MAX is not even a folder to os.path.isdir: it was called a file (issue 24, L14).
    listing.folders += [(path, f"{reason}: the files under it are not counted or used")
                        for path, reason in unlistable]
    flagged = {path for path, _ in unlistable}
    for path in (p for p in left_out if p not in flagged):
        if os.path.isdir(path):
            listing.folders.append((path, "hidden folder: training skips it"))
        else:
            audit.not_images.append(path)


def _flag_class_folders(root: Path, counts: dict[str, int], listing: _Listing) -> None:
    """Empty and very small class folders (see :data:`SMALL_CLASS_SHARE`)."""
    nonempty = [n for n in counts.values() if n]
    median = float(np.median(nonempty)) if nonempty else 0.0
    for name, n in counts.items():
        if n == 0:
            listing.folders.append((str(root / name), "empty class folder: no image files"))
        elif n < SMALL_CLASS_SHARE * median:
            listing.folders.append((str(root / name), f"very small class: {n} images, under "
                                    f"{SMALL_CLASS_SHARE:.0%} of the median class ({median:g})"))


def _list_tree(split: str, root: Path, listing: _Listing) -> SplitAudit:
    """List a class-per-folder tree (every sub-folder is a class, as training sees it).

    Raises:
        DatasetError: ``root`` has no class folder or no image (for train;
            test problems are recorded as a flagged folder instead).
    """
    audit = SplitAudit(str(root), root.is_dir())
    if not audit.exists:
        return audit
    try:
        index: FolderIndex = index_tree(root, None, require_all=False)
    except DatasetError as exc:
        if split == "train":
            raise
        listing.folders.append((str(root), f"unusable: {exc}"))
        return audit
    _root_entries(root, listing, audit)
    _split_left_out(index.ignored, index.unlistable, listing, audit)
    audit.class_counts = index.class_counts()
    audit.images = len(index)
    _flag_class_folders(root, audit.class_counts, listing)
    listing.paths.extend(index.paths)
    listing.splits.extend([split] * len(index))
    listing.classes.extend(index.class_names[label] for label in index.labels.tolist())
    return audit


def _list_predict(root: Path, listing: _Listing) -> SplitAudit:
    """List the predict folder: image files (by extension) anywhere under it."""
    audit = SplitAudit(str(root), root.is_dir())
    if not audit.exists:
        return audit
    unlistable: list[tuple[str, str]] = []
    files, left_out = list_files(root, unlistable)
    _split_left_out(left_out, unlistable, listing, audit)
    images = [p for p in files if p.lower().endswith(IMAGE_EXTENSIONS)]
    audit.not_images.extend(p for p in files if not p.lower().endswith(IMAGE_EXTENSIONS))
    audit.images = len(images)
    listing.paths.extend(images)
    listing.splits.extend(["predict"] * len(images))
    listing.classes.extend([None] * len(images))
    return audit


def _flag_unknown_classes(setting: Setting, audits: dict[str, SplitAudit], listing: _Listing) -> None:
    """Folders that ``Setting.class_names`` does not name (training refuses them), and names without a folder."""
    if not setting.class_names:
        return
    for split in ("train", "test"):
        audit = audits[split]
        for name in audit.class_counts:
            if name not in setting.class_names:
                listing.folders.append((str(Path(audit.root) / name),
                                        "not in Setting.class_names: training refuses it"))
    missing = [name for name in setting.class_names if name not in audits["train"].class_counts]
    for name in missing:
        listing.folders.append((str(Path(audits["train"].root) / name), "named in Setting.class_names, no folder"))


# ---------------------------------------------------------------- the report

@dataclass
class CheckReport:
    """What :func:`run_check` found; :meth:`to_dict` is ``check.json``.

    Attributes:
        splits: the audit of ``train``, ``test`` and ``predict``.
        folders: ``(folder, why)`` for folders that look unintended.
        imbalance_ratio: largest / smallest non-empty train class (``None``
            with fewer than two).
        only_in_train, only_in_test: classes with images in one of the two
            trees only (empty when there is no test tree).
        sizes: ``"WxH"`` -> readable images of that size: the
            :data:`TOP_SIZES` most common, then ``other``.
        longer_side: histogram of the longer side in pixels (bins ``<=32``,
            ``33-64``, ... ``>4096``).
        modes: Pillow mode as stored -> readable images.
        upscaled, downscaled: share of readable images enlarged (shrunk) by
            more than :data:`SCALE_LIMIT` along an axis to the Setting's size.
        exact, near: duplicate groups, worst first (see :meth:`DuplicateGroup.severity`).
        quarantined: ``(path, reason)`` of the files moved by ``quarantine``.
        json_path, figure_path: the files written.
    """

    splits: dict[str, SplitAudit]
    folders: list[tuple[str, str]]
    imbalance_ratio: float | None
    only_in_train: list[str]
    only_in_test: list[str]
    sizes: dict[str, int]
    longer_side: dict[str, int]
    modes: dict[str, int]
    upscaled: float
    downscaled: float
    exact: list[DuplicateGroup]
    near: list[DuplicateGroup]
    quarantined: list[tuple[str, str]] = field(default_factory=list)
    json_path: Path | None = None
    figure_path: Path | None = None

    @property
    def unreadable(self) -> list[tuple[str, str]]:
        return [item for audit in self.splits.values() for item in audit.unreadable]

    @property
    def exact_problems(self) -> list[DuplicateGroup]:
        """Exact groups with leakage or a label conflict: what ``strict`` refuses."""
        return [g for g in self.exact if g.leak or g.conflict]

    def to_dict(self) -> dict[str, Any]:
        def groups(found: list[DuplicateGroup]) -> dict[str, Any]:
            return {**_group_counts(found), "files": sum(len(g.files) for g in found),
                    "list": [g.to_dict() for g in found]}

        return {
            "splits": {name: audit.to_dict() for name, audit in self.splits.items()},
            "imbalance_ratio": self.imbalance_ratio,
            "only_in_train": [display(c) for c in self.only_in_train],
            "only_in_test": [display(c) for c in self.only_in_test],
            "folders": [{"path": display(p), "why": why} for p, why in self.folders],
            "sizes": self.sizes,
            "longer_side": self.longer_side,
            "modes": self.modes,
            "resized_by_more_than": {"factor": SCALE_LIMIT, "upscaled": self.upscaled, "downscaled": self.downscaled},
            "small_class_share": SMALL_CLASS_SHARE,
            "exact_duplicates": groups(self.exact),
            "near_duplicates": {"hash": f"pHash {PHASH_BITS_SIDE**2} bits", "max_distance": NEAR_DISTANCE,
                                "or_max_distance": NEAR_LOOSE_DISTANCE, "with_min_cosine": NEAR_COSINE,
                                **groups(self.near)},
            "quarantined": [{"path": display(p), "reason": r} for p, r in self.quarantined],
            "figure": display(self.figure_path) if self.figure_path else None,
        }

    def summary(self, examples: int = 3) -> list[str]:
        """A few lines for the terminal: the counts, and ``examples`` of each problem."""
        lines = []
        for name, audit in self.splits.items():
            if not audit.exists:
                lines.append(f"{name}: {display(audit.root)} not found (skipped)")
                continue
            counts = sorted(audit.class_counts.values())
            per_class = f" in {len(counts)} class folders ({counts[0]}-{counts[-1]} each)" if counts else ""
            lines.append(f"{name}: {audit.images} images{per_class}")
        if self.imbalance_ratio:
            lines.append(f"imbalance (largest / smallest train class): {self.imbalance_ratio:.1f}")
        for name, only in (("train", self.only_in_train), ("test", self.only_in_test)):
            if only:
                lines.append(f"classes only in {name}: {', '.join(only)}")
        lines += [f"folder {display(p)}: {why}" for p, why in self.folders[:examples * 3]]
        for what, items in (("unreadable", [f"{display(p)} ({r})" for p, r in self.unreadable]),
                            ("not images", [display(p) for a in self.splits.values() for p in a.not_images])):
            if items:
                more = f" ... ({len(items)} in all)" if len(items) > examples else ""
                lines.append(f"{what}: {', '.join(items[:examples])}{more}")
        top = ", ".join(f"{k} {v}" for k, v in list(self.sizes.items())[:3])
        lines.append(f"sizes: {top}; modes: {', '.join(f'{k} {v}' for k, v in self.modes.items())}; "
                     f"resized more than {SCALE_LIMIT:g}x: {self.upscaled:.1%} up, {self.downscaled:.1%} down")
        for kind, found in (("exact duplicates", self.exact),
                            (f"near duplicates (pHash, <= {NEAR_DISTANCE} of 256 bits, or <= {NEAR_LOOSE_DISTANCE} "
                             "with close low frequencies)", self.near)):
            problems = ", ".join(f"{n} {name}" for name, n in _group_counts(found)["by_problem"].items())
            lines.append(f"{kind}: {len(found)} groups" + (f" ({problems})" if problems else ""))
            lines += [f"  {g.problem()}: {' = '.join(display(f) for f in g.files[:4])}" for g in found[:examples]]
        return lines


def _group_counts(found: list[DuplicateGroup]) -> dict[str, Any]:
    """Groups in all, with leakage, with a label conflict, and by :meth:`DuplicateGroup.problem`."""
    return {"groups": len(found), "leakage": sum(g.leak for g in found),
            "label_conflict": sum(g.conflict for g in found),
            "by_problem": dict(Counter(g.problem() for g in found).most_common())}


def _size_statistics(inspected: Inspected, readable: np.ndarray, height: int | str,
                     width: int | str) -> dict[str, Any]:
    """The report's ``sizes``, ``longer_side``, ``modes``, ``upscaled`` and ``downscaled`` fields.

    A size still ``auto`` is taken as the median of the images (what training
    chooses for small images)."""
    sizes = inspected.sizes[readable]
    if "auto" in (height, width):
        median = np.median(sizes, axis=0) if len(sizes) else (28, 28)
        width, height = (int(median[0]) if width == "auto" else width), (int(median[1]) if height == "auto" else height)
    by_size = Counter(f"{w}x{h}" for w, h in sizes.tolist()).most_common()
    top = dict(by_size[:TOP_SIZES])
    if by_size[TOP_SIZES:]:
        top["other"] = sum(n for _, n in by_size[TOP_SIZES:])
    longer = np.searchsorted(SIDE_BINS, sizes.max(axis=1, initial=0))  # bin index: (a, b] pixels
    labels = [f"<={SIDE_BINS[0]}"] + [f"{a + 1}-{b}" for a, b in zip(SIDE_BINS, SIDE_BINS[1:])] + [f">{SIDE_BINS[-1]}"]
    factors = np.array([width, height]) / np.maximum(sizes, 1)  # (N, 2) per-axis scale factors
    return {"sizes": top,
            "longer_side": {labels[b]: int(n) for b, n in zip(*np.unique(longer, return_counts=True))},
            "modes": dict(Counter(m for m, ok in zip(inspected.modes, readable) if ok).most_common()),
            "upscaled": float(np.mean(factors.max(axis=1) > SCALE_LIMIT)) if len(sizes) else 0.0,
            "downscaled": float(np.mean(factors.min(axis=1) < 1 / SCALE_LIMIT)) if len(sizes) else 0.0}


def _duplicate_groups(listing: _Listing, inspected: Inspected, readable: np.ndarray) -> tuple[list, list]:
    """Exact groups (equal digests), and near groups (pHash components) among one file per exact group."""
    rows = np.flatnonzero(readable)
    _, first, inverse, counts = np.unique(inspected.digests[rows], axis=0, return_index=True,
                                          return_inverse=True, return_counts=True)
    inverse = inverse.ravel()

    def group(kind: str, members: list[int], distance: int = 0) -> DuplicateGroup:
        members = sorted(members)
        return DuplicateGroup(kind, [listing.paths[i] for i in members], [listing.splits[i] for i in members],
                              [listing.classes[i] for i in members], distance)

    exact = [group("exact", rows[inverse == g].tolist()) for g in np.flatnonzero(counts > 1)]
    representatives = rows[np.sort(first)]
    pairs = near_duplicate_pairs(inspected.hashes[representatives], inspected.spectra[representatives])
    near = [group("near", representatives[members].tolist(), distance)
            for members, distance in _components(len(representatives), pairs)]
    return sorted(exact, key=DuplicateGroup.severity), sorted(near, key=DuplicateGroup.severity)


def _build_report(setting: Setting, audits: dict[str, SplitAudit], listing: _Listing,
                  inspected: Inspected) -> CheckReport:
    readable = np.ones(len(listing.paths), dtype=bool)
    for row, reason in inspected.failed:
        readable[row] = False
        audits[listing.splits[row]].unreadable.append((listing.paths[row], reason))
    train_counts = audits["train"].class_counts
    nonempty = [n for n in train_counts.values() if n]
    with_images = {split: {c for c, n in audits[split].class_counts.items() if n} for split in ("train", "test")}
    has_test = bool(audits["test"].class_counts)
    exact, near = _duplicate_groups(listing, inspected, readable)
    return CheckReport(
        splits=audits,
        folders=listing.folders,
        imbalance_ratio=max(nonempty) / min(nonempty) if len(nonempty) > 1 else None,
        only_in_train=sorted(with_images["train"] - with_images["test"]) if has_test else [],
        only_in_test=sorted(with_images["test"] - with_images["train"]),
        **_size_statistics(inspected, readable, setting.image_height, setting.image_width),
        exact=exact,
        near=near,
    )


# ---------------------------------------------------------------- figure, quarantine, entry point

def compared_color_mode(setting: Setting) -> str:
    """The color mode exact duplicates are compared in: the Setting's, or ``rgb`` while it is ``auto``.

    (Training resolves ``auto`` from the images. Two images equal in RGB are
    equal in grayscale too; copies that differ in colour only are near
    duplicates, the pHash being computed on luminance.)
    """
    return setting.color_mode if setting.color_mode in ("grayscale", "rgb") else "rgb"


def _draw_duplicates(report: CheckReport, setting: Setting, path: Path, data_root: Path) -> Path:
    """``check_duplicates.png``: the worst :data:`FIGURE_GROUPS` groups, one row each, with their paths."""
    from . import check_plots  # matplotlib: only when drawing

    rows = []
    for group in sorted(report.exact + report.near, key=DuplicateGroup.severity)[:FIGURE_GROUPS]:
        label = f"{group.kind}: {group.problem()}" + (f", distance {group.distance}" if group.kind == "near" else "")
        cells = []
        for file in group.files[:FIGURE_FILES]:
            # Thumbnails made while decoding: three 9000x9000 images drawn at full size took 5.9 GB and 66 s
            # (issue 24, M9).
            image, _ = decode(file, compared_color_mode(setting), longest=FIGURE_THUMBNAIL)
            cells.append((np.asarray(image), display(os.path.relpath(os.path.abspath(file), data_root))))
        rows.append((label, cells))
    return check_plots.duplicate_groups(rows, path)


def data_root(setting: Setting) -> Path:
    """The folder the train, test and predict folders hang from (``data_dir`` in the default layout).

    Quarantined files keep their path relative to it.
    """
    roots = [setting.train_path] + [p for p in (setting.test_path, setting.predict_path) if p.is_dir()]
    return Path(os.path.commonpath([os.path.dirname(os.path.abspath(root)) for root in roots]))


def _quarantine_plan(report: CheckReport) -> list[tuple[str, str]]:
    """``(path, reason)``: unreadable files, and test/predict copies of files that are also in train."""
    plan = [(p, f"unreadable: {r}") for p, r in report.unreadable]
    for group in report.exact:
        in_train = [f for f, s in zip(group.files, group.splits) if s == "train"]
        if in_train:
            plan += [(f, f"identical pixels to {display(in_train[0])}")
                     for f, s in zip(group.files, group.splits) if s != "train"]
    return plan


def quarantine_files(plan: list[tuple[str, str]], quarantine: Path, root: Path, split_roots: list[Path]) -> None:
    """Move each planned file to ``quarantine/<its path relative to root>`` and list it in the manifest.

    The manifest (``quarantine/manifest.json``: ``data_root`` and one
    ``{path, reason}`` per file, paths relative to ``data_root``) is
    written before anything moves and keeps earlier runs' entries;
    :func:`restore_quarantine` moves the files back. Nothing is deleted.

    Raises:
        DatasetError: ``quarantine`` is inside a split folder (it would
            become a class), holds files of another data root, or a
            destination already exists (then nothing is moved).
    """
    _check_quarantine_place(quarantine, split_roots)
    quarantine = Path(os.path.abspath(quarantine))
    manifest = _read_manifest(quarantine) or {"data_root": str(root), "files": []}
    if manifest["data_root"] != str(root):
        raise DatasetError(f"{display(quarantine / QUARANTINE_MANIFEST)}: holds files of "
                           f"{display(manifest['data_root'])}, not {display(root)}; choose another quarantine folder")
    moves = [(os.path.relpath(os.path.abspath(path), root), reason) for path, reason in plan]
    for relative, _ in moves:
        if (quarantine / relative).exists():
            raise DatasetError(f"{display(quarantine / relative)}: already in quarantine; nothing moved")
    earlier = list(manifest["files"])
    manifest["files"] += [{"path": relative, "reason": reason} for relative, reason in moves]
    try:
        _write_manifest(quarantine, manifest)  # first: a kill mid-way leaves every moved file listed
    except OSError as exc:
        raise DatasetError(f"{display(quarantine / QUARANTINE_MANIFEST)}: {exc.strerror or exc}; "
                           "nothing moved") from None
    moved = 0
    try:
        for relative, _ in moves:
            _move_whole(root / relative, quarantine / relative)
            moved += 1
    except OSError as exc:
        # A full disk (another filesystem): the manifest keeps only what moved, no partial copy is left.
        _shrink_manifest(quarantine, {**manifest, "files": earlier + manifest["files"][len(earlier):][:moved]})
        raise DatasetError(f"{display(quarantine)}: {exc.strerror or exc} after moving {moved} of {len(moves)} "
                           "files; the others stay where they were") from None


def _move_whole(source: Path, target: Path) -> None:
    """Move a file: a rename on one filesystem; across two, a copy to a temporary name beside ``target``,
    renamed once complete, then the source removed. An error leaves the source and no partial copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    with atomic_path(target) as tmp:
        shutil.copy2(source, tmp)
    source.unlink()


def _check_quarantine_place(quarantine: Path, split_roots: list[Path]) -> None:
    """Raise :class:`DatasetError` when ``quarantine`` lies inside a split folder (it would become a class)."""
    for split_root in split_roots:
        if Path(os.path.abspath(quarantine)).is_relative_to(os.path.abspath(split_root)):
            raise DatasetError(f"{display(quarantine)}: quarantine folder inside {display(split_root)}; "
                               "choose one outside")


def _read_manifest(quarantine: Path) -> dict[str, Any] | None:
    path = quarantine / QUARANTINE_MANIFEST
    return artifacts.read_json(path) if path.exists() else None


def _write_manifest(quarantine: Path, manifest: dict[str, Any]) -> None:
    """ASCII JSON: file names that are not valid UTF-8 survive as ``\\udcXX`` escapes."""
    write_text(quarantine / QUARANTINE_MANIFEST, json.dumps(manifest, indent=2) + "\n")


def _shrink_manifest(quarantine: Path, manifest: dict[str, Any]) -> None:
    """Rewrite the manifest with fewer entries after a failed move: atomically where the disk has room, else
    in place, the text being shorter than the file's (no new disk block needed: the disk may be full)."""
    try:
        _write_manifest(quarantine, manifest)
    except OSError:
        with contextlib.suppress(OSError), open(quarantine / QUARANTINE_MANIFEST, "r+b") as handle:
            handle.write((json.dumps(manifest, indent=2) + "\n").encode())
            handle.truncate()
            handle.flush()
            os.fsync(handle.fileno())


def restore_quarantine(quarantine: str | Path) -> tuple[list[str], int]:
    """Move the files listed in ``quarantine/manifest.json`` back to their places under its ``data_root``.

    A file whose original place is taken again, or that is no longer in
    quarantine, stays listed in the manifest; nothing is overwritten or
    deleted. Every entry is checked before anything moves: a manifest is
    a file someone could have edited, and a path leaving either folder
    (absolute, or with ``..``) would move files elsewhere.

    Returns:
        ``(paths restored, entries still listed)``.

    Raises:
        DatasetError: no manifest in ``quarantine``, a manifest that is not
            this tool's (or lists a path outside the folders), or a move
            failing (a full disk: the manifest then lists what is still in
            quarantine).
    """
    quarantine = Path(os.path.abspath(quarantine))
    path = quarantine / QUARANTINE_MANIFEST
    manifest = _read_manifest(quarantine)
    if manifest is None:
        raise DatasetError(f"{display(path)}: no quarantine manifest (written by --mode check --quarantine)")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, list) or not isinstance(manifest.get("data_root"), str) or not all(
            isinstance(entry, dict) and isinstance(entry.get("path"), str) for entry in files):
        raise DatasetError(f"{display(path)}: not a quarantine manifest (data_root and files with a path each)")
    for entry in files:
        relative = Path(entry["path"])
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise DatasetError(f"{display(path)}: {display(entry['path'])} is not a path inside the data folder; "
                               "nothing restored")
    root, kept, restored = Path(manifest["data_root"]), [], []
    try:
        for k, entry in enumerate(files):
            source, target = quarantine / entry["path"], root / entry["path"]
            if source.exists() and not target.exists():
                _move_whole(source, target)
                restored.append(str(target))
            elif source.exists() or not target.exists():  # its place is taken again, or it is lost: keep the entry
                kept.append(entry)
    except OSError as exc:
        _shrink_manifest(quarantine, {**manifest, "files": kept + files[k:]})
        raise DatasetError(f"{display(root / entry['path'])}: {exc.strerror or exc} after restoring "
                           f"{len(restored)} files; the others stay in quarantine, listed") from None
    _write_manifest(quarantine, {**manifest, "files": kept})
    return restored, len(kept)


def run_check(setting: Setting, *, strict: bool = False, quarantine: str | Path | None = None,
              progress: bool = True, log: Callable[[str], Any] = print) -> CheckReport:
    """Audit the Setting's train, test and predict folders; write ``check.json`` and ``check_duplicates.png``.

    See the module docstring for what is checked. Each image file is
    decoded once (worker processes from
    :data:`~mnist_folders.data.decoding.PARALLEL_MIN_FILES` files on). The
    report goes to ``log`` line by line and to ``<model_dir>/check.json``.

    Args:
        setting: its ``train_path``, ``test_path``, ``predict_path``,
            ``model_path``, ``image_height``/``image_width`` (for the scale
            shares), ``color_mode`` (exact duplicates compare pixels in it;
            see :func:`compared_color_mode`) and ``class_names`` are used.
        strict: after writing the report (and quarantining), raise when an
            exact duplicate leaks from train or has conflicting labels. Near duplicates
            are reported only: on MNIST, 10 groups of distinct but
            similar 1s in train and test match.
        quarantine: a folder to move unreadable files, and the test/predict
            copies of images that are also in train, into (see
            :func:`quarantine_files`); ``None`` moves nothing.
        progress: a tqdm bar while decoding.
        log: called with each line of the report.

    Raises:
        DatasetError: the train folder is missing or holds no image; with
            ``strict``, a leak or a label conflict (naming one file); a
            quarantine that cannot be done.
        CheckpointError: the model directory is not writable.
    """
    model_dir = setting.model_path
    find_class_names(setting.train_path)  # a missing train tree is an error, before anything is written
    artifacts.ensure_writable(model_dir)
    split_roots = [p for p in (setting.train_path, setting.test_path, setting.predict_path, setting.val_path)
                   if p is not None and p.is_dir()]
    if quarantine is not None:
        _check_quarantine_place(Path(quarantine), split_roots)
    listing = _Listing()
    audits = {"train": _list_tree("train", setting.train_path, listing),
              "test": _list_tree("test", setting.test_path, listing),
              "predict": _list_predict(setting.predict_path, listing)}
    if setting.val_path is not None:  # a separate validation tree: a copy of a train image there leaks too
        audits["val"] = _list_tree("val", setting.val_path, listing)
    _flag_unknown_classes(setting, audits, listing)
    inspected = inspect_all(listing.paths, compared_color_mode(setting), progress)
    report = _build_report(setting, audits, listing, inspected)
    root = data_root(setting)
    report.figure_path = _draw_duplicates(report, setting, model_dir / CHECK_FIGURE, root)
    report.json_path = model_dir / CHECK_JSON
    artifacts.write_json(report.json_path, report.to_dict())
    for line in report.summary():
        log(line)
    log(f"report: {display(report.json_path)}; figure: {display(report.figure_path)}")
    if quarantine is not None and (plan := _quarantine_plan(report)):
        quarantine_files(plan, Path(quarantine), root, split_roots)
        report.quarantined = plan
        artifacts.write_json(report.json_path, report.to_dict())
        log(f"quarantined {len(plan)} files into {display(quarantine)} "
            f"(to move them back: {display(Path(quarantine) / QUARANTINE_MANIFEST)})")
    if strict and report.exact_problems:
        worst = report.exact_problems[0]
        raise DatasetError(f"{display(worst.files[1])}: same pixels as {display(worst.files[0])} "
                           f"({worst.problem()}); {len(report.exact_problems)} exact duplicate groups with "
                           f"leakage or a label conflict, listed in {display(report.json_path)}")
    return report


# ---------------------------------------------------------------- likely label errors

@dataclass
class SuspectLabel:
    """A training image whose given label the model finds unlikely.

    Attributes:
        path: the file.
        given: its class folder.
        predicted: the model's top class.
        given_probability: the softmax probability of ``given``.
        split: ``validation`` (the model never trained on it: out of sample)
            or ``train`` (in sample: the model may have memorised the label,
            so a wrong label scores higher than it would out of sample).
    """

    path: str
    given: str
    predicted: str
    given_probability: float
    split: str


def _validation_mask(index: FolderIndex, setting: Setting) -> np.ndarray:
    """``(N,)`` bool: the files training held out for validation (the one place the split is asked for).

    None when the Setting names a separate validation folder (``val_dir``):
    training then fits on every train image.
    """
    mask = np.zeros(len(index), dtype=bool)
    if setting.val_path is None:
        mask[index.split(setting.validation_split, setting.split_order, setting.seed)[1]] = True
    return mask


def suspects_csv(suspects: list[SuspectLabel]) -> str:
    """CSV text: path, given_class, predicted_class, given_probability, split."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["path", "given_class", "predicted_class", "given_probability", "split"])
    for s in suspects:
        writer.writerow([safe_cell(display(s.path)), safe_cell(s.given), safe_cell(s.predicted),
                         f"{s.given_probability:.6f}", s.split])
    return buffer.getvalue()


def find_suspect_labels(setting: Setting, model: Any, class_names: list[str], *, progress: bool = True,
                        limit: int | None = SUSPECT_ROWS) -> list[SuspectLabel]:
    """The train tree's images ranked by the probability ``model`` gives their label, lowest first.

    Writes ``<model_dir>/suspect_labels.csv`` (the ranked rows) and
    ``suspect_labels.png`` (the first :data:`SUSPECT_SHOWN` images, titled
    ``given -> predicted``). Only the validation split's probabilities
    are out of sample; see :class:`SuspectLabel`.

    Args:
        setting: the model's Setting (input size, color mode, validation
            split) with the train folder to rank.
        model: a Keras model mapping ``(N, H, W, C)`` float32 in [0, 1] to
            softmax probabilities over ``class_names``.
        class_names: the model's classes in output order.
        progress: tqdm bars while decoding and predicting.
        limit: rows kept (``None``: every image).

    Raises:
        DatasetError: the train tree is missing, or names other classes.
    """
    from ..plots import image_grid  # matplotlib: only here
    from ..serve.prediction import predict_probabilities  # TensorFlow: loaded already, the caller has a model

    index = index_tree(setting.train_path, class_names)
    out_of_sample = _validation_mask(index, setting)
    decoded = decode_images(index.paths, setting, progress=progress, description="decode")
    probabilities = predict_probabilities(model, decoded.images, progress=progress)
    labels = index.labels[decoded.kept]
    given = probabilities[np.arange(len(labels)), labels]
    predicted = probabilities.argmax(axis=1)
    order = np.argsort(given, kind="stable")[:limit]
    suspects = [SuspectLabel(index.paths[k], class_names[labels[o]], class_names[predicted[o]], float(given[o]),
                             "validation" if out_of_sample[k] else "train")
                for o, k in zip(order.tolist(), decoded.kept[order].tolist())]
    write_text(setting.model_path / SUSPECT_CSV, suspects_csv(suspects))
    shown = order[:SUSPECT_SHOWN]
    titles = [f"{s.given} -> {s.predicted} p={s.given_probability:.1g}\n{Path(s.path).name[:16]}"
              for s in suspects[:SUSPECT_SHOWN]]
    image_grid(decoded.images[shown], titles, setting.model_path / SUSPECT_FIGURE,
               title="likely label errors: given -> predicted class, p = probability of the given class")
    return suspects
