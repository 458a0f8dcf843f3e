#!/usr/bin/env python3
"""Where a training step of the reference model spends its time: its convolution and matmul kernels alone.

Training one batch of the reference model (cnn_64_128_256, 28x28x1, batch
256) needs, per Conv2D and Dense layer, a forward product, an input gradient
(not for the first layer: nothing upstream needs it) and a weight gradient.
This script times each of those TensorFlow kernels alone (``tf.nn.conv2d``,
``Conv2DBackpropInput``, ``Conv2DBackpropFilter``, ``tf.matmul``; oneDNN
underneath; the cost of an empty ``tf.function`` call subtracted), in
float32 and in bfloat16, each against the 2048x2048 GEMM rate of its dtype,
and sets their sum beside a whole training step of the model measured in the
same process (``fit`` on one in-memory batch, as ``train()`` compiles it):
the MFU the model would reach if pooling, activations, dropout, the
optimizer and the input pipeline cost nothing. It is an estimate, not a
bound: in a real step TensorFlow can run independent kernels (an input and
a weight gradient) at the same time.

    python -m bench.experiments.kernels [--batch 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from pathlib import Path

from bench import common

from bench.common import machine_line, save, training_flops_per_image
from bench.gemm import GEMM_DTYPES, gemm_rates

common.RESULTS = Path(__file__).resolve().parent / "results"  # this experiment's results, kept beside it


def training_step_ms(policy: str, batch: int, steps: int = 64) -> float:
    """Median milliseconds per training step of the reference model under ``policy``: ``fit`` on one
    in-memory batch repeated, 16 steps per execution as ``train()`` runs it, after a warm-up epoch."""
    import keras
    import tensorflow as tf

    from mnist_folders.networks import dtype_policy
    from mnist_folders.networks.build import build_model
    from mnist_folders.train.training import steps_per_execution

    dtype_policy.apply(policy)
    model = build_model("cnn_64_128_256", (28, 28, 1), 10, "rmsprop", 0.002)
    model.steps_per_execution = steps_per_execution(steps)
    x = tf.random.uniform((batch, 28, 28, 1))
    y = tf.one_hot(tf.random.uniform((batch,), maxval=10, dtype=tf.int32), 10)
    data = tf.data.Dataset.from_tensors((x, y)).repeat(steps)
    times: list[float] = []
    timer = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: times.append(time.perf_counter()),
                                           on_epoch_end=lambda e, logs: times.append(time.perf_counter()))
    model.fit(data, epochs=4, verbose=0, callbacks=[timer], shuffle=False)
    dtype_policy.apply("float32")
    return statistics.median((times[k + 1] - times[k]) / steps * 1e3 for k in range(2, len(times), 2))


def call_overhead_ms() -> float:
    """Milliseconds of calling an empty ``tf.function`` and reading its result (subtracted from each kernel)."""
    import tensorflow as tf

    one = tf.constant(1.0)
    return median_ms(tf.function(lambda x: x + 1), one, calls=200)


def median_ms(fn, *args, calls: int = 20) -> float:
    """Median wall time of ``fn(*args)`` over ``calls`` calls after two warm-up calls, milliseconds."""
    fn(*args)
    fn(*args)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn(*args).numpy()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def layer_kernels(layer, first: bool, batch: int, dtype):
    """``{kernel name: (function, args, GFLOP)}`` for one Conv2D or Dense layer of a built model."""
    import tensorflow as tf

    x = tf.cast(tf.random.uniform((batch, *layer.input.shape[1:])), dtype)
    if type(layer).__name__ == "Conv2D":
        w = tf.cast(tf.random.uniform((*layer.kernel_size, x.shape[-1], layer.filters)), dtype)
        y = tf.nn.conv2d(x, w, 1, "VALID")
        dy = tf.cast(tf.random.uniform(y.shape), dtype)
        strides, flops = [1, 1, 1, 1], 2 * batch * y.shape[1] * y.shape[2] * layer.filters * w.shape[0] * w.shape[1] \
            * x.shape[-1] / 1e9
        kernels = {
            "forward": (tf.function(lambda x, w: tf.nn.conv2d(x, w, 1, "VALID")), (x, w)),
            "input gradient": (tf.function(lambda dy, w: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=x.shape, filter=w, out_backprop=dy, strides=strides, padding="VALID")), (dy, w)),
            "weight gradient": (tf.function(lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(
                input=x, filter_sizes=w.shape, out_backprop=dy, strides=strides, padding="VALID")), (x, dy)),
        }
    else:
        w = tf.cast(tf.random.uniform((x.shape[-1], layer.units)), dtype)
        dy = tf.cast(tf.random.uniform((batch, layer.units)), dtype)
        flops = 2 * batch * x.shape[-1] * layer.units / 1e9
        kernels = {
            "forward": (tf.function(lambda x, w: tf.matmul(x, w)), (x, w)),
            "input gradient": (tf.function(lambda dy, w: tf.matmul(dy, w, transpose_b=True)), (dy, w)),
            "weight gradient": (tf.function(lambda x, dy: tf.matmul(x, dy, transpose_a=True)), (x, dy)),
        }
    if first:
        del kernels["input gradient"]
    return {name: (fn, args, flops) for name, (fn, args) in kernels.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="measurements of every kernel (median)")
    args = parser.parse_args()
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()
    import tensorflow as tf

    from mnist_folders.networks.architectures import cnn_64_128_256

    model = cnn_64_128_256((28, 28, 1), 10)
    layers = [layer for layer in model.layers if type(layer).__name__ in ("Conv2D", "Dense")]
    batch_flops = training_flops_per_image(model) * args.batch / 1e9
    gemm = gemm_rates(args.rounds)
    rate = {dtype: statistics.median(values) for dtype, values in gemm.items()}
    policies = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
    times: dict[tuple[str, str, str], list[float]] = {}
    flops: dict[tuple[str, str, str], float] = {}
    steps: dict[str, list[float]] = {dtype: [] for dtype in GEMM_DTYPES}
    overhead = []
    for _ in range(args.rounds):  # rounds interleave the dtypes, so a slow spell of the machine touches both
        overhead.append(call_overhead_ms())
        for dtype in GEMM_DTYPES:
            steps[dtype].append(training_step_ms(policies[dtype], args.batch))
            for k, layer in enumerate(layers):
                for kernel, (fn, call_args, gflop) in layer_kernels(layer, k == 0, args.batch,
                                                                    tf.as_dtype(dtype)).items():
                    key = (dtype, layer.name, kernel)
                    times.setdefault(key, []).append(median_ms(fn, *call_args) - overhead[-1])
                    flops[key] = gflop
    lines = [f"GEMM rates (2048x2048 `tf.matmul`, best of 5, median of {args.rounds} rounds): "
             + ", ".join(f"{dtype} {rate[dtype]:.0f} GFLOP/s" for dtype in GEMM_DTYPES)
             + f". Batch {args.batch}; the model's training FLOPs (3x forward): {batch_flops:.2f} GFLOP per batch. "
             f"An empty `tf.function` call ({statistics.median(overhead):.3f} ms) is subtracted from each kernel.",
             "", "| dtype | layer | kernel | ms per batch (median) | GFLOP/s | vs GEMM of the dtype |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    data: dict = {"gemm_gflops": gemm, "batch": args.batch, "batch_gflop": batch_flops, "call_overhead_ms": overhead,
                  "kernels": [], "steps_ms": steps, "summary": {}}
    totals = {dtype: 0.0 for dtype in GEMM_DTYPES}
    for (dtype, layer, kernel), values in times.items():
        ms = statistics.median(values)
        totals[dtype] += ms
        achieved = flops[(dtype, layer, kernel)] / ms * 1e3
        data["kernels"].append({"dtype": dtype, "layer": layer, "kernel": kernel, "ms": values, "gflops": achieved})
        lines.append(f"| {dtype} | {layer} | {kernel} | {ms:.2f} | {achieved:.0f} | {achieved / rate[dtype]:.0%} |")
    lines += ["", "The kernels' sum beside a whole training step (`fit`, 16 steps per execution, one in-memory batch "
              "repeated), both in this process:", "",
              "| dtype | kernels, ms per batch | MFU if nothing else cost time | training step, ms (median, "
              "min-max) | images/s | MFU | kernels' share of the step |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for dtype in GEMM_DTYPES:
        step = statistics.median(steps[dtype])
        kernels_mfu = batch_flops / totals[dtype] * 1e3 / rate[dtype]
        step_mfu = batch_flops / step * 1e3 / rate[dtype]
        data["summary"][dtype] = {"kernel_ms": totals[dtype], "kernels_mfu": kernels_mfu, "step_ms": step,
                                  "step_mfu": step_mfu}
        lines.append(f"| {dtype} | {totals[dtype]:.1f} | {kernels_mfu:.0%} | {step:.1f} ({min(steps[dtype]):.1f}-"
                     f"{max(steps[dtype]):.1f}) | {args.batch / step * 1e3:,.0f} | {step_mfu:.0%} "
                     f"| {totals[dtype] / step:.0%} |")
    save("kernels", machine_line(), "\n".join(lines), data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
