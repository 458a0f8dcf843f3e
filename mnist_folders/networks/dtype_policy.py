"""The Keras dtype policy of training: float32, or mixed bfloat16 where the CPU has it.

``mixed_bfloat16`` computes in bfloat16 and keeps float32 weights (so
checkpoints are the same either way); the models' softmax layer stays float32
for a stable loss. ``auto`` picks ``mixed_bfloat16`` only on CPUs that report
the AVX-512 BF16 or AMX BF16 instructions, where it is measured faster (see
``bench/README.md``); elsewhere bfloat16 is emulated and slow, so ``auto`` means
float32.
"""

from __future__ import annotations

from pathlib import Path


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """True when the ``flags`` lines of ``cpuinfo`` list ``avx512_bf16`` or ``amx_bf16`` (False where unreadable)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags")
             for flag in line.partition(":")[2].split()}
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def resolve(name: str) -> str:
    """``auto`` -> the policy for this machine; other values unchanged."""
    if name == "auto":
        return "mixed_bfloat16" if cpu_has_bf16() else "float32"
    return name


def apply(name: str) -> str:
    """Set Keras' global dtype policy for models built from now on; return the policy name."""
    import keras

    policy = resolve(name)
    keras.mixed_precision.set_global_policy(policy)
    return policy
