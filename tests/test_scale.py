"""Beyond memory and one device: the three image caches give the same batches, auto picks by size,
evaluate keeps only what its picture needs, and mirrored training matches one device."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import REPO, run_cli
from mnist_folders import image_cache
from mnist_folders.folders import index_tree
from mnist_folders.settings import Setting

CLI = str(REPO / "mnist_keras.py")


@pytest.fixture(scope="module")
def tree(small_data, tmp_path_factory):
    """300 training images of 3 classes with one unreadable file, RGB-recoloured and resized to 20x24."""
    from PIL import Image

    root = tmp_path_factory.mktemp("scale") / "train"
    for digit in ("1", "4", "7"):
        (root / digit).mkdir(parents=True)
        for k, path in enumerate(sorted((small_data / "train" / digit).iterdir())[:100]):
            gray = np.asarray(Image.open(path))
            Image.fromarray(np.stack([gray, gray // 2, 255 - gray], axis=-1)).resize((20, 24)).save(
                root / digit / f"{k:03d}.png")
    (root / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _batches(setting, index, epoch, count=3):
    from mnist_folders.pipeline import training_data

    data = training_data(setting, index, progress=False)
    data.set_epoch(epoch)
    train = [(x.numpy(), y.numpy()) for x, y in data.train.take(count)]
    validation = [(x.numpy(), y.numpy()) for x, y in data.validation]
    return data, train, validation


def test_the_three_caches_serve_the_same_batches(tree, tmp_path):
    base = Setting(train_dir=str(tree), model_dir=str(tmp_path / "m"), image_height=24, image_width=20,
                   color_mode="rgb", batch_size=32, rotation_range=10.0, model="cnn_small")
    index = index_tree(tree, ["1", "4", "7"])
    results = {mode: _batches(base.replace(cache=mode), index, epoch=2) for mode in ("memory", "disk", "none")}
    memory = results["memory"]
    assert memory[0].failed == [(str(tree / "4" / "broken.png"), memory[0].failed[0][1])]
    for mode in ("disk", "none"):
        data, train, validation = results[mode]
        assert data.failed == memory[0].failed and data.cache_note.startswith(f"cache={mode}")
        assert np.array_equal(data.train_labels, memory[0].train_labels)
        for (x, y), (mx, my) in zip(train + validation, memory[1] + memory[2]):
            assert np.array_equal(x, mx) and np.array_equal(y, my)  # augmented the same way too
    other_epoch = _batches(base.replace(cache="disk"), index, epoch=3)[1]
    assert not np.array_equal(other_epoch[0][1], memory[1][0][1])  # another epoch, another order
    assert len(list((tmp_path / "m" / ".cache").glob("*.u8"))) == 1  # one file, reused by the second disk run


def test_auto_keeps_small_data_in_memory_and_large_data_on_disk(monkeypatch):
    setting = Setting(image_height=224, image_width=224, color_mode="rgb")
    monkeypatch.setattr(image_cache, "available_memory", lambda: 16 * 2**30)
    assert image_cache.choose_mode(setting, 20_000)[0] == "memory"  # 2.8 GiB decoded
    mode, why = image_cache.choose_mode(setting, 200_000)  # 28 GiB
    assert mode == "disk" and why == "cache=auto -> disk: 28.0 GiB decoded is over 25% of the 16.0 GiB available"
    assert image_cache.choose_mode(setting.replace(cache="none"), 200_000)[0] == "none"


def test_available_memory_reads_meminfo(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:       24576000 kB\nMemAvailable:   20000000 kB\n")
    assert image_cache.available_memory(tmp_path / "meminfo") == 20000000 * 1024
    assert image_cache.available_memory(tmp_path / "missing") is None


def test_mirrored_over_two_logical_cpus_matches_one_device(small_data, tmp_path):
    """Same global batch, same data: the replicas' averaged gradients are one device's, up to float
    summation order, so after 2 epochs the validation accuracy differs by rounding only."""
    data = tmp_path / "data"
    for digit in range(10):
        (data / "train" / str(digit)).mkdir(parents=True)
        for path in sorted((small_data / "train" / str(digit)).iterdir())[:80]:
            shutil.copy(path, data / "train" / str(digit))
    accuracy = {}
    for strategy in ("one_device", "mirrored"):
        model_dir = tmp_path / strategy
        result = run_cli(CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir),
                         "--model", "cnn_small", "--epochs", "2", "--batch-size", "32", "--strategy", strategy,
                         "--quiet")
        assert ("mirrored over 2 logical CPU devices" in result.stdout) == (strategy == "mirrored")
        accuracy[strategy] = json.loads((model_dir / "best.json").read_text())["val_accuracy"]
    assert accuracy["mirrored"] == pytest.approx(accuracy["one_device"], abs=0.04)
    assert accuracy["mirrored"] > 0.5  # it learned: 10 classes, chance is 0.1
