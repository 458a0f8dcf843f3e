"""train, evaluate and predict through mnist_keras.py on real MNIST subsets."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import EPOCHS, REPO, run_cli

CLI = str(REPO / "mnist_keras.py")


def test_training_writes_a_self_describing_model_dir(trained_model):
    names = {p.name for p in trained_model.iterdir()}
    assert {"best.weights.h5", "best.json", "last.keras", "history.csv", "class_names.json", "setting.json"} <= names
    assert json.loads((trained_model / "class_names.json").read_text()) == [str(d) for d in range(10)]
    assert json.loads((trained_model / "setting.json").read_text())["model"] == "cnn_64_128_256"
    with (trained_model / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    best = json.loads((trained_model / "best.json").read_text())
    assert best["val_accuracy"] == pytest.approx(max(float(r["val_accuracy"]) for r in rows), abs=1e-6)


def test_evaluate_reports_accuracy_on_every_test_image(trained_model, small_data):
    result = run_cli(CLI, "--mode", "evaluate", "--data-dir", str(small_data), "--model-dir", str(trained_model),
                     "--quiet")
    report = json.loads((trained_model / "evaluation.json").read_text())
    test_files = len(list((small_data / "test").rglob("*.png")))
    assert report["images"] == test_files == sum(report["support"])
    assert report["accuracy"] >= 0.90, report["accuracy"]
    assert f"test accuracy: {report['accuracy']:.4f}" in result.stdout
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == test_files
    assert np.trace(confusion) / test_files == report["accuracy"]
    assert all(p is not None and p > 0.7 for p in report["precision"])
    assert "confusion matrix" in result.stdout


def test_predict_handles_junk_and_any_image_mode(trained_model, small_data, tmp_path):
    folder = tmp_path / "tmp"
    shutil.copytree(small_data / "tmp", folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    png = next((small_data / "train" / "3").iterdir()).read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    seven = Image.open(small_data / "tmp" / "sample_7.png")
    seven.convert("RGB").resize((90, 70)).save(folder / "seven_rgb.jpg", quality=95)
    nested = folder / "more"
    nested.mkdir()
    sixteen = (np.asarray(Image.open(small_data / "tmp" / "sample_1.png"), dtype=np.uint16) * 257)
    Image.fromarray(sixteen).save(nested / "one_16bit.png")
    Image.open(small_data / "tmp" / "sample_0.png").convert("P").save(nested / "zero_palette.gif")

    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(folder), "--quiet")
    lines = {line.split("\t")[0]: line.split("\t")[1:] for line in result.stdout.splitlines() if "\t" in line}
    assert len(lines) == 13
    correct = sum(lines[str(folder / f"sample_{d}.png")][0] == str(d) for d in range(10))
    assert correct >= 9
    assert lines[str(folder / "seven_rgb.jpg")][0] == "7"
    assert lines[str(nested / "one_16bit.png")][0] == "1"
    assert lines[str(nested / "zero_palette.gif")][0] == "0"
    for junk in ("notes.txt", "empty.png", "truncated.png"):
        assert f"skipped {folder / junk}" in result.stderr
    with (trained_model / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 13 and set(rows[0]) == {"path", "class", "confidence", "top3"}
    top3 = rows[0]["top3"].split(";")
    assert len(top3) == 3 and top3[0].split(":")[0] == rows[0]["class"]


def test_predict_on_an_empty_folder_says_so(trained_model, tmp_path):
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(tmp_path),
                     "--quiet", check=False)
    assert result.returncode == 1 and "no images to predict" in result.stdout


def test_evaluate_without_checkpoint_says_train_first(tmp_path, small_data):
    result = run_cli(CLI, "--mode", "evaluate", "--data-dir", str(small_data), "--model-dir",
                     str(tmp_path / "none"), check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "train first" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "none").exists()  # no silent retrain


def test_evaluate_rejects_unknown_test_classes(trained_model, small_data, tmp_path):
    test = tmp_path / "test"
    shutil.copytree(small_data / "test" / "1", test / "1")
    shutil.copytree(small_data / "test" / "2", test / "letter_a")
    result = run_cli(CLI, "--mode", "evaluate", "--test-dir", str(test), "--model-dir", str(trained_model),
                     check=False)
    assert result.returncode == 2 and "letter_a" in result.stderr and "Traceback" not in result.stderr


def test_train_on_missing_folder_is_one_line(tmp_path):
    result = run_cli(CLI, "--mode", "train", "--train-dir", str(tmp_path / "nope"), "--model-dir",
                     str(tmp_path / "m"), check=False)
    assert result.returncode == 2 and "nope: folder not found" in result.stderr and "Traceback" not in result.stderr


def test_resume_continues_from_the_next_epoch_with_the_idg_pipeline(small_data, tmp_path):
    model_dir = tmp_path / "m"
    common = ["--mode", "train", "--data-dir", str(small_data), "--model-dir", str(model_dir),
              "--pipeline", "idg", "--batch-size", "64", "--quiet"]
    run_cli(CLI, *common, "--epochs", "1")
    first = (model_dir / "history.csv").read_text().splitlines()
    result = run_cli(CLI, *common, "--epochs", "2", "--resume")
    assert "resuming after epoch 1 of 2" in result.stdout
    assert "Epoch 2/2" in result.stdout and "Epoch 1/2" not in result.stdout
    history = (model_dir / "history.csv").read_text().splitlines()
    assert history[:2] == first and [line.split(",")[0] for line in history[1:]] == ["1", "2"]
    result = run_cli(CLI, *common, "--epochs", "2", "--resume")  # already finished: nothing more runs
    assert "Epoch" not in result.stdout
    assert len((model_dir / "history.csv").read_text().splitlines()) == 3
