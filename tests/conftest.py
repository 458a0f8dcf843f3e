"""Shared fixtures: small real MNIST trees exported and trained through the CLIs."""

from __future__ import annotations

import contextlib
import io
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser import browser  # noqa: F401 - the fixture: a headless Chromium (tests/browser.py)

REPO = Path(__file__).resolve().parent.parent
MNIST = REPO / "data" / "mnist"
# Modules of tests that need neither TensorFlow nor the command line: `pytest -m pure` runs them in seconds.
PURE = {"test_pure_behaviour.py", "test_idx.py", "test_layers.py"}


def pytest_collection_modifyitems(config, items):
    """Mark each test ``pure`` (its module is in :data:`PURE`) or ``cli`` (its module runs mnist_keras.py or
    parse_mnist.py), so that a developer runs the groups apart (docs/testing.md)."""
    runs_cli: dict[Path, bool] = {}
    for item in items:
        path = Path(item.fspath)
        if path.name in PURE:
            item.add_marker(pytest.mark.pure)
        if path not in runs_cli:
            source = path.read_text(encoding="utf-8")
            runs_cli[path] = "mnist_keras.py" in source or "parse_mnist.py" in source
        if runs_cli[path]:
            item.add_marker(pytest.mark.cli)
# Small enough for a fast suite, large enough for a meaningful accuracy.
SUBSET = 5000
EPOCHS = 3
# The shared model's training: batch 32 (3 x 125 steps) scored 96.2 % on the 5,000 test images, where
# batch "auto" (256, 48 steps) scored 91.1 % and 64 93.5 %: thresholds of 0.9 in the tests are not on the edge.
FIXTURE_TRAINING = ("--epochs", str(EPOCHS), "--model", "cnn_64_128_256", "--batch-size", "32")
EXPORT_TEMPERATURE = 2.5  # the softmax temperature of the exported fixture model


def _no_export(args: tuple[str, ...], export: bool) -> tuple[str, ...]:
    """``args`` with ``--format none`` added to a training run that names no format, unless ``export``: the
    ONNX export after training (1.6 s) is tested in test_deploy.py, not paid by every test that trains."""
    if export or "--format" in args or "--mode" not in args:
        return args
    mode = args.index("--mode") + 1
    return (*args, "--format", "none") if args[mode : mode + 1] == ("train",) else args


def run_cli(*args: str, check: bool = True, cwd: Path | None = None,
            env: dict[str, str] | None = None, export: bool = False, process: bool = False) -> subprocess.CompletedProcess:
    """Run ``python <script> args...`` from the repository root and capture its output (``env``: extra
    variables; ``export``: keep the default export after training).

    ``mnist_keras.py`` runs inside this process (TensorFlow is imported once for the whole suite, not 4 s per
    call) unless ``process`` asks for a real one, ``env`` sets other variables than those read at call time
    (:data:`IN_PROCESS_ENV`; the kill hook would kill pytest), or the run needs a fresh TensorFlow runtime
    (``--strategy``: logical devices are made before the runtime starts). Exit codes, stdout and stderr are
    those a subprocess gives; what the process itself does (signals, imports, file descriptors) is tested
    with ``process=True`` or :func:`start_cli`."""
    args = _no_export(args, export)
    if process or set(env or {}) - IN_PROCESS_ENV or not _in_process_ok(args):
        command = _command(args, env)
        env = {**os.environ, **(env or {})}
        result = subprocess.run(command, cwd=cwd or REPO, env=env, capture_output=True, text=True)
    else:
        result = _run_in_process(args, cwd or REPO, env or {})
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def _command(args: tuple[str, ...], env: dict[str, str] | None) -> list[str]:
    """``python args...``; through tests/kill_hook.py when ``env`` names a kill point (a test-only hook)."""
    hook = [str(REPO / "tests" / "kill_hook.py")] if "MNIST_FOLDERS_KILL_AT" in (env or {}) else []
    return [sys.executable, *hook, *args]


# Variables the CLI reads when it needs them (not at import): a run given them can stay in this process.
IN_PROCESS_ENV = {"MNIST_FOLDERS_CACHE", "MNIST_FOLDERS_NO_PRETRAINED"}


def _in_process_ok(args: tuple[str, ...]) -> bool:
    return bool(args) and Path(args[0]).name == "mnist_keras.py" and "--strategy" not in args


class _Captured(io.TextIOWrapper):
    """A text stream like a pipe's (``reconfigure`` works, as the CLI calls it), read back as
    ``subprocess.run(text=True)`` reads a pipe: UTF-8, line ends made ``\\n``."""

    def __init__(self):
        super().__init__(io.BytesIO(), encoding="utf-8", write_through=True)

    def text(self) -> str:
        self.flush()
        return self.buffer.getvalue().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def _run_in_process(args: tuple[str, ...], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    import keras

    out, err = _Captured(), _Captured()
    saved = sys.argv, os.getcwd(), signal.getsignal(signal.SIGTERM), dict(os.environ)
    sys.argv = list(args)
    os.chdir(cwd)
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(args[0], run_name="__main__")
                code = 0
            except SystemExit as exc:  # as the interpreter does with sys.exit's argument
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
                if not isinstance(exc.code, (int, type(None))):
                    print(exc.code, file=err)
    finally:
        sys.argv = saved[0]
        os.chdir(saved[1])
        signal.signal(signal.SIGTERM, saved[2])
        os.environ.clear()
        os.environ.update(saved[3])
        keras.mixed_precision.set_global_policy("float32")  # as a fresh process starts
        keras.backend.clear_session()
    return subprocess.CompletedProcess(args, code, out.text(), err.text())


# Runs a script in-process, then prints on its last stdout line whether TensorFlow was imported.
_IN_PROCESS = ("import runpy, sys; sys.argv = sys.argv[1:]\n"
               "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n"
               "    code = e.code\nelse:\n    code = 0\n"
               "print('tensorflow imported' if 'tensorflow' in sys.modules else 'no tensorflow')\n"
               "sys.exit(code)")


def run_cli_watching_imports(*args: str, check: bool = True) -> tuple[subprocess.CompletedProcess, bool]:
    """:func:`run_cli` with the script run in-process: ``(result, whether it imported TensorFlow)``."""
    result = run_cli("-c", _IN_PROCESS, *args, check=check)
    last = result.stdout.rstrip().rsplit("\n", 1)[-1]
    assert last in ("tensorflow imported", "no tensorflow"), result.stdout
    return result, last == "tensorflow imported"


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``python <script> args...`` in its own process group, so the whole group can be killed."""
    args = _no_export(args, False)
    command = _command(args, env)
    env = {**os.environ, **(env or {})}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a process started by :func:`start_cli`, with its children."""
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def wait_for(condition, process: subprocess.Popen, timeout: float = 240.0) -> None:
    """Poll ``condition()`` until true; fail if ``process`` ends first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"process ended early: {process.communicate()}")
        if time.monotonic() > deadline:
            kill_group(process)
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


@pytest.fixture(scope="session", autouse=True)
def weights_cache(tmp_path_factory) -> Path:
    """A private cache of converted weights and embeddings for the whole run (inherited by the CLIs run)."""
    folder = tmp_path_factory.mktemp("weights_cache")
    os.environ["MNIST_FOLDERS_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """The first 5,000 train and test images of real MNIST, exported by parse_mnist.py."""
    out = tmp_path_factory.mktemp("data") / "mnist_data"
    run_cli(str(REPO / "parse_mnist.py"), "--out", str(out), "--limit", str(SUBSET), "--quiet")
    return out


@pytest.fixture(scope="session")
def trained_model(small_data, tmp_path_factory) -> Path:
    """A reference model trained through the CLI on the small tree (tf.data pipeline)."""
    model_dir = tmp_path_factory.mktemp("models") / "mnist"
    run_cli(str(REPO / "mnist_keras.py"), "--mode", "train", "--data-dir", str(small_data),
            "--model-dir", str(model_dir), *FIXTURE_TRAINING, "--quiet")
    return model_dir


@pytest.fixture(scope="session")
def exported(trained_model, small_data, tmp_path_factory) -> Path:
    """A copy of :func:`trained_model` with every format exported by the CLI (the original stays
    un-exported, so other tests keep predicting with Keras)."""
    import json
    import shutil

    model_dir = tmp_path_factory.mktemp("exported") / "mnist"
    shutil.copytree(trained_model, model_dir)
    # A temperature far from 1 (the fitted one is near 1): a temperature applied inverted, or not at all,
    # changes every confidence (test_deploy.py computes them independently).
    calibration = model_dir / "calibration.json"
    calibration.write_text(json.dumps({**json.loads(calibration.read_text()), "temperature": EXPORT_TEMPERATURE}))
    result = run_cli(str(REPO / "mnist_keras.py"), "--mode", "export", "--model-dir", str(model_dir),
                     "--data-dir", str(small_data))
    assert "exported to" in result.stdout
    return model_dir


@pytest.fixture(scope="session")
def registry_data(small_data, tmp_path_factory) -> Path:
    """40 training and 20 test images of each digit (linked from the small tree) and its 10 samples: a model
    trains on a few hundred images in seconds."""
    import shutil

    root = tmp_path_factory.mktemp("registry")
    for split, count in (("train", 40), ("test", 20)):
        for digit in range(10):
            (root / split / str(digit)).mkdir(parents=True)
            for path in sorted((small_data / split / str(digit)).iterdir())[:count]:
                os.link(path, root / split / str(digit) / path.name)
    shutil.copytree(small_data / "tmp", root / "tmp")
    return root
