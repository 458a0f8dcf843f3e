#!/usr/bin/env python3
"""Dataset check speed: ``run_check`` on the full MNIST tree (70,000 PNGs + tmp/)
against decoding the same files, with peak memory and what the check found.

Each run is a fresh process (timed inside it, imports and start excluded), so
its peak RSS is its own; the two kinds alternate; every figure is the median
of ``--repeats`` runs:
- check: ``run_check`` (listing, each file decoded and hashed once in worker
  processes, duplicate search, report, figure);
- floor: ``decode_images`` of the same image files at the Setting's size, as
  training decodes them (the same spawned workers): every file read once,
  nothing else.
Peak RSS: the main process (``getrusage(RUSAGE_SELF)``) and the largest
worker (``RUSAGE_CHILDREN``).

``--compare-hashes`` measures the perceptual hashes behind the check's choice
on the 10,000 test images and six re-encoded copies of every 20th one:
recall of the copies and pairs of distinct images matched, at a few Hamming
distances; the imagehash columns need ``pip install imagehash==4.3.2``.

    python parse_mnist.py --out /tmp/mnist_full --quiet
    python bench/check_speed.py --data-dir /tmp/mnist_full [--repeats 3] [--compare-hashes]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common
from common import REPO, fmt, machine_line


def one_run(kind: str, data_dir: Path) -> dict:
    """Time ``run_check`` or the decoding floor once, in this process."""
    from mnist_folders import audit as check
    from mnist_folders.data.decoding import decode_images
    from mnist_folders.data.folders import index_tree, list_files
    from mnist_folders.settings import Setting

    with tempfile.TemporaryDirectory() as model_dir:
        # what MNIST resolves to (training resolves "auto" from the images; the check and decoding take it given)
        setting = Setting(data_dir=str(data_dir), model_dir=model_dir, color_mode="grayscale", image_height=28,
                          image_width=28)
        found = {}
        started = time.perf_counter()
        if kind == "check":
            report = check.run_check(setting, progress=False, log=lambda _: None)
            found = {key: {k: v for k, v in report.to_dict()[key].items() if k != "list"}
                     for key in ("exact_duplicates", "near_duplicates")}
            found["images"] = sum(a.images for a in report.splits.values())
        else:
            paths = index_tree(setting.train_path).paths + index_tree(setting.test_path).paths
            paths += [p for p in list_files(setting.predict_path)[0]]
            found["images"] = len(decode_images(paths, setting).kept)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, "found": found}


def run_fresh(kind: str, data_dir: Path) -> dict:
    result = subprocess.run([sys.executable, __file__, "--one", kind, "--data-dir", str(data_dir)],
                            capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        raise SystemExit(f"{kind} run failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


# ---------------------------------------------------------------- hash comparison

def dhash64(image) -> np.ndarray:
    """Difference hash, 64 bits: 9x8 grayscale, one bit per pair of horizontal neighbours (left < right)."""
    from PIL import Image

    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    return np.packbits(small[:, 1:] > small[:, :-1])


def phash256(images: list) -> np.ndarray:
    """The check's pHash of PIL images."""
    from PIL import Image

    from mnist_folders.audit.fingerprints import PHASH_SAMPLE, perceptual_hashes

    thumbnails = np.stack([np.asarray(im.convert("L").resize((PHASH_SAMPLE, PHASH_SAMPLE), Image.Resampling.LANCZOS))
                           for im in images])
    return perceptual_hashes(thumbnails)


def variants(image) -> dict:
    """Six copies a dataset might hold of one picture."""
    from PIL import Image, ImageEnhance

    def jpeg(picture, quality):
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        return Image.open(buffer)

    plus20 = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + 20, 0, 255).astype(np.uint8))
    return {"jpeg 40x40 q75": jpeg(image.resize((40, 40), Image.Resampling.BICUBIC), 75),
            "jpeg q90": jpeg(image, 90), "png 56x56": image.resize((56, 56), Image.Resampling.BILINEAR),
            "png 20x20": image.resize((20, 20), Image.Resampling.BILINEAR),
            "brightness x1.2": ImageEnhance.Brightness(image).enhance(1.2), "+20": plus20}


def compare_hashes(data_dir: Path) -> tuple[list[str], dict]:
    from PIL import Image

    from mnist_folders.audit.fingerprints import near_pairs

    paths = sorted((data_dir / "test").rglob("*.png"))
    labels = np.array([int(p.parent.name) for p in paths])
    images = []
    for path in paths:
        with Image.open(path) as image:
            image.load()
            images.append(image)
    methods = {"dHash 64 (ours)": (lambda ims: np.stack([dhash64(im) for im in ims]), (4, 5, 6)),
               "pHash 256 (ours, the check)": (phash256, (12, 16, 20))}
    try:
        import imagehash

        def library(function, size):
            return lambda ims: np.stack([np.packbits(function(im, hash_size=size).hash.ravel()) for im in ims])

        methods["dHash 64 (imagehash 4.3.2)"] = (library(imagehash.dhash, 8), (4, 5, 6))
        methods["pHash 256 (imagehash 4.3.2)"] = (library(imagehash.phash, 16), (12, 16, 20))
    except ImportError:
        print("imagehash not installed: its rows are left out (pip install imagehash==4.3.2)")
    sample = list(range(0, len(images), 20))
    copies = {name: [variants(images[i])[name] for i in sample] for name in variants(images[0])}
    lines = ["| hash | us/image | distance | pairs of distinct test images (across classes) | "
             + " | ".join(f"recall {name}" for name in copies) + " |", "| --- | ---: | ---: | ---: |" + " ---: |" * len(copies)]
    data, hashes_by_method = {}, {}
    for name, (function, distances) in methods.items():
        started = time.perf_counter()
        hashes = function(images)
        micros = (time.perf_counter() - started) / len(images) * 1e6
        hashes_by_method[name] = hashes
        copy_distance = {v: np.unpackbits(hashes[sample] ^ function(c), axis=1).sum(axis=1) for v, c in copies.items()}
        for d in distances:
            pairs = near_pairs(hashes, d)
            cross = int((labels[pairs[:, 0]] != labels[pairs[:, 1]]).sum())
            recall = {v: float(np.mean(dist <= d)) for v, dist in copy_distance.items()}
            data[f"{name} <= {d}"] = {"us_per_image": micros, "pairs": len(pairs), "cross_class": cross, "recall": recall}
            lines.append(f"| {name} | {micros:.0f} | {d} | {len(pairs)} ({cross}) | "
                         + " | ".join(f"{r:.1%}" for r in recall.values()) + " |")
    for ours, theirs in (("dHash 64 (ours)", "dHash 64 (imagehash 4.3.2)"),
                         ("pHash 256 (ours, the check)", "pHash 256 (imagehash 4.3.2)")):
        if theirs in hashes_by_method:
            differing = int(np.unpackbits(hashes_by_method[ours] ^ hashes_by_method[theirs], axis=1).any(axis=1).sum())
            lines.append(f"\n{ours} vs {theirs}: {differing} of {len(images)} hashes differ")
            data[f"{ours} vs {theirs}: hashes differing"] = differing
    return lines, data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO / "mnist_data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-hashes", action="store_true", help="also measure the perceptual hashes")
    parser.add_argument("--results", type=Path, default=common.RESULTS, help="folder for check_speed.md/.json")
    parser.add_argument("--one", choices=("check", "decode"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.one, args.data_dir)))
        return 0
    runs = {"check": [], "decode": []}
    for _ in range(args.repeats):  # interleaved, so that other load on the machine hits both alike
        for kind in runs:
            runs[kind].append(run_fresh(kind, args.data_dir))
    seconds = {kind: stats([r["seconds"] for r in rs]) for kind, rs in runs.items()}
    found = runs["check"][-1]["found"]
    table = ["| run | images | seconds (median, min-max) | vs floor | peak RSS main MiB | peak RSS worker MiB |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for kind, label in (("check", "run_check"), ("decode", "floor: decode_images")):
        table.append(f"| {label} | {runs[kind][-1]['found']['images']} | {fmt(seconds[kind], 2)} | "
                     f"{seconds[kind]['median'] / seconds['decode']['median']:.2f}x | "
                     f"{max(r['rss_mib'] for r in runs[kind]):.0f} | {max(r['worker_rss_mib'] for r in runs[kind]):.0f} |")
    table += ["", f"found: exact duplicates {json.dumps(found['exact_duplicates'])}",
              f"near duplicates {json.dumps(found['near_duplicates'])}"]
    data = {"seconds": seconds, "runs": runs}
    if args.compare_hashes:
        lines, data["hashes"] = compare_hashes(args.data_dir)
        table += ["", *lines]
    common.RESULTS = args.results
    common.save("check_speed", machine_line(), "\n".join(table), data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
