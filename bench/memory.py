#!/usr/bin/env python3
"""Peak resident memory (RSS) of train, evaluate and predict, each in its own process.

The figure is the largest RSS of the command's process or of any one of its
worker processes (Linux ``ru_maxrss`` of the children), in MiB.

    python bench/memory.py [--epochs 1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, machine_line, save


def peak_rss_mb(command: list[str]) -> float:
    """Run ``command`` through a fresh Python parent so its children's peak RSS is the command's alone."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--data-dir", default=str(REPO / "mnist_data"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as model_dir:
        cli = [sys.executable, str(REPO / "mnist_keras.py"), "--data-dir", args.data_dir, "--model-dir", model_dir,
               "--quiet"]
        rows = {
            f"train ({args.epochs} epoch, 60,000 images)": peak_rss_mb([*cli, "--mode", "train", "--epochs", str(args.epochs)]),
            "evaluate (10,000 images)": peak_rss_mb([*cli, "--mode", "evaluate"]),
            "predict (tmp, 10 images)": peak_rss_mb([*cli, "--mode", "predict"]),
            "predict (test tree, 10,000 images)": peak_rss_mb(
                [*cli, "--mode", "predict", "--input", str(Path(args.data_dir) / "test"),
                 "--output", str(Path(model_dir) / "test-predictions.csv")]),
        }
    lines = ["| command | peak RSS MiB |", "| --- | ---: |"] + [f"| {k} | {v:.0f} |" for k, v in rows.items()]
    save("memory", machine_line(), "\n".join(lines), {"peak_rss_mib": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
