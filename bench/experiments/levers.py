#!/usr/bin/env python3
"""Training-speed levers of the reference model, each applied here only (the library is untouched).

The base configuration is the library's default training: ``cnn_64_128_256``,
the ``tfdata`` in-memory pipeline (:func:`mnist_folders.data.pipeline.tfdata_training`,
fed with real MNIST arrays from the IDX files instead of decoded PNGs),
batch 256, RMSprop 0.002, the library's training callbacks, in
``mixed_bfloat16`` (the default on this CPU) and in float32, one step per
execution (the library runs 16 since this script measured that lever:
:func:`mnist_folders.train.training.steps_per_execution`). Each lever
changes one thing:

- ``spe N``: ``model.compile(steps_per_execution=N)``;
- ``uint8 input``: the pipeline yields the uint8 pixels (no ``scale`` map)
  and the model starts with
  ``keras.layers.Rescaling(1/255)``;
- ``val b256`` / ``val b1024``: validation (20 % held out, as
  ``validation_split=0.2``) every epoch, at the training batch size or 1024;
  the other rows train without validation;
- ``threads intra/inter``: ``tf.config.threading.set_*_op_parallelism_threads``
  before TensorFlow starts (the default is 0/0: one per core);
- environment variables read by TensorFlow 2.21's oneDNN code (the names are
  in ``libtensorflow_framework.so``): ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR``,
  ``TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD``, and for float32
  ``TF_SET_ONEDNN_FPMATH_MODE=BF16`` (oneDNN may then compute float32
  matrix products in bfloat16);
- ``b512`` / ``b1024``: a larger batch with the learning rate scaled by
  sqrt(batch / 256).

Throughput (default mode): every configuration runs in a fresh process,
``--epochs`` epochs of ``--images`` training images; the first epoch (tracing)
is dropped, the figure is training images / seconds of the other epochs
(validation included where the row validates). Configurations run
interleaved, ``--repeats`` rounds (alternately forwards and backwards), and
each figure is the median with min-max, and its ratio to the base
configuration of its dtype, taken round by round and then the median.
MFU is against the GEMM rate of the row's compute dtype, measured in this
process once per round. "Best epoch" is the fastest timed epoch of all the
row's runs, against the highest GEMM rate of the run: on a shared machine the
figure least touched by other jobs.

Accuracy (``--accuracy NAME,...``): each named lever and its base, trained on
all 60,000 training images for ``--accuracy-epochs`` epochs, test accuracy on
all 10,000 test images, one process per (configuration, seed), interleaved. Both modes
write ``results/levers.md/.json``, each keeping the other's last table.

    python -m bench.experiments.levers [--repeats 3] [--images 12288] [--epochs 3] [--only NAME,...]
    python -m bench.experiments.levers --accuracy "bf16 spe 16,fp32 spe 16" [--seeds 3] [--accuracy-epochs 3]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

from pathlib import Path

from bench import common

from bench.common import REPO, fmt, machine_line, save, training_flops_per_image
from bench.gemm import GEMM_DTYPES, POLICY_DTYPE, gemm_gflops

common.RESULTS = Path(__file__).resolve().parent / "results"  # this experiment's results, kept beside it

BASE = {"batch": 256, "lr": 0.002, "spe": 1, "uint8": False, "val_batch": 0, "intra": 0, "inter": 0, "env": {}}
POLICIES = {"bf16": "mixed_bfloat16", "fp32": "float32"}


def _sqrt_lr(batch: int) -> float:
    return round(BASE["lr"] * math.sqrt(batch / BASE["batch"]), 6)


# lever name -> the changes to BASE (applied to both dtypes unless the name says otherwise)
LEVERS: dict[str, dict] = {
    "base": {},
    "spe 4": {"spe": 4},
    "spe 16": {"spe": 16},
    "uint8 input": {"uint8": True},
    "val b256": {"val_batch": 256},
    "val b1024": {"val_batch": 1024},
    "threads 2/1": {"intra": 2, "inter": 1},
    "threads 1/2": {"intra": 1, "inter": 2},
    "system allocator": {"env": {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1"}},
    "caller thread": {"env": {"TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD": "1"}},
    "fpmath bf16": {"env": {"TF_SET_ONEDNN_FPMATH_MODE": "BF16"}},
    "b512 lr x1.41": {"batch": 512, "lr": _sqrt_lr(512)},
    "b1024 lr x2": {"batch": 1024, "lr": _sqrt_lr(1024)},
    # Combinations, run only when named with --only:
    "spe 16 + uint8": {"spe": 16, "uint8": True},
    "spe 16 + threads 2/1": {"spe": 16, "intra": 2, "inter": 1},
}
COMBINATIONS = {"spe 16 + uint8", "spe 16 + threads 2/1"}
FP32_ONLY = {"fpmath bf16"}
BF16_ONLY = {"threads 1/2", "val b1024"}


def config_names(combinations: bool = False) -> list[str]:
    names = []
    for lever in LEVERS:
        if lever in COMBINATIONS and not combinations:
            continue
        for short in POLICIES:
            if (short == "bf16" and lever in FP32_ONLY) or (short == "fp32" and lever in BF16_ONLY):
                continue
            names.append(f"{short} {lever}")
    return names


def config(name: str) -> dict:
    short, lever = name.split(" ", 1)
    return {**BASE, **LEVERS[lever], "policy": POLICIES[short], "name": name}


# ---------------------------------------------------------------------------------------------
# One configuration, in its own process


def _setup(cfg: dict, seed: int):
    """Threads, seed, dtype policy: everything that must come before TensorFlow runs anything."""
    import tensorflow as tf

    if cfg["intra"]:
        tf.config.threading.set_intra_op_parallelism_threads(cfg["intra"])
    if cfg["inter"]:
        tf.config.threading.set_inter_op_parallelism_threads(cfg["inter"])
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()
    import keras

    from mnist_folders.networks import dtype_policy

    keras.utils.set_random_seed(seed)
    dtype_policy.apply(cfg["policy"])


def _pipeline(cfg: dict, images, labels, seed: int, validation_split: float):
    """The library's ``tfdata`` training pipeline (as in ``pipeline.tfdata_training``), over in-memory arrays.

    Copied rather than called, so that this benchmark does not depend on how the
    library gets its arrays: the epoch's order is a stateless shuffle of
    ``(seed, epoch)``, batches are gathered from constant tensors, rescaled to
    float32 by a ``map`` (unless the lever moves that into the model) and
    prefetched. Returns ``(train, validation, set_epoch, train_count)``.
    """
    import numpy as np
    import tensorflow as tf

    from mnist_folders.data.images import scale

    x = images[..., None]  # (N, 28, 28, 1) uint8
    onehot = np.eye(10, dtype=np.float32)[labels]
    n_val = int(len(x) * validation_split)
    train_x, train_y, val_x, val_y = x[n_val:], onehot[n_val:], x[:n_val], onehot[:n_val]
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    seed_t = tf.constant(seed, tf.int64)
    train_images, train_targets = tf.constant(train_x), tf.constant(train_y)

    def finish(ds):
        if not cfg["uint8"]:
            ds = ds.map(lambda a, b: (scale(a), b), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    def epoch_order(_):
        return tf.random.experimental.stateless_shuffle(tf.range(len(train_x)), seed=tf.stack([seed_t, epoch]))

    steps = -(-len(train_x) // cfg["batch"])
    train = (tf.data.Dataset.from_tensors(0).map(epoch_order).unbatch().batch(cfg["batch"])
             .apply(tf.data.experimental.assert_cardinality(steps))
             .map(lambda idx: (tf.gather(train_images, idx), tf.gather(train_targets, idx))))
    validation = None
    if n_val:
        validation = finish(tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(cfg["val_batch"] or cfg["batch"]))
    return finish(train), validation, epoch.assign, len(train_x)


def _callbacks(cfg: dict, seed: int, set_epoch, *extra):
    """The library's training callbacks (per-epoch seeds, NaN guard) for a constant learning rate."""
    from mnist_folders.train.callbacks import training_callbacks
    from mnist_folders.settings import Setting

    setting = Setting(model="cnn_64_128_256", batch_size=cfg["batch"], seed=seed, learning_rate=cfg["lr"],
                      color_mode="grayscale")
    return training_callbacks(setting, set_epoch, *extra)


def _model(cfg: dict):
    import keras

    from mnist_folders.data.images import SCALE
    from mnist_folders.networks.build import build_model, make_optimizer

    model = build_model("cnn_64_128_256", (28, 28, 1), 10)  # uncompiled: compiled below with the lever
    if cfg["uint8"]:
        inputs = keras.Input((28, 28, 1), dtype="uint8")
        model = keras.Model(inputs, model(keras.layers.Rescaling(SCALE)(inputs)), name="uint8_" + model.name)
    model.compile(optimizer=make_optimizer("rmsprop", cfg["lr"]), loss=keras.losses.CategoricalCrossentropy(),
                  metrics=["accuracy"], steps_per_execution=cfg["spe"])
    return model


def speed_worker(cfg: dict, images: int, epochs: int) -> dict:
    _setup(cfg, 1)
    import keras

    from mnist_folders.networks.architectures import cnn_64_128_256
    from mnist_folders.data.idx import load_split

    x, y = load_split(REPO / "data" / "mnist", "train", verify=False)
    split = 0.2 if cfg["val_batch"] else 0.0
    total = int(images / (1 - split)) if split else images
    train, validation, set_epoch, train_count = _pipeline(cfg, x[:total], y[:total], 1, split)
    model = _model(cfg)
    times: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: times.append(time.perf_counter()),
                                           on_epoch_end=lambda e, logs: times.append(time.perf_counter()))
    model.fit(train, validation_data=validation, epochs=epochs, callbacks=_callbacks(cfg, 1, set_epoch, timer),
              verbose=0, shuffle=False)
    seconds = [times[2 * e + 1] - times[2 * e] for e in range(epochs)]
    flops = training_flops_per_image(cnn_64_128_256((28, 28, 1), 10))
    return {"images_per_s": train_count * (epochs - 1) / sum(seconds[1:]), "epoch_seconds": seconds,
            "train_images": train_count, "flops_per_image": flops}


def accuracy_worker(cfg: dict, epochs: int, seed: int) -> dict:
    _setup(cfg, seed)
    import numpy as np

    from mnist_folders.data.idx import load_split
    from mnist_folders.data.images import scale

    x, y = load_split(REPO / "data" / "mnist", "train", verify=False)
    tx, ty = load_split(REPO / "data" / "mnist", "test", verify=False)
    train, _, set_epoch, _ = _pipeline(cfg, x, y, seed, 0.0)
    model = _model(cfg)
    started = time.perf_counter()
    model.fit(train, epochs=epochs, callbacks=_callbacks(cfg, seed, set_epoch), verbose=0, shuffle=False)
    seconds = time.perf_counter() - started
    test = tx[..., None] if cfg["uint8"] else scale(tx[..., None])
    predicted = model.predict(test, batch_size=512, verbose=0).argmax(axis=1)
    return {"accuracy": float(np.mean(predicted == ty)), "fit_seconds": seconds}


# ---------------------------------------------------------------------------------------------
# The driver


def run_worker(name: str, *args: str) -> dict:
    cfg = config(name)
    env = {**os.environ, **cfg["env"]}
    out = subprocess.run([sys.executable, "-m", "bench.experiments.levers", "--worker", name, *args], cwd=REPO,
                         capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{name}: exit {out.returncode}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def stats_of(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def speed(args) -> None:
    names = args.only.split(",") if args.only else config_names()
    for short in POLICIES:  # every dtype that appears needs its base in the same run
        if any(n.startswith(short + " ") for n in names) and f"{short} base" not in names:
            names.insert(0, f"{short} base")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    gemm: dict[str, list[float]] = {dtype: [] for dtype in GEMM_DTYPES}
    loads = []
    for r in range(args.repeats):
        loads.append(os.getloadavg()[0])
        for dtype in GEMM_DTYPES:
            gemm[dtype].append(gemm_gflops(dtype))
        print(f"round {r + 1}: load {loads[-1]:.2f}, GEMM " +
              ", ".join(f"{d} {v[-1]:.0f}" for d, v in gemm.items()), flush=True)
        for name in (names if r % 2 == 0 else names[::-1]):
            result = run_worker(name, "--images", str(args.images), "--epochs", str(args.epochs))
            runs[name].append(result)
            print(f"  {name}: {result['images_per_s']:.0f} images/s "
                  f"(epochs {', '.join(f'{s:.2f}' for s in result['epoch_seconds'])} s)", flush=True)
    render_speed(args, names, runs, gemm, loads)


def rerender_speed(args) -> None:
    """Rewrite the throughput table from ``results/<name>.json`` (after a change to the table's layout)."""
    data = json.loads((common.RESULTS / f"{args.name}.json").read_text())["speed"]
    args.images, args.epochs = data["images"], data["epochs"]
    gemm = {dtype: data["gemm_gflops"][dtype]["runs"] for dtype in GEMM_DTYPES}
    args.repeats = len(gemm["float32"])
    runs = {name: [{"images_per_s": v, "epoch_seconds": e, "train_images": data["images"],
                    "flops_per_image": data["flops_per_image"]}
                   for v, e in zip(row["images_per_s"]["runs"], row["epoch_seconds"])]
            for name, row in data["configs"].items()}
    render_speed(args, list(runs), runs, gemm, data["loads"])


def render_speed(args, names: list[str], runs: dict[str, list[dict]], gemm: dict[str, list[float]],
                 loads: list[float]) -> None:
    rates = {dtype: stats_of(values) for dtype, values in gemm.items()}
    flops = next(iter(runs.values()))[0]["flops_per_image"]
    rows = {}
    lines = [f"GEMM rates (2048x2048 `tf.matmul`, best of 5, median of {args.repeats} rounds): float32 "
             f"{fmt(rates['float32'], 0)}, bfloat16 {fmt(rates['bfloat16'], 0)} GFLOP/s; "
             f"{flops / 1e6:.1f} MFLOP per training image. {args.images:,} training images per epoch, "
             f"{args.epochs} epochs per process, the first dropped; {args.repeats} rounds interleaved "
             f"(1-min load at the rounds' starts: {', '.join(f'{v:.1f}' for v in loads)}).", "",
             "| configuration | images/s (median, min-max) | vs base of its dtype (median, min-max) | "
             "MFU (vs GEMM of its dtype) | best epoch images/s | best epoch MFU |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in names:
        short = name.split(" ", 1)[0]
        values = [r["images_per_s"] for r in runs[name]]
        ratios = [v / b["images_per_s"] for v, b in zip(values, runs[f"{short} base"])]
        s, q = stats_of(values), stats_of(ratios)
        dtype = POLICY_DTYPE[POLICIES[short]]
        mfu = s["median"] * flops / 1e9 / rates[dtype]["median"]
        # The fastest timed epoch of all runs: the figure least touched by other jobs on the cores.
        best = max(r["train_images"] / t for r in runs[name] for t in r["epoch_seconds"][1:])
        best_mfu = best * flops / 1e9 / rates[dtype]["max"]
        rows[name] = {"config": config(name), "images_per_s": s, "vs_base": q, "mfu": mfu, "gemm_dtype": dtype,
                      "best_epoch_images_per_s": best, "best_epoch_mfu": best_mfu,
                      "epoch_seconds": [r["epoch_seconds"] for r in runs[name]]}
        lines.append(f"| {name} | {fmt(s, 0)} | {fmt(q, 2)}x | {mfu:.0%} of {dtype} | {best:.0f} | "
                     f"{best_mfu:.0%} of {dtype} |")
    val_lines = []
    for short in POLICIES:
        for lever in ("val b256", "val b1024"):
            name = f"{short} {lever}"
            if name not in runs:
                continue
            # share of the epoch spent validating: 1 - (epoch without validation) / (epoch with), per round
            shares = [1 - (r["train_images"] / b["images_per_s"]) / (r["train_images"] / r["images_per_s"])
                      for r, b in zip(runs[name], runs[f"{short} base"])]
            best_share = 1 - rows[name]["best_epoch_images_per_s"] / rows[f"{short} base"]["best_epoch_images_per_s"]
            rows[name]["validation_share"] = stats_of(shares)
            rows[name]["validation_share_best_epochs"] = best_share
            val_lines.append(f"| {name} | {fmt(stats_of([100 * v for v in shares]), 0)} % | {100 * best_share:.0f} % |")
    if val_lines:
        lines += ["", "Validation every epoch (20 % held out, 4 validation images per 16 training images): "
                  "share of the epoch's time, from the same round's base row, and from the best epochs.", "",
                  "| configuration | share of epoch time (median, min-max) | from the best epochs |",
                  "| --- | ---: | ---: |", *val_lines]
    save_part(args.name, "speed", "\n".join(lines),
              {"gemm_gflops": rates, "flops_per_image": flops, "images": args.images, "epochs": args.epochs,
               "loads": loads, "configs": rows})


PARTS = {"speed": "Throughput", "accuracy": "Accuracy check"}


def save_part(name: str, part: str, table: str, data: dict) -> None:
    """Write ``part`` (speed or accuracy) into ``results/<name>.md/.json``, keeping the other part's last run."""
    path = common.RESULTS / f"{name}.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    parts = {p: old[p] for p in PARTS if p in old and p != part}
    parts[part] = {"table": table, **data}
    text = "\n\n".join(f"## {PARTS[p]}\n\n{parts[p]['table']}" for p in PARTS if p in parts)
    save(name, machine_line(), text, parts)


def accuracy(args) -> None:
    levers = args.accuracy.split(",")
    names = []
    for name in levers:
        base = name.split(" ", 1)[0] + " base"
        names += [n for n in (base, name) if n not in names]
    seeds = [1337 + i for i in range(args.seeds)]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for seed in seeds:
        for name in names:
            result = run_worker(name, "--seed", str(seed), "--accuracy-epochs", str(args.accuracy_epochs))
            runs[name].append(result)
            print(f"  seed {seed} {name}: {result['accuracy']:.4f} ({result['fit_seconds']:.0f} s)", flush=True)
    lines = [f"All 60,000 training images, {args.accuracy_epochs} epochs, no validation; test accuracy on all "
             f"10,000 test images; seeds {', '.join(map(str, seeds))}, one process each, interleaved.", "",
             "| configuration | test accuracy % (median, min-max) | per seed | fit s (median) |",
             "| --- | ---: | --- | ---: |"]
    for name in names:
        acc = stats_of([100 * r["accuracy"] for r in runs[name]])
        secs = statistics.median(r["fit_seconds"] for r in runs[name])
        per_seed = " / ".join(f"{100 * r['accuracy']:.2f}" for r in runs[name])
        lines.append(f"| {name} | {fmt(acc, 2)} | {per_seed} | {secs:.0f} |")
    save_part(args.name, "accuracy", "\n".join(lines),
              {"epochs": args.accuracy_epochs, "seeds": seeds, "runs": runs})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=12288, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per process; the first is dropped")
    parser.add_argument("--only", help="comma-separated configuration names (e.g. 'bf16 spe 16')")
    parser.add_argument("--accuracy", help="comma-separated configuration names to check for accuracy")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--accuracy-epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1337, help=argparse.SUPPRESS)
    parser.add_argument("--name", help="results file name (default: levers)")
    parser.add_argument("--list", action="store_true", help="print the configuration names")
    parser.add_argument("--rerender", action="store_true", help="rewrite the throughput table from the JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.list:
        print("\n".join(config_names(combinations=True)))
        return 0
    if args.worker:
        cfg = config(args.worker)
        if "--accuracy-epochs" in sys.argv:
            result = accuracy_worker(cfg, args.accuracy_epochs, args.seed)
        else:
            result = speed_worker(cfg, args.images, args.epochs)
        print(json.dumps(result))
        return 0
    args.name = args.name or "levers"
    if args.rerender:
        rerender_speed(args)
    elif args.accuracy:
        accuracy(args)
    else:
        speed(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
