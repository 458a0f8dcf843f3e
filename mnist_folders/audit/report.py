"""The check's report: duplicate groups, size and mode statistics, ``check.json`` and ``check_duplicates.png``."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..names import display
from ..settings import Setting
from ..data.images import decode
from ..layout import CHECK_FIGURE, CHECK_JSON
from .fingerprints import (NEAR_COSINE, NEAR_DISTANCE, NEAR_LOOSE_DISTANCE, PHASH_BITS_SIDE, Inspected, components,
                           near_duplicate_pairs)
from .listing import SMALL_CLASS_SHARE, Listing, SplitAudit

SCALE_LIMIT = 2.0  # count images resized by more than this factor along an axis
TOP_SIZES = 20  # sizes listed one by one in the report; the rest are counted as "other"
SIDE_BINS = (32, 64, 128, 256, 512, 1024, 2048, 4096)  # upper edges of the longer-side histogram, pixels
FIGURE_GROUPS, FIGURE_FILES = 12, 6  # rows (groups) and images per row in check_duplicates.png
FIGURE_THUMBNAIL = 128  # px, longest side of each image drawn in check_duplicates.png


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


def _duplicate_groups(listing: Listing, inspected: Inspected, readable: np.ndarray) -> tuple[list, list]:
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
            for members, distance in components(len(representatives), pairs)]
    return sorted(exact, key=DuplicateGroup.severity), sorted(near, key=DuplicateGroup.severity)


def build_report(setting: Setting, audits: dict[str, SplitAudit], listing: Listing,
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


def compared_color_mode(setting: Setting) -> str:
    """The color mode exact duplicates are compared in: the Setting's, or ``rgb`` while it is ``auto``.

    (Training resolves ``auto`` from the images. Two images equal in RGB are
    equal in grayscale too; copies that differ in colour only are near
    duplicates, the pHash being computed on luminance.)
    """
    return setting.color_mode if setting.color_mode in ("grayscale", "rgb") else "rgb"


def draw_duplicates(report: CheckReport, setting: Setting, path: Path, data_root: Path) -> Path:
    """``check_duplicates.png``: the worst :data:`FIGURE_GROUPS` groups, one row each, with their paths."""
    from . import figures  # matplotlib: only when drawing

    rows = []
    for group in sorted(report.exact + report.near, key=DuplicateGroup.severity)[:FIGURE_GROUPS]:
        label = f"{group.kind}: {group.problem()}" + (f", distance {group.distance}" if group.kind == "near" else "")
        cells = []
        for file in group.files[:FIGURE_FILES]:
            # Thumbnails made while decoding: three 9000x9000 images drawn at full size took 5.9 GB and 66 s.
            image, _ = decode(file, compared_color_mode(setting), longest=FIGURE_THUMBNAIL)
            cells.append((np.asarray(image), display(os.path.relpath(os.path.abspath(file), data_root))))
        rows.append((label, cells))
    return figures.duplicate_groups(rows, path)
