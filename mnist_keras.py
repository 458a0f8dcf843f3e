#!/usr/bin/env python3
"""Train, evaluate and predict with an image classifier on class-per-folder images.

  train     fit the model on <train_dir> (validation split taken from it),
            checkpointing into <model_dir>
  evaluate  the best checkpoint on every image of <test_dir>
  predict   every image file in <predict_dir> (default <data_dir>/tmp)

Defaults serve MNIST as exported by parse_mnist.py; see setting.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_folders import cli

# Flags that map one-to-one onto Setting fields (dest == field name).
SETTING_FLAGS = {
    "--data-dir": dict(help="root of the exported tree (train/, test/, tmp/)"),
    "--train-dir": dict(help="class-per-folder training images"),
    "--test-dir": dict(help="class-per-folder test images"),
    "--predict-dir": dict(help="images to predict (alias: --input)"),
    "--model-dir": dict(help="where checkpoints and reports go"),
    "--image-height": dict(type=int),
    "--image-width": dict(type=int),
    "--color-mode": dict(choices=["grayscale", "rgb"]),
    "--resize-method": dict(choices=["stretch", "pad", "crop"], help="how images of another size are fitted"),
    "--invert": dict(choices=["auto", "true", "false"], help="predict: invert dark-on-light input (default auto)"),
    "--class-weight": dict(choices=["none", "balanced"], help="train: weight classes by inverse frequency"),
    "--class-names": dict(type=lambda s: [n.strip() for n in s.split(",")],
                          help="comma-separated, in label order (default: train sub-folders, sorted)"),
    "--model": dict(help="model name (default cnn_64_128_256)"),
    "--epochs": dict(type=int),
    "--batch-size": dict(type=int),
    "--validation-split": dict(type=float),
    "--optimizer": dict(choices=["rmsprop", "adam", "sgd"]),
    "--learning-rate": dict(type=float),
    "--lr-decay": dict(type=float, help="learning rate factor per epoch"),
    "--rotation-range": dict(type=float, help="augmentation: degrees"),
    "--shift-range": dict(type=float, help="augmentation: fraction of width/height"),
    "--zoom-range": dict(type=float, help="augmentation: fraction"),
    "--seed": dict(type=int),
    "--pipeline": dict(choices=["tfdata", "idg"], help="tfdata (default) or idg (ImageDataGenerator)"),
    "--precision": dict(choices=["auto", "float32", "mixed_bfloat16"], help="numeric precision of training"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", required=True, choices=["train", "evaluate", "predict"])
    parser.add_argument("--config", type=Path, help="TOML file of settings (flags override it)")
    for flag, options in SETTING_FLAGS.items():
        names = [flag, "--input"] if flag == "--predict-dir" else [flag]
        parser.add_argument(*names, dest=flag[2:].replace("-", "_"), default=None, **options)
    parser.add_argument("--resume", action="store_true", help="train: continue from the last completed epoch")
    parser.add_argument("--strict", action="store_true",
                        help="train: refuse unreadable image files instead of skipping and listing them")
    parser.add_argument("--output", type=Path, help="predict: CSV path (default <model_dir>/predictions.csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    cli.quiet_tensorflow()
    from mnist_folders.settings import Setting, read_toml

    overrides = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag in SETTING_FLAGS}
    setting = Setting.from_sources(args.config, overrides)
    # Which locations the user chose; evaluate/predict otherwise use the ones saved with the model.
    chosen = {k for k, v in overrides.items() if v is not None} | set(read_toml(args.config) if args.config else {})
    progress = not args.quiet

    if args.mode == "train":
        from mnist_folders.training import train

        # A live progress bar on a terminal; one line per epoch in logs and with --quiet.
        result = train(setting, resume=args.resume, verbose=1 if progress and sys.stdout.isatty() else 2,
                       progress=progress, strict=args.strict)
        best = "none" if result.best_val_accuracy is None else f"{result.best_val_accuracy:.4f}"
        print(f"best val_accuracy: {best}; checkpoints in {result.model_dir}")
        if result.curves:
            print(f"figure: {result.curves}")
    elif args.mode == "evaluate":
        from mnist_folders.evaluation import evaluate, format_report

        test_dir = setting.test_path if chosen & {"test_dir", "data_dir"} else None
        report = evaluate(setting.model_path, test_dir, progress)
        print(format_report(report))
        print(f"report: {setting.model_path / 'evaluation.json'}")
    else:
        from mnist_folders.prediction import predict_folder

        folder = setting.predict_path if chosen & {"predict_dir", "data_dir"} else None
        invert = setting.invert if "invert" in chosen else None
        run = predict_folder(setting.model_path, folder, args.output, progress, invert)
        for path, reason in run.skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        if not run.predictions:
            print(f"no images to predict in {folder or 'the saved predict folder'}"
                  f" ({len(run.skipped)} files skipped)")
            return 1
        for p in run.predictions:
            print(f"{p.path}\t{p.class_name}\t{p.confidence:.4f}")
        print(f"{len(run.predictions)} predicted, {len(run.skipped)} skipped; CSV: {run.csv_path}")
    return 0


if __name__ == "__main__":
    cli.run(main)
