"""``--mode explain``: a Grad-CAM picture of each image, and one line per image."""

import argparse
import sys
from pathlib import Path

from . import cli


def run_explain(args: argparse.Namespace, chosen: dict) -> int:
    from .. import artifacts, layout
    from ..explain.explain_files import explain_files
    from ..names import display

    setting = artifacts.setting_for_model(chosen)
    cli.quiet_tensorflow()

    output = Path(args.output) if args.output else setting.model_path / layout.EXPLAINED
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
