"""Both input pipelines see the same files, the same split and the same pixels."""

from __future__ import annotations

import os

import numpy as np

from mnist_folders.folders import index_tree
from mnist_folders.pipeline import idg_training, tfdata_training
from mnist_folders.settings import Setting


def test_tfdata_and_idg_hold_out_the_same_validation_files(small_data):
    setting = Setting(data_dir=str(small_data), batch_size=64)
    index = index_tree(setting.train_path)
    assert index.class_names == [str(d) for d in range(10)]
    idg = idg_training(setting, index)
    tfd = tfdata_training(setting, index, progress=False)
    train_idx, val_idx = index.split(setting.validation_split)

    relative = lambda i: os.path.relpath(index.paths[i], index.root)  # noqa: E731
    assert idg.validation.filenames == [relative(i) for i in val_idx]
    assert sorted(idg.train.filenames) == sorted(relative(i) for i in train_idx)
    assert (tfd.train_count, tfd.validation_count) == (idg.train_count, idg.validation_count)
    assert tfd.train_count + tfd.validation_count == len(index)
    # Validation is the first 20 % of each class's sorted files.
    zeros = [relative(i) for i in val_idx if index.labels[i] == 0]
    assert zeros == sorted(zeros) and len(zeros) == int(0.2 * np.sum(index.labels == 0))

    # Unshuffled validation batches are identical: same order, same scaling, same labels.
    x_idg, y_idg = idg.validation[0]
    x_tfd, y_tfd = next(iter(tfd.validation))
    assert x_tfd.shape == (64, 28, 28, 1) and x_tfd.dtype == "float32"
    np.testing.assert_allclose(x_tfd.numpy(), x_idg, atol=1e-6)
    np.testing.assert_array_equal(y_tfd.numpy(), y_idg)
    assert 0.0 <= float(x_idg.min()) and float(x_idg.max()) <= 1.0


def test_tfdata_order_depends_on_seed_and_epoch_only(small_data):
    setting = Setting(data_dir=str(small_data), batch_size=256)
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
    # Every training image is seen exactly once per epoch.
    seen = np.concatenate([y.numpy().argmax(axis=1) for _, y in data.train])
    assert np.bincount(seen).tolist() == np.bincount(index.labels[index.split(0.2)[0]]).tolist()
