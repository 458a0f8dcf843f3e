"""``--mode evaluate``: the evaluation on the test tree, then the report to browse (``report.html``)."""

import argparse

from . import cli


def run_evaluate(args: argparse.Namespace, chosen: dict) -> int:
    from ..artifacts import setting_for_model

    setting = setting_for_model(chosen)
    cli.quiet_tensorflow()
    from ..explain.report import Outcome, write_report
    from ..serve.evaluation import evaluate, format_report

    def browsable(setting, model, report, paths, true, calibrated) -> None:  # under the readers' lock
        write_report(setting, model, report, Outcome(paths, true, calibrated))

    # The settings are made again from what evaluate reads, as one snapshot.
    report = evaluate(setting, not args.quiet, chosen, then=browsable)
    print(format_report(report))
    print(f"report: {setting.model_path / 'evaluation.json'}")
    print(f"browse it: {setting.model_path / 'report.html'}")
    return cli.EXIT_OK
