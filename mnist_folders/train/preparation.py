"""What a training run and the learning-rate finder prepare alike: the indexed train tree, the resolved
Setting with its seed and dtype policy, the training and validation data, and what ``dataset.json`` records."""

from __future__ import annotations


import numpy as np

from .. import artifacts
from ..data.decoding import decode_images
from ..data.folders import FolderIndex, index_tree, training_class_names
from ..data.images import lighter_borders
from ..data.pipeline import TrainingData, training_data
from ..errors import DatasetError
from ..networks import dtype_policy
from ..settings import Setting
from .resume import training_files


def prepare_index(setting: Setting, log=print) -> FolderIndex:
    """Index the train tree with the Setting's class names (or the folders' own, sorted), and say what it holds.

    Raises:
        CheckpointError: the model directory is inside the train or validation folder.
        DatasetError: as :func:`mnist_folders.data.folders.index_tree`.
    """
    artifacts.check_outside_data(setting.model_path, {"train": setting.train_path, "validation": setting.val_path})
    index = index_tree(setting.train_path, training_class_names(setting.train_path, setting.class_names))
    counts = ", ".join(f"{name}: {n}" for name, n in index.class_counts().items())
    log(f"{len(index)} images in {len(index.class_names)} classes under {index.root} ({counts})")
    unlistable = {folder for folder, _ in index.unlistable}
    not_images = [path for path in index.ignored if path not in unlistable]
    if not_images:
        log(f"ignored {len(not_images)} non-image files, e.g. {not_images[0]}")
    if index.unlistable:  # permission denied, or a path longer than PATH_MAX: said, not counted as a file
        folder, reason = index.unlistable[0]
        log(f"left out {len(index.unlistable)} unreadable folders (their files are not used), e.g. {folder}: {reason}")
    return index


def load_training_data(setting: Setting, index: FolderIndex, progress: bool, strict: bool, log=print) -> TrainingData:
    """The Setting's pipeline over ``index``; unreadable files listed, or refused with ``strict``."""
    data = training_data(setting, index, progress=progress)
    if data.failed and strict:
        path, reason = data.failed[0]
        raise DatasetError(f"{path}: {reason} ({len(data.failed)} unreadable files; --strict refuses to skip them)")
    for path, reason in data.failed:
        log(f"skipped {path}: {reason}")
    return data


def split_readable(setting: Setting, index: FolderIndex, failed: list[tuple[str, str]]) -> tuple[FolderIndex,
                                                                                                   FolderIndex]:
    """The training and validation subsets the pipeline used: ``setting.val_path``'s tree, or the same split
    of the readable files of ``index`` (``failed``: the unreadable ones)."""
    unreadable = {path for path, _ in failed}
    readable = index.subset(np.array([i for i, p in enumerate(index.paths) if p not in unreadable], dtype=np.int64))
    if setting.val_path is not None:
        return readable, index_tree(setting.val_path, index.class_names, require_all=False)
    train_rows, val_rows = readable.split(setting.validation_split, setting.split_order, setting.seed)
    return readable.subset(train_rows), readable.subset(val_rows)


def dataset_summary(setting: Setting, index: FolderIndex, data: TrainingData, sample: int = 500) -> dict:
    """What ``dataset.json`` records about the training images.

    ``light_background`` is the share of (up to ``sample``, evenly spaced)
    training images whose border is lighter than their centre; ``predict``
    with ``invert="auto"`` uses it to recognise images of the other polarity.
    """
    picked = [index.paths[i] for i in np.linspace(0, len(index) - 1, min(sample, len(index))).astype(int)]
    decoded = decode_images(picked, setting)
    light = lighter_borders(decoded.images)
    return {
        "train_dir": str(index.root),
        "class_counts": index.class_counts(),
        "files": training_files(index),
        "train_images": data.train_count,
        "validation_images": data.validation_count,
        "ignored_files": len(index.ignored),
        "unreadable_files": [path for path, _ in data.failed],
        "light_background": float(np.mean(light)) if len(light) else 0.0,
    }


def seed_and_policy(setting: Setting) -> str:
    """Seed every generator from ``setting.seed`` and apply its dtype policy (before any model is built); the
    policy's name."""
    import keras

    keras.utils.set_random_seed(setting.seed)
    return dtype_policy.apply(setting.dtype_policy)
