"""Both input pipelines see the same files, the same split and the same pixels."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mnist_folders.data.folders import index_tree
from mnist_folders.data.pipeline import idg_training, tfdata_training
from mnist_folders.settings import Setting


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_tfdata_and_idg_hold_out_the_same_validation_files(order, small_data):
    setting = Setting(color_mode="grayscale", image_height=28, image_width=28, data_dir=str(small_data), batch_size=64, split_order=order, model="cnn_64_128_256")
    index = index_tree(setting.train_path)
    assert index.class_names == [str(d) for d in range(10)]
    idg = idg_training(setting, index)
    tfd = tfdata_training(setting, index, progress=False)
    train_idx, val_idx = index.split(setting.validation_split, order, setting.seed)

    absolute = lambda name: os.path.normpath(os.path.join(index.root, name))  # noqa: E731
    assert [absolute(f) for f in idg.validation.filenames] == [os.path.abspath(index.paths[i]) for i in val_idx]
    assert sorted(absolute(f) for f in idg.train.filenames) == sorted(os.path.abspath(index.paths[i]) for i in train_idx)
    assert (tfd.train_count, tfd.validation_count) == (idg.train_count, idg.validation_count)
    assert tfd.train_count + tfd.validation_count == len(index)
    zeros = [i for i in val_idx if index.labels[i] == 0]
    assert len(zeros) == int(0.2 * np.sum(index.labels == 0))
    first = np.flatnonzero(index.labels == 0)[: len(zeros)]
    # sorted: the first 20 % of each class's files, as ImageDataGenerator; shuffled: spread over the class.
    assert (list(zeros) == list(first)) == (order == "sorted")

    # Unshuffled validation batches are identical: same order, same scaling, same labels.
    x_idg, y_idg = idg.validation[0]
    x_tfd, y_tfd = next(iter(tfd.validation))
    assert x_tfd.shape == (64, 28, 28, 1) and x_tfd.dtype == "float32"
    np.testing.assert_allclose(x_tfd.numpy(), x_idg, atol=1e-6)
    np.testing.assert_array_equal(y_tfd.numpy(), y_idg)
    assert 0.0 <= float(x_idg.min()) and float(x_idg.max()) <= 1.0


def test_tfdata_order_depends_on_seed_and_epoch_only(small_data):
    setting = Setting(color_mode="grayscale", image_height=28, image_width=28, data_dir=str(small_data), batch_size=256)
    index = index_tree(setting.train_path)
    data = tfdata_training(setting, index, progress=False)
    first_labels = lambda d: next(iter(d.train))[1].numpy().argmax(axis=1)  # noqa: E731
    epoch0 = first_labels(data)
    data.set_epoch(1)
    epoch1 = first_labels(data)
    assert not np.array_equal(epoch0, epoch1)  # a new order every epoch
    again = tfdata_training(setting, index, progress=False)  # e.g. a resumed run
    again.set_epoch(1)
    np.testing.assert_array_equal(first_labels(again), epoch1)
    # Every training image is seen exactly once per epoch: as many distinct images as training files.
    batches = [(x.numpy(), y.numpy().argmax(axis=1)) for x, y in data.train]
    seen = np.concatenate([labels for _, labels in batches])
    train_idx = index.split(0.2, "shuffled", setting.seed)[0]
    assert np.bincount(seen).tolist() == np.bincount(index.labels[train_idx]).tolist()
    distinct = {row.tobytes() for x, _ in batches for row in x}
    assert len(seen) == len(distinct) == len(train_idx)
    # Another seed, another order.
    other = tfdata_training(Setting(color_mode="grayscale", image_height=28, image_width=28, data_dir=str(small_data), batch_size=256, seed=7), index, progress=False)
    assert not np.array_equal(first_labels(other), epoch0)
