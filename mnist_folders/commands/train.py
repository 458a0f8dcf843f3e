"""``--mode train``: fit, then calibrate, then export; and ``--mode lr_find``."""

import argparse
import sys

from . import cli

# Written after training unless --format says otherwise: predict then runs on ONNX Runtime without
# importing TensorFlow (0.2 s instead of 3.5 s for a few images, docs/performance.md), for 1.6 s of export.
TRAIN_FORMATS = ("onnx",)


def _training_setting(args: argparse.Namespace, chosen: dict):
    from ..data.folders import training_class_names
    from ..settings import Setting

    setting = Setting.from_dict(chosen, source=str(args.config or "settings"))
    training_class_names(setting.train_path, setting.class_names)  # a wrong path is said before TensorFlow loads
    return setting


def export_after_training(setting, formats: tuple[str, ...], log=print) -> None:
    """Export the trained model (the chief's, after calibration: the temperature is baked in); a failure is
    one logged line, never a failed training."""
    from ..serve.deploy import export

    try:
        export(setting, formats, log)
    except Exception as exc:  # noqa: BLE001 - the checkpoints are safe; the export is a convenience on top
        log(f"export after training failed ({type(exc).__name__}: {exc}); predict runs on Keras; "
            f"retry with --mode export")


def run_train(args: argparse.Namespace, chosen: dict) -> int:
    setting = _training_setting(args, chosen)
    cli.quiet_tensorflow()
    from ..train.calibrate import calibrate
    from ..train.training import FinishedRun, train

    formats = TRAIN_FORMATS if args.format is None else args.format
    progress = not args.quiet

    def calibrate_and_export(run: FinishedRun) -> None:  # under the training lock, on the chief
        print(calibrate(run.setting, run.index, run.unreadable))
        if formats:
            export_after_training(run.setting, formats)

    # A live progress bar on a terminal; one line per epoch in logs and with --quiet.
    result = train(setting, resume=args.resume, verbose=1 if progress and sys.stdout.isatty() else 2,
                   progress=progress, strict=args.strict, overwrite=args.overwrite,
                   then=calibrate_and_export)
    best = "none" if result.best_val_accuracy is None else f"{result.best_val_accuracy:.4f}"
    print(f"best val_accuracy: {best}; checkpoints in {result.model_dir}")
    if result.curves:
        print(f"figure: {result.curves}")
    return cli.EXIT_OK


def run_lr_find(args: argparse.Namespace, chosen: dict) -> int:
    setting = _training_setting(args, chosen)
    cli.quiet_tensorflow()
    from ..train.training import lr_find

    sweep = lr_find(setting, not args.quiet, args.strict)
    print(f"suggested learning_rate: {sweep.suggestion:.2g} (train with --learning-rate {sweep.suggestion:.2g})")
    print(f"figure: {sweep.figure}")
    return cli.EXIT_OK
