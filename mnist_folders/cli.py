"""What both command-line scripts share: quiet TensorFlow logs and error reporting."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def quiet_tensorflow() -> None:
    """Import TensorFlow and Keras without their C++ start-up chatter.

    On CPU-only machines TensorFlow logs CUDA probing and oneDNN notices at
    import, partly before ``TF_CPP_MIN_LOG_LEVEL`` takes effect, so stderr's
    file descriptor is pointed at /dev/null for the import only. An import
    error still raises (and prints) once stderr is back. Set
    ``MNIST_FOLDERS_TF_LOGS=1`` to see the logs.
    """
    if os.environ.get("MNIST_FOLDERS_TF_LOGS") == "1":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def run(main: Callable[[], int | None]) -> None:
    """Run ``main`` and exit: 0 on success, 2 with one ``error:`` line for a user's mistake.

    :class:`~mnist_folders.errors.PipelineError` and ``OSError`` are a user's
    mistakes or environment trouble (missing folder, full disk): one line on
    stderr, no traceback. Anything else is a bug and keeps its traceback.
    """
    from .errors import PipelineError

    try:
        code = main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_USER_ERROR
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        code = EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    sys.exit(code or 0)
