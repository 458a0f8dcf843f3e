"""Export and deploy: every format against Keras, prediction without TensorFlow, stale exports, the
softmax temperature, --min-confidence and --sort-into."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from conftest import EXPORT_TEMPERATURE, MNIST, REPO, run_cli, run_cli_watching_imports
from mnist_folders import artifacts
from mnist_folders.networks import saved
from mnist_folders.data.idx import load_split
from mnist_folders.networks import calibration
from mnist_folders.serve import parity

CLI = str(REPO / "mnist_keras.py")
FLOAT_FORMATS = ("savedmodel", "savedmodel_bytes", "tflite", "onnx")


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def dark_on_light(exported, tmp_path_factory):
    """``(folder, images, expected)``: 40 MNIST test digits saved dark on light (the model was trained on light
    on dark), and the probabilities every runtime must give them, computed here without the predict path: the
    float32 Keras model on the images inverted by hand, its log-probabilities divided by the saved temperature."""
    from PIL import Image

    images = 255 - load_split(MNIST, "test")[0][:40]
    folder = tmp_path_factory.mktemp("dark_on_light")
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    model, _, _ = saved.load_trained_model(exported, policy="float32")
    softmax = np.asarray(model.predict_on_batch((255 - images[..., None]).astype(np.float32) / 255))
    expected = _softmax(np.log(np.maximum(softmax, 1e-30)) / EXPORT_TEMPERATURE)
    return folder, images, expected


@pytest.mark.parametrize("runtime", ["keras", "onnx", "tflite", "tflite_int8"])
def test_every_runtime_inverts_dark_on_light_digits_and_divides_by_the_temperature(runtime, exported,
                                                                                 dark_on_light, tmp_path):
    folder, _, expected = dark_on_light
    out = tmp_path / "p.csv"
    run_cli(CLI, "--mode", "predict", "--model-dir", str(exported), "--input", str(folder), "--runtime", runtime,
            "--output", str(out), "--quiet")
    rows = sorted(_rows(out)[1:])
    class_names = json.loads((exported / "class_names.json").read_text())
    order = np.argsort(-expected, axis=1)
    same = [row[1] == class_names[order[i, 0]] for i, row in enumerate(rows)]
    # int8 quantisation moves probabilities by a few hundredths; Keras runs under the trained policy (bfloat16
    # where the CPU has it); the float32 exports match the float32 reference.
    tolerance = {"keras": 0.03, "tflite_int8": 0.06}.get(runtime, 1e-4)
    assert sum(same) >= (36 if runtime == "tflite_int8" else 39), (runtime, sum(same))
    for i, row in enumerate(rows):
        if same[i]:
            assert float(row[2]) == pytest.approx(expected[i, order[i, 0]], abs=tolerance), (runtime, i, row)
            assert float(row[4]) == pytest.approx(expected[i, order[i, 1]], abs=tolerance), (runtime, i, row)


def test_the_savedmodel_signatures_invert_and_divide_by_the_temperature(exported, dark_on_light):
    import tensorflow as tf

    folder, images, expected = dark_on_light
    loaded = tf.saved_model.load(str(exported / "export" / "saved_model"))
    pixels = loaded.signatures["serve"](images=tf.constant(images[..., None]))["probabilities"].numpy()
    encoded = [(folder / f"{i:02d}.png").read_bytes() for i in range(len(images))]
    decoded = loaded.signatures["serve_bytes"](encoded=tf.constant(encoded))["probabilities"].numpy()
    assert np.abs(pixels - expected).max() < 1e-4
    assert np.abs(decoded - expected).max() < 1e-4  # PNG: lossless, so the same pixels


def test_export_writes_every_format_with_labels_and_preprocessing(exported):
    folder = exported / "export"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["labels.txt", "preprocessing.json", "saved_model", "model.tflite", "model_int8.tflite", "model.onnx"])
    assert (folder / "labels.txt").read_text().splitlines() == json.loads((exported / "class_names.json").read_text())
    pre = json.loads((folder / "preprocessing.json").read_text())
    assert pre["input"]["shape"] == [None, 28, 28, 1] and pre["input"]["dtype"] == "uint8"
    assert pre["temperature"] == artifacts.load_temperature(exported) == EXPORT_TEMPERATURE
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
    # Files whose sides' ratio is far from the model's 40:24, where stretching and padding differ.
    unlike = [p for p in sorted((tmp_path / "test").rglob("*.png")) if abs(np.log(_ratio(p) / (40 / 24))) > 0.4]
    for k, path in enumerate(unlike[:10]):
        shutil.copy(path, tmp_path / "new" / f"{k:02d}.png")
    predicted = run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(tmp_path / "new"),
                        "--output", str(tmp_path / "onnx.csv"))
    assert "(runtime onnx)" in predicted.stdout
    _predicts_padded_images(model_dir, tmp_path / "new", tmp_path / "onnx.csv", "float32")
    run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(tmp_path / "new"),
            "--output", str(tmp_path / "keras.csv"), "--runtime", "keras")
    _predicts_padded_images(model_dir, tmp_path / "new", tmp_path / "keras.csv", None)
    run_cli(CLI, "--mode", "export", *common, "--format", "savedmodel,onnx")
    assert json.loads((model_dir / "export" / "preprocessing.json").read_text())["input"]["shape"] == [None, 24, 40, 3]
    setting = artifacts.setting_for_model({"model_dir": str(model_dir), "data_dir": str(tmp_path)})
    rows = {r.format: r for r in parity.compare(setting, ("onnx", "savedmodel_bytes"))}
    assert rows["onnx"].images == 120 and rows["onnx"].disagreements <= 1
    assert rows["savedmodel_bytes"].disagreements <= 1, rows["savedmodel_bytes"]


def _ratio(path) -> float:
    from PIL import Image

    with Image.open(path) as image:
        return image.size[0] / image.size[1]


def _predicts_padded_images(model_dir, folder, csv_path, policy):
    """The CSV's confidences are what the model gives on ``ImageOps.pad`` of each file (24x40, bilinear,
    black margins, as trained), temperature-scaled: computed here without the predict path."""
    from PIL import Image, ImageOps

    model, _, class_names = saved.load_trained_model(model_dir, policy=policy)
    names = sorted(p.name for p in folder.iterdir())
    padded = []
    for name in names:
        with Image.open(folder / name) as image:
            padded.append(np.asarray(ImageOps.pad(image.convert("RGB"), (40, 24), Image.Resampling.BILINEAR, 0)))
    softmax = np.asarray(model.predict_on_batch(np.stack(padded).astype(np.float32) / 255))
    temperature = json.loads((model_dir / "calibration.json").read_text())["temperature"]
    expected = _softmax(np.log(np.maximum(softmax, 1e-30)) / temperature)
    rows = sorted(_rows(csv_path)[1:])
    assert [row[0].rsplit("/", 1)[1] for row in rows] == names
    for row, p in zip(rows, expected):
        assert row[1] == class_names[p.argmax()] and float(row[2]) == pytest.approx(p.max(), abs=1e-4), (row, p)


def test_unknown_export_format_is_a_usage_error():
    result = run_cli(CLI, "--mode", "export", "--format", "onnx,coreml", check=False)
    assert result.returncode == 2 and "unknown format 'coreml'" in result.stderr
    result = run_cli(CLI, "--mode", "export", "--format", "none", check=False)
    assert result.returncode == 2 and "nothing to export" in result.stderr


def test_a_failed_export_after_training_is_one_line_and_keeps_the_training(tmp_path):
    from mnist_folders.settings import Setting
    from mnist_folders.commands.train import export_after_training

    lines = []
    export_after_training(Setting(model_dir=str(tmp_path / "empty")), ("onnx",), lines.append)
    assert len(lines) == 1 and lines[0].startswith("export after training failed (CheckpointError: ")
    assert lines[0].endswith("predict runs on Keras; retry with --mode export")


def test_training_fits_the_temperature_that_minimises_the_validation_nll(trained_model):
    """The saved temperature is the minimum of the negative log-likelihood on the held-out images,
    computed here (the model's softmax on the validation split, logits divided by T) over a grid of T."""
    from mnist_folders.data.decoding import decode_images
    from mnist_folders.data.folders import index_tree
    from mnist_folders.train.preparation import split_readable

    fitted = json.loads((trained_model / "calibration.json").read_text())
    model, setting, class_names = saved.load_trained_model(trained_model)
    held_out = split_readable(setting, index_tree(setting.train_path, class_names), [])[1]
    assert fitted["validation_images"] == len(held_out) == json.loads(
        (trained_model / "dataset.json").read_text())["validation_images"] > 0
    decoded = decode_images(held_out.paths, setting)
    softmax = np.asarray(model.predict_on_batch(decoded.images.astype(np.float32) / 255), dtype=np.float64)
    labels = held_out.labels[decoded.kept]

    def nll(temperature: float) -> float:
        log_p = np.log(np.maximum(softmax, 1e-30)) / temperature
        log_p -= np.log(np.exp(log_p - log_p.max(1, keepdims=True)).sum(1, keepdims=True)) + log_p.max(1, keepdims=True)
        return float(-log_p[np.arange(len(labels)), labels].mean())

    assert fitted["nll_before"] == pytest.approx(nll(1.0), abs=1e-4)
    assert fitted["nll_after"] == pytest.approx(nll(fitted["temperature"]), abs=1e-4)
    assert nll(fitted["temperature"]) <= min(nll(t) for t in np.geomspace(0.2, 5.0, 200)) + 1e-5


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
