"""The check's listing of the train, test and predict folders, as training and prediction list them, and the
folders that look unintended (hidden, empty, very small, not a class of the Setting)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..names import display
from ..settings import Setting
from ..data.folders import FolderIndex, index_tree, list_files
from ..data.images import IMAGE_EXTENSIONS

SMALL_CLASS_SHARE = 0.1  # "very small": fewer images than this share of the split's median class


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
class Listing:
    """Every image file to inspect, with its split and class, and the folders flagged on the way."""

    paths: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    classes: list[str | None] = field(default_factory=list)
    folders: list[tuple[str, str]] = field(default_factory=list)


def _root_entries(root: Path, listing: Listing, audit: SplitAudit) -> None:
    """Hidden folders and loose files directly in a class-per-folder root: training skips both."""
    with os.scandir(root) as scan:
        entries = sorted(scan, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir() and entry.name.startswith("."):
            listing.folders.append((entry.path, "hidden folder: training skips it"))
        elif not entry.is_dir():
            audit.not_images.append(entry.path)


def _split_left_out(left_out: list[str], unlistable: list[tuple[str, str]], listing: Listing,
                    audit: SplitAudit) -> None:
    """Sort a lister's left-out entries into folders it could not list and hidden folders (both flagged), and
    files (not images)."""
    # A folder deeper than PATH_MAX is not even a folder to os.path.isdir: it was called a file.
    listing.folders += [(path, f"{reason}: the files under it are not counted or used")
                        for path, reason in unlistable]
    flagged = {path for path, _ in unlistable}
    for path in (p for p in left_out if p not in flagged):
        if os.path.isdir(path):
            listing.folders.append((path, "hidden folder: training skips it"))
        else:
            audit.not_images.append(path)


def _flag_class_folders(root: Path, counts: dict[str, int], listing: Listing) -> None:
    """Empty and very small class folders (see :data:`SMALL_CLASS_SHARE`)."""
    nonempty = [n for n in counts.values() if n]
    median = float(np.median(nonempty)) if nonempty else 0.0
    for name, n in counts.items():
        if n == 0:
            listing.folders.append((str(root / name), "empty class folder: no image files"))
        elif n < SMALL_CLASS_SHARE * median:
            listing.folders.append((str(root / name), f"very small class: {n} images, under "
                                    f"{SMALL_CLASS_SHARE:.0%} of the median class ({median:g})"))


def list_tree(split: str, root: Path, listing: Listing) -> SplitAudit:
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


def list_predict(root: Path, listing: Listing) -> SplitAudit:
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


def flag_unknown_classes(setting: Setting, audits: dict[str, SplitAudit], listing: Listing) -> None:
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
