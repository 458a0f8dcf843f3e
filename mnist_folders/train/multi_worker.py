"""Training on several processes or machines: ``MultiWorkerMirroredStrategy`` driven by a custom loop.

``model.fit`` fails under ``MultiWorkerMirroredStrategy`` in Keras 3.15
(keras-team/keras#20585: a ``PerReplica`` value reaches a plain conversion;
patched, the metric reduction fails next), so this module runs the training
step itself with ``strategy.run`` and ``strategy.reduce`` and drives the same
Keras callbacks as ``fit`` would: the checkpoints, the learning-rate
schedule, the seeds, the stop rule and the NaN guard behave as in a
one-process run.

Input: every worker builds the same global batches (same files, same
per-(seed, epoch) order) and trains on its own slice, ``batch[worker::
workers]``; the gradients are summed across workers and the loss divided by
the global batch size, so one step is one global-batch step. One replica per
worker (a CPU machine, or one GPU per process): for several GPUs in one
machine, use ``strategy = "mirrored"``.

The cluster comes from the standard ``TF_CONFIG`` environment variable;
worker 0 is the chief. Only the chief writes the model directory; the
others write their checkpoints into a scratch folder (:func:`scratch_folder`)
that is removed at the end. When a worker dies, the others stop with a
``TrainingError`` at their next collective step; ``--resume`` on every
worker continues after the last completed epoch (this tool's own resume,
exact to the batch order: Keras' ``BackupAndRestore`` is not multi-worker
aware, every worker would write the same backup). Every worker reads a resume point from the model directory, which
must therefore be one shared folder (a network file system on a cluster).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from ..errors import SettingError, TrainingError


@dataclass
class Role:
    """This process in the cluster: ``index`` of ``count`` workers; the chief (index 0) writes the files."""

    index: int
    count: int
    addresses: tuple[str, ...] = ()  # host:port of every worker, in TF_CONFIG's order

    def waiting_line(self) -> str:
        """What a worker says before the first collective, where it waits (without end) for the others."""
        others = [f"worker {i} at {a}" for i, a in enumerate(self.addresses) if i != self.index]
        return (f"worker {self.index} of {self.count}: waiting for {', '.join(others) or 'the other workers'} "
                "(each must be started with TF_CONFIG; Ctrl-C stops)")

    @property
    def chief(self) -> bool:
        return self.index == 0


def role_from_environment(environ: dict[str, str] | None = None) -> Role | None:
    """The worker role described by ``TF_CONFIG``, or None when it is unset or names one worker.

    Raises:
        SettingError: ``TF_CONFIG`` is not the JSON ``{"cluster": {"worker": [...]}, "task": {"type":
            "worker", "index": i}}`` that this tool supports.
    """
    text = (environ if environ is not None else os.environ).get("TF_CONFIG")
    if not text:
        return None
    try:
        config = json.loads(text)
        workers = config["cluster"]["worker"]
        task = config["task"]
        if task["type"] != "worker" or set(config["cluster"]) - {"worker"}:
            raise ValueError("only 'worker' tasks are supported (worker 0 is the chief)")
        index = int(task["index"])
        if not 0 <= index < len(workers):
            raise ValueError(f"task index {index} is not among the {len(workers)} workers")
    except (ValueError, KeyError, TypeError) as exc:
        raise SettingError(f"TF_CONFIG: {exc}") from None
    return Role(index, len(workers), tuple(str(w) for w in workers)) if len(workers) > 1 else None


def scratch_folder(model_dir: Path, role: Role) -> Path:
    """An empty folder for a non-chief worker's files: one name per (model directory, worker), in the
    system's temporary folder, so that a worker restarted after a kill replaces what the killed one left."""
    digest = hashlib.sha256(str(model_dir.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"mnist_folders-worker-{digest}-{role.index}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


def _slice(role: Role):
    """A tf.data map: a global batch ``(x, y)`` -> ``(x[i::n], y[i::n], global batch size)``."""
    def take(x, y):
        return x[role.index :: role.count], y[role.index :: role.count], tf.cast(tf.shape(y)[0], tf.float32)

    return take


def fit(strategy: Any, role: Role, model: keras.Model, train: tf.data.Dataset, validation: tf.data.Dataset,
        steps_per_epoch: int, epochs: int, initial_epoch: int, callbacks: list[keras.callbacks.Callback],
        label_smoothing: float = 0.0, class_weight: dict[int, float] | None = None, log=print) -> None:
    """``model.fit(train, validation_data=validation, epochs, initial_epoch, callbacks)`` across workers.

    ``train`` and ``validation`` yield global batches ``(x, y)`` (one-hot
    ``y``), the same on every worker. The logs the callbacks see: ``loss``,
    ``accuracy`` (per batch and per epoch) and ``val_loss``,
    ``val_accuracy``, each over the global batch or the whole epoch.
    """
    num_classes = model.output_shape[-1]
    weights = tf.constant([class_weight.get(c, 1.0) if class_weight else 1.0 for c in range(num_classes)],
                          tf.float32)

    def per_example(y, p):
        loss = keras.losses.categorical_crossentropy(y, p, label_smoothing=label_smoothing)
        return loss * tf.gather(weights, tf.argmax(y, axis=-1))

    def correct(y, p):
        return tf.reduce_sum(tf.cast(tf.equal(tf.argmax(p, -1), tf.argmax(y, -1)), tf.float32))

    def train_replica(x, y, global_size):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            losses = per_example(y, p)
            loss = tf.reduce_sum(losses) / global_size
        grads = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return tf.reduce_sum(losses), correct(y, p)

    def test_replica(x, y, _):
        p = model(x, training=False)
        return tf.reduce_sum(per_example(y, p)), correct(y, p)

    def distributed(replica_fn):
        @tf.function
        def run(x, y, global_size):
            outputs = strategy.run(replica_fn, args=(x, y, global_size))
            return [strategy.reduce(tf.distribute.ReduceOp.SUM, o, axis=None) for o in outputs]
        return run

    _loop(role, model, train, validation, epochs, initial_epoch, callbacks, distributed(train_replica),
          distributed(test_replica), log)


# The errors a collective operation raises when a peer died or became unreachable; TensorFlow reports some
# of them with the code of the failed remote call ("Collective ops is aborted by: Socket closed").
_PEER_LOST = (tf.errors.UnavailableError, tf.errors.CancelledError, tf.errors.DeadlineExceededError,
              tf.errors.AbortedError)


@contextlib.contextmanager
def lost_contact(role: Role | None) -> Iterator[None]:
    """Turn the error of a collective operation that lost a peer (while the variables are broadcast, in an
    epoch, or at a checkpoint) into one ``TrainingError`` line that says how to go on.

    Raises:
        TrainingError: a peer died or became unreachable (``role`` is not None).
    """
    try:
        yield
    except tf.errors.OpError as exc:
        if role is None or not (isinstance(exc, _PEER_LOST) or "Collective ops is aborted" in str(exc)):
            raise
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise TrainingError(f"worker {role.index}: lost contact with another worker ({type(exc).__name__}: "
                            f"{first}); the last completed epoch is saved: start every worker again with "
                            "--resume") from None


def _loop(role: Role, model: keras.Model, train, validation, epochs: int, initial_epoch: int,
          callbacks: list[keras.callbacks.Callback], train_step, test_step, log) -> None:
    """The epochs of :func:`fit`, driving the callbacks as ``model.fit`` does."""
    take = _slice(role)
    listed = keras.callbacks.CallbackList(callbacks, model=model, add_history=False, add_progbar=False)
    model.stop_training = False
    listed.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        listed.on_epoch_begin(epoch)
        loss_sum = right = seen = 0.0
        for step, (x, y) in enumerate(train):  # iterated after on_epoch_begin: the epoch's order is set
            x, y, size = take(x, y)
            listed.on_train_batch_begin(step)
            batch_loss, batch_right = (float(v) for v in train_step(x, y, size))
            loss_sum, right, seen = loss_sum + batch_loss, right + batch_right, seen + float(size)
            listed.on_train_batch_end(step, {"loss": batch_loss / float(size), "accuracy": batch_right / float(size)})
        val_loss = val_right = val_seen = 0.0
        for x, y in validation:
            x, y, size = take(x, y)
            batch_loss, batch_right = (float(v) for v in test_step(x, y, size))
            val_loss, val_right, val_seen = val_loss + batch_loss, val_right + batch_right, val_seen + float(size)
        logs = {"accuracy": right / max(seen, 1.0), "loss": loss_sum / max(seen, 1.0),
                "val_accuracy": val_right / max(val_seen, 1.0), "val_loss": val_loss / max(val_seen, 1.0)}
        log(f"epoch {epoch + 1}/{epochs} - " + " - ".join(f"{k}: {v:.4f}" for k, v in logs.items()))
        listed.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    listed.on_train_end()


WAIT_ENV = "MNIST_FOLDERS_WORKER_WAIT"  # seconds a worker waits for the others to join (default below)
DEFAULT_WAIT_SECONDS = 600.0


# Run by a watchdog process: TensorFlow waits for the cluster inside C++ code that holds the GIL, so no thread
# or signal handler of the waiting process could act. It kills its parent only if that is still its parent.
_WATCHDOG = ("import os, signal, sys, time\n"
             "parent, seconds, line = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]\n"
             "time.sleep(seconds)\n"
             "if os.getppid() == parent:\n"
             "    print(line, file=sys.stderr, flush=True)\n"
             "    os.kill(parent, signal.SIGKILL)\n")


@contextlib.contextmanager
def join_deadline(role: Role | None) -> Iterator[None]:
    """Stop the process, with one line, when the cluster has not formed within ``$MNIST_FOLDERS_WORKER_WAIT``
    seconds (default 600): TensorFlow waits for a worker that never starts without end and without a word.

    The wait is inside TensorFlow's runtime, which holds the GIL: a watchdog process prints the line and
    kills this one (exit status 137, SIGKILL). Nothing has been written by then: the strategy is made
    before any file is touched.

    Raises:
        SettingError: ``$MNIST_FOLDERS_WORKER_WAIT`` is not a positive number of seconds.
    """
    if role is None:
        yield
        return
    try:
        seconds = float(os.environ.get(WAIT_ENV, DEFAULT_WAIT_SECONDS))
        if not seconds > 0:
            raise ValueError
    except ValueError:
        raise SettingError(f"{WAIT_ENV}={os.environ[WAIT_ENV]!r}: expected a positive number of seconds") from None
    others = ", ".join(a for i, a in enumerate(role.addresses) if i != role.index) or "the other workers"
    line = (f"error: worker {role.index} of {role.count}: no answer from {others} within {seconds:g} s "
            f"({WAIT_ENV}); start every worker, or check TF_CONFIG")
    watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), str(seconds), line],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()
