"""Index a class-per-folder image tree and split it for validation.

Layout::

    train/
      <class_a>/ 0001.png 0002.png ...   (sub-folders are walked too)
      <class_b>/ ...

Class names are the sub-folder names, sorted, unless given (which also fixes
their order); label ``i`` is ``class_names[i]``. Files are listed in the order
Keras' ``flow_from_directory`` lists them (walk sorted by folder, files sorted
by name), keeping extensions in :data:`~mnist_folders.images.IMAGE_EXTENSIONS`
(any letter case) and leaving out hidden files and folders (names starting
with a dot), which are counted in ``ignored``. In each class the **first**
``int(validation_split * n)`` files in that order are validation and the rest
training, as in Keras. (Keras' own lister also takes hidden files and skips
gif; on trees with neither, both pipelines see exactly the same files.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .images import IMAGE_EXTENSIONS


@dataclass
class FolderIndex:
    """The images of a tree: ``paths[i]`` has integer label ``labels[i]``.

    Attributes:
        root: the tree's folder.
        class_names: names in label order.
        paths: image file paths, class by class, in listing order.
        labels: ``(N,)`` int32 labels.
        ignored: files that are not images by extension (listed, not used).
    """

    root: Path
    class_names: list[str]
    paths: list[str]
    labels: np.ndarray
    ignored: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> dict[str, int]:
        """Images per class, in label order."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, counts)}

    def split(self, validation_split: float) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(training, validation)`` into :attr:`paths`, as Keras splits.

        In each class the first ``int(validation_split * n_class)`` files are
        validation; the order within each part is the listing order.
        """
        train, val = [], []
        for label in range(len(self.class_names)):
            members = np.flatnonzero(self.labels == label)
            cut = int(validation_split * len(members))
            val.append(members[:cut])
            train.append(members[cut:])
        return np.concatenate(train), np.concatenate(val)

    def subset(self, indices: np.ndarray) -> "FolderIndex":
        return FolderIndex(self.root, self.class_names, [self.paths[i] for i in indices], self.labels[indices])


def find_class_names(root: str | Path) -> list[str]:
    """The sub-folder names of ``root``, sorted (hidden folders left out).

    Raises:
        DatasetError: ``root`` does not exist or is not a folder, or it has no
            class sub-folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: folder not found (expected one sub-folder per class)")
    names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not names:
        raise DatasetError(f"{root}: no class sub-folders (expected {root}/<class>/<image files>)")
    return names


def _list_class_files(folder: Path) -> tuple[list[str], list[str]]:
    """Image files under ``folder`` in Keras' listing order, and the other files."""
    images, others = [], []
    walked = []
    for dirpath, dirnames, files in os.walk(folder):
        others.extend(os.path.join(dirpath, d) for d in dirnames if d.startswith("."))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prune hidden folders from the walk
        walked.append((dirpath, files))
    for dirpath, files in sorted(walked, key=lambda entry: entry[0]):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            usable = not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
            (images if usable else others).append(path)
    return images, others


def index_tree(root: str | Path, class_names: list[str] | None = None, require_all: bool = True) -> FolderIndex:
    """List the images of a class-per-folder tree.

    Args:
        root: the tree's folder.
        class_names: the classes in label order; ``None`` uses the sorted
            sub-folder names.
        require_all: every class in ``class_names`` must have a folder with
            at least one image; when ``False`` (evaluating on part of the
            classes) missing or empty classes are allowed, but a folder that
            is not a known class is still an error.

    Raises:
        DatasetError: the folder is missing or empty, a class folder is
            missing or has no images, or (with ``class_names``) the folders
            name classes that are not in ``class_names``.
    """
    root = Path(root)
    found = find_class_names(root)
    if class_names is None:
        class_names = found
    unknown = sorted(set(found) - set(class_names))
    if unknown:
        raise DatasetError(f"{root}: folders {unknown} are not among the model's classes {class_names}")
    missing = [name for name in class_names if name not in found]
    if missing and require_all:
        raise DatasetError(f"{root}: no folder for classes {missing}")
    paths: list[str] = []
    labels: list[int] = []
    ignored: list[str] = []
    for label, name in enumerate(class_names):
        if name in missing:
            continue
        images, others = _list_class_files(root / name)
        if not images and require_all:
            raise DatasetError(f"{root / name}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(images)
        labels.extend([label] * len(images))
        ignored.extend(others)
    if not paths:
        raise DatasetError(f"{root}: no images found in the class folders")
    return FolderIndex(root, list(class_names), paths, np.asarray(labels, dtype=np.int32), ignored)
