"""Mixed bfloat16 training: chosen only where the CPU has it, same checkpoints either way."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, run_cli
from mnist_folders.networks import dtype_policy


def test_auto_uses_bfloat16_only_on_cpus_that_have_it(monkeypatch):
    monkeypatch.setattr(dtype_policy, "cpu_has_bf16", lambda: False)
    assert dtype_policy.resolve("auto") == "float32"
    monkeypatch.setattr(dtype_policy, "cpu_has_bf16", lambda: True)
    assert dtype_policy.resolve("auto") == "mixed_bfloat16"
    assert dtype_policy.resolve("float32") == "float32"


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_each_policy_trains_and_evaluates_under_the_other(policy, small_data, tmp_path):
    """Both policies run here whatever the CPU (``auto`` picks one): the weights are float32 under either,
    so a model trained under one evaluates under the other with the same answers."""
    model_dir = tmp_path / "m"
    # Batch 32: enough steps on the 4,000-image subset for a trained model (the default 256 gives 32 steps).
    out = run_cli(str(REPO / "mnist_keras.py"), "--mode", "train", "--data-dir", str(small_data), "--model-dir",
                  str(model_dir), "--epochs", "2", "--batch-size", "32", "--dtype-policy", policy,
                  "--model", "cnn_64_128_256", "--quiet").stdout
    assert f"dtype_policy={policy}" in out
    assert json.loads((model_dir / "setting.json").read_text())["dtype_policy"] == policy
    other = "float32" if policy == "mixed_bfloat16" else "mixed_bfloat16"
    answers = {}
    for evaluated in (policy, other):
        setting = json.loads((model_dir / "setting.json").read_text())
        (model_dir / "setting.json").write_text(json.dumps({**setting, "dtype_policy": evaluated}))
        run_cli(str(REPO / "mnist_keras.py"), "--mode", "evaluate", "--data-dir", str(small_data), "--model-dir",
                str(model_dir), "--quiet")
        report = json.loads((model_dir / "evaluation.json").read_text())
        answers[evaluated] = np.array(report["confusion"])
    assert np.trace(answers[policy]) / answers[policy].sum() > 0.9
    # bfloat16 rounds activations to 8 bits of mantissa: a handful of the 5,000 answers may move.
    assert np.abs(answers[policy] - answers[other]).sum() <= 2 * 25
