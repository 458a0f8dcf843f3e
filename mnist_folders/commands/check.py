"""``--mode check``: the dataset audit, then the likely label errors when a trained model is there;
``--restore DIR`` puts back what ``--quarantine DIR`` moved."""

import argparse

from . import cli


def run_check(args: argparse.Namespace, chosen: dict) -> int:
    from .. import artifacts, layout
    from ..audit import find_suspect_labels, restore_quarantine, run_check
    from ..names import display
    from ..settings import Setting

    setting, progress = Setting.from_dict(chosen, source=str(args.config or "settings")), not args.quiet

    if args.restore is not None:
        restored, kept = restore_quarantine(args.restore)
        print(f"restored {len(restored)} files from {display(args.restore)} to their places"
              + (f"; {kept} stay listed in its manifest (their places are taken again, or they are missing)"
                 if kept else ""))
        return cli.EXIT_OK
    run_check(setting, strict=args.strict, quarantine=args.quarantine, progress=progress)
    if artifacts.holds_model(setting.model_path):
        cli.quiet_tensorflow()
        from ..networks import saved

        model, trained, class_names = saved.load_trained_model(setting.model_path)
        # The trained model's input settings, on the folders this check read.
        trained = trained.replace(model_dir=str(setting.model_path), train_dir=str(setting.train_path))
        suspects = find_suspect_labels(trained, model, class_names, progress=progress)
        print(f"likely label errors (lowest probability of the given class first): {len(suspects)} listed in "
              f"{setting.model_path / layout.SUSPECT_CSV}")
        for s in suspects[:10]:
            print(f"  {s.path}: labelled {s.given}, predicted {s.predicted} "
                  f"(p(given) = {s.given_probability:.4f}, {s.split})")
    return cli.EXIT_OK
