"""Numeric precision of training: float32, or mixed bfloat16 where the CPU has it.

``mixed_bfloat16`` computes in bfloat16 and keeps float32 weights (so
checkpoints are the same either way); the models' softmax layer stays float32
for a stable loss. ``auto`` picks ``mixed_bfloat16`` only on CPUs that report
the AVX-512 BF16 or AMX BF16 instructions, where it is measured faster (see
``bench/README.md``); elsewhere bfloat16 is emulated and slow, so ``auto`` means
float32.
"""

from __future__ import annotations

from pathlib import Path

PRECISIONS = ("auto", "float32", "mixed_bfloat16")


def cpu_has_bf16() -> bool:
    """True when /proc/cpuinfo lists ``avx512_bf16`` or ``amx_bf16`` (False where unreadable)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve(precision: str) -> str:
    """``auto`` -> the policy for this machine; other values unchanged."""
    if precision == "auto":
        return "mixed_bfloat16" if cpu_has_bf16() else "float32"
    return precision


def apply(precision: str) -> str:
    """Set Keras' global dtype policy for models built from now on; return the policy name."""
    import keras

    policy = resolve(precision)
    keras.mixed_precision.set_global_policy(policy)
    return policy
