#!/usr/bin/env python3
"""Export speed: all 70,000 MNIST PNGs, this project's exporter against the
tutorial approach and the write floor, measured side by side in one run.

- project: ``export_split`` (NumPy IDX decode, PNG encode in one process per
  core, temporary file + rename), into an empty folder;
- tutorial: a ``struct.unpack`` per pixel row of each image and one
  ``Image.save`` per file, in one process;
- floor: the same PNG bytes, encoded beforehand, written to the same disk
  with one ``open``/``write`` per file (no temporary file, no rename), from as
  many processes as the project's exporter uses: the ratio reference;
- floor, one process: the same, from this process alone (the file system's
  cost per file created, without parallelism).

Each figure is the median of ``--repeats`` runs into fresh folders, each
started after ``sync``; the spread (min-max) is the file-system noise.

    python bench/export_speed.py [--repeats 3] [--dir /dev/shm] [--name export_speed_tmpfs]
"""

from __future__ import annotations

import argparse
import gzip
import multiprocessing
import os
import struct
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
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


# (path, PNG bytes) pairs, set before the floor's worker processes fork so they inherit them unpickled.
_FLOOR_FILES: list[tuple[str, bytes]] = []


def _write_files(start: int, stop: int) -> None:
    for path, data in _FLOOR_FILES[start:stop]:
        with open(path, "wb") as handle:
            handle.write(data)


def filesystem(path: Path) -> str:
    """The type of the file system holding ``path`` (from /proc/mounts; "unknown" elsewhere)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    target = str(path.resolve())
    best = max((m for m in mounts if target == m[1] or target.startswith(m[1].rstrip("/") + "/")),
               key=lambda m: len(m[1]), default=None)
    return best[2] if best else "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--name", default="export_speed", help="results file name")
    parser.add_argument("--dir", type=Path, default=REPO / "bench",
                        help="where the trees are written (e.g. /dev/shm: memory, no disk noise)")
    args = parser.parse_args()
    from mnist_folders.data.export import encode_png, export_split, image_paths
    from mnist_folders.data.idx import load_split

    splits = {split: load_split(MNIST, split) for split in FILES}
    encoded = {split: [encode_png(image) for image in images] for split, (images, _) in splits.items()}

    def timed(work) -> float:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            # Flush the previous run's files (and their deletion) first, so
            # that no run pays for another's write-back.
            os.sync()
            started = time.perf_counter()
            work(Path(tmp))
            return time.perf_counter() - started

    def project(out: Path) -> None:
        for split in FILES:  # IDX decoding is part of the work measured
            images, labels = load_split(MNIST, split)
            export_split(images, labels, out / split, progress=False)

    workers = len(os.sched_getaffinity(0))  # what export_split uses by default
    fork = multiprocessing.get_context("fork")

    def floor_files(out: Path) -> list[tuple[str, bytes]]:
        files = []
        for split, (_, labels) in splits.items():
            for label in set(labels.tolist()):
                (out / split / str(label)).mkdir(parents=True, exist_ok=True)
            files.extend(zip(image_paths(out / split, labels), encoded[split]))
        return files

    def floor(out: Path) -> None:
        _FLOOR_FILES[:] = floor_files(out)
        step = -(-len(_FLOOR_FILES) // (workers * 8))
        with ProcessPoolExecutor(max_workers=workers, mp_context=fork) as pool:
            list(pool.map(_write_files, range(0, len(_FLOOR_FILES), step),
                          range(step, len(_FLOOR_FILES) + step, step)))

    def floor_one_process(out: Path) -> None:
        _FLOOR_FILES[:] = floor_files(out)
        _write_files(0, len(_FLOOR_FILES))

    exporters = {"project": project, "tutorial": tutorial_export, f"floor, {workers} processes": floor,
                 "floor, one process": floor_one_process}
    runs = {name: [] for name in exporters}
    for _ in range(args.repeats):  # interleaved, so noise spreads over all of them
        for name, work in exporters.items():
            runs[name].append(timed(work))
            print(f"{name}: {runs[name][-1]:.2f} s", flush=True)
    stats = {name: repeat(iter(values).__next__, len(values)) for name, values in runs.items()}
    floor_s = stats[f"floor, {workers} processes"]["median"]
    lines = ["| exporter | seconds for 70,000 PNGs (median, min-max) | images/s | vs floor |",
             "| --- | ---: | ---: | ---: |"]
    for name, s in stats.items():
        lines.append(f"| {name} | {fmt(s, 2)} | {70000 / s['median']:.0f} | {s['median'] / floor_s:.2f}x |")
    lines.insert(0, f"Written to: {args.dir} ({filesystem(args.dir)})\n")
    save(args.name, machine_line(), "\n".join(lines), {"dir": str(args.dir), "workers": workers, "seconds": stats})
    return 0


if __name__ == "__main__":
    sys.exit(main())
