"""What both command-line scripts share: flags made from the settings'
descriptions, quiet TensorFlow logs, and one exit-code table.

Exit codes (also in the README):

====  =====================================================================
0     success
1     ``predict`` found no image to predict
2     a usage or data error: one ``error: <file>: <what is wrong>`` line
3     an internal error (a bug): one line on the terminal, the traceback in
      a log file it names
130   interrupted (Ctrl-C, SIGTERM)
141   the output pipe was closed (``predict | head``): stops quietly
====  =====================================================================
"""

import argparse
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

EXIT_OK = 0
EXIT_NOTHING_TO_PREDICT = 1
EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
# Keras/TensorFlow errors that mean the user's data or settings do not fit this machine.
_RESOURCE_ERRORS = {"ResourceExhaustedError": "out of memory", "MemoryError": "out of memory"}


BOOLEAN_WORDS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def default_text(name: str, opt: Any, default: Any) -> str:
    """How a setting's default reads in ``--help`` and the generated tables."""
    if opt.default_text is not None:
        return opt.default_text
    if isinstance(default, bool):
        return "true" if default else "false"
    if opt.model_default:
        from ..registry import MODELS

        return f"model's own ({getattr(MODELS['cnn_64_128_256'], name)} for the reference model)"
    return str(default)


def allowed_text(opt: Any) -> str:
    """The allowed values or range of a setting, as one phrase ('' when free)."""
    words = opt.allowed()
    if opt.kind == "bool":
        return "true, false"
    if opt.kind == "int" and words:
        return f"integer {opt.range_text()} or {', '.join(words)}".replace("integer  or", "integer or")
    if words:
        return ", ".join(words)
    return opt.range_text()


def _parser_type(opt: Any) -> Callable[[str], Any]:
    """argparse ``type`` for a setting's kind (a bad value is a usage error)."""
    words = opt.allowed()

    def parse_int(text: str) -> Any:
        if text in words:
            return text
        return int(text)

    def parse_bool(text: str) -> bool:
        if text.lower() not in BOOLEAN_WORDS:
            raise ValueError(text)
        return BOOLEAN_WORDS[text.lower()]

    parse_int.__name__, parse_bool.__name__ = "integer", "true or false"
    if opt.kind == "bool":
        return parse_bool
    if opt.kind == "int":
        return parse_int
    if opt.kind == "float":
        return float
    if opt.kind == "names":
        return lambda text: [part.strip() for part in text.split(",")]
    return str


def add_setting_flags(parser: argparse.ArgumentParser, shown: "tuple[str, ...] | None" = None) -> None:
    """One flag per :class:`~mnist_folders.settings.Setting` field, grouped, from its description.

    ``shown``: the settings ``--help`` describes, in one short line each (default: all, in full); the flags
    of the others are accepted all the same.
    """
    import dataclasses

    from ..settings import GROUPS, Setting

    names = [f.name for f in dataclasses.fields(Setting)]
    brief = shown is not None
    shown = tuple(names) if shown is None else shown
    listed = [g for g in GROUPS if any(Setting.__dataclass_fields__[n].metadata["option"].group == g for n in shown)]
    groups = {name: parser.add_argument_group(f"{name} settings") for name in listed}
    hidden = parser.add_argument_group("other settings")
    for f in dataclasses.fields(Setting):
        opt = f.metadata["option"]
        allowed = allowed_text(opt)
        default = f"default: {default_text(f.name, opt, f.default)}"
        if brief:  # its first phrase and the default: the whole description is in docs/cli-reference.md
            text = f"{opt.help.split('; ')[0]} ({default})"
        else:
            text = f"{opt.help} ({default}" + (f"; {allowed})" if allowed else ")")
        options: dict[str, Any] = dict(dest=f.name, default=None, type=_parser_type(opt),
                                       help=text.replace("%", "%%"))
        if opt.kind == "str" and opt.allowed():
            options.update(choices=opt.allowed(), metavar="{" + ",".join(opt.allowed()) + "}")
        if opt.kind == "bool":  # --tensorboard alone means true; --tensorboard false overrides a config file
            options.update(nargs="?", const=True, metavar="{true,false}")
        if f.name not in shown:
            options["help"] = argparse.SUPPRESS
        groups.get(opt.group, hidden).add_argument(flag_name(f.name), *opt.aliases, **options)


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


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _log_traceback() -> str:
    """Write the current exception's traceback to a log file; return its path."""
    fd, path = tempfile.mkstemp(prefix=f"mnist_folders-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(" ".join(sys.argv) + "\n\n" + traceback.format_exc())
    return path


def run(main: Callable[[], int | None]) -> None:
    """Run ``main`` and exit with a code of the table above.

    :class:`~mnist_folders.errors.PipelineError` and ``OSError`` are a user's
    mistakes or environment trouble (missing folder, full disk): one line on
    stderr, no traceback. Anything else is a bug: one line naming the log
    file that holds the traceback, exit code 3.
    """
    from ..errors import PipelineError
    from ..names import display

    signal.signal(signal.SIGTERM, _sigterm)  # SIGTERM stops like Ctrl-C: temporaries cleaned, 130
    for stream in (sys.stdout, sys.stderr):  # a file name with undecodable bytes must not stop a run
        stream.reconfigure(errors="backslashreplace")
    try:
        code = main()
        sys.stdout.flush()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_USER_ERROR
    except BrokenPipeError:
        # The reader left (``| head``): nothing more to say. Point stdout at
        # /dev/null so the interpreter's final flush does not complain.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    except OSError as exc:
        where = f"{display(exc.filename)}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        code = EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, or memory exhausted
        kind = type(exc).__name__
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        if kind in _RESOURCE_ERRORS:
            print(f"error: {_RESOURCE_ERRORS[kind]} ({kind}: {first}); lower batch_size or the image size",
                  file=sys.stderr)
            code = EXIT_USER_ERROR
        else:
            print(f"internal error: {kind}: {first} (traceback in {_log_traceback()}; please report it)",
                  file=sys.stderr)
            code = EXIT_INTERNAL_ERROR
    sys.exit(code or 0)
