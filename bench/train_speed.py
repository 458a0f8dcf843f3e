#!/usr/bin/env python3
"""Training throughput of the reference model: images/s and model FLOP utilisation.

Each configuration trains the reference model (cnn_64_128_256) on MNIST
images for a warm-up epoch and then a timed epoch of ``--images`` images; the
figure is the timed epoch's images/s, median of ``--repeats`` runs, each in a
fresh process. Model FLOP utilisation (MFU) = images/s x training FLOPs per
image / the GEMM rate of the configuration's compute dtype (2048x2048
``tf.matmul``: float32 for float32 configurations, bfloat16 for mixed
bfloat16 ones), both rates measured in this script's process, once per round
of configurations, so that they see the same machine load. Ratios are against the classic tutorial approach (ImageDataGenerator
flows, RGB input, batch 32, float32). Each pipeline runs at batch 32 and at
the reference model's default batch size (256), in float32 and, for the
default pipeline and the floor, in mixed bfloat16.

    python bench/train_speed.py [--repeats 3] [--images 12800] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import REPO, fmt, machine_line, repeat, save, training_flops_per_image
from gemm import GEMM_DTYPES, POLICY_DTYPE, gemm_gflops

# name -> (input pipeline, color mode, batch size, precision)
CONFIGS = {
    "tutorial: idg rgb b32 fp32": ("idg", "rgb", 32, "float32"),
    "idg b32 fp32": ("idg", "grayscale", 32, "float32"),
    "tfdata b32 fp32": ("tfdata", "grayscale", 32, "float32"),
    "numpy floor b32 fp32": ("numpy", "grayscale", 32, "float32"),
    # The default batch size (256), in float32 (precision=auto where the CPU lacks BF16) ...
    "idg b256 fp32": ("idg", "grayscale", 256, "float32"),
    "tfdata b256 fp32": ("tfdata", "grayscale", 256, "float32"),
    "numpy floor b256 fp32": ("numpy", "grayscale", 256, "float32"),
    # ... and in mixed bfloat16 (precision=auto on CPUs with AVX-512 BF16: the default here).
    "tfdata b256 bf16": ("tfdata", "grayscale", 256, "mixed_bfloat16"),
    "numpy floor b256 bf16": ("numpy", "grayscale", 256, "mixed_bfloat16"),
}
REFERENCE = "tutorial: idg rgb b32 fp32"


def worker(pipeline: str, color_mode: str, batch: int, policy: str, images: int, data_dir: str,
           tutorial: bool = False) -> None:
    """One measurement, in its own process: print the timed epoch's images/s and the model's FLOPs/image.

    Every configuration but the ``tutorial`` one runs as ``train()`` does, with
    its steps per execution; the tutorial's ``fit`` runs one step per call."""
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()
    import keras
    import numpy as np

    from mnist_folders.networks import dtype_policy
    from mnist_folders.data.folders import index_tree
    from mnist_folders.networks.build import build_model
    from mnist_folders.data.decoding import decode_images
    from mnist_folders.data.images import scale
    from mnist_folders.data.pipeline import idg_training, tfdata_training
    from mnist_folders.settings import Setting
    from mnist_folders.train.training import steps_per_execution

    keras.utils.set_random_seed(1)
    dtype_policy.apply(policy)
    setting = Setting(data_dir=data_dir, model="cnn_64_128_256", color_mode=color_mode, batch_size=batch,
                      pipeline="tfdata" if pipeline == "numpy" else pipeline)
    index = index_tree(setting.train_path)
    steps = images // batch
    if pipeline == "numpy":
        decoded = decode_images(index.paths[: steps * batch], setting)
        x, y = scale(decoded.images), np.eye(10, dtype="float32")[index.labels[decoded.kept]]
        fit_args = dict(x=x, y=y, batch_size=batch)
    else:
        data = (idg_training if pipeline == "idg" else tfdata_training)(setting, index)
        # tfdata: the first ``steps`` batches of each epoch, a dataset of known length as train() fits it
        # (``.repeat()`` with ``steps_per_epoch`` measured 10-20 % slower in bfloat16: an endless dataset).
        train = data.train.take(steps) if pipeline == "tfdata" else data.train
        fit_args = dict(x=train, steps_per_epoch=steps)
    model = build_model("cnn_64_128_256", setting.input_shape, 10, "rmsprop", 0.001)
    if not tutorial:  # as train() runs it: steps per execution from a full epoch of the training subset
        model.steps_per_execution = steps_per_execution(-(-round(len(index) * (1 - setting.validation_split))
                                                          // batch))
    times = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: times.append(time.perf_counter()),
        on_epoch_end=lambda e, logs: times.append(time.perf_counter()),
    )
    model.fit(**fit_args, epochs=2, verbose=0, callbacks=[timer])
    print(json.dumps({"images_per_s": steps * batch / (times[3] - times[2]),
                      "flops_per_image": training_flops_per_image(model)}))


def measure(name: str, images: int, data_dir: str) -> dict:
    pipeline, color_mode, batch, policy = CONFIGS[name]
    out = subprocess.run([sys.executable, __file__, "--worker", pipeline, color_mode, str(batch), policy,
                          str(images), data_dir, str(int(name == REFERENCE))], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=12800, help="images in the timed epoch")
    parser.add_argument("--data-dir", default=str(REPO / "mnist_data"), help="the exported PNG tree")
    parser.add_argument("--only", help="comma-separated configuration names")
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        pipeline, color_mode, batch, policy, images, data_dir, tutorial = args.worker
        worker(pipeline, color_mode, int(batch), policy, int(images), data_dir, tutorial == "1")
        return 0
    names = args.only.split(",") if args.only else list(CONFIGS)
    if REFERENCE not in names:
        names.insert(0, REFERENCE)
    gemm: dict[str, list[float]] = {dtype: [] for dtype in GEMM_DTYPES}
    flops = 0.0
    # Interleave the configurations across repeats so machine noise spreads evenly;
    # each round starts with the GEMM rates (float32, then bfloat16) in this process.
    runs = {name: [] for name in names}
    for _ in range(args.repeats):
        for dtype in GEMM_DTYPES:
            gemm[dtype].append(gemm_gflops(dtype))
            print(f"GEMM {dtype}: {gemm[dtype][-1]:.0f} GFLOP/s", flush=True)
        for name in names:
            result = measure(name, args.images, args.data_dir)
            runs[name].append(result["images_per_s"])
            flops = result["flops_per_image"]
            print(f"{name}: {result['images_per_s']:.0f} images/s", flush=True)
    rates = {dtype: repeat(iter(values).__next__, len(values)) for dtype, values in gemm.items()}
    ref = sorted(runs[REFERENCE])[len(runs[REFERENCE]) // 2]
    lines = [f"GEMM rates (TensorFlow `tf.matmul`, 2048x2048, best of 5 per round, median of {args.repeats} rounds "
             f"interleaved with the configurations): float32 {fmt(rates['float32'], 0)} GFLOP/s, bfloat16 "
             f"{fmt(rates['bfloat16'], 0)} GFLOP/s. Reference model: {flops / 1e6:.1f} MFLOP per training image "
             "(3x forward). MFU is against the GEMM rate of the configuration's compute dtype.", "",
             "| configuration | images/s (median, min-max) | s per 48,000-image epoch | model GFLOP/s | "
             "MFU (vs GEMM of its dtype) | vs tutorial |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    rows = {}
    for name in names:
        stats = repeat(iter(runs[name]).__next__, len(runs[name]))
        dtype = POLICY_DTYPE[CONFIGS[name][3]]
        achieved = stats["median"] * flops / 1e9
        mfu = achieved / rates[dtype]["median"]
        rows[name] = {**stats, "gemm_dtype": dtype, "model_gflops": achieved, "mfu": mfu,
                      "mfu_vs_float32_gemm": achieved / rates["float32"]["median"],
                      "vs_tutorial": stats["median"] / ref}
        lines.append(f"| {name} | {fmt(stats, 0)} | {48000 / stats['median']:.1f} | {achieved:.0f} | "
                     f"{mfu:.0%} of {dtype} | {stats['median'] / ref:.2f}x |")
    save("train_speed", machine_line(), "\n".join(lines), {"gemm_gflops": rates, "flops_per_image": flops,
                                                           "configs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
