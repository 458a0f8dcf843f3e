"""Mixed bfloat16 training: chosen only where the CPU has it, same checkpoints either way."""

from __future__ import annotations

import json

from conftest import REPO, run_cli
from mnist_folders.train import dtype_policy


def test_auto_uses_bfloat16_only_on_cpus_that_have_it(monkeypatch):
    monkeypatch.setattr(dtype_policy, "cpu_has_bf16", lambda: False)
    assert dtype_policy.resolve("auto") == "float32"
    monkeypatch.setattr(dtype_policy, "cpu_has_bf16", lambda: True)
    assert dtype_policy.resolve("auto") == "mixed_bfloat16"
    assert dtype_policy.resolve("float32") == "float32"


def test_bfloat16_training_evaluates_under_float32(small_data, tmp_path):
    model_dir = tmp_path / "m"
    # Batch 32: enough steps on the 4,000-image subset for a trained model (the default 256 gives 32 steps).
    out = run_cli(str(REPO / "mnist_keras.py"), "--mode", "train", "--data-dir", str(small_data), "--model-dir",
                  str(model_dir), "--epochs", "2", "--batch-size", "32", "--dtype-policy", "mixed_bfloat16", "--model", "cnn_64_128_256",
                  "--quiet").stdout
    assert "dtype_policy=mixed_bfloat16" in out
    # The weights are float32 under both policies: evaluate the bf16-trained model in float32.
    setting = json.loads((model_dir / "setting.json").read_text())
    setting["dtype_policy"] = "float32"
    (model_dir / "setting.json").write_text(json.dumps(setting))
    run_cli(str(REPO / "mnist_keras.py"), "--mode", "evaluate", "--data-dir", str(small_data), "--model-dir",
            str(model_dir), "--quiet")
    assert json.loads((model_dir / "evaluation.json").read_text())["accuracy"] > 0.9
