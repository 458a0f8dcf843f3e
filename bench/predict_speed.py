#!/usr/bin/env python3
"""Prediction speed: ``--mode predict`` on folders of 1,000 and 10,000 PNGs
against ``model.predict`` on the same images already in memory.

Four figures per folder size, each the median of ``--repeats`` runs:
- CLI: wall seconds of ``mnist_keras.py --mode predict`` (process start included);
- library: ``predict`` in a warm process (process start excluded: model
  load, file decoding, batched prediction, CSV);
- floor: ``model.predict`` on the decoded images as one in-memory array;
- decode: the library's decoding of the folder alone (``decode_images``), to
  show how much of the library's time over the floor it accounts for.

The model runs under the precision policy saved with it (``load_trained_model``
applies it for the library and the floor alike).

    python bench/predict_speed.py [--model-dir bench/results/models/cnn_64_128_256]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, fmt, machine_line, repeat, save


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "mnist")
    parser.add_argument("--data-dir", type=Path, default=REPO / "mnist_data")
    parser.add_argument("--sizes", default="1000,10000", help="comma-separated folder sizes, images")
    args = parser.parse_args()
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()
    from mnist_folders.networks import dtype_policy
    from mnist_folders.networks.saved import load_trained_model
    from mnist_folders.artifacts import setting_for_model
    from mnist_folders.data.folders import list_files
    from mnist_folders.data.decoding import decode_images
    from mnist_folders.data.images import scale
    from mnist_folders.serve.prediction import predict

    tests = sorted((args.data_dir / "test").rglob("*.png"))
    model, setting, _ = load_trained_model(args.model_dir)
    rows, lines = {}, ["| images | CLI s, process start included | library s (images/s) | floor: model.predict s "
                       "(images/s) | library / floor | decode alone s |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for count in (int(size) for size in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            for path in tests[:count]:
                shutil.copy(path, folder / f"{path.parent.name}_{path.name}")
            output = folder.parent / f".predictions-{count}.csv"

            def run_cli() -> float:
                started = time.perf_counter()
                subprocess.run([sys.executable, str(REPO / "mnist_keras.py"), "--mode", "predict", "--model-dir",
                                str(args.model_dir), "--input", str(folder), "--output", str(output), "--quiet"],
                               check=True, capture_output=True)
                return time.perf_counter() - started

            def run_library() -> float:
                started = time.perf_counter()
                predict(setting_for_model({"model_dir": str(args.model_dir), "predict_dir": str(folder)}), output,
                        progress=False)
                return time.perf_counter() - started

            images = scale(decode_images(list_files(folder)[0], setting).images)
            model.predict(images[:256], verbose=0)  # warm-up, as the library run's model load includes one

            def run_floor() -> float:
                started = time.perf_counter()
                model.predict(images, batch_size=256, verbose=0)
                return time.perf_counter() - started

            def run_decode() -> float:
                started = time.perf_counter()
                decode_images(list_files(folder)[0], setting)
                return time.perf_counter() - started

            run_library()  # warm the page cache and TensorFlow once
            stats = {name: repeat(fn, args.repeats) for name, fn in
                     (("cli", run_cli), ("library", run_library), ("floor", run_floor), ("decode", run_decode))}
            output.unlink(missing_ok=True)
        ratio = stats["library"]["median"] / stats["floor"]["median"]
        rows[count] = {**stats, "library_over_floor": ratio}
        lines.append(f"| {count:,} | {fmt(stats['cli'], 2)} | {fmt(stats['library'], 2)} "
                     f"({count / stats['library']['median']:.0f}) | {fmt(stats['floor'], 2)} "
                     f"({count / stats['floor']['median']:.0f}) | {ratio:.2f}x | {fmt(stats['decode'], 2)} |")
        print(f"per-image latency at {count:,}: library {stats['library']['median'] / count * 1e3:.3f} ms", flush=True)
        rows[count]["latency_ms"] = stats["library"]["median"] / count * 1e3
    lines.insert(0, f"Model: {args.model_dir.name}, precision {setting.dtype_policy} "
                    f"({dtype_policy.resolve(setting.dtype_policy)} here)\n")
    save("predict_speed", machine_line(), "\n".join(lines), {"sizes": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
