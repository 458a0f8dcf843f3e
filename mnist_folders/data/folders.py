"""Index a class-per-folder image tree and split it for validation.

Layout::

    train/
      <class_a>/ 0001.png 0002.png ...   (sub-folders are walked too)
      <class_b>/ ...

Class names are the sub-folder names, sorted, unless given (which also fixes
their order); label ``i`` is ``class_names[i]``. Files are listed in the order
Keras' ``flow_from_directory`` lists them (walk sorted by folder, files sorted
by name), keeping extensions in :data:`~mnist_folders.data.images.IMAGE_EXTENSIONS`
(any letter case) and leaving out hidden files and folders (names starting
with a dot), which are counted in ``ignored``. :meth:`FolderIndex.split` holds
out a seeded random ``validation_split`` of each class, or the first files in
that order, as Keras does. (Keras' own lister also takes hidden files and
skips gif; on trees with neither, both pipelines see exactly the same files.)
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..names import MODEL_DIR_MARKER, class_name_problem, display
from .images import IMAGE_EXTENSIONS


@dataclass
class FolderIndex:
    """The images of a tree: ``paths[i]`` has integer label ``labels[i]``.

    Attributes:
        root: the tree's folder.
        class_names: names in label order.
        paths: image file paths, class by class, in listing order.
        labels: ``(N,)`` int32 labels.
        ignored: files that are not images by extension (listed, not used),
            and folders that cannot be listed.
        unlistable: ``(folder, reason)`` for each folder that cannot be listed
            (permission denied, a path longer than PATH_MAX): its files are not counted.
    """

    root: Path
    class_names: list[str]
    paths: list[str]
    labels: np.ndarray
    ignored: list[str] = field(default_factory=list)
    unlistable: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def class_counts(self) -> dict[str, int]:
        """Images per class, in label order."""
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, counts)}

    def split(self, validation_split: float, order: str = "shuffled", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``(training, validation)`` into :attr:`paths`, stratified by class.

        In each class ``int(validation_split * n_class)`` files are
        validation: with ``order="shuffled"`` a random choice that depends
        on ``(seed, class)`` only (file names often follow the order of
        acquisition, so the first files can differ from the rest); with
        ``order="sorted"`` the first files in listing order, as Keras'
        ``ImageDataGenerator(validation_split=...)`` takes them. Within each
        part the order is the listing order.
        """
        train, val = [], []
        for label in range(len(self.class_names)):
            members = np.flatnonzero(self.labels == label)
            cut = int(validation_split * len(members))
            held = np.zeros(len(members), dtype=bool)
            if order == "sorted":
                held[:cut] = True
            else:
                held[np.random.default_rng([seed, label]).permutation(len(members))[:cut]] = True
            val.append(members[held])
            train.append(members[~held])
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
    names = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")
                   and not is_model_dir(entry.path))
    if not names:
        raise DatasetError(f"{root}: no class sub-folders (expected {root}/<class>/<image files>)")
    return names


def training_class_names(root: str | Path, class_names: list[str] | None = None) -> list[str]:
    """The classes a training tree is read with: ``class_names`` when given, else its sub-folders, sorted.

    Cheap (one directory listing), so that the CLI can say what is wrong
    with the tree before TensorFlow loads.

    Raises:
        DatasetError: ``root`` is not a folder, has no class sub-folders, or
            there are fewer than 2 classes.
    """
    found = find_class_names(root)
    names = class_names or found
    if len(names) < 2:
        raise DatasetError(f"{root}: only one class folder {names}; a classifier needs at least 2")
    for name in names:  # a line break would split labels.txt; a separator would leave --sort-into
        problem = class_name_problem(name)
        if problem:
            raise DatasetError(f"{display(root)}: {problem}; rename the folder")
    return names


def list_files(folder: str | Path, errors: list[tuple[str, str]] | None = None) -> tuple[list[str], list[str]]:
    """Every file under ``folder`` (sub-folders included) in Keras' listing order, and what is left out.

    The order is Keras' ``flow_from_directory`` order: folders sorted by
    path, files sorted by name within each. Left out, and returned second:
    hidden files and folders (names starting with a dot: ``.DS_Store``, the
    temporary files of :mod:`mnist_folders.atomic`), and entries that are
    not regular files (named pipes, sockets, devices: reading one could
    block forever). A symbolic link that cannot be followed stays in the
    first list, for the decoder to report as unreadable. A folder that cannot
    be listed (permission denied, a path longer than PATH_MAX) is left out
    too, and appended to ``errors`` as ``(path, reason)`` when given.
    """
    files, left_out = [], []
    walked = []

    def unlistable(exc: OSError) -> None:
        left_out.append(str(exc.filename))
        if errors is not None:
            errors.append((str(exc.filename), f"folder not readable ({exc.strerror or exc})"))

    for dirpath, dirnames, names in os.walk(folder, onerror=unlistable):
        left_out.extend(os.path.join(dirpath, d) for d in dirnames if d.startswith("."))
        # Pruned from the walk: hidden folders, and model directories (their figures are not data).
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and not is_model_dir(os.path.join(dirpath, d))]
        walked.append((dirpath, names))
    for dirpath, names in sorted(walked, key=lambda entry: entry[0]):
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            (files if not name.startswith(".") and _regular_or_broken(path) else left_out).append(path)
    return files, left_out


def is_model_dir(path: str | Path) -> bool:
    """True when ``path`` is a model directory of this tool (it holds the marker file): the listings of
    train, test and predict folders leave it out, so a ``--model-dir`` inside one is not read as data."""
    return os.path.isfile(os.path.join(path, MODEL_DIR_MARKER))


def _regular_or_broken(path: str) -> bool:
    """True for a regular file (links followed) and for a link that cannot be followed."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return True


def _list_class_files(folder: Path, errors: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """Image files under ``folder`` (by extension, any case), and every other entry (see :func:`list_files`
    for ``errors``)."""
    files, others = list_files(folder, errors)
    images = [path for path in files if path.lower().endswith(IMAGE_EXTENSIONS)]
    others.extend(path for path in files if not path.lower().endswith(IMAGE_EXTENSIONS))
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
    unlistable: list[tuple[str, str]] = []
    for label, name in enumerate(class_names):
        if name in missing:
            continue
        images, others = _list_class_files(root / name, unlistable)
        if not images and require_all:
            raise DatasetError(f"{root / name}: class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(images)
        labels.extend([label] * len(images))
        ignored.extend(others)
    if not paths:
        raise DatasetError(f"{root}: no images found in the class folders")
    return FolderIndex(root, list(class_names), paths, np.asarray(labels, dtype=np.int32), ignored, unlistable)


def files_to_predict(target: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The files under folder ``target`` (or ``target`` itself when it is a file), and those left out.

    Raises:
        DatasetError: ``target`` does not exist.
    """
    if target.is_file():
        return [str(target)], []
    if not target.is_dir():
        raise DatasetError(f"{display(target)}: no such folder or image file to predict")
    errors: list[tuple[str, str]] = []
    files, left_out = list_files(target, errors)
    unlistable = {path for path, _ in errors}
    return files, errors + [(path, "not a regular file") for path in left_out
                            if path not in unlistable and not Path(path).name.startswith(".")]
