#!/usr/bin/env python3
"""ImageNet-pretrained against from scratch on small image sets, and the backbone's embedding speed.

Accuracy part: for each dataset and seed, fresh processes train through the
CLI (only the data folder set, plus the configuration) and evaluate on the
test tree. Configurations, side by side in one run:

- ``scratch``: today's defaults without the weights package (``model = auto``
  falls back to ``cnn_fast``; ``MNIST_FOLDERS_NO_PRETRAINED=1``);
- ``few_shot``: the pretrained default with ``--fine-tune none`` (the head on
  cached embeddings);
- ``fine_tune``: the pretrained default with ``--fine-tune top``;
- ``default``: nothing set (what a new user gets: ``fine_tune = auto``).

Figures: median test accuracy, balanced accuracy and wall time of ``train``
(process start included) over the seeds, with min-max. Each seed's runs use a
fresh embedding cache, except ``second run``: the same training again on a
warm cache (its time is the cache hit).

Datasets, built from the shipped MNIST (``data/mnist``) under ``--work``:
``digits96_N``: N training images per class (5, 10, 20, 100) of real digits
upscaled to 96x96 and recoloured (random ink and paper), RGB JPEG, 100 test
images per class; ``digits160_10``: the same at 160 px; ``unbalanced_128`` of
``bench/own_data.py``.

Speed part: embeddings/s of the frozen backbone at 96, 160 and 224 px in
float32 and bfloat16 (batch 64, ``predict_on_batch``, after warm-up), with the
model FLOP utilisation against the GEMM rate of the same dtype measured in the
same run, and the head fit's seconds on 2,000 embeddings.

    python bench/transfer.py [--seeds 3] [--datasets digits96_10,digits96_5] [--skip-speed] [--skip-accuracy]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, machine_line, save
from own_data import _write, build as build_own

CLI = str(REPO / "mnist_keras.py")
CONFIGS = {"scratch": [], "few_shot": ["--fine-tune", "none"], "fine_tune": ["--fine-tune", "top"], "default": []}
# Multiply-accumulates of EfficientNet-Lite0 at 224x224 (its paper's table): 0.4 G, so 0.8 GFLOP per image.
FLOPS_224 = 0.8e9


def build(name: str, work: Path) -> Path:
    """Dataset ``name`` under ``work`` (built once)."""
    from mnist_folders.data.idx import load_split

    if name == "unbalanced_128":
        return build_own(name, work)[0]
    root = work / name
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    size, per_class = (int(part) for part in name.removeprefix("digits").split("_"))
    train_x, train_y = load_split(REPO / "data" / "mnist", "train")
    test_x, test_y = load_split(REPO / "data" / "mnist", "test")
    rng = np.random.default_rng(0)
    _write(root / "train", train_x, train_y, {d: per_class for d in range(10)}, size, rng)
    _write(root / "test", test_x, test_y, {d: 100 for d in range(10)}, size, rng)
    (root / "done").write_text("ok\n")
    return root


def run(data: Path, config: str, seed: int, model_dir: Path, cache: Path) -> dict:
    """Train (timed) then evaluate, in fresh processes."""
    import json

    shutil.rmtree(model_dir, ignore_errors=True)
    env = {**os.environ, "MNIST_FOLDERS_CACHE": str(cache)}
    if config == "scratch":
        env["MNIST_FOLDERS_NO_PRETRAINED"] = "1"
    common = ["--data-dir", str(data), "--model-dir", str(model_dir), "--quiet"]
    started = time.perf_counter()
    subprocess.run([sys.executable, CLI, "--mode", "train", *common, *CONFIGS[config], "--seed", str(seed),
                    "--format", "none"], check=True, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    subprocess.run([sys.executable, CLI, "--mode", "evaluate", *common], check=True, capture_output=True, env=env)
    report = json.loads((model_dir / "evaluation.json").read_text())
    setting = json.loads((model_dir / "setting.json").read_text())
    return {"accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"], "seconds": seconds,
            "model": setting["model"], "size": setting["image_height"], "fine_tune": setting["fine_tune"]}


def _median(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    values = [v * scale for v in values]
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def accuracy(datasets: list[str], seeds: int, work: Path) -> tuple[list[str], dict]:
    lines = ["| dataset | configuration | model (size, fine_tune) | test accuracy % | balanced % | train s |",
             "|---|---|---|---|---|---|"]
    data = {}
    for name in datasets:
        root = build(name, work)
        for config in CONFIGS:
            runs = []
            for seed in range(seeds):
                with tempfile.TemporaryDirectory() as cache:
                    runs.append(run(root, config, seed, work / "model", Path(cache)))
                    if config == "default" and seed == 0:
                        again = run(root, config, seed, work / "model", Path(cache))
                        data[f"{name}/second_run"] = again
                print(name, config, runs[-1], flush=True)
            data[f"{name}/{config}"] = runs
            first = runs[0]
            lines.append(f"| {name} | {config} | {first['model']} ({first['size']}, {first['fine_tune']}) | "
                         f"{_median([r['accuracy'] for r in runs], 100)} | "
                         f"{_median([r['balanced_accuracy'] for r in runs], 100)} | "
                         f"{_median([r['seconds'] for r in runs], 1, 0)} |")
        if f"{name}/second_run" in data:
            lines.append(f"| {name} | default, second run (warm cache) | | | | "
                         f"{data[f'{name}/second_run']['seconds']:.0f} |")
    return lines, data


def speed(repeats: int = 3) -> tuple[list[str], dict]:
    """Embeddings/s at 96, 160, 224 px in float32 and bfloat16, and the head fit's seconds."""
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()
    import keras

    from gemm import gemm_gflops
    from mnist_folders.networks import efficientnet_lite
    from mnist_folders.train import fine_tuning
    from mnist_folders.networks.build import build_model

    lines = ["| size | dtype | embeddings/s | GFLOP/s | GEMM GFLOP/s (same dtype, same run) | MFU |",
             "|---|---|---|---|---|---|"]
    data = {}
    rng = np.random.default_rng(0)
    for dtype, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        keras.mixed_precision.set_global_policy(policy)
        gemm = gemm_gflops(dtype)
        for size in (96, 160, 224):
            model = efficientnet_lite.backbone((size, size, 3))
            images = rng.random((64, size, size, 3), dtype=np.float32)
            model.predict_on_batch(images)  # warm-up
            rates = []
            for _ in range(repeats):
                started = time.perf_counter()
                model.predict_on_batch(images)
                rates.append(64 / (time.perf_counter() - started))
            rate = statistics.median(rates)
            flops = rate * FLOPS_224 * (size / 224) ** 2 / 1e9
            data[f"{size}/{dtype}"] = {"images_per_s": rates, "gemm": gemm}
            lines.append(f"| {size} | {dtype} | {rate:.0f} ({min(rates):.0f}-{max(rates):.0f}) | {flops:.0f} | "
                         f"{gemm:.0f} | {100 * flops / gemm:.0f} % |")
    keras.mixed_precision.set_global_policy("float32")
    model = build_model("efficientnet_lite0", (96, 96, 3), 10)
    vectors = rng.random((2000, efficientnet_lite.FEATURES), dtype=np.float32)
    labels = rng.integers(0, 10, 2000)
    vectors[np.arange(2000), labels] += 2.0  # a learnable signal
    started = time.perf_counter()
    logs = fine_tuning.fit_head(model, (vectors[:1600], labels[:1600]), (vectors[1600:], labels[1600:]), 10, None, 0.0)
    head = time.perf_counter() - started
    data["head_fit"] = {"seconds": head, "epochs": logs["head_epochs"]}
    lines.append(f"\nHead fit on 1,600 + 400 embeddings: {head:.1f} s ({logs['head_epochs']} epochs)")
    return lines, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default="digits96_5,digits96_10,digits96_20,digits96_100,digits160_10,"
                                              "unbalanced_128")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "mnist_folders_transfer")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--name", default="transfer")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    lines, data = [], {}
    if not args.skip_speed:
        speed_lines, data["speed"] = speed()
        lines += speed_lines + [""]
    if not args.skip_accuracy:
        accuracy_lines, data["accuracy"] = accuracy(args.datasets.split(","), args.seeds, args.work)
        lines += accuracy_lines
    save(args.name, machine_line(), "\n".join(lines), data)


if __name__ == "__main__":
    main()
