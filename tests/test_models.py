"""Every registered model builds, trains, evaluates and predicts through the CLI; figures are drawn."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

import pytest

from conftest import REPO, run_cli
from mnist_folders.networks.saved import load_trained_model
from mnist_folders.registry import MODELS
from mnist_folders.networks.build import build_model
from mnist_folders.settings import Setting

CLI = str(REPO / "mnist_keras.py")


def test_reference_model_is_exactly_the_tutorial_architecture():
    model = build_model("cnn_64_128_256", (28, 28, 1), 10, "rmsprop", 0.001)
    summary = [(type(layer).__name__, layer.get_config()) for layer in model.layers]
    kinds = [kind for kind, _ in summary]
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dropout", "Dense",
                     "Dropout", "Dense"]
    convs = [cfg for kind, cfg in summary if kind == "Conv2D"]
    assert [(c["filters"], tuple(c["kernel_size"]), c["activation"]) for c in convs] == [
        (64, (3, 3), "relu"), (128, (3, 3), "relu"), (256, (3, 3), "relu")]
    dense = [cfg for kind, cfg in summary if kind == "Dense"]
    assert [(d["units"], d["activation"]) for d in dense] == [(256, "relu"), (10, "softmax")]
    assert [cfg["rate"] for kind, cfg in summary if kind == "Dropout"] == [0.5, 0.5]
    assert type(model.optimizer).__name__ == "RMSprop" and type(model.loss).__name__ == "CategoricalCrossentropy"


def test_model_defaults_follow_the_model_and_flags_override_them():
    reference = Setting(model="cnn_64_128_256")
    assert (reference.optimizer, reference.learning_rate) == ("rmsprop", 0.002)
    assert reference.dtype_policy == "auto"  # bfloat16 only where the CPU has it
    assert (reference.epochs, reference.batch_size) == ("auto", "auto")  # resolved from the data by train
    mlp = Setting(model="mlp")
    assert (mlp.optimizer, mlp.learning_rate, mlp.dtype_policy) == ("adam", 0.001, "float32")
    assert Setting(model="mlp", dtype_policy="mixed_bfloat16").dtype_policy == "mixed_bfloat16"
    assert MODELS["cnn_64_32"].epochs == 3  # the tutorial's fixed budget, used by bench/models.py
    strong = Setting(model="strong")
    assert strong.augments and strong.lr_decay < 1
    assert Setting(model="strong", rotation_range=0.0, shift_range=0.0, zoom_range=0.0).augments is False
    assert Setting(model="mlp", batch_size=64).batch_size == 64


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"efficientnet_b0", "efficientnet_lite0"}))  # b0: its twin path is mobilenet_v3_small; lite0: test_pretrained.py
def test_every_model_trains_evaluates_and_predicts_through_the_cli(name, registry_data, tmp_path):
    from PIL import Image

    model_dir = tmp_path / name
    backbone = MODELS[name].backbone  # Keras Applications: at least 32x32, random weights here
    size = ["--image-height", "32", "--image-width", "32"] if backbone else []
    common = ["--data-dir", str(registry_data), "--model-dir", str(model_dir)]
    out = run_cli(CLI, "--mode", "train", *common, "--model", name, "--epochs", "2", "--batch-size", "32", *size,
                  "--quiet")
    assert f"figure: {model_dir / 'training_curves.png'}" in out.stdout
    with open(model_dir / "history.csv", newline="") as f:
        loss = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(loss) == 2 and loss[1] < loss[0], (name, loss)  # it learns: the training loss falls
    run_cli(CLI, "--mode", "evaluate", *common, "--quiet")
    report = json.loads((model_dir / "evaluation.json").read_text())
    confusion = np.array(report["confusion"])
    assert report["images"] == confusion.sum() == 200 and confusion.sum(axis=1).tolist() == [20] * 10
    assert report["accuracy"] == pytest.approx(np.trace(confusion) / 200)
    assert {Path(f).name for f in report["figures"]} >= {"confusion_matrix.png", "misclassified.png"}
    assert all(Path(f).is_file() for f in report["figures"])
    result = run_cli(CLI, "--mode", "predict", *common, "--output", str(tmp_path / "p.csv"), "--quiet")
    assert "10 predicted, 0 skipped" in result.stdout
    # The CSV gives the model's own answers: its argmax on each file, computed here.
    model, setting, class_names = load_trained_model(model_dir)
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.reader(f))[1:]
    h, w, _ = setting.input_shape
    pixels = np.stack([np.asarray(Image.open(row[0]).convert("L").resize((w, h), Image.Resampling.BILINEAR))
                       for row in rows])[..., None].astype(np.float32) / 255
    answers = np.asarray(model.predict_on_batch(pixels)).argmax(axis=1)
    assert [row[1] for row in rows] == [class_names[a] for a in answers], name


def test_backbones_build_with_a_new_head_and_load_local_weights(tmp_path):
    import keras

    model = build_model("efficientnet_b0", (32, 32, 1), 3)  # grayscale: repeated to the 3 channels it takes
    assert model.output_shape == (None, 3) and model.count_params() > 4_000_000
    # A local weights file of the backbone without its top (what backbone_weights names) is loaded.
    base = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(32, 32, 3), pooling="avg")
    base.save_weights(tmp_path / "no_top.weights.h5")
    model = build_model("mobilenet_v3_small", (32, 32, 3), 5, backbone_weights=str(tmp_path / "no_top.weights.h5"))
    inner = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    assert all(np.array_equal(a, b) for a, b in zip(inner.get_weights(), base.get_weights()))
