#!/usr/bin/env python3
"""Data beyond memory and training beyond one process, measured side by side in one run.

1. The ``cache`` modes on generated RGB folders (real MNIST digits recoloured
   and upscaled to 96x96 PNG) at 1x, 4x and 16x ``--base`` images: peak RSS
   and training images/s of epoch 2 (after the decoding and the first
   epoch's tracing) of ``--mode train --epochs 2`` (``cnn_fast``, the
   automatic model at this size), for ``memory``, ``disk`` and ``none``, and
   the ``idg`` pipeline at 1x for comparison with ``none``.
2. Larger than memory: ``--big`` images at 160x160x3 (16 GB decoded at the
   default 210,000): one epoch of ``--mode train --model cnn_fast`` with
   ``disk`` and with ``none``: peak RSS, the decode / cache pass and the
   epoch's images/s. (The reference model would take hours per epoch at this
   size on 2 cores; what is measured is that memory stays flat.)
3. ``strategy``: one epoch of the reference model on ``--mw-images`` MNIST
   images with one process, ``mirrored`` over two logical CPU devices, and
   two ``multi_worker`` processes on loopback ports (on 2 shared cores no
   speed-up is expected: the point is what distribution costs).

Peak RSS: the largest of the command's process and its worker processes
(``ru_maxrss`` of the children, as bench/memory.py).

    python bench/scale.py [--base 3000] [--factors 1,4,16] [--rounds 1] [--big 210000] [--mw-images 10000]
                          [--parts cache,big,strategy] [--work DIR]

``--work DIR`` keeps the generated trees there and reuses them on the next run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from common import REPO, machine_line, save, sgemm_gflops
from memory import peak_rss_mb
from own_data import _recolour

CLI = str(REPO / "mnist_keras.py")


def _write_part(root: str, size: int, start: int, stop: int) -> None:
    from mnist_folders.data.idx import load_split

    images, labels = load_split(REPO / "data" / "mnist", "train")
    rng = np.random.default_rng(start)
    for k in range(start, stop):
        i = k % len(images)
        folder = Path(root) / "train" / str(labels[i])
        folder.mkdir(parents=True, exist_ok=True)
        _recolour(images[i], rng, size).save(folder / f"{k:06d}.png")


def build_tree(root: Path, count: int, size: int) -> None:
    """``count`` RGB PNGs of ``size`` x ``size`` under ``root/train/<digit>/``, written by 2 processes."""
    step = -(-count // 8)
    with ProcessPoolExecutor(len(os.sched_getaffinity(0))) as pool:
        list(pool.map(_write_part, *zip(*[(str(root), size, a, min(count, a + step))
                                          for a in range(0, count, step)])))


def epoch_rate(model_dir: Path, epoch: int) -> float:
    """Training images per second of ``epoch`` (history.csv and dataset.json)."""
    with open(model_dir / "history.csv") as f:
        seconds = float(list(csv.DictReader(f))[epoch - 1]["seconds"])
    return json.loads((model_dir / "dataset.json").read_text())["train_images"] / seconds


def train(data: Path, work: Path, flags: list[str], epochs: int = 2) -> tuple[float, float, float]:
    """``(peak RSS MiB, images/s of the last epoch, wall seconds)`` of one ``--mode train``."""
    model_dir = Path(tempfile.mkdtemp(dir=work))
    started = time.perf_counter()
    rss = peak_rss_mb([sys.executable, CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir),
                       "--epochs", str(epochs), "--quiet", "--format", "none", *flags])
    return rss, epoch_rate(model_dir, epochs), time.perf_counter() - started


def two_workers(data: Path, work: Path, flags: list[str]) -> tuple[float, float]:
    """``(images/s of epoch 1 on the chief, wall seconds)`` of two multi_worker processes on loopback ports."""
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
    return epoch_rate(model_dir, 1), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=int, default=3000, help="images at 1x (96x96)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each cache mode per size (median)")
    parser.add_argument("--factors", default="1,4,16", help="sizes of the cache part, in multiples of --base")
    parser.add_argument("--big", type=int, default=210_000, help="images at 160x160 (0: skip)")
    parser.add_argument("--mw-images", type=int, default=10000)
    parser.add_argument("--parts", default="cache,big,strategy")
    parser.add_argument("--work", help="keep the generated trees here and reuse them (default: a temporary folder)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    machine, gflops = machine_line(), sgemm_gflops()
    data, text = {"gflops": gflops}, [f"float32 GEMM {gflops:.0f} GFLOP/s in this run"]
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        work = Path(tmp)
        trees = Path(args.work) if args.work else work

        def tree_of(name: str, count: int, size: int) -> Path:
            tree = trees / name
            if not (tree / "train").is_dir() or sum(1 for _ in (tree / "train").rglob("*.png")) != count:
                shutil.rmtree(tree, ignore_errors=True)
                build_tree(tree, count, size)
            return tree

        if "cache" in parts:
            lines = ["| images (decoded) | pipeline / cache | peak RSS (MiB) | images/s, epoch 2 (median, min-max) "
                     "| vs memory | wall s |", "|---:|---|---:|---:|---:|---:|"]
            for factor in (int(f) for f in args.factors.split(",")):
                count = args.base * factor
                tree = tree_of(f"x{factor}_{count}", count, 96)
                decoded = count * 96 * 96 * 3 / 2**30
                runs = [("memory", ["--cache", "memory"]), ("disk", ["--cache", "disk"]),
                        ("none", ["--cache", "none"])] + ([("idg", ["--pipeline", "idg"])] if factor <= 4 else [])
                results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in runs}
                for _ in range(args.rounds):  # alternating, so a slow spell of the machine touches every mode
                    for name, flags in runs:
                        results[name].append(train(tree, work, [*flags, "--model", "cnn_fast"]))
                base = float(np.median([r[1] for r in results["memory"]]))
                for name, _ in runs:
                    rss, rate, wall = (np.median([r[k] for r in results[name]]) for k in range(3))
                    low, high = min(r[1] for r in results[name]), max(r[1] for r in results[name])
                    data[f"{factor}x/{name}"] = {"images": count, "rss_mib": rss, "images_per_s": rate, "wall_s": wall,
                                                 "runs": results[name]}
                    lines.append(f"| {count:,} ({decoded:.2f} GiB) | {name} | {rss:,.0f} | {rate:,.0f} "
                                 f"({low:,.0f}-{high:,.0f}) | {rate / base:.2f}x | {wall:.0f} |")
                    print(lines[-1], flush=True)
            text += ["", f"`--mode train --epochs 2`, cnn_fast, 96x96 RGB PNG (images/s of epoch 2, {args.rounds} "
                     "run(s) of each):", "", *lines]
        if "big" in parts and args.big:
            tree = tree_of(f"big_{args.big}", args.big, 160)
            decoded = args.big * 160 * 160 * 3 / 2**30
            lines = ["| images (decoded) | cache | peak RSS (MiB) | images/s, the epoch | wall s (process start to "
                     "exit) |", "|---:|---|---:|---:|---:|"]
            for mode in ("disk", "none"):
                rss, rate, wall = train(tree, work, ["--cache", mode, "--model", "cnn_fast"], epochs=1)
                data[f"big/{mode}"] = {"images": args.big, "rss_mib": rss, "images_per_s": rate, "wall_s": wall}
                lines.append(f"| {args.big:,} ({decoded:.1f} GiB) | {mode} | {rss:,.0f} | {rate:,.0f} | {wall:.0f} |")
                print(lines[-1], flush=True)
            text += ["", "One epoch of `--mode train --model cnn_fast`, 160x160 RGB PNG, batch 256:", "", *lines]
        if "strategy" in parts:
            mnist = work / "mnist"
            subprocess.run([sys.executable, str(REPO / "parse_mnist.py"), "--out", str(mnist), "--limit",
                            str(args.mw_images), "--quiet"], check=True, capture_output=True)
            flags = ["--model", "cnn_64_128_256", "--dtype-policy", "float32"]
            one = train(mnist, work, [*flags, "--strategy", "one_device"], epochs=1)
            mirrored = train(mnist, work, [*flags, "--strategy", "mirrored"], epochs=1)
            workers = two_workers(mnist, work, flags)
            data["strategy"] = {"one_device": one[1:], "mirrored": mirrored[1:], "multi_worker": workers}
            text += ["", f"One epoch of cnn_64_128_256 (float32) on {args.mw_images:,} MNIST images:", "",
                     "| strategy | images/s, epoch 1 | vs one device | wall s |", "|---|---:|---:|---:|",
                     f"| one_device | {one[1]:,.0f} | 1.00x | {one[2]:.0f} |",
                     f"| mirrored (2 logical CPUs) | {mirrored[1]:,.0f} | {mirrored[1] / one[1]:.2f}x "
                     f"| {mirrored[2]:.0f} |",
                     f"| multi_worker (2 processes) | {workers[0]:,.0f} | {workers[0] / one[1]:.2f}x "
                     f"| {workers[1]:.0f} |"]
    # One file per part run alone (results/scale_big.md, ...), so separate runs do not overwrite each other.
    save("scale" if parts >= {"cache", "big", "strategy"} else "scale_" + "_".join(sorted(parts)), machine,
         "\n".join(text), data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
