#!/usr/bin/env python3
"""Export MNIST (IDX files) to PNG folders: <out>/train/<label>/<index>.png,
<out>/test/<label>/<index>.png, and one sample per class in <out>/tmp/."""

from __future__ import annotations

import argparse
from pathlib import Path

from mnist_folders.commands import cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from mnist_folders.settings import DEFAULT_DATA_DIR

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parent / "data" / "mnist",
                        help="folder of IDX files, gzipped or raw (default: data/mnist). "
                             "Fashion-MNIST and EMNIST files with the same names work too.")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_DATA_DIR),
                        help=f"output root (default: {DEFAULT_DATA_DIR})")
    parser.add_argument("--force", action="store_true", help="rewrite PNGs that already exist")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="export only the first N images of each split (quick trials, tests)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default and most: one per core)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1. Received: {args.limit}")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1. Received: {args.workers}")
    return args


def main() -> int:
    args = parse_args()
    from mnist_folders.data.export import export_samples, export_split
    from mnist_folders.data.idx import load_split
    from mnist_folders.layout import SAMPLES
    from mnist_folders.plots import samples_per_class

    # Read and check every input before writing anything.
    splits = {split: load_split(args.source, split) for split in ("train", "test")}
    for split, (images, labels) in splits.items():
        if args.limit:
            images, labels = images[: args.limit], labels[: args.limit]
        stats = export_split(images, labels, args.out / split, force=args.force, workers=args.workers,
                             progress=not args.quiet, description=split)
        print(f"{split}: {len(images)} images -> {args.out / split} "
              f"({stats.written} written, {stats.skipped} already there)")
        if split == "train":
            print(f"figure: {samples_per_class(images, labels, args.out / SAMPLES)}")
        if split == "test":
            samples = export_samples(images, labels, args.out / "tmp")
            print(f"tmp: {len(samples)} sample images (one per class) -> {args.out / 'tmp'}")
    return 0


if __name__ == "__main__":
    cli.run(main)
