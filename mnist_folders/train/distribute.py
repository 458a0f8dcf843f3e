"""The ``tf.distribute`` strategy of a training run, from the ``strategy`` setting.

* ``one_device``: TensorFlow's default strategy (one CPU or one GPU).
* ``mirrored``: ``MirroredStrategy`` over every local GPU; on a machine
  without GPUs, over two logical CPU devices (for tests: the same code path
  as several GPUs, on the CPU's cores). ``model.fit`` runs it as it is; the
  global batch (``batch_size``) is split across the replicas.
* ``multi_worker``: ``MultiWorkerMirroredStrategy`` over the processes that
  the ``TF_CONFIG`` environment variable lists (one device each), trained by
  :mod:`mnist_folders.train.multi_worker`'s loop.
* ``auto``: ``multi_worker`` when ``TF_CONFIG`` lists two or more workers,
  else ``mirrored`` with two or more GPUs, else ``one_device``.

The logical CPU devices must be declared before TensorFlow initialises its
runtime, so :func:`strategy_for` runs before any other TensorFlow work of
the process.
"""

from __future__ import annotations

from typing import Any

from ..errors import SettingError
from .multi_worker import Role, role_from_environment
from ..settings import Setting

LOGICAL_CPUS = 2  # replicas of mirrored on a machine without GPUs


def strategy_for(setting: Setting) -> tuple[Any, str, Role | None]:
    """``(tf.distribute.Strategy, description, multi-worker role or None)`` for ``setting.strategy``.

    Raises:
        SettingError: ``mirrored`` asked after TensorFlow's runtime started
            (logical CPU devices can no longer be made); ``multi_worker``
            without a ``TF_CONFIG`` of two or more workers, or with several
            devices per worker.
    """
    import tensorflow as tf

    role = role_from_environment()
    gpus = tf.config.list_physical_devices("GPU")
    name = setting.strategy
    if name == "auto":
        name = "multi_worker" if role else "mirrored" if len(gpus) > 1 else "one_device"
    if name == "multi_worker":
        if role is None:
            raise SettingError("strategy=multi_worker needs TF_CONFIG naming two or more workers "
                               "(see docs/large-data.md, \"Training on several machines\")")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if strategy.num_replicas_in_sync != role.count:
            raise SettingError(f"strategy=multi_worker supports one device per worker process "
                               f"({strategy.num_replicas_in_sync} replicas for {role.count} workers); start one "
                               "process per GPU, or use strategy=mirrored on one machine")
        return strategy, f"on worker {role.index} of {role.count} (multi_worker)", role
    if name == "one_device":
        return tf.distribute.get_strategy(), "one device", None
    if gpus:
        strategy = tf.distribute.MirroredStrategy()
        return strategy, f"mirrored over {strategy.num_replicas_in_sync} GPUs", None
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * LOGICAL_CPUS)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) < LOGICAL_CPUS:
            raise SettingError("strategy=mirrored: TensorFlow started before the logical CPU devices could be "
                               "made; set it in a fresh process") from None
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:LOGICAL_CPUS]
    return tf.distribute.MirroredStrategy(devices), f"mirrored over {LOGICAL_CPUS} logical CPU devices", None
