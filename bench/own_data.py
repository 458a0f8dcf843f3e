#!/usr/bin/env python3
"""Your own images with nothing tuned: the old defaults against the new
(automatic) ones on datasets built from the shipped MNIST, and the training
speed of the models for larger images, side by side in one run.

Datasets (built once under ``--work``, from ``data/mnist``):

- ``mnist_1000``: 100 training images per class; the full 10,000-image test set.
- ``mnist_full``: all 60,000 training images; the full test set.
- ``rgb_96``: 500 training images per class upscaled to 96x96 and recoloured
  (random ink and paper colours), RGB JPEG; 200 test images per class.
- ``unbalanced_128``: 4 classes (digits 0, 1, 2, 3) upscaled to 128x128,
  recoloured, with 300, 150, 60 and 30 training images (10x between the
  largest and the smallest); 100 test images per class.

For each dataset and seed, two fresh processes train through the CLI and
evaluate on the test tree: ``before`` (the defaults before automatic
training: the reference model, 8 epochs at batch 256, validation files the
first of each class, no class weights) and ``after`` (nothing set but the
data folder, and the image size for the larger images). Figures: median test
accuracy, balanced accuracy and wall time (train + evaluate, process start
included) over the seeds, with min-max.

The speed part trains each model for larger images on random uint8 images
already in memory (``train_on_batch``, after a warm-up) and prints images/s
at 96x96 and 224x224 RGB, each beside ``strong``'s in the same run.

    python bench/own_data.py [--seeds 3] [--datasets mnist_1000,unbalanced_128] [--skip-speed] [--name NAME]
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import REPO, machine_line, save

CLI = str(REPO / "mnist_keras.py")
BEFORE = ["--model", "cnn_64_128_256", "--epochs", "8", "--batch-size", "256", "--split-order", "sorted",
          "--class-weight", "none"]


def _recolour(digit: np.ndarray, rng: np.random.Generator, size: int) -> Image.Image:
    """A 28x28 digit as an RGB picture of ``size`` pixels: random ink and paper colours."""
    ink, paper = rng.integers(140, 256, 3), rng.integers(0, 90, 3)
    alpha = (digit.astype(np.float32) / 255.0)[..., None]
    rgb = (alpha * ink + (1 - alpha) * paper).astype(np.uint8)
    return Image.fromarray(rgb, "RGB").resize((size, size), Image.Resampling.BICUBIC)


def _write(root: Path, images: np.ndarray, labels: np.ndarray, counts: dict[int, int], size: int | None,
           rng: np.random.Generator) -> None:
    for digit, count in counts.items():
        folder = root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(labels == digit)[:count]):
            if size is None:
                Image.fromarray(images[i], "L").save(folder / f"{k:05d}.png")
            else:
                _recolour(images[i], rng, size).save(folder / f"{k:05d}.jpg", quality=90)


def build(name: str, work: Path) -> tuple[Path, list[str]]:
    """Build dataset ``name`` under ``work`` (once); return its folder and the flags it needs."""
    from mnist_folders.data.idx import load_split

    root = work / name
    flags = {"rgb_96": ["--image-height", "96", "--image-width", "96"],
             "unbalanced_128": ["--image-height", "128", "--image-width", "128"]}.get(name, [])
    if (root / "done").exists():
        return root, flags
    shutil.rmtree(root, ignore_errors=True)
    train_x, train_y = load_split(REPO / "data" / "mnist", "train")
    test_x, test_y = load_split(REPO / "data" / "mnist", "test")
    rng = np.random.default_rng(0)
    if name == "mnist_full":
        subprocess.run([sys.executable, str(REPO / "parse_mnist.py"), "--out", str(root), "--quiet"], check=True)
    elif name == "mnist_1000":
        _write(root / "train", train_x, train_y, {d: 100 for d in range(10)}, None, rng)
        _write(root / "test", test_x, test_y, {d: 10_000 for d in range(10)}, None, rng)
    elif name == "rgb_96":
        _write(root / "train", train_x, train_y, {d: 500 for d in range(10)}, 96, rng)
        _write(root / "test", test_x, test_y, {d: 200 for d in range(10)}, 96, rng)
    elif name == "unbalanced_128":
        _write(root / "train", train_x, train_y, {0: 300, 1: 150, 2: 60, 3: 30}, 128, rng)
        _write(root / "test", test_x, test_y, {d: 100 for d in range(4)}, 128, rng)
    (root / "done").write_text("ok\n")
    return root, flags


def run(data: Path, flags: list[str], config: list[str], seed: int, model_dir: Path) -> dict:
    """Train then evaluate in fresh processes; accuracy, balanced accuracy, seconds, the model used."""
    shutil.rmtree(model_dir, ignore_errors=True)
    started = time.perf_counter()
    common = ["--data-dir", str(data), "--model-dir", str(model_dir), "--quiet"]
    subprocess.run([sys.executable, CLI, "--mode", "train", *common, *flags, *config, "--seed", str(seed)],
                   check=True, capture_output=True, text=True)
    subprocess.run([sys.executable, CLI, "--mode", "evaluate", *common], check=True, capture_output=True)
    seconds = time.perf_counter() - started
    report = json.loads((model_dir / "evaluation.json").read_text())
    setting = json.loads((model_dir / "setting.json").read_text())
    with (model_dir / "history.csv").open() as handle:
        epochs = len(handle.read().strip().splitlines()) - 1
    return {"accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"], "seconds": seconds,
            "model": setting["model"], "epochs": epochs, "batch_size": setting["batch_size"]}


def _median(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    values = [v * scale for v in values]
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def speed(repeats: int = 3) -> tuple[list[str], dict]:
    """Training images/s of cnn_fast, strong and mobilenet_v3_small at 96 and 224 px RGB (float32)."""
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()
    import keras

    from mnist_folders.networks.build import build_model

    keras.mixed_precision.set_global_policy("float32")
    lines = ["| model | 96x96 images/s | vs strong | 224x224 images/s | vs strong |", "| --- | ---: | ---: | ---: | ---: |"]
    rates: dict[str, dict[int, float]] = {}
    for name in ("strong", "cnn_fast", "mobilenet_v3_small"):
        rates[name] = {}
        for size in (96, 224):
            batch = 32
            model = build_model(name, (size, size, 3), 10, "adam", 0.001)
            x = np.random.default_rng(0).random((batch, size, size, 3), dtype=np.float32)
            y = np.eye(10, dtype=np.float32)[np.arange(batch) % 10]
            model.train_on_batch(x, y)  # warm-up: builds the training function
            steps = 3 if name == "strong" and size == 224 else 8
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                for _ in range(steps):
                    model.train_on_batch(x, y)
                best = min(best, time.perf_counter() - started)
            rates[name][size] = steps * batch / best
            print(f"{name} {size}px: {rates[name][size]:.0f} images/s", flush=True)
    for name, by_size in rates.items():
        lines.append(f"| `{name}` | {by_size[96]:.0f} | {by_size[96] / rates['strong'][96]:.1f}x | "
                     f"{by_size[224]:.0f} | {by_size[224] / rates['strong'][224]:.1f}x |")
    return lines, rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--datasets", default="mnist_1000,unbalanced_128,rgb_96,mnist_full")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "tmp_own_data")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--name", default="own_data", help="results file name under bench/results/")
    args = parser.parse_args()
    results: dict[str, dict[str, list[dict]]] = {}
    lines = ["| dataset | defaults | model, epochs (median), batch | test accuracy % | balanced accuracy % | "
             "wall s (train + evaluate) |", "| --- | --- | --- | ---: | ---: | ---: |"]
    for name in args.datasets.split(","):
        data, flags = build(name, args.work)
        results[name] = {"before": [], "after": []}
        for seed in range(1337, 1337 + args.seeds):
            for label, config in (("before", BEFORE + (["--color-mode", "rgb"] if flags else [])), ("after", [])):
                result = run(data, flags, config, seed, args.work / "models" / f"{name}_{label}")
                results[name][label].append(result)
                print(f"{name} {label} seed {seed}: {json.dumps(result)}", flush=True)
        for label in ("before", "after"):
            rs = results[name][label]
            epochs = statistics.median(r["epochs"] for r in rs)
            lines.append(f"| {name} | {label} | `{rs[0]['model']}`, {epochs:g}, {rs[0]['batch_size']} | "
                         f"{_median([r['accuracy'] for r in rs], 100)} | "
                         f"{_median([r['balanced_accuracy'] for r in rs], 100)} | "
                         f"{_median([r['seconds'] for r in rs], digits=0)} |")
    table = "\n".join(lines)
    data = {"results": results}
    if not args.skip_speed:
        speed_lines, rates = speed()
        table += "\n\nTraining speed, float32, batch 32, random images in memory (best of 3):\n\n" + "\n".join(speed_lines)
        data["speed"] = rates
    save(args.name, machine_line(), table, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
