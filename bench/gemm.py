"""The matrix-multiply rate of each compute dtype: the limit an MFU figure is taken against.

A training configuration's model FLOP utilisation is only meaningful against
the GEMM rate of the dtype it computes in: a ``mixed_bfloat16`` model against
the bfloat16 rate, a float32 model against the float32 rate. On CPUs with
AVX-512 BF16 the bfloat16 rate is about twice the float32 one, so quoting a
bfloat16 model against float32 overstates its utilisation about 2x.
"""

from __future__ import annotations

import time

GEMM_DTYPES = ("float32", "bfloat16")
# Keras dtype policy -> the dtype its Conv2D and Dense layers compute in.
POLICY_DTYPE = {"float32": "float32", "mixed_bfloat16": "bfloat16"}


def gemm_gflops(dtype: str = "float32", size: int = 2048, repeats: int = 5) -> float:
    """Best ``tf.matmul`` rate of a ``size`` x ``size`` product in ``dtype``, GFLOP/s (2 n^3 per product)."""
    import tensorflow as tf

    a = tf.cast(tf.random.uniform((size, size), dtype=tf.float32), dtype)
    b = tf.cast(tf.random.uniform((size, size), dtype=tf.float32), dtype)
    tf.matmul(a, b).numpy()  # warm-up: oneDNN builds its kernel on the first call
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def gemm_rates(rounds: int = 1) -> dict[str, list[float]]:
    """``rounds`` interleaved measurements of every dtype in :data:`GEMM_DTYPES` (float32, bfloat16, float32, ...)."""
    rates: dict[str, list[float]] = {dtype: [] for dtype in GEMM_DTYPES}
    for _ in range(rounds):
        for dtype in GEMM_DTYPES:
            rates[dtype].append(gemm_gflops(dtype))
    return rates
