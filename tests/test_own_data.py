"""Retraining on non-MNIST folder datasets by settings only, built here from real MNIST pixels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from conftest import MNIST, REPO, run_cli
from mnist_folders.data.idx import load_split
from mnist_folders.settings import Setting, read_toml

CLI = str(REPO / "mnist_keras.py")
WORDS = {0: "zéro", 1: "un trait", 3: "trois", 7: "sept"}  # class folders named by words


@pytest.fixture(scope="module")
def digits():
    return load_split(MNIST, "train")


def _recolour(digit: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A 28x28 digit as an RGB picture: random stroke and background colours, another size."""
    ink, paper = rng.integers(150, 256, 3), rng.integers(0, 60, 3)
    alpha = (digit.astype(np.float32) / 255.0)[..., None]
    rgb = (alpha * ink + (1 - alpha) * paper).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").resize(size, Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def words_data(digits, tmp_path_factory):
    """4 classes named by words, RGB JPEG/PNG of assorted sizes, upper-case extensions, junk files."""
    images, labels = digits
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("words")
    for split, (start, count) in {"train": (0, 250), "test": (30000, 60), "tmp": (40000, 3)}.items():
        for digit, word in WORDS.items():
            picks = np.flatnonzero(labels == digit)
            picks = picks[picks >= start][:count]
            folder = root / split / word if split != "tmp" else root / split
            folder.mkdir(parents=True, exist_ok=True)
            for k, i in enumerate(picks):
                size = tuple(int(v) for v in rng.integers(20, 60, 2))
                ext = [".jpg", ".JPEG", ".png", ".PNG"][k % 4]
                name = f"{digit}_{k}{ext}" if split == "tmp" else f"{k:04d}{ext}"
                _recolour(images[i], rng, size).save(folder / name, quality=92)
    (root / "train" / "trois" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "train" / "sept" / "notes.txt").write_text("drawn by hand")
    (root / "train" / "zéro" / ".hidden.png").write_bytes(b"not really a png")
    config = root / "words.toml"
    config.write_text(
        f'data_dir = "{root}"\nmodel_dir = "{root / "model"}"\nimage_height = 32\nimage_width = 32\n'
        'color_mode = "rgb"\nresize_method = "pad"\nepochs = 3\nmodel = "cnn_32_64_64"\nbatch_size = 32\n',
        encoding="utf-8",
    )
    return root, config


@pytest.fixture(scope="module")
def words_training(words_data):
    """The words dataset trained by its config through the CLI: the CompletedProcess."""
    _, config = words_data
    return run_cli(CLI, "--mode", "train", "--config", str(config), "--quiet")


def test_words_dataset_trains_evaluates_and_predicts_by_config(words_data, words_training):
    root, config = words_data
    train = words_training
    assert "1000 images in 4 classes" in train.stdout
    assert "sept: 250, trois: 250, un trait: 250, zéro: 250" in train.stdout
    assert "ignored 3 non-image files" in train.stdout
    model_dir = root / "model"
    assert json.loads((model_dir / "class_names.json").read_text(encoding="utf-8")) == sorted(WORDS.values())
    assert json.loads((model_dir / "setting.json").read_text(encoding="utf-8"))["color_mode"] == "rgb"

    evaluate = run_cli(CLI, "--mode", "evaluate", "--config", str(config), "--quiet")
    report = json.loads((model_dir / "evaluation.json").read_text(encoding="utf-8"))
    assert report["images"] == 240 and report["support"] == [60, 60, 60, 60]
    assert report["accuracy"] > 0.6, report["accuracy"]  # chance: 0.25
    assert "un trait" in evaluate.stdout

    # The model directory alone is enough to predict, in the dataset's own class names.
    predict = run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(root / "tmp"),
                      "--quiet")
    answers = dict(line.split("\t")[:2] for line in predict.stdout.splitlines() if "\t" in line)
    assert len(answers) == 12 and set(answers.values()) <= set(WORDS.values())
    right = sum(answers[str(root / "tmp" / name)] == WORDS[int(name.split("_")[0])]
                for name in (p.name for p in (root / "tmp").iterdir()))
    assert right >= 8


def test_evaluate_on_a_subset_of_classes_says_so(words_data, words_training, tmp_path):
    root, config = words_data
    import shutil

    shutil.copytree(root / "test" / "sept", tmp_path / "sept")
    result = run_cli(CLI, "--mode", "evaluate", "--config", str(config), "--test-dir", str(tmp_path), "--quiet")
    assert "evaluated on a subset" in result.stdout and "zéro" in result.stdout
    report = json.loads((root / "model" / "evaluation.json").read_text(encoding="utf-8"))
    assert report["images"] == 60 and report["missing_classes"] == ["trois", "un trait", "zéro"]


def test_unbalanced_binary_dataset_with_class_weights(digits, tmp_path):
    images, labels = digits
    sizes = {"zero": (0, 400), "one": (1, 80)}
    for name, (digit, count) in sizes.items():
        folder = tmp_path / "train" / name
        folder.mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(labels == digit)[:count]):
            Image.fromarray(images[i]).save(folder / f"{k}.bmp")
    result = run_cli(CLI, "--mode", "train", "--train-dir", str(tmp_path / "train"), "--model-dir",
                     str(tmp_path / "m"), "--class-weight", "balanced", "--epochs", "2", "--model", "cnn_64_128_256",
                     "--quiet")
    assert "one: 80, zero: 400" in result.stdout
    assert "class weights: one: 3, zero: 0.6" in result.stdout
    assert json.loads((tmp_path / "m" / "class_names.json").read_text()) == ["one", "zero"]
    best = json.loads((tmp_path / "m" / "best.json").read_text())
    assert best["val_accuracy"] > 0.9
    # The weights reach the loss: the same seeded run without them trains differently (same data, same
    # batches, same initial weights; only the per-class loss weights differ).
    run_cli(CLI, "--mode", "train", "--train-dir", str(tmp_path / "train"), "--model-dir", str(tmp_path / "n"),
            "--class-weight", "none", "--epochs", "2", "--model", "cnn_64_128_256", "--quiet")
    weighted, plain = (_history_column(tmp_path / name / "history.csv", "loss") for name in "mn")
    assert len(weighted) == len(plain) == 2 and all(abs(w - p) > 1e-3 for w, p in zip(weighted, plain)), (
        weighted, plain)


def _history_column(path, column: str) -> list[float]:
    with open(path, newline="", encoding="utf-8") as f:
        return [float(row[column]) for row in csv.DictReader(f)]


def test_auto_invert_reads_dark_on_light_digits(trained_model, tmp_path):
    test_images, test_labels = load_split(MNIST, "test")
    for i in range(40):
        Image.fromarray(255 - test_images[i]).save(tmp_path / f"{i:02d}_{test_labels[i]}.png")

    def answers(*flags: str) -> dict[str, str]:
        out = run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(tmp_path),
                      "--quiet", *flags).stdout
        return dict(line.split("\t")[:2] for line in out.splitlines() if "\t" in line)

    auto, always, never = answers(), answers("--invert", "true"), answers("--invert", "false")
    assert len(auto) == 40 and auto == always  # auto inverted every one of these dark-on-light digits
    accuracy = np.mean([name == path.rsplit("_", 1)[1][0] for path, name in auto.items()])
    assert accuracy >= 0.85 and sum(auto[path] != never[path] for path in auto) >= 10, (accuracy, never)
    assert json.loads((trained_model / "dataset.json").read_text())["light_background"] == 0.0


def test_shipped_configs_are_valid():
    mnist = Setting.from_sources(REPO / "configs" / "mnist.toml")
    assert mnist == Setting()
    photos = read_toml(REPO / "configs" / "photos_example.toml")
    example = Setting.from_dict(photos)
    assert (example.image_height, example.image_width, example.resize_method) == (96, 96, "pad")
    assert (example.model, example.color_mode, example.epochs) == ("auto", "auto", "auto")
