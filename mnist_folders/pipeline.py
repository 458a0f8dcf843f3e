"""Input pipelines: images on disk -> batches of ``(x, y)`` for ``model.fit``.

Both pipelines yield ``x`` float32 ``(batch, H, W, C)`` scaled to [0, 1] (the
one place pixels are rescaled) and ``y`` one-hot float32 ``(batch, classes)``,
and both hold out the same validation files (see :mod:`mnist_folders.folders`).

- ``tfdata`` (default): every file is decoded once, in parallel, into a uint8
  array held in memory (``N * H * W * C`` bytes: 47 MB for MNIST's 60,000
  images); a ``tf.data`` pipeline reshuffles it each epoch (an order that
  depends on the seed and the epoch number only), batches, rescales and
  prefetches.
- ``idg``: the classic ``ImageDataGenerator(rescale=1/255,
  validation_split=...)`` with ``flow_from_directory(subset=...)``, which
  re-reads and decodes every file every epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from .decoding import decode_images
from .errors import DatasetError
from .folders import FolderIndex, index_tree
from .images import SCALE, scale
from .settings import Setting


@dataclass
class TrainingData:
    """What ``model.fit`` needs, with the counts a user wants to see."""

    train: Any
    validation: Any
    train_labels: np.ndarray  # (train_count,) int labels of the training subset
    validation_count: int
    steps_per_epoch: int
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Called with the 0-based epoch before each epoch (the tfdata shuffle order depends on it).
    set_epoch: Callable[[int], Any] | None = None

    @property
    def train_count(self) -> int:
        return len(self.train_labels)


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[labels]


def augmenter(setting: Setting) -> keras.Sequential:
    """Keras random-transform layers for the Setting's rotation/shift/zoom ranges.

    Uncovered pixels are filled with 0 (black, the MNIST background), as the
    ``idg`` pipeline does with ``fill_mode="constant"``.
    """
    layers = keras.layers
    fill = dict(fill_mode="constant", fill_value=0.0, seed=setting.seed)
    steps = []
    if setting.rotation_range:
        steps.append(layers.RandomRotation(setting.rotation_range / 360.0, **fill))
    if setting.shift_range:
        steps.append(layers.RandomTranslation(setting.shift_range, setting.shift_range, **fill))
    if setting.zoom_range:
        steps.append(layers.RandomZoom(setting.zoom_range, setting.zoom_range, **fill))
    return keras.Sequential(steps, name="augmentation")


def _decoded_split(setting: Setting, index: FolderIndex, progress: bool):
    """Decode the training files and hold out validation: ``(train_x, train_y, val_x, val_y, failed)``.

    Validation is ``setting.val_path``'s tree when set, else
    ``setting.validation_split`` of each class (see :meth:`FolderIndex.split`).
    ``*_x`` are ``(N, H, W, C)`` uint8, ``*_y`` ``(N,)`` int labels.
    """
    decoded = decode_images(index.paths, setting, progress, "decode")
    readable = index.subset(decoded.kept)
    if setting.val_path is not None:
        val_index = index_tree(setting.val_path, index.class_names, require_all=False)
        val = decode_images(val_index.paths, setting, progress, "decode validation")
        return (decoded.images, readable.labels, val.images, val_index.labels[val.kept],
                sorted(decoded.failed + val.failed))
    train_idx, val_idx = readable.split(setting.validation_split, setting.split_order, setting.seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DatasetError(
            f"{index.root}: {len(readable)} readable images are too few for validation_split={setting.validation_split}"
        )
    return (decoded.images[train_idx], readable.labels[train_idx], decoded.images[val_idx],
            readable.labels[val_idx], decoded.failed)


def tfdata_training(setting: Setting, index: FolderIndex, progress: bool = True) -> TrainingData:
    """The ``tfdata`` pipeline: decode once, keep in memory, reshuffle (and augment) every epoch."""
    train_x, train_y, val_x, val_y, failed = _decoded_split(setting, index, progress)
    num_classes = len(index.class_names)
    augment = augmenter(setting) if setting.augments else None
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)

    def finish(ds: tf.data.Dataset, training: bool) -> tf.data.Dataset:
        ds = ds.map(lambda x, y: (scale(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        if training and augment is not None:
            ds = ds.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    train_images = tf.constant(train_x)
    train_targets = tf.constant(_one_hot(train_y, num_classes))
    seed = tf.constant(setting.seed, tf.int64)

    def epoch_order(_: tf.Tensor) -> tf.Tensor:
        # The order is a function of (seed, epoch) only, so a run resumed at
        # epoch k sees the same batches as an uninterrupted one.
        return tf.random.experimental.stateless_shuffle(tf.range(len(train_y)), seed=tf.stack([seed, epoch]))

    steps = -(-len(train_y) // setting.batch_size)
    train = (
        tf.data.Dataset.from_tensors(0)
        .map(epoch_order)
        .unbatch()
        .batch(setting.batch_size)
        .apply(tf.data.experimental.assert_cardinality(steps))  # lets Keras show "step k/steps"
        .map(lambda idx: (tf.gather(train_images, idx), tf.gather(train_targets, idx)))
    )
    validation = tf.data.Dataset.from_tensor_slices((val_x, _one_hot(val_y, num_classes))).batch(setting.batch_size)
    return TrainingData(finish(train, True), finish(validation, False), train_y, len(val_y),
                        steps, failed, set_epoch=epoch.assign)


def idg_training(setting: Setting, index: FolderIndex, progress: bool = False) -> TrainingData:
    """The ``idg`` pipeline: ``ImageDataGenerator`` training and validation iterators.

    With ``split_order="sorted"`` and no ``val_dir`` this is the classic
    ``flow_from_directory(subset=...)``; otherwise ``flow_from_dataframe``
    over the explicit file lists of :meth:`FolderIndex.split` (or the
    ``val_dir`` tree), so both pipelines hold out the same files. Every
    file is test-decoded first: Keras would otherwise stop with a traceback
    at the first unreadable file, possibly hours into training.

    Raises:
        DatasetError: unreadable image files (the ``tfdata`` pipeline skips them instead).
    """
    val_index = index_tree(setting.val_path, index.class_names, require_all=False) if setting.val_path else None
    checked = index.paths + (val_index.paths if val_index else [])
    failed = decode_images(checked, setting, progress, "check images").failed
    if failed:
        path, reason = failed[0]
        raise DatasetError(
            f"{path}: {reason} ({len(failed)} unreadable files); remove them, "
            "or use pipeline=tfdata, which skips and lists them"
        )
    # Deprecated in Keras 3 and kept on purpose: it is the classic tutorial
    # pipeline, our reference. `keras.preprocessing.image` no longer exports it.
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    split = None if val_index else setting.validation_split
    plain = ImageDataGenerator(rescale=SCALE, validation_split=split or 0.0)
    # A second generator for the training subset only: validation is never augmented.
    augmenting = ImageDataGenerator(
        rescale=SCALE,
        validation_split=split or 0.0,
        rotation_range=setting.rotation_range,
        width_shift_range=setting.shift_range,
        height_shift_range=setting.shift_range,
        zoom_range=setting.zoom_range,
        fill_mode="constant",
        cval=0.0,
    )
    trainer = augmenting if setting.augments else plain
    common = dict(
        target_size=(setting.image_height, setting.image_width),
        color_mode=setting.color_mode,
        classes=index.class_names,
        class_mode="categorical",
        batch_size=setting.batch_size,
        seed=setting.seed,
        interpolation="bilinear",
    )
    if setting.split_order == "sorted" and val_index is None:
        train = trainer.flow_from_directory(directory=str(index.root), subset="training", shuffle=True, **common)
        validation = plain.flow_from_directory(directory=str(index.root), subset="validation", shuffle=False,
                                               **common)
    else:
        if val_index is None:
            train_idx, val_idx = index.split(setting.validation_split, setting.split_order, setting.seed)
            train_files, val_files = index.subset(train_idx), index.subset(val_idx)
        else:
            train_files, val_files = index, val_index
        train = trainer.flow_from_dataframe(_frame(train_files), shuffle=True, **common)
        validation = plain.flow_from_dataframe(_frame(val_files), shuffle=False, **common)
    return TrainingData(train, validation, np.asarray(train.classes), validation.samples, len(train))


def _frame(index: FolderIndex):
    """A pandas DataFrame of absolute file paths and class names, as ``flow_from_dataframe`` takes it."""
    import pandas as pd

    return pd.DataFrame({"filename": [os.path.abspath(p) for p in index.paths],
                         "class": [index.class_names[label] for label in index.labels]})


def training_data(setting: Setting, index: FolderIndex, progress: bool = True) -> TrainingData:
    """The training and validation data of ``setting.pipeline``."""
    if setting.pipeline == "idg":
        return idg_training(setting, index, progress)
    return tfdata_training(setting, index, progress)
