"""Augmentation changes training batches only, in both pipelines."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_folders.data.folders import index_tree
from mnist_folders.data.pipeline import idg_training, tfdata_training
from mnist_folders.settings import Setting


def test_tfdata_augments_training_but_not_validation(small_data):
    plain = Setting(color_mode="grayscale", image_height=28, image_width=28, model="cnn_64_128_256", batch_size=128, data_dir=str(small_data))
    augmented = plain.replace(rotation_range=15.0, shift_range=0.1, zoom_range=0.1)
    index = index_tree(plain.train_path)
    a = tfdata_training(plain, index, progress=False)
    b = tfdata_training(augmented, index, progress=False)
    xa, ya = next(iter(a.train))
    xb, yb = next(iter(b.train))
    np.testing.assert_array_equal(ya.numpy(), yb.numpy())  # same shuffle, same images...
    assert np.abs(xa.numpy() - xb.numpy()).mean() > 0.01  # ...moved around
    np.testing.assert_array_equal(next(iter(a.validation))[0].numpy(), next(iter(b.validation))[0].numpy())


def test_idg_augments_training_but_not_validation(small_data):
    plain = Setting(color_mode="grayscale", image_height=28, image_width=28, model="cnn_64_128_256", batch_size=128,
                    data_dir=str(small_data), pipeline="idg")
    augmented = plain.replace(rotation_range=15.0, shift_range=0.1)
    index = index_tree(plain.train_path)
    a, b = idg_training(plain, index), idg_training(augmented, index)
    # Drawing a batch runs the random transforms (scipy.ndimage inside Keras); the shuffle is seeded alike.
    (xa, ya), (xb, yb) = a.train[0], b.train[0]
    np.testing.assert_array_equal(ya, yb)  # same shuffle, same images...
    assert xb.shape == (128, 28, 28, 1) and 0.0 <= xb.min() and xb.max() <= 1.0
    assert np.abs(xa - xb).mean() > 0.01  # ...moved around
    # The rescale is applied to both: plain batches hold MNIST's 0-1 pixels, not 0-255.
    assert xa.max() == 1.0 and xa.mean() == pytest.approx(0.13, abs=0.03)
    np.testing.assert_array_equal(a.validation[0][0], b.validation[0][0])
    np.testing.assert_array_equal(a.validation[0][1], b.validation[0][1])
