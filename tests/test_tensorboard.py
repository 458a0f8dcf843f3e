"""tensorboard = true: Keras' TensorBoard logs of each training run, continued by --resume."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from conftest import REPO, run_cli

CLI = str(REPO / "mnist_keras.py")


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` of every event file under ``folder`` (TensorBoard's own format)."""
    import tensorflow as tf

    found: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return found


def test_logs_hold_the_history_and_a_resumed_run_continues_them(registry_data, tmp_path):
    model_dir = tmp_path / "m"
    train = (CLI, "--mode", "train", "--data-dir", str(registry_data), "--model-dir", str(model_dir),
             "--model", "cnn_small", "--batch-size", "32", "--quiet")
    run_cli(*train, "--epochs", "1", "--tensorboard")
    run_cli(*train, "--epochs", "2", "--resume", "--tensorboard", "true")
    runs = sorted((model_dir / "logs").iterdir())
    assert len(runs) == 1  # the resumed run wrote into the same run folder
    with open(model_dir / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    train_scalars, validation = scalars(runs[0] / "train"), scalars(runs[0] / "validation")
    for epoch, row in enumerate(history):  # the epochs TensorBoard shows are those of history.csv
        assert train_scalars["epoch_loss"][epoch] == pytest.approx(float(row["loss"]), rel=1e-4)
        assert train_scalars["epoch_accuracy"][epoch] == pytest.approx(float(row["accuracy"]), rel=1e-4)
        assert validation["epoch_accuracy"][epoch] == pytest.approx(float(row["val_accuracy"]), rel=1e-4)
    assert sorted(train_scalars["epoch_loss"]) == [0, 1] and "epoch_learning_rate" in train_scalars
    # A fresh run into the same directory is a new run beside the first; without the setting, no logs.
    run_cli(*train, "--epochs", "1", "--tensorboard", "--seed", "3")
    assert len(list((model_dir / "logs").iterdir())) == 2 and not (model_dir / ".staging").exists()
    run_cli(*train[:6], str(tmp_path / "plain"), *train[7:], "--epochs", "1")
    assert not (tmp_path / "plain" / "logs").exists()


def test_a_bad_boolean_is_a_usage_error():
    result = run_cli(CLI, "--mode", "train", "--tensorboard", "maybe", check=False)
    assert result.returncode == 2 and "--tensorboard: invalid true or false value: 'maybe'" in result.stderr
