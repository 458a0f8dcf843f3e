"""Every registered model builds, trains, evaluates and predicts through the CLI; figures are drawn."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, run_cli
from mnist_folders.models import MODELS, build_model
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
    assert type(model.optimizer).__name__ == "RMSprop" and model.loss == "categorical_crossentropy"


def test_model_defaults_follow_the_model_and_flags_override_them():
    reference = Setting()
    assert (reference.optimizer, reference.batch_size, reference.learning_rate) == ("rmsprop", 256, 0.002)
    assert reference.precision == "auto"  # bfloat16 only where the CPU has it
    mlp = Setting(model="mlp")
    assert (mlp.optimizer, mlp.epochs, mlp.batch_size, mlp.precision) == ("adam", 10, 200, "float32")
    assert Setting(model="mlp", precision="mixed_bfloat16").precision == "mixed_bfloat16"
    assert Setting(model="cnn_64_32").epochs == 3
    strong = Setting(model="strong")
    assert strong.augments and strong.lr_decay < 1
    assert Setting(model="strong", rotation_range=0.0, shift_range=0.0, zoom_range=0.0).augments is False
    assert Setting(model="mlp", batch_size=64).batch_size == 64


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_trains_evaluates_and_predicts_through_the_cli(name, small_data, tmp_path):
    model_dir = tmp_path / name
    # Batch normalisation's moving statistics need more than one short epoch to settle.
    epochs = "2" if name == "strong" else "1"
    out = run_cli(CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(model_dir),
                  "--model", name, "--epochs", epochs, "--quiet")
    assert (model_dir / "training_curves.png").stat().st_size > 10_000
    assert f"figure: {model_dir / 'training_curves.png'}" in out.stdout
    run_cli(CLI, "--mode", "evaluate", "--data-dir", str(small_data), "--model-dir", str(model_dir), "--quiet")
    report = json.loads((model_dir / "evaluation.json").read_text())
    assert report["accuracy"] > 0.5, (name, report["accuracy"])  # 10 classes: chance is 0.1
    for figure in ("confusion_matrix.png", "misclassified.png"):
        assert (model_dir / figure).stat().st_size > 10_000
    result = run_cli(CLI, "--mode", "predict", "--data-dir", str(small_data), "--model-dir", str(model_dir),
                     "--quiet")
    assert "10 predicted, 0 skipped" in result.stdout


def test_export_draws_the_samples_figure(small_data):
    assert (small_data / "samples.png").stat().st_size > 10_000
