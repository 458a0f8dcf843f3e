#!/usr/bin/env python3
"""Train every registered model from the MNIST PNG tree with its own defaults
and print one table: parameters, seconds per epoch, test accuracy on all
10,000 test images, and the published figure beside it.

Not run by CI (it takes tens of minutes on 2 cores). Usage:

    python bench/models.py [--data-dir mnist_data] [--models mlp,strong] [--out bench/results]

Writes ``<out>/models.json`` and ``<out>/models.md``; model directories go to
``<out>/models/<name>``. With ``--models``, the rows of the other models
already in ``<out>/models.json`` are kept (so one slow model can be re-run on
its own); the table lists them in registry order.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, machine_line

from mnist_folders.commands import cli


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO / "mnist_data")
    parser.add_argument("--models", help="comma-separated subset (default: all)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    cli.quiet_tensorflow()
    from mnist_folders.networks import dtype_policy
    from mnist_folders.networks.saved import load_trained_model
    from mnist_folders.serve.evaluation import evaluate
    from mnist_folders.registry import MODELS
    from mnist_folders.settings import Setting
    from mnist_folders.train.training import train

    if not (args.data_dir / "train").is_dir():
        subprocess.run([sys.executable, str(REPO / "parse_mnist.py"), "--out", str(args.data_dir), "--quiet"],
                       check=True)
    names = args.models.split(",") if args.models else list(MODELS)
    rows = []
    for name in names:
        spec = MODELS[name]  # each model with its tutorial's fixed epochs and batch, as published
        setting = Setting(data_dir=str(args.data_dir), model=name, model_dir=str(args.out / "models" / name),
                          epochs=spec.epochs, batch_size=spec.batch_size)
        started = time.perf_counter()
        result = train(setting, verbose=2, log=lambda message: print(f"[{name}] {message}", flush=True),
                       progress=False)
        wall = time.perf_counter() - started
        report = evaluate(setting, progress=False)
        model, _, _ = load_trained_model(setting.model_path)
        seconds = [row["seconds"] for row in result.history]
        rows.append({
            "model": name,
            "parameters": int(model.count_params()),
            "epochs": setting.epochs,
            "batch_size": setting.batch_size,
            "dtype_policy": dtype_policy.resolve(setting.dtype_policy),
            "seconds_per_epoch_median": statistics.median(seconds),
            "seconds_per_epoch_min": min(seconds),
            "seconds_per_epoch_max": max(seconds),
            "train_wall_seconds": wall,
            "test_accuracy": report.accuracy,
            "published": MODELS[name].published,
        })
        print(json.dumps(rows[-1]), flush=True)

    previous = args.out / "models.json"
    if args.models and previous.exists():
        kept = [r for r in json.loads(previous.read_text())["rows"] if r["model"] not in names]
        order = list(MODELS)
        rows = sorted(kept + rows, key=lambda r: order.index(r["model"]) if r["model"] in order else len(order))
    machine = machine_line()
    lines = [f"Machine: {machine}", "",
             "| model | parameters | epochs x batch | precision | s/epoch (median, min-max) | test accuracy (10,000 images) "
             "| published |",
             "| --- | ---: | ---: | --- | ---: | ---: | --- |"]
    for r in rows:
        lines.append(
            f"| `{r['model']}` | {r['parameters']:,} | {r['epochs']} x {r['batch_size']} | {r.get('dtype_policy', r.get('precision', 'float32'))} | "
            f"{r['seconds_per_epoch_median']:.1f} ({r['seconds_per_epoch_min']:.1f}-{r['seconds_per_epoch_max']:.1f}) | "
            f"{r['test_accuracy'] * 100:.2f} % | {r['published']} |"
        )
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "models.md").write_text(table + "\n")
    (args.out / "models.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    cli.run(main)
