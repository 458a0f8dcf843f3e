#!/usr/bin/env python3
"""Export speed: all 70,000 MNIST PNGs, this project's exporter against the
tutorial approach and the write floor, measured side by side in one run.

- project: ``export_split`` (NumPy IDX decode, PNG encode in one process per
  core, temporary file + rename), into an empty folder;
- tutorial: a ``struct.unpack`` per pixel row of each image and one
  ``Image.save`` per file, in one process;
- floor: the same PNG bytes, encoded beforehand, written to the same disk
  with one ``open``/``write`` per file, in one process.

Each figure is the median of ``--repeats`` runs into fresh folders; the spread
(min-max) is the file-system noise.

    python bench/export_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import struct
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, fmt, machine_line, repeat, save

MNIST = REPO / "data" / "mnist"
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def tutorial_export(out: Path) -> None:
    """The classic loop: parse the header and each image with struct, save each PNG."""
    from PIL import Image

    for split, (images_name, labels_name) in FILES.items():
        with gzip.open(MNIST / labels_name) as handle:
            _, count = struct.unpack(">II", handle.read(8))
            labels = struct.unpack(f">{count}B", handle.read(count))
        with gzip.open(MNIST / images_name) as handle:
            _, count, rows, cols = struct.unpack(">IIII", handle.read(16))
            for i in range(count):
                pixels = [struct.unpack(f">{cols}B", handle.read(cols)) for _ in range(rows)]
                folder = out / split / str(labels[i])
                folder.mkdir(parents=True, exist_ok=True)
                image = Image.new("L", (cols, rows))
                image.putdata([p for row in pixels for p in row])
                image.save(folder / f"{i}.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from mnist_folders.export import encode_png, export_split, image_paths
    from mnist_folders.idx import load_split

    splits = {split: load_split(MNIST, split) for split in FILES}
    encoded = {split: [encode_png(image) for image in images] for split, (images, _) in splits.items()}

    def timed(work) -> float:
        with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
            started = time.perf_counter()
            work(Path(tmp))
            return time.perf_counter() - started

    def project(out: Path) -> None:
        for split in FILES:  # IDX decoding is part of the work measured
            images, labels = load_split(MNIST, split)
            export_split(images, labels, out / split, progress=False)

    def floor(out: Path) -> None:
        for split, (_, labels) in splits.items():
            paths = image_paths(out / split, labels)
            for label in set(labels.tolist()):
                (out / split / str(label)).mkdir(parents=True, exist_ok=True)
            for path, data in zip(paths, encoded[split]):
                with open(path, "wb") as handle:
                    handle.write(data)

    runs = {"project": [], "tutorial": [], "floor": []}
    for _ in range(args.repeats):  # interleaved, so noise spreads over all three
        for name, work in (("project", project), ("tutorial", tutorial_export), ("floor", floor)):
            runs[name].append(timed(work))
            print(f"{name}: {runs[name][-1]:.2f} s", flush=True)
    stats = {name: repeat(iter(values).__next__, len(values)) for name, values in runs.items()}
    floor_s = stats["floor"]["median"]
    lines = ["| exporter | seconds for 70,000 PNGs (median, min-max) | images/s | vs floor |",
             "| --- | ---: | ---: | ---: |"]
    for name, s in stats.items():
        lines.append(f"| {name} | {fmt(s, 2)} | {70000 / s['median']:.0f} | {s['median'] / floor_s:.2f}x |")
    save("export_speed", machine_line(), "\n".join(lines), {"seconds": stats})
    return 0


if __name__ == "__main__":
    sys.exit(main())
