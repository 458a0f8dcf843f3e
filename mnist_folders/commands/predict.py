"""``--mode predict``: a folder once, or ``--watch`` it; sorted copies with ``--sort-into``."""

import argparse
import sys
from pathlib import Path

from . import cli


def run_predict(args: argparse.Namespace, chosen: dict) -> int:
    """The folder once, or ``--watch`` it; on Keras or, without TensorFlow, an export."""
    from .. import artifacts
    from ..names import display
    from ..serve.prediction import choose_runtime, load_predictor, predict

    setting, progress = artifacts.setting_for_model(chosen), not args.quiet

    if args.output:
        artifacts.check_output_csv(Path(args.output), setting.model_path)
    if args.sort_into:  # before any prediction: a folder that cannot take the copies is said first
        from ..serve.watch import check_sort_into

        check_sort_into(Path(args.sort_into), artifacts.load_class_names(setting.model_path), setting.predict_path,
                        args.watch)
    setting = setting.replace(runtime=choose_runtime(setting))
    if setting.runtime == "keras":
        cli.quiet_tensorflow()
    if not {"predict_dir", "data_dir"} & set(chosen):
        # A model directory from elsewhere chooses this folder: say which is read.
        print(f"predicting {display(setting.predict_path)} (the folder saved with the model; --input names another)")
    if args.watch:
        from ..serve.watch import watch

        predictor = load_predictor(setting)
        print(f"watching {display(setting.predict_path)} with {predictor.source} ({predictor.runtime}); "
              "Ctrl-C or SIGTERM stops", flush=True)
        state = watch(setting, predictor, args.output, args.sort_into, log=lambda line: print(line, flush=True),
                      warn=lambda line: print(line, file=sys.stderr, flush=True))  # as batch predict lists them
        print(f"stopped: {state.predicted} predicted, {len(state.skipped)} skipped")
        return cli.EXIT_OK
    run = predict(setting, args.output, progress)
    if args.sort_into:
        from ..serve.watch import copy_into_class_folder

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
