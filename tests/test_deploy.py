"""Export and deploy: every format against Keras, prediction without TensorFlow, stale exports, the
softmax temperature, --min-confidence and --sort-into."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from conftest import REPO, run_cli, run_cli_watching_imports
from mnist_folders import artifacts
from mnist_folders.serve import calibration, parity

CLI = str(REPO / "mnist_keras.py")
FLOAT_FORMATS = ("savedmodel", "savedmodel_bytes", "tflite", "onnx")


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_export_writes_every_format_with_labels_and_preprocessing(exported):
    folder = exported / "export"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["labels.txt", "preprocessing.json", "saved_model", "model.tflite", "model_int8.tflite", "model.onnx"])
    assert (folder / "labels.txt").read_text().splitlines() == json.loads((exported / "class_names.json").read_text())
    pre = json.loads((folder / "preprocessing.json").read_text())
    assert pre["input"]["shape"] == [None, 28, 28, 1] and pre["input"]["dtype"] == "uint8"
    assert pre["temperature"] == artifacts.load_temperature(exported)
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name]


def test_every_format_predicts_what_keras_predicts(exported, small_data):
    setting = artifacts.setting_for_model({"model_dir": str(exported), "data_dir": str(small_data)})
    # The reference: Keras as predict runs it, in float32 like the exports (the trained policy may be bfloat16).
    rows = {r.format: r for r in parity.compare(setting, (*FLOAT_FORMATS, "tflite_int8"), limit=400,
                                                reference_policy="float32")}
    keras_accuracy = rows["keras"].accuracy
    assert keras_accuracy > 0.9
    for name in FLOAT_FORMATS:
        assert rows[name].disagreements == 0, (name, rows[name])
        assert rows[name].max_abs_diff < 1e-4, (name, rows[name])
    assert rows["onnx"].accuracy == pytest.approx(keras_accuracy, abs=0.0026)
    assert rows["tflite_int8"].accuracy >= keras_accuracy - 0.01
    assert rows["tflite_int8"].size_bytes < rows["tflite"].size_bytes / 3


def test_onnx_runtime_gives_the_keras_csv_without_importing_tensorflow(exported, small_data, tmp_path):
    folder = str(small_data / "tmp")
    run_cli(CLI, "--mode", "predict", "--model-dir", str(exported), "--input", folder, "--runtime", "keras",
            "--output", str(tmp_path / "keras.csv"), "--quiet")
    result, tensorflow = run_cli_watching_imports(CLI, "--mode", "predict", "--model-dir", str(exported), "--input",
                                                  folder, "--output", str(tmp_path / "onnx.csv"),
                                                  "--quiet")  # runtime auto: the current export
    assert "(runtime onnx)" in result.stdout and not tensorflow
    keras_rows, onnx_rows = _rows(tmp_path / "keras.csv"), _rows(tmp_path / "onnx.csv")
    assert len(onnx_rows) == 11 and onnx_rows[0] == keras_rows[0]
    for k, o in zip(keras_rows[1:], onnx_rows[1:]):
        assert (o[0], o[1]) == (k[0], k[1])  # same file, same class
        assert float(o[2]) == pytest.approx(float(k[2]), abs=0.02)  # float32 export vs bfloat16 Keras


def test_a_stale_export_is_refused_or_passed_over(exported, small_data, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(exported, model_dir)
    pre = model_dir / "export" / "preprocessing.json"
    data = json.loads(pre.read_text())
    pre.write_text(json.dumps({**data, "source_weights_sha256": "0" * 64}))  # as after a new training run
    args = [CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(small_data / "tmp"), "--quiet"]
    refused = run_cli(*args, "--runtime", "onnx", check=False)
    assert refused.returncode == 2  # a model-directory problem, like a missing checkpoint
    assert refused.stderr.strip().endswith("exported from an earlier training run of this model directory; "
                                           "run --mode export again")
    assert "(runtime keras)" in run_cli(*args).stdout  # auto: Keras instead
    # Exporting one format again: the others, of the older weights, go rather than pass as current.
    run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "onnx")
    assert sorted(p.name for p in (model_dir / "export").iterdir()) == ["labels.txt", "model.onnx",
                                                                         "preprocessing.json"]
    assert "(runtime onnx)" in run_cli(*args).stdout


def test_an_export_with_another_inversion_rule_is_refused(exported, small_data):
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(exported), "--input", str(small_data / "tmp"),
                     "--runtime", "tflite", "--invert", "true", "--quiet", check=False)
    assert result.returncode == 2
    assert "exported with invert=auto, asked invert=true; export again with --invert true" in result.stderr


def test_export_of_a_non_digit_rgb_model(tmp_path):
    """RGB pictures of assorted sizes, padded to 24x40: the exports agree with Keras, the
    bytes signature too (TensorFlow decoding, Pillow's pad geometry)."""
    from PIL import Image

    from mnist_folders.data.idx import load_split

    images, labels = load_split(REPO / "data" / "mnist", "test")
    rng = np.random.default_rng(1)
    for split, start, count in (("train", 0, 120), ("test", 5000, 40)):
        for digit, word in ((2, "deux"), (5, "cinq"), (8, "huit")):
            folder = tmp_path / split / word
            folder.mkdir(parents=True)
            for k, i in enumerate(np.flatnonzero(labels == digit)[start // 10 :][:count]):
                ink = rng.integers(120, 256, 3)
                rgb = (images[i, ..., None] / 255.0 * ink).astype(np.uint8)
                size = tuple(int(v) for v in rng.integers(20, 70, 2))
                Image.fromarray(rgb).resize(size).save(folder / f"{k}.png")
    model_dir = tmp_path / "model"
    common = ["--data-dir", str(tmp_path), "--model-dir", str(model_dir)]
    trained = run_cli(CLI, "--mode", "train", *common, "--image-height", "24", "--image-width", "40", "--color-mode",
                      "rgb", "--resize-method", "pad", "--model", "cnn_32_64_64", "--epochs", "2", "--quiet",
                      export=True)
    # Training exported ONNX by default, so predict runs without TensorFlow straight away.
    assert "onnx: " in trained.stdout and (model_dir / "export" / "model.onnx").is_file()
    (tmp_path / "new").mkdir()
    shutil.copy(next((tmp_path / "test" / "huit").iterdir()), tmp_path / "new" / "x.png")
    predicted = run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(tmp_path / "new"))
    assert "(runtime onnx)" in predicted.stdout
    run_cli(CLI, "--mode", "export", *common, "--format", "savedmodel,onnx")
    assert json.loads((model_dir / "export" / "preprocessing.json").read_text())["input"]["shape"] == [None, 24, 40, 3]
    setting = artifacts.setting_for_model({"model_dir": str(model_dir), "data_dir": str(tmp_path)})
    rows = {r.format: r for r in parity.compare(setting, ("onnx", "savedmodel_bytes"))}
    assert rows["onnx"].images == 120 and rows["onnx"].disagreements <= 1
    assert rows["savedmodel_bytes"].disagreements <= 1, rows["savedmodel_bytes"]


def test_unknown_export_format_is_a_usage_error():
    result = run_cli(CLI, "--mode", "export", "--format", "onnx,coreml", check=False)
    assert result.returncode == 2 and "unknown format 'coreml'" in result.stderr
    result = run_cli(CLI, "--mode", "export", "--format", "none", check=False)
    assert result.returncode == 2 and "nothing to export" in result.stderr


def test_a_failed_export_after_training_is_one_line_and_keeps_the_training(tmp_path):
    from mnist_folders.settings import Setting
    from mnist_folders.train.training import export_after_training

    lines = []
    export_after_training(Setting(model_dir=str(tmp_path / "empty")), ("onnx",), lines.append)
    assert len(lines) == 1 and lines[0].startswith("export after training failed (CheckpointError: ")
    assert lines[0].endswith("predict runs on Keras; retry with --mode export")


def test_training_fits_a_temperature_that_lowers_the_validation_nll(trained_model):
    saved = json.loads((trained_model / "calibration.json").read_text())
    held_out = json.loads((trained_model / "dataset.json").read_text())["validation_images"]
    assert 0.05 <= saved["temperature"] <= 20 and saved["validation_images"] == held_out > 0
    assert saved["nll_after"] <= saved["nll_before"]


def test_evaluate_reports_calibration_and_draws_the_reliability_diagram(trained_model, small_data):
    result = run_cli(CLI, "--mode", "evaluate", "--model-dir", str(trained_model), "--data-dir", str(small_data),
                     "--quiet")
    report = json.loads((trained_model / "evaluation.json").read_text())
    assert f"expected calibration error: {report['ece']:.4f} (softmax), {report['ece_calibrated']:.4f}" \
        in result.stdout
    assert report["temperature"] == artifacts.load_temperature(trained_model)
    assert str(trained_model / "reliability_diagram.png") in report["figures"]


def test_min_confidence_and_sort_into(trained_model, small_data, tmp_path):
    sorted_dir = tmp_path / "sorted"
    out = tmp_path / "p.csv"
    run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(small_data / "test" / "5"),
            "--min-confidence", "0.99", "--sort-into", str(sorted_dir), "--output", str(out), "--quiet")
    rows = _rows(out)[1:]
    uncertain = [r for r in rows if r[1] == "uncertain"]
    assert uncertain and len(uncertain) < len(rows)
    assert all(float(r[2]) < 0.99 for r in uncertain) and all(float(r[2]) >= 0.99 for r in rows if r not in uncertain)
    placed = {p.name: p.parent.name for p in sorted_dir.rglob("*.png")}
    assert placed == {r[0].rsplit("/", 1)[1]: r[1] for r in rows}


def test_temperature_scaling_recovers_a_known_overconfidence():
    """Labels drawn from softmax(z); the model reports softmax(3 z): the fit finds T = 3 and the ECE drops."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2.0, (20000, 5))
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(5, p=p) for p in true])
    sharp = np.exp(3 * logits) / np.exp(3 * logits).sum(1, keepdims=True)
    temperature = calibration.fit_temperature(sharp, labels)
    assert temperature == pytest.approx(3.0, rel=0.05)
    fixed = calibration.apply_temperature(sharp, temperature)
    assert np.array_equal(fixed.argmax(1), sharp.argmax(1))
    assert calibration.expected_calibration_error(fixed, labels) < 0.02 < calibration.expected_calibration_error(
        sharp, labels)
    assert np.allclose(fixed, true, atol=0.02)


def test_reliability_bins_count_every_image_once():
    p = np.array([[0.95, 0.05], [0.55, 0.45], [0.6, 0.4], [0.1, 0.9]])
    confidence, accuracy, count = calibration.reliability(p, np.array([0, 1, 0, 1]), bins=10)
    assert count.tolist() == [0, 0, 0, 0, 0, 2, 0, 0, 1, 1]
    assert confidence[5] == pytest.approx(0.575) and accuracy[5] == 0.5 and accuracy[8] == 1.0
    assert calibration.expected_calibration_error(p, np.array([0, 1, 0, 1]), bins=10) == pytest.approx(
        (2 * 0.075 + 0.1 + 0.05) / 4)


def test_export_of_a_directory_without_weights_is_one_line(exported, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(exported, model_dir)
    (model_dir / "best.weights.h5").unlink()
    result = run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), check=False)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    assert sorted(p.name for p in (model_dir / "export").iterdir()) == sorted(
        p.name for p in (exported / "export").iterdir())  # the previous export is left as it was
