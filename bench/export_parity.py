#!/usr/bin/env python3
"""Export parity and deployment speed, measured side by side in one run.

1. ``--mode export`` of a trained model (every format), then every artifact
   on the whole test tree through its own input path against the Keras model
   as ``--mode predict --runtime keras`` runs it: top-1 agreement, largest
   probability difference, test accuracy, size, ms per image at batch 1 and
   256 (:mod:`mnist_folders.serve.parity`). Twice: against Keras under the trained
   dtype policy, and against Keras in float32 (the exports' arithmetic).
2. ``--mode predict`` as a user runs it, process start included, on 10 and on
   10,000 images: ``--runtime keras`` against ``--runtime onnx`` and
   ``--runtime tflite`` (median of ``--repeats`` runs), as ratios.

    python bench/export_parity.py --model-dir MODEL --data-dir DATA

MODEL: a model trained on DATA (e.g. ``mnist_keras.py --mode train --data-dir
DATA --model-dir MODEL``); DATA: parse_mnist.py's tree (the full test tree).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine_line, save, sgemm_gflops

CLI = str(REPO / "mnist_keras.py")


def predict_seconds(model_dir: Path, folder: Path, runtime: str, repeats: int) -> float:
    """Median wall seconds of ``mnist_keras.py --mode predict`` on ``folder`` (process start included)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input",
                        str(folder), "--runtime", runtime, "--quiet", "--output", str(folder.parent / "p.csv")],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from mnist_folders import artifacts
    from mnist_folders.serve import parity
    from mnist_folders.serve.deploy import FORMATS

    machine = machine_line()
    gflops = sgemm_gflops()
    subprocess.run([sys.executable, CLI, "--mode", "export", "--model-dir", str(args.model_dir), "--data-dir",
                    str(args.data_dir)], check=True)
    setting = artifacts.setting_for_model({"model_dir": str(args.model_dir), "data_dir": str(args.data_dir)})
    formats = ("savedmodel", "savedmodel_bytes", "tflite", "tflite_int8", "onnx")
    assert set(FORMATS) <= set(formats)
    trained = parity.table(parity.compare(setting, formats, latency=True))
    float32 = parity.table(parity.compare(setting, formats, reference_policy="float32"))

    with tempfile.TemporaryDirectory() as tmp:
        folders = {}
        test_files = sorted((args.data_dir / "test").rglob("*.png"))
        for count in (10, 10_000):
            folder = Path(tmp) / f"n{count}" / "images"
            folder.mkdir(parents=True)
            for path in test_files[:: max(1, len(test_files) // count)][:count]:
                shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
            folders[count] = folder
        speed = ["| images | keras (s) | onnx (s) | tflite (s) | keras / onnx | keras / tflite |",
                 "|---:|---:|---:|---:|---:|---:|"]
        for count, folder in folders.items():
            t = {runtime: predict_seconds(args.model_dir, folder, runtime, args.repeats)
                 for runtime in ("keras", "onnx", "tflite")}
            speed.append(f"| {count:,} | {t['keras']:.2f} | {t['onnx']:.2f} | {t['tflite']:.2f} "
                         f"| {t['keras'] / t['onnx']:.1f}x | {t['keras'] / t['tflite']:.1f}x |")
    text = "\n".join([
        f"float32 GEMM {gflops:.0f} GFLOP/s in this run",
        "", f"Against Keras as predict runs it (dtype policy {setting.dtype_policy}):", "", trained,
        "", "Against Keras in float32 (the exports' arithmetic):", "", float32,
        "", "`--mode predict`, process start included (median of {} runs):".format(args.repeats), "",
        "\n".join(speed),
    ])
    save("export_parity", machine, text, {"gflops": gflops})


if __name__ == "__main__":
    main()
