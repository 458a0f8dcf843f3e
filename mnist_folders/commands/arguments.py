"""Train, evaluate and predict with an image classifier on class-per-folder images.

  train     fit the model on <train_dir> (validation split taken from it),
            checkpointing into <model_dir>
  evaluate  the best checkpoint on every image of <test_dir>
  predict   every image file in <predict_dir> (default <data_dir>/tmp)
  lr_find   sweep the learning rate on <train_dir> and suggest one
  export    write <model_dir>/export/: SavedModel, TFLite (float32, int8),
            ONNX, labels.txt and preprocessing.json, for serving elsewhere
  check     audit the train, test and predict folders (counts, unreadable
            files, exact and near duplicates, leakage); with a trained model
            in <model_dir>, also list the likely label errors
  explain   where the model looks: a Grad-CAM picture of each image of
            <predict_dir> (or --input), into --output (default
            <model_dir>/explained/)
  serve     answer HTTP requests with the trained model (POST /predict,
            GET /health, /metadata, and a page to try it at /) on
            <host>:<port>, 127.0.0.1:8000 by default

Defaults serve MNIST as exported by parse_mnist.py. Every setting can also
be given in a TOML file (--config); flags override it. evaluate and predict
use the settings saved with the model, and refuse values that contradict it
(image size, colour mode, classes, model).
"""

import argparse
import sys
from pathlib import Path

from . import cli
from .deploy import EXPORT_FORMATS
from .train import TRAIN_FORMATS

EXAMPLES = """examples:
  python parse_mnist.py && python mnist_keras.py --mode train    # MNIST, end to end
  python mnist_keras.py --mode train --data-dir photos --model-dir models/photos
  python mnist_keras.py --mode predict --model-dir models/photos --input new_photos/

python mnist_keras.py --mode MODE --help lists the options and settings MODE reads;
docs/cli-reference.md lists every setting."""

MODES = ("train", "evaluate", "predict", "lr_find", "check", "export", "explain", "serve")


def _formats(text: str) -> tuple[str, ...]:
    if text.strip() == "none":
        return ()
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in EXPORT_FORMATS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown format {unknown[0] if unknown else text!r} "
                                         f"(choose from {', '.join(EXPORT_FORMATS)})")
    return names


# The modes that read each run option: given to another mode it is a usage error, not silently ignored.
RUN_OPTION_MODES = {"resume": ("train",), "overwrite": ("train",), "strict": ("train", "check"), "quarantine": ("check",),
                    "restore": ("check",), "output": ("predict", "explain"), "watch": ("predict",), "sort_into": ("predict",),
                    "format": ("train", "export")}
# The groups of settings each mode reads. Every mode accepts every setting (one TOML file serves them all).
MODE_GROUPS = {"train": ("paths", "image", "classes", "training", "system"),
               "lr_find": ("paths", "image", "classes", "training", "system"),
               "evaluate": ("paths", "system"), "predict": ("paths", "image", "prediction", "system"),
               "export": ("paths", "image", "system"), "check": ("paths", "image", "classes", "system"),
               "explain": ("paths", "image", "prediction"), "serve": ("paths", "image", "prediction", "serving")}
# The settings `--mode MODE --help` describes (one line each, so that it fits a screen); it names the other
# settings MODE reads, and docs/cli-reference.md describes every one.
MODE_SHOWN = {
    "train": ("data_dir", "model_dir", "model", "image_height", "image_width", "color_mode", "class_weight",
              "epochs", "batch_size", "learning_rate", "validation_split", "fine_tune", "max_minutes"),
    "lr_find": ("data_dir", "model_dir", "model", "image_height", "image_width", "batch_size"),
    "evaluate": ("data_dir", "test_dir", "model_dir"),
    "predict": ("data_dir", "predict_dir", "model_dir", "runtime", "min_confidence", "invert"),
    "export": ("data_dir", "model_dir"),
    "check": ("data_dir", "train_dir", "test_dir", "predict_dir", "model_dir"),
    "explain": ("predict_dir", "model_dir", "min_confidence"),
    "serve": ("model_dir", "host", "port", "runtime", "min_confidence", "serve_batch"),
}


def _mode_help(mode: str) -> str:
    """``mode``'s lines of the module docstring's list of modes, and a pointer to the full reference."""
    lines, keep = [], False
    for line in __doc__.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            keep = line.split()[0] == mode
        elif not line.startswith("   "):
            keep = False
        if keep:
            lines.append(line)
    return "\n".join(lines)


def _more_settings(mode: str) -> str:
    """The epilog of ``--mode MODE --help``: the other settings MODE reads, by flag."""
    import dataclasses
    import textwrap

    from ..settings import Setting

    rest = [cli.flag_name(f.name) for f in dataclasses.fields(Setting)
            if f.metadata["option"].group in MODE_GROUPS[mode] and f.name not in MODE_SHOWN[mode]]
    return ("more settings --mode " + mode + " reads (each a flag and a TOML key of --config; "
            "docs/cli-reference.md describes every setting):\n"
            + textwrap.fill(", ".join(rest), width=100, initial_indent="  ", subsequent_indent="  ",
                            break_on_hyphens=False))


def _formatter(prog: str) -> argparse.HelpFormatter:
    """Help laid out on 100 columns, the descriptions as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=34, width=100)


def _mode_named(argv: list[str]) -> str | None:
    """The --mode value in ``argv`` (before argparse runs: --help needs it), or None."""
    for i, arg in enumerate(argv):
        if arg == "--mode" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--mode="):
            return arg.split("=", 1)[1]
    return None


def build_parser(mode: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: the run options (those ``mode`` does not read hidden from ``--help``), then
    the settings' flags (the groups ``mode`` reads listed; all of them accepted)."""
    # No abbreviations: --epoch must not silently mean --epochs.
    usage = f"%(prog)s --mode {mode or '{' + ','.join(MODES) + '}'} [options]"
    parser = argparse.ArgumentParser(usage=usage, description=_mode_help(mode) if mode else __doc__,
                                     epilog=_more_settings(mode) if mode else EXAMPLES, allow_abbrev=False,
                                     formatter_class=_formatter)
    run = parser.add_argument_group("run options" + (f" of --mode {mode}" if mode else ""))

    def option(name: str, *flags: str, **kwargs) -> None:
        """A run option, listed by --help without a mode or with a mode that reads it (with what it means
        there: the ``mode: ...`` part of a help that says what it does in several modes)."""
        if mode is not None and name in RUN_OPTION_MODES and mode not in RUN_OPTION_MODES[name]:
            kwargs["help"] = argparse.SUPPRESS
        elif mode is not None:
            parts = [part for part in kwargs["help"].split("; ") if part.startswith(f"{mode}: ")]
            kwargs["help"] = parts[0][len(mode) + 2:] if parts else kwargs["help"]
            if name == "mode":
                kwargs["metavar"] = "MODE"
        run.add_argument(*flags, **kwargs)

    option("mode", "--mode", required=True, choices=MODES, metavar="{" + ",".join(MODES) + "}",
           help="what to do (above); --mode MODE --help lists what MODE reads")
    option("config", "--config", type=Path, metavar="FILE", help="TOML file of settings (flags override it)")
    option("resume", "--resume", action="store_true", help="train: continue after the last completed epoch")
    option("overwrite", "--overwrite", action="store_true",
           help="train: replace a model of other class names in --model-dir (without it, such a folder is refused)")
    option("strict", "--strict", action="store_true",
           help="train: refuse unreadable image files instead of skipping and listing them; "
                "check: exit 2 on leakage or conflicting labels")
    option("quarantine", "--quarantine", type=Path, metavar="DIR",
           help="check: move unreadable files and test/predict copies of train images into DIR "
                "(with a manifest to move them back: --restore DIR)")
    option("restore", "--restore", type=Path, metavar="DIR",
           help="check: move the files a --quarantine DIR run moved back to their places, and nothing else")
    option("output", "--output", type=Path, metavar="PATH", help="predict: CSV path (default <model_dir>/predictions.csv); "
                                                 "explain: folder of the pictures (default <model_dir>/explained)")
    option("watch", "--watch", action="store_true",
           help="predict: keep running, predict each image as it lands in the folder and append it "
                "to the CSV (stop with Ctrl-C or SIGTERM)")
    option("sort_into", "--sort-into", type=Path, metavar="DIR",
           help="predict: also copy each image into DIR/<class>/ (DIR/uncertain/ under --min-confidence)")
    option("format", "--format", type=_formats, metavar="LIST",
           help=f"export: comma-separated formats (default all: {','.join(EXPORT_FORMATS)}); train: the "
                f"formats exported after training (default {','.join(TRAIN_FORMATS)}, or none)")
    option("quiet", "--quiet", action="store_true", help="no progress bars (one line per epoch)")
    # Without a mode --help is short (the modes and examples); with one, the setting groups that mode reads.
    cli.add_setting_flags(parser, MODE_SHOWN[mode] if mode else ())
    return parser


def run_options() -> list[argparse.Action]:
    """The run options (not the settings), in the order ``--help`` lists them."""
    group = next(g for g in build_parser()._action_groups if g.title == "run options")
    return list(group._group_actions)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parsed command line; a usage error (exit 2, one line) for a run option given to a mode that does
    not read it, and for options that contradict each other."""
    argv = sys.argv[1:] if argv is None else argv
    mode = _mode_named(argv)
    parser = build_parser(mode if mode in MODES else None)
    args = parser.parse_args(argv)
    for name, modes in RUN_OPTION_MODES.items():
        if getattr(args, name) not in (None, False) and args.mode not in modes:
            parser.error(f"--{name.replace('_', '-')} is read by --mode {' and '.join(modes)}, not {args.mode}")
    if args.resume and args.overwrite:
        parser.error("--resume continues the model there, --overwrite replaces it: one or the other")
    if args.restore is not None and args.quarantine is not None:
        parser.error("--restore and --quarantine: one at a time (restore, then check again)")
    if args.mode == "export" and args.format == ():
        parser.error("--format none: nothing to export (name the formats, or leave --format out for all)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run its mode; the exit code (see :mod:`.cli`)."""
    from . import dispatch

    return dispatch(parse_args(argv))


def console() -> None:
    """The ``mnist-folders`` console script: ``mnist-folders MODE [options]`` is ``--mode MODE [options]``."""
    argv = sys.argv[1:]
    if argv and argv[0] in MODES:
        argv = ["--mode", argv[0], *argv[1:]]
    cli.run(lambda: main(argv))
