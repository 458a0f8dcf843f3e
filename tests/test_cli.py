"""train, evaluate and predict through mnist_keras.py on real MNIST subsets."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import EPOCHS, REPO, run_cli, run_cli_watching_imports
from mnist_folders import artifacts
from mnist_folders.networks import saved
from mnist_folders.networks.saved import load_trained_model
from mnist_folders.networks.inference import predict_probabilities

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


def _independent_predictions(model_dir, test_root):
    """True and predicted labels and the loss, computed here without the evaluation module.

    The forward pass is the library's (same batches, so the same rounding under bfloat16).
    """
    import keras

    model, setting, class_names = load_trained_model(model_dir)
    paths = sorted(test_root.rglob("*.png"))
    images = np.stack([np.asarray(Image.open(p), dtype=np.uint8)[..., None] for p in paths])
    probabilities = predict_probabilities(model, images)
    true = np.array([class_names.index(p.parent.name) for p in paths])
    loss = float(np.mean(keras.losses.categorical_crossentropy(np.eye(len(class_names))[true], probabilities)))
    return true, probabilities.argmax(axis=1), loss


def test_evaluate_reports_accuracy_on_every_test_image(trained_model, small_data, tmp_path):
    test = tmp_path / "test"
    shutil.copytree(small_data / "test", test)
    (test / "3" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    result = run_cli(CLI, "--mode", "evaluate", "--test-dir", str(test), "--model-dir", str(trained_model),
                     "--quiet")
    report = json.loads((trained_model / "evaluation.json").read_text())
    assert report["skipped"] == [[str(test / "3" / "corrupt.png"), report["skipped"][0][1]]]
    (test / "3" / "corrupt.png").unlink()
    true, predicted, loss = _independent_predictions(trained_model, test)
    assert report["images"] == len(true) == 5000
    # Rows are true classes, columns predicted classes.
    expected = np.zeros((10, 10), dtype=int)
    np.add.at(expected, (true, predicted), 1)
    confusion = np.array(report["confusion"])
    assert np.array_equal(confusion, expected)
    assert report["precision"] == pytest.approx(list(np.diag(expected) / expected.sum(axis=0)))
    assert report["recall"] == pytest.approx(list(np.diag(expected) / expected.sum(axis=1)))
    assert report["support"] == expected.sum(axis=1).tolist()
    assert report["accuracy"] == pytest.approx(np.mean(true == predicted)) and report["accuracy"] >= 0.9
    assert report["balanced_accuracy"] == pytest.approx(np.mean(np.diag(expected) / expected.sum(axis=1)))
    assert report["loss"] == pytest.approx(loss, rel=1e-4)
    assert f"test accuracy: {report['accuracy']:.4f}" in result.stdout and "confusion matrix" in result.stdout


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
    with (trained_model / "predictions.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 13
    assert list(rows[0]) == ["path", "class", "confidence", "top2", "top2_confidence", "top3", "top3_confidence"]
    for row in rows:  # the CSV says what was printed; the top-k is sorted and holds other classes
        printed_class, printed_confidence = lines[row["path"]]
        assert row["class"] == printed_class and float(row["confidence"]) == pytest.approx(float(printed_confidence), abs=1e-4)
        scores = [float(row["confidence"]), float(row["top2_confidence"]), float(row["top3_confidence"])]
        assert scores == sorted(scores, reverse=True) and sum(scores) <= 1.0 + 1e-5
        assert len({row["class"], row["top2"], row["top3"]}) == 3


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


@pytest.mark.parametrize("mode", ["train", "lr_find", "check"])
def test_usage_errors_come_before_tensorflow_loads(tmp_path, small_data, mode):
    # The common mistakes (a wrong path, a tree without classes, an image size the model cannot take) are
    # said in one line without importing TensorFlow (seconds of start-up), and leave no model directory.
    model_dir = str(tmp_path / "m")
    for args, message in [(["--data-dir", str(tmp_path / "nope")], "nope/train: folder not found"),
                          (["--train-dir", str(small_data / "tmp")], "tmp: no class sub-folders"),
                          (["--data-dir", str(small_data), "--model", "cnn_64_128_256", "--image-height", "17",
                           "--image-width", "28"],
                           "image size 17x28 is too small for model 'cnn_64_128_256'; the smallest that works is "
                           "18x18")]:
        if mode == "check" and "--image-height" in args:
            continue  # check decodes at any size
        result, tensorflow = run_cli_watching_imports(CLI, "--mode", mode, "--model-dir", model_dir, *args,
                                                      check=False)
        assert result.returncode == 2 and result.stderr.startswith("error: ")
        assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
        assert not tensorflow and not (tmp_path / "m").exists()


def test_every_model_states_its_smallest_input():
    from mnist_folders.errors import SettingError
    from mnist_folders.registry import MODELS
    from mnist_folders.networks.build import build_model, smallest_input

    for name, spec in MODELS.items():
        assert spec.min_size == smallest_input(name, 3, 10), name
    # Below it, a build (the path of model = "auto") says the same as the settings check.
    with pytest.raises(SettingError, match=r"^image size 17x40 is too small for model 'cnn_64_128_256'; the smallest "
                                           r"that works is 18x18$"):
        build_model("cnn_64_128_256", (17, 40, 1), 10)


def test_resume_continues_from_the_next_epoch_with_the_idg_pipeline(small_data, tmp_path):
    model_dir = tmp_path / "m"
    common = ["--mode", "train", "--data-dir", str(small_data), "--model-dir", str(model_dir),
              "--pipeline", "idg", "--batch-size", "64", "--model", "cnn_64_128_256", "--quiet"]
    run_cli(CLI, *common, "--epochs", "1")
    first = (model_dir / "history.csv").read_text().splitlines()
    result = run_cli(CLI, *common, "--epochs", "2", "--resume")
    assert "resuming after epoch 1 of 2" in result.stdout
    assert "Epoch 2/2" in result.stdout and "Epoch 1/2" not in result.stdout
    history = (model_dir / "history.csv").read_text().splitlines()
    assert history[:2] == first and [line.split(",")[0] for line in history[1:]] == ["1", "2"]
    # Epoch 2 continued epoch 1's weights and optimizer: its loss is far below a first epoch's (a restart
    # from scratch gives about the same loss again), and last.keras counts both epochs' steps.
    loss = [float(row["loss"]) for row in artifacts.read_history(model_dir)]
    assert loss[1] < 0.6 * loss[0], loss
    train_images = json.loads((model_dir / "dataset.json").read_text())["train_images"]
    steps = -(-train_images // 64)
    assert int(saved.load_last_model(model_dir).optimizer.iterations.numpy()) == 2 * steps
    result = run_cli(CLI, *common, "--epochs", "2", "--resume")  # already finished: nothing more runs
    assert "Epoch" not in result.stdout
    assert len((model_dir / "history.csv").read_text().splitlines()) == 3
