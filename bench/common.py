"""Shared by the benchmark scripts: the machine line, the SGEMM reference rate,
model FLOP counts, repeated timing and result files.

Benchmarks print each figure beside its reference, measured in the same run,
as a ratio; every figure is the median of ``--repeats`` runs (at least 3) with
its min and max, because this machine is shared and noisy.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Where save() writes; the suite's smoke runs point it at a temporary folder.
RESULTS = Path(os.environ.get("MNIST_FOLDERS_BENCH_RESULTS") or REPO / "bench" / "results")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """CPU, cores, BF16 support and library versions: the caption of every table."""
    import keras
    import tensorflow as tf

    from mnist_folders.networks.dtype_policy import cpu_has_bf16

    return (f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores, AVX-512 BF16: {'yes' if cpu_has_bf16() else 'no'}, "
            f"Python {platform.python_version()}, TensorFlow {tf.__version__}, Keras {keras.__version__}")


def sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best float32 matrix-multiply rate of TensorFlow on this machine, in GFLOP/s (2 n^3 per product)."""
    import tensorflow as tf

    a = tf.random.uniform((size, size), dtype=tf.float32)
    b = tf.random.uniform((size, size), dtype=tf.float32)
    (a @ b).numpy()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        (a @ b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def training_flops_per_image(model) -> float:
    """FLOPs to train on one image: 3x the forward pass of the Conv2D and Dense layers.

    Forward: a Conv2D costs 2 * out_h * out_w * k_h * k_w * c_in * c_out, a
    Dense 2 * inputs * units; the backward pass costs about twice the forward
    (gradients for the inputs and for the weights).
    """
    forward = 0.0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            _, out_h, out_w, c_out = layer.output.shape
            k_h, k_w = layer.kernel_size
            forward += 2 * out_h * out_w * k_h * k_w * layer.input.shape[-1] * c_out
        elif kind == "Dense":
            forward += 2 * layer.input.shape[-1] * layer.units
    return 3 * forward


def repeat(measure: Callable[[], float], repeats: int) -> dict[str, float]:
    """Run ``measure`` ``repeats`` times; median, min and max of what it returns."""
    values = [measure() for _ in range(repeats)]
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def fmt(stats: dict[str, float], digits: int = 1) -> str:
    return f"{stats['median']:.{digits}f} ({stats['min']:.{digits}f}-{stats['max']:.{digits}f})"


def save(name: str, machine: str, table: str, data: dict) -> None:
    """Print the table and write ``bench/results/<name>.md`` and ``.json``."""
    text = f"Machine: {machine}\n\n{table}\n"
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.md").write_text(text)
    (RESULTS / f"{name}.json").write_text(json.dumps({"machine": machine, **data}, indent=2) + "\n")
