"""Decoding files into arrays: worker processes and the background thread agree."""

from __future__ import annotations

import shutil

import numpy as np

from mnist_folders.data import decoding
from mnist_folders.settings import Setting


def test_worker_processes_and_thread_decode_the_same_images(small_data, tmp_path, monkeypatch):
    sources = sorted((small_data / "train").rglob("*.png"))[:300]
    paths = []
    for i, source in enumerate(sources):
        paths.append(str(tmp_path / f"{i:03d}.png"))
        shutil.copy(source, paths[-1])
    (tmp_path / "150.png").write_bytes(b"not a png")  # one unreadable file in the middle
    setting = Setting(color_mode="grayscale", image_height=28, image_width=28, data_dir=str(small_data))

    threaded = decoding.decode_images(paths, setting)  # 300 files: below PARALLEL_MIN_FILES, one thread
    monkeypatch.setattr(decoding, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(decoding, "CHUNK_BYTES", 64 * 28 * 28)  # several chunks per worker
    in_processes = decoding.decode_images(paths, setting)

    assert threaded.images.shape == (299, 28, 28, 1) and threaded.images.dtype == np.uint8
    np.testing.assert_array_equal(threaded.images, in_processes.images)
    np.testing.assert_array_equal(threaded.kept, in_processes.kept)
    assert 150 not in threaded.kept
    assert [path for path, _ in threaded.failed] == [path for path, _ in in_processes.failed] == [paths[150]]
