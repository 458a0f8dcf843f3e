#!/usr/bin/env python3
"""Which training settings may be the reference model's defaults: test accuracy
and wall time of each candidate, side by side in one run.

Each run is a fresh process that trains cnn_64_128_256 from the PNG tree
through the library's own ``train`` (best-``val_accuracy`` checkpoint, the
validation split held out) and then ``evaluate``s that checkpoint on all
10,000 test images. Candidates differ in batch size, learning rate and
precision only; every other setting is the project's default. Seeds
1337, 1338, ... give each candidate the same data orders; runs are interleaved
so machine noise spreads evenly. A candidate keeps the reference model's
accuracy when its median test accuracy is no lower than the old default's
(float32, batch 32, RMSprop 0.001) minus the spread between seeds.

    python -m bench.experiments.default_candidates [--repeats 3] [--epochs 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from pathlib import Path

from bench import common

from bench.common import REPO, fmt, machine_line, repeat, save

common.RESULTS = Path(__file__).resolve().parent / "results"  # this experiment's results, kept beside it

# name -> Setting overrides
CANDIDATES = {
    "fp32 b32 lr 0.001 (old default)": {"batch_size": 32, "learning_rate": 0.001, "dtype_policy": "float32"},
    "fp32 b256 lr 0.002": {"batch_size": 256, "learning_rate": 0.002, "dtype_policy": "float32"},
    "bf16 b256 lr 0.002": {"batch_size": 256, "learning_rate": 0.002, "dtype_policy": "mixed_bfloat16"},
}
REFERENCE = "fp32 b32 lr 0.001 (old default)"


def worker(name: str, epochs: int, seed: int, data_dir: str) -> None:
    """Train and evaluate one candidate in this process; print a JSON line."""
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()
    from mnist_folders.serve.evaluation import evaluate
    from mnist_folders.settings import Setting
    from mnist_folders.train.training import train

    with tempfile.TemporaryDirectory(dir=REPO / "bench") as model_dir:
        setting = Setting(data_dir=data_dir, model_dir=model_dir, model="cnn_64_128_256", epochs=epochs, seed=seed,
                          **CANDIDATES[name])
        started = time.perf_counter()
        result = train(setting, verbose=0, log=lambda _: None, progress=False)
        train_s = time.perf_counter() - started
        report = evaluate(setting, progress=False)
    best_epoch = max(result.history, key=lambda row: row["val_accuracy"])["epoch"]
    print(json.dumps({"test_accuracy": report.accuracy, "best_val_accuracy": result.best_val_accuracy,
                      "best_epoch": best_epoch, "train_seconds": train_s}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--data-dir", default=str(REPO / "mnist_data"))
    parser.add_argument("--worker", nargs=2, metavar=("NAME", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.epochs, int(args.worker[1]), args.data_dir)
        return 0
    runs: dict[str, list[dict]] = {name: [] for name in CANDIDATES}
    for r in range(args.repeats):
        for name in CANDIDATES:
            out = subprocess.run([sys.executable, "-m", "bench.experiments.default_candidates", "--worker", name,
                                  str(1337 + r), "--epochs", str(args.epochs), "--data-dir", args.data_dir],
                                 cwd=REPO, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{name} seed {1337 + r}: {json.dumps(runs[name][-1])}", flush=True)
    summary = {}
    for name, rs in runs.items():
        summary[name] = {"test_accuracy": repeat(iter([r["test_accuracy"] for r in rs]).__next__, len(rs)),
                         "train_seconds": repeat(iter([r["train_seconds"] for r in rs]).__next__, len(rs))}
    ref_s = summary[REFERENCE]["train_seconds"]["median"]
    lines = [f"cnn_64_128_256, {args.epochs} epochs, RMSprop, best val_accuracy checkpoint; seeds "
             f"1337..{1336 + args.repeats}; accuracy on all 10,000 test images", "",
             "| candidate | test accuracy % (median, min-max) | best epochs | train s (median, min-max) | "
             "speed vs old default |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, s in summary.items():
        acc = {k: v * 100 for k, v in s["test_accuracy"].items() if k != "runs"}
        epochs = "/".join(str(r["best_epoch"]) for r in runs[name])
        lines.append(f"| {name} | {fmt(acc, 2)} | {epochs} | {fmt(s['train_seconds'], 0)} | "
                     f"{ref_s / s['train_seconds']['median']:.2f}x |")
    save("default_candidates", machine_line(), "\n".join(lines), {"epochs": args.epochs, "runs": runs,
                                                                   "summary": summary})
    return 0


if __name__ == "__main__":
    sys.exit(main())
