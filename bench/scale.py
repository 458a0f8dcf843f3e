#!/usr/bin/env python3
"""Data beyond memory and training beyond one process, measured side by side in one run.

1. The ``cache`` modes: peak RSS and training images/s of ``--mode train``
   (one epoch) on generated RGB image folders (MNIST digits recoloured and
   upscaled to 96x96 PNG) at 1x, 4x and 16x ``--base`` images, for
   ``memory``, ``disk`` and ``none``. The decoded data grows 16x; the figure
   that matters is how each mode's peak RSS grows with it.
2. ``strategy``: one epoch of the reference model on ``--mw-images`` MNIST
   images with one process, ``mirrored`` over two logical CPU devices, and
   two ``multi_worker`` processes on loopback ports (on 2 shared cores no
   speed-up is expected: the point is what distribution costs).

Peak RSS: the largest of the command's process and its worker processes
(``ru_maxrss`` of the children, as bench/memory.py). Images/s: training
images over the first epoch's wall seconds in ``history.csv`` (decoding and
tracing are before it, validation is inside it).

    python bench/scale.py [--base 3000] [--mw-images 10000]
"""

from __future__ import annotations

import argparse
import csv
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import REPO, machine_line, save, sgemm_gflops
from memory import peak_rss_mb
from own_data import _recolour

CLI = str(REPO / "mnist_keras.py")
SIZE = 96


def build_tree(root: Path, count: int) -> None:
    """``count`` RGB PNGs at 96x96 under ``root/train/<digit>/``: real MNIST digits, random colours."""
    sys.path.insert(0, str(REPO))
    from mnist_folders.idx import load_split

    images, labels = load_split(REPO / "data" / "mnist", "train")
    rng = np.random.default_rng(0)
    for k in range(count):
        i = k % len(images)
        folder = root / "train" / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        _recolour(images[i], rng, SIZE).save(folder / f"{k:06d}.png")


def first_epoch_rate(model_dir: Path) -> float:
    """Training images per second of epoch 1 (history.csv and dataset.json)."""
    with open(model_dir / "history.csv") as f:
        seconds = float(next(csv.DictReader(f))["seconds"])
    return json.loads((model_dir / "dataset.json").read_text())["train_images"] / seconds


def train_once(data: Path, work: Path, flags: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """``(peak RSS MiB, images/s of epoch 1, wall seconds)`` of one ``--mode train --epochs 1``."""
    model_dir = Path(tempfile.mkdtemp(dir=work))
    started = time.perf_counter()
    rss = peak_rss_mb([sys.executable, CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir),
                       "--epochs", "1", "--quiet", *flags])
    return rss, first_epoch_rate(model_dir), time.perf_counter() - started


def two_workers(data: Path, work: Path, flags: list[str]) -> tuple[float, float]:
    """``(images/s of epoch 1 on the chief, wall seconds)`` of two multi_worker processes on loopback ports."""
    import os

    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    model_dir = Path(tempfile.mkdtemp(dir=work))
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    started = time.perf_counter()
    processes = [subprocess.Popen(
        [sys.executable, CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir),
         "--epochs", "1", "--quiet", *flags],
        env={**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(2)]
    for p in processes:
        if p.wait() != 0:
            raise RuntimeError(f"multi_worker process exited {p.returncode}")
    return first_epoch_rate(model_dir), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=3000, help="images at 1x")
    parser.add_argument("--mw-images", type=int, default=10000)
    args = parser.parse_args()
    machine, gflops = machine_line(), sgemm_gflops()
    data = {}
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        work = Path(tmp)
        lines = ["| images (decoded) | cache | peak RSS (MiB) | images/s, epoch 1 | wall s (decode + train) |",
                 "|---:|---|---:|---:|---:|"]
        for factor in (1, 4, 16):
            count = args.base * factor
            tree = work / f"x{factor}"
            build_tree(tree, count)
            decoded = count * SIZE * SIZE * 3 / 2**30
            for mode in ("memory", "disk", "none"):
                rss, rate, wall = train_once(tree, work, ["--cache", mode, "--model", "cnn_fast"])
                data[f"{factor}x/{mode}"] = {"images": count, "rss_mib": rss, "images_per_s": rate, "wall_s": wall}
                lines.append(f"| {count:,} ({decoded:.2f} GiB) | {mode} | {rss:,.0f} | {rate:,.0f} | {wall:.0f} |")
            print("\n".join(lines[-3:]), flush=True)
        mnist = work / "mnist"
        subprocess.run([sys.executable, str(REPO / "parse_mnist.py"), "--out", str(mnist), "--limit",
                        str(args.mw_images), "--quiet"], check=True, capture_output=True)
        flags = ["--model", "cnn_64_128_256", "--dtype-policy", "float32"]
        one = train_once(mnist, work, [*flags, "--strategy", "one_device"])
        mirrored = train_once(mnist, work, [*flags, "--strategy", "mirrored"])
        workers = two_workers(mnist, work, flags)
        data["strategy"] = {"one_device": one[1:], "mirrored": mirrored[1:], "multi_worker": workers}
        strategy = ["| strategy | images/s, epoch 1 | vs one device | wall s |", "|---|---:|---:|---:|",
                    f"| one_device | {one[1]:,.0f} | 1.00x | {one[2]:.0f} |",
                    f"| mirrored (2 logical CPUs) | {mirrored[1]:,.0f} | {mirrored[1] / one[1]:.2f}x | {mirrored[2]:.0f} |",
                    f"| multi_worker (2 processes) | {workers[0]:,.0f} | {workers[0] / one[1]:.2f}x | {workers[1]:.0f} |"]
    text = "\n".join([f"float32 GEMM {gflops:.0f} GFLOP/s in this run", "",
                      f"`--mode train --epochs 1`, cnn_fast, {SIZE}x{SIZE} RGB PNG:", "", *lines, "",
                      f"One epoch of cnn_64_128_256 (float32) on {args.mw_images:,} MNIST images:", "", *strategy])
    save("scale", machine, text, {"gflops": gflops, **data})
    return 0


if __name__ == "__main__":
    sys.exit(main())
