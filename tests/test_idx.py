"""IDX parsing on the real MNIST files, and rejection of damaged ones."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from conftest import MNIST
from mnist_folders.errors import IdxFormatError
from mnist_folders.data.idx import load_split, read_idx, read_images, read_labels

# From data/mnist/README.md.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FIRST_TRAIN_LABELS = [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_train_and_test_splits_match_the_published_facts():
    images, labels = load_split(MNIST, "train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == TRAIN_COUNTS
    assert labels[:10].tolist() == FIRST_TRAIN_LABELS
    test_images, test_labels = load_split(MNIST, "test")
    assert test_images.shape == (10000, 28, 28)
    assert np.bincount(test_labels).tolist() == TEST_COUNTS
    # Real digits: dark background, bright strokes.
    assert images[:, 0, 0].max() == 0 and images.max() == 255


def test_raw_file_reads_the_same_as_gzipped(tmp_path):
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    assert np.array_equal(read_labels(raw), read_labels(MNIST / "t10k-labels-idx1-ubyte.gz"))


@pytest.fixture
def labels_bytes() -> bytes:
    return gzip.decompress((MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: b[:-10], "truncated"),
        (lambda b: b + b"\0\0", "trailing bytes"),
        (lambda b: b"\x00\x00\x08\x03" + b[4:], "wrong magic number 2051, expected 2049"),
        (lambda b: b"\x00\x00", "too short"),
    ],
)
def test_damaged_label_file_is_rejected_naming_the_file(tmp_path, labels_bytes, damage, message):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(damage(labels_bytes))
    with pytest.raises(IdxFormatError, match=message) as info:
        read_labels(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_is_rejected(tmp_path):
    data = bytearray((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(IdxFormatError, match="corrupt gzip"):
        read_images(path)


def test_truncated_gzip_is_rejected(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes((MNIST / "t10k-images-idx3-ubyte.gz").read_bytes()[:100_000])
    with pytest.raises(IdxFormatError, match="corrupt gzip"):
        read_images(path)


def test_checksum_mismatch_is_rejected(tmp_path, labels_bytes):
    source = tmp_path / "mnist"
    shutil.copytree(MNIST, source)
    changed = bytearray(labels_bytes)
    changed[100] = (changed[100] + 1) % 10  # still a valid IDX file, with one label altered
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(changed)))
    with pytest.raises(IdxFormatError, match="checksum mismatch"):
        load_split(source, "test")
    assert read_idx(source / "t10k-labels-idx1-ubyte.gz", verify=False)[100 - 8] == changed[100]  # 8-byte header


def test_image_and_label_count_mismatch_is_rejected(tmp_path, labels_bytes):
    source = tmp_path / "mnist"
    source.mkdir()
    shutil.copy(MNIST / "t10k-images-idx3-ubyte.gz", source)
    shorter = (9999).to_bytes(4, "big")
    (source / "t10k-labels-idx1-ubyte").write_bytes(labels_bytes[:4] + shorter + labels_bytes[8:-1])
    with pytest.raises(IdxFormatError, match="9999 labels but .* 10000 images"):
        load_split(source, "test")
