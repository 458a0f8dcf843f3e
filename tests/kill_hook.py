"""Test-only fault injection: run the command line with a SIGKILL at a chosen point of training.

``python tests/kill_hook.py mnist_keras.py ARGS...`` runs ``mnist_keras.py ARGS...`` in this process after
installing the kill point that ``MNIST_FOLDERS_KILL_AT`` names (the conftest helpers start it so when a test
sets that variable; nothing in the package reads it):

- ``E:B``: after batch ``B`` (1-based) of epoch ``E`` (1-based), or after the first batch past it when
  ``fit`` runs several steps per execution (batch callbacks then come once per execution);
- ``E:end``: after epoch ``E``'s checkpoint is written;
- ``E:history``: between writing epoch ``E``'s history row and its ``last.keras``.
"""

import os
import runpy
import signal
import sys

KILL_AT_ENV = "MNIST_FOLDERS_KILL_AT"


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def parse(spec: str) -> tuple[int, str]:
    """``(epoch, point)`` of a kill-point spec; a malformed one is the CLI's one-line SettingError."""
    from mnist_folders.errors import SettingError

    epoch, _, point = spec.partition(":")
    if not epoch.isdigit() or not (point.isdigit() or point in ("end", "history")):
        raise SettingError(f"{KILL_AT_ENV}={spec!r}: a test hook; expected E:B, E:end or E:history "
                           "(unset it to train)")
    return int(epoch), point


def install(spec: str) -> None:
    """Wrap the training callbacks (batch and epoch points) and the last.keras writer (the history point)."""
    from mnist_folders.commands import cli

    cli.quiet_tensorflow()  # as the CLI imports it: without TensorFlow's start-up lines on stderr
    import keras

    from mnist_folders import artifacts
    from mnist_folders.networks import saved
    from mnist_folders.train import callbacks, training

    class KillAt(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epoch, self.point = parse(spec)  # inside the run: a bad spec is one line, exit 2
            self.current = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.current = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            if self.current == self.epoch and self.point.isdigit() and batch + 1 >= int(self.point):
                _kill()

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == self.epoch and self.point == "end":
                _kill()

    make_callbacks = callbacks.training_callbacks

    def with_kill(*args, **kwargs):
        return [*make_callbacks(*args, **kwargs), KillAt()]  # last: after the epoch's checkpoint is written

    callbacks.training_callbacks = training.training_callbacks = with_kill
    written = {"rows": 0}
    write_history, save_last_model = artifacts.write_history, saved.save_last_model

    def counting_history(model_dir, rows):
        written["rows"] = len(rows)
        write_history(model_dir, rows)

    def save_or_kill(model_dir, model):
        if spec == f"{written['rows']}:history":  # epoch E's row is written, its last.keras not yet
            _kill()
        save_last_model(model_dir, model)

    artifacts.write_history, saved.save_last_model = counting_history, save_or_kill


def run(script: str) -> None:
    """Run ``script`` as ``__main__`` with the hook installed when the CLI runs its mode."""
    from mnist_folders import commands

    dispatch = commands.dispatch

    def hooked(args):
        install(os.environ[KILL_AT_ENV])
        return dispatch(args)

    commands.dispatch = hooked
    sys.argv = [script, *sys.argv[2:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    run(sys.argv[1])
