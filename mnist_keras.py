#!/usr/bin/env python3
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

from mnist_folders import cli

EXAMPLES = """examples:
  python parse_mnist.py && python mnist_keras.py --mode train    # MNIST, end to end
  python mnist_keras.py --mode train --data-dir photos --model-dir models/photos
  python mnist_keras.py --mode predict --model-dir models/photos --input new_photos/

python mnist_keras.py --mode MODE --help lists the options and settings MODE reads;
docs/cli-reference.md lists every setting."""

MODES = ("train", "evaluate", "predict", "lr_find", "check", "export", "explain", "serve")
# mnist_folders.serve.deploy.FORMATS, without importing it (TensorFlow) before the arguments are valid
EXPORT_FORMATS = ("savedmodel", "tflite", "tflite_int8", "onnx")
# Written after training unless --format says otherwise: predict then runs on ONNX Runtime without
# importing TensorFlow (0.2 s instead of 3.5 s for a few images, bench/README.md), for 1.6 s of export.
TRAIN_FORMATS = ("onnx",)


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
RUN_OPTION_MODES = {"resume": ("train",), "strict": ("train", "check"), "quarantine": ("check",),
                    "restore": ("check",), "output": ("predict", "explain"), "watch": ("predict",), "sort_into": ("predict",),
                    "format": ("train", "export")}
# The groups of settings each mode's --help lists. Every mode accepts every setting (one TOML file serves
# them all); these are the groups it reads.
MODE_GROUPS = {"train": ("paths", "image", "classes", "training", "system"),
               "lr_find": ("paths", "image", "classes", "training", "system"),
               "evaluate": ("paths", "system"), "predict": ("paths", "image", "prediction", "system"),
               "export": ("paths", "image", "system"), "check": ("paths", "image", "classes", "system"),
               "explain": ("paths", "image", "prediction"), "serve": ("paths", "image", "prediction", "serving")}


def _mode_named(argv: list[str]) -> str | None:
    """The --mode value in ``argv`` (before argparse runs: --help needs it), or None."""
    for i, arg in enumerate(argv):
        if arg == "--mode" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--mode="):
            return arg.split("=", 1)[1]
    return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    argv = sys.argv[1:] if argv is None else argv
    mode = _mode_named(argv)
    mode = mode if mode in MODES else None
    # No abbreviations: --epoch must not silently mean --epochs.
    usage = f"%(prog)s --mode {mode or '{' + ','.join(MODES) + '}'} [options]"
    parser = argparse.ArgumentParser(usage=usage, description=__doc__, epilog=EXAMPLES, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    run = parser.add_argument_group("run options" + (f" of --mode {mode}" if mode else ""))

    def option(name: str, *flags: str, **kwargs) -> None:
        """A run option, listed by --help without a mode or with a mode that reads it."""
        if mode is not None and name in RUN_OPTION_MODES and mode not in RUN_OPTION_MODES[name]:
            kwargs["help"] = argparse.SUPPRESS
        run.add_argument(*flags, **kwargs)

    option("mode", "--mode", required=True, choices=MODES, metavar="{" + ",".join(MODES) + "}",
           help="what to do (above); --mode MODE --help lists what MODE reads")
    option("config", "--config", type=Path, help="TOML file of settings (flags override it)")
    option("resume", "--resume", action="store_true", help="train: continue after the last completed epoch")
    option("strict", "--strict", action="store_true",
           help="train: refuse unreadable image files instead of skipping and listing them; "
                "check: exit 2 on leakage or conflicting labels")
    option("quarantine", "--quarantine", type=Path, metavar="DIR",
           help="check: move unreadable files and test/predict copies of train images into DIR "
                "(with a manifest to move them back: --restore DIR)")
    option("restore", "--restore", type=Path, metavar="DIR",
           help="check: move the files a --quarantine DIR run moved back to their places, and nothing else")
    option("output", "--output", type=Path, help="predict: CSV path (default <model_dir>/predictions.csv); "
                                                 "explain: folder of the pictures (default <model_dir>/explained)")
    option("watch", "--watch", action="store_true",
           help="predict: keep running, predict each image as it lands in the folder and append it "
                "to the CSV (stop with Ctrl-C or SIGTERM)")
    option("sort_into", "--sort-into", type=Path, metavar="DIR",
           help="predict: also copy each image into DIR/<class>/ (DIR/uncertain/ under --min-confidence)")
    option("format", "--format", type=_formats, metavar="LIST",
           help=f"export: comma-separated formats (default all: {','.join(EXPORT_FORMATS)}); train: the "
                f"formats exported after training (default {','.join(TRAIN_FORMATS)}; none: no export)")
    option("quiet", "--quiet", action="store_true", help="no progress bars (one line per epoch)")
    # Without a mode --help is short (the modes and examples); with one, the setting groups that mode reads.
    cli.add_setting_flags(parser, MODE_GROUPS[mode] if mode else ())
    args = parser.parse_args(argv)
    for name, modes in RUN_OPTION_MODES.items():
        if getattr(args, name) not in (None, False) and args.mode not in modes:
            parser.error(f"--{name.replace('_', '-')} is read by --mode {' and '.join(modes)}, not {args.mode}")
    if args.restore is not None and args.quarantine is not None:
        parser.error("--restore and --quarantine: one at a time (restore, then check again)")
    if args.mode == "export" and args.format == ():
        parser.error("--format none: nothing to export (name the formats, or leave --format out for all)")
    return args


def main() -> int:
    args = parse_args()
    from mnist_folders.settings import Setting, chosen_values, options

    chosen = chosen_values(args.config, {name: getattr(args, name) for name in options()})
    progress = not args.quiet
    if args.mode in ("train", "lr_find"):
        setting = Setting.from_dict(chosen, source=str(args.config or "settings"))
        from mnist_folders.data.folders import training_class_names

        training_class_names(setting.train_path, setting.class_names)  # a wrong path is said before TensorFlow loads
    if args.mode == "lr_find":
        cli.quiet_tensorflow()
        from mnist_folders.train.training import lr_find

        sweep = lr_find(setting, progress, args.strict)
        print(f"suggested learning_rate: {sweep.suggestion:.2g} (train with --learning-rate {sweep.suggestion:.2g})")
        print(f"figure: {sweep.figure}")
        return cli.EXIT_OK
    if args.mode == "check":
        return check(Setting.from_dict(chosen, source=str(args.config or "settings")), args, progress)
    if args.mode == "train":
        cli.quiet_tensorflow()
        from mnist_folders.train.training import train

        # A live progress bar on a terminal; one line per epoch in logs and with --quiet.
        result = train(setting, resume=args.resume, verbose=1 if progress and sys.stdout.isatty() else 2,
                       progress=progress, strict=args.strict,
                       export_formats=TRAIN_FORMATS if args.format is None else args.format)
        best = "none" if result.best_val_accuracy is None else f"{result.best_val_accuracy:.4f}"
        print(f"best val_accuracy: {best}; checkpoints in {result.model_dir}")
        if result.curves:
            print(f"figure: {result.curves}")
        return cli.EXIT_OK

    from mnist_folders.artifacts import setting_for_model

    setting = setting_for_model(chosen)
    if args.mode == "predict":
        return predict_mode(setting, args, chosen, progress)
    if args.mode == "serve":
        from mnist_folders.serve.server import serve

        counts = serve(setting, log=lambda line: print(line, flush=True))
        print(f"stopped: {counts['images']} images predicted in {counts['batches']} batches")
        return cli.EXIT_OK
    cli.quiet_tensorflow()
    if args.mode == "export":
        from mnist_folders.serve.deploy import export

        result = export(setting, args.format or EXPORT_FORMATS)
        print(f"exported to {result.folder} (labels.txt, preprocessing.json and {', '.join(result.files)})")
        return cli.EXIT_OK
    if args.mode == "explain":
        return explain_mode(setting, args)
    if args.mode == "evaluate":
        from mnist_folders.serve.evaluation import evaluate, format_report

        report = evaluate(setting, progress, chosen)  # the settings made again from what it reads, as one snapshot
        print(format_report(report))
        print(f"report: {setting.model_path / 'evaluation.json'}")
        print(f"browse it: {setting.model_path / 'report.html'}")
        return cli.EXIT_OK



def predict_mode(setting, args: argparse.Namespace, chosen: dict, progress: bool) -> int:
    """``--mode predict``: the folder once, or ``--watch`` it; on Keras or, without TensorFlow, an export."""
    from mnist_folders import artifacts
    from mnist_folders.names import display
    from mnist_folders.serve.prediction import choose_runtime, load_predictor, predict

    if args.output:
        artifacts.check_output_csv(Path(args.output), setting.model_path)
    if args.sort_into:  # before any prediction: a folder that cannot take the copies is said first
        from mnist_folders.serve.watch import check_sort_into

        check_sort_into(Path(args.sort_into), artifacts.load_class_names(setting.model_path), setting.predict_path,
                        args.watch)
    setting = setting.replace(runtime=choose_runtime(setting))
    if setting.runtime == "keras":
        cli.quiet_tensorflow()
    if not {"predict_dir", "data_dir"} & set(chosen):
        # A model directory from elsewhere chooses this folder: say which is read.
        print(f"predicting {display(setting.predict_path)} (the folder saved with the model; --input names another)")
    if args.watch:
        from mnist_folders.serve.watch import watch

        predictor = load_predictor(setting)
        print(f"watching {display(setting.predict_path)} with {predictor.source} ({predictor.runtime}); "
              "Ctrl-C or SIGTERM stops", flush=True)
        state = watch(setting, predictor, args.output, args.sort_into, log=lambda line: print(line, flush=True),
                      warn=lambda line: print(line, file=sys.stderr, flush=True))  # as batch predict lists them
        print(f"stopped: {state.predicted} predicted, {len(state.skipped)} skipped")
        return cli.EXIT_OK
    run = predict(setting, args.output, progress)
    if args.sort_into:
        from mnist_folders.serve.watch import copy_into_class_folder

        for p in run.predictions:
            copy_into_class_folder(p, args.sort_into)
    for path, reason in run.skipped:
        print(f"skipped {display(path)}: {reason}", file=sys.stderr)
    if not run.predictions:
        print(f"no images to predict in {display(setting.predict_path)} ({len(run.skipped)} files skipped)")
        return cli.EXIT_NOTHING_TO_PREDICT
    for p in run.predictions:
        print(f"{display(p.path)}\t{display(p.class_name)}\t{p.confidence:.4f}")
    print(f"{len(run.predictions)} predicted, {len(run.skipped)} skipped; CSV: {display(run.csv_path)} "
          f"(runtime {run.predictor.runtime})")
    return cli.EXIT_OK


def explain_mode(setting, args: argparse.Namespace) -> int:
    """``--mode explain``: one Grad-CAM picture per image of the input, and one line per image."""
    from mnist_folders import artifacts
    from mnist_folders.explain.explain_files import explain_files
    from mnist_folders.names import display

    output = Path(args.output) if args.output else setting.model_path / artifacts.EXPLAINED
    done = explain_files(setting, output)
    for path, reason in done.skipped:
        print(f"skipped {display(path)}: {reason}", file=sys.stderr)
    if not done.pictures:
        print(f"no images to explain in {display(setting.predict_path)} ({len(done.skipped)} files skipped)")
        return cli.EXIT_NOTHING_TO_PREDICT
    for path, picture, name, probability in done.pictures:
        print(f"{display(path)}\t{display(name)}\t{probability:.4f}\t{display(picture)}")
    print(f"{len(done.pictures)} explained in {done.seconds:.1f} s ({done.seconds / len(done.pictures):.2f} s per "
          f"image), {len(done.skipped)} skipped; pictures in {display(output)}")
    return cli.EXIT_OK


def check(setting, args: argparse.Namespace, progress: bool) -> int:
    """``--mode check``: the dataset audit, then the likely label errors when a trained model is there."""
    from mnist_folders import artifacts
    from mnist_folders.data.check import find_suspect_labels, restore_quarantine, run_check
    from mnist_folders.names import display

    if args.restore is not None:
        restored, kept = restore_quarantine(args.restore)
        print(f"restored {len(restored)} files from {display(args.restore)} to their places"
              + (f"; {kept} stay listed in its manifest (their places are taken again, or they are missing)"
                 if kept else ""))
        return cli.EXIT_OK
    run_check(setting, strict=args.strict, quarantine=args.quarantine, progress=progress)
    if artifacts.holds_model(setting.model_path):
        cli.quiet_tensorflow()
        model, trained, class_names = artifacts.load_trained_model(setting.model_path)
        # The trained model's input settings, on the folders this check read.
        trained = trained.replace(model_dir=str(setting.model_path), train_dir=str(setting.train_path))
        suspects = find_suspect_labels(trained, model, class_names, progress=progress)
        print(f"likely label errors (lowest probability of the given class first): {len(suspects)} listed in "
              f"{setting.model_path / 'suspect_labels.csv'}")
        for s in suspects[:10]:
            print(f"  {s.path}: labelled {s.given}, predicted {s.predicted} "
                  f"(p(given) = {s.given_probability:.4f}, {s.split})")
    return cli.EXIT_OK


if __name__ == "__main__":
    cli.run(main)
