"""Input pipelines: images on disk -> batches of ``(x, y)`` for ``model.fit``.

Both pipelines yield ``x`` float32 ``(batch, H, W, C)`` scaled to [0, 1] (the
one place pixels are rescaled) and ``y`` one-hot float32 ``(batch, classes)``,
and both hold out the same validation files (see :mod:`mnist_folders.data.folders`).

- ``tfdata`` (default): every file is decoded once, in parallel, into a uint8
  array held in memory (``N * H * W * C`` bytes: 47 MB for MNIST's 60,000
  images), or a file on disk, or only checked and decoded again per batch
  (the ``cache`` setting, :mod:`mnist_folders.data.image_cache`); a ``tf.data``
  pipeline reshuffles it each epoch (an order that depends on the seed and
  the epoch number only), batches, rescales and prefetches.
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
from .image_cache import CACHE_DIR, ImageRows, choose_mode, decode_rows
from ..errors import DatasetError
from .folders import FolderIndex, index_tree
from .images import SCALE, scale
from ..settings import Setting


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
    cache_note: str = ""  # where the decoded images are kept, and why (tfdata)

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


def reseed_augmentation(augment: keras.Sequential, seed: int, epoch: int) -> None:
    """Set each random layer's generator to a state of ``(seed, epoch, layer)`` only.

    A Keras random layer draws from its ``SeedGenerator`` state, which
    advances with every batch; restarting it per epoch makes an epoch's
    transforms independent of what ran before (a resumed run repeats them).
    """
    for position, layer in enumerate(augment.layers):
        generator = getattr(layer, "generator", None)
        if generator is not None:
            generator.state.assign(np.array([seed, epoch * 16 + position], dtype=np.int64))


@dataclass
class _Split:
    """The training and validation rows: ``train.rows(train_rows)`` are the training images, labels ``train_y``."""

    train: ImageRows
    train_rows: np.ndarray
    train_y: np.ndarray
    val: ImageRows
    val_rows: np.ndarray
    val_y: np.ndarray
    failed: list[tuple[str, str]]


def _decoded_split(setting: Setting, index: FolderIndex, mode: str, progress: bool) -> _Split:
    """Decode the training files for cache ``mode`` and hold out validation.

    Validation is ``setting.val_path``'s tree when set, else
    ``setting.validation_split`` of each class of the readable files (see
    :meth:`FolderIndex.split`).
    """
    folder = setting.model_path / CACHE_DIR
    decoded = decode_rows(index.paths, setting, mode, folder, progress, "decode")
    readable = index.subset(decoded.kept)
    if setting.val_path is not None:
        val_index = index_tree(setting.val_path, index.class_names, require_all=False)
        val = decode_rows(val_index.paths, setting, mode, folder, progress, "decode validation")
        return _Split(decoded, np.arange(decoded.count), readable.labels, val, np.arange(val.count),
                      val_index.labels[val.kept], sorted(decoded.failed + val.failed))
    train_idx, val_idx = readable.split(setting.validation_split, setting.split_order, setting.seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise DatasetError(
            f"{index.root}: {len(readable)} readable images are too few for validation_split={setting.validation_split}"
        )
    return _Split(decoded, train_idx, readable.labels[train_idx], decoded, val_idx, readable.labels[val_idx],
                  decoded.failed)


def _row_loader(rows: ImageRows, positions_to_rows: np.ndarray, shape: tuple[int, int, int]):
    """A tf.data map function: a batch of positions -> ``(batch, H, W, C)`` uint8 read from ``rows``."""

    def load(positions: tf.Tensor) -> tf.Tensor:
        images = tf.numpy_function(lambda p: rows.rows(positions_to_rows[p]), [positions], tf.uint8, stateful=False)
        images.set_shape((None, *shape))
        return images

    return load


def tfdata_training(setting: Setting, index: FolderIndex, progress: bool = True) -> TrainingData:
    """The ``tfdata`` pipeline: decode once (into memory, a file, or only to check), reshuffle (and augment)
    every epoch; see :mod:`mnist_folders.data.image_cache` for the ``cache`` modes."""
    mode, why = choose_mode(setting, len(index))
    split = _decoded_split(setting, index, mode, progress)
    train_y, val_y = split.train_y, split.val_y
    num_classes = len(index.class_names)
    augment = augmenter(setting) if setting.augments else None
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)

    def finish(ds: tf.data.Dataset, training: bool) -> tf.data.Dataset:
        ds = ds.map(lambda x, y: (scale(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        if training and augment is not None:
            # One batch at a time: the layers' random state is taken in batch order, so the
            # transforms are a function of (seed, epoch, batch), the same in every cache mode and on resume.
            ds = ds.map(lambda x, y: (augment(x, training=True), y))
        return ds.prefetch(tf.data.AUTOTUNE)

    def set_epoch(number: int) -> None:
        epoch.assign(number)
        if augment is not None:
            reseed_augmentation(augment, setting.seed, number)

    train_targets = tf.constant(_one_hot(train_y, num_classes))
    val_targets = _one_hot(val_y, num_classes)
    seed = tf.constant(setting.seed, tf.int64)

    def epoch_order(_: tf.Tensor) -> tf.Tensor:
        # The order is a function of (seed, epoch) only, so a run resumed at
        # epoch k sees the same batches as an uninterrupted one.
        return tf.random.experimental.stateless_shuffle(tf.range(len(train_y)), seed=tf.stack([seed, epoch]))

    steps = -(-len(train_y) // setting.batch_size)
    positions = (
        tf.data.Dataset.from_tensors(0)
        .map(epoch_order)
        .unbatch()
        .batch(setting.batch_size)
        .apply(tf.data.experimental.assert_cardinality(steps))  # lets Keras show "step k/steps"
    )
    if mode == "memory":
        train_images = tf.constant(split.train.rows(split.train_rows))
        train = positions.map(lambda idx: (tf.gather(train_images, idx), tf.gather(train_targets, idx)))
        validation = tf.data.Dataset.from_tensor_slices((split.val.rows(split.val_rows), val_targets))
        validation = validation.batch(setting.batch_size)
    else:  # rows read (disk) or decoded (none) per batch, in parallel, in order
        load_train = _row_loader(split.train, split.train_rows, setting.input_shape)
        train = positions.map(lambda idx: (load_train(idx), tf.gather(train_targets, idx)),
                              num_parallel_calls=tf.data.AUTOTUNE)
        load_val, val_targets = _row_loader(split.val, split.val_rows, setting.input_shape), tf.constant(val_targets)
        validation = tf.data.Dataset.range(len(val_y)).batch(setting.batch_size).map(
            lambda idx: (load_val(idx), tf.gather(val_targets, idx)), num_parallel_calls=tf.data.AUTOTUNE)
    return TrainingData(finish(train, True), finish(validation, False), train_y, len(val_y),
                        steps, split.failed, set_epoch=set_epoch, cache_note=why)


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
