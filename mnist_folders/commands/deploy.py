"""``--mode export`` (the formats other runtimes serve) and ``--mode serve`` (HTTP)."""

import argparse

from . import cli

# mnist_folders.serve.deploy.FORMATS, without importing it (TensorFlow) before the arguments are valid
EXPORT_FORMATS = ("savedmodel", "tflite", "tflite_int8", "onnx")


def run_export(args: argparse.Namespace, chosen: dict) -> int:
    from ..artifacts import setting_for_model

    setting = setting_for_model(chosen)
    cli.quiet_tensorflow()
    from ..serve.deploy import export

    result = export(setting, args.format or EXPORT_FORMATS)
    print(f"exported to {result.folder} (labels.txt, preprocessing.json and {', '.join(result.files)})")
    return cli.EXIT_OK


def run_serve(args: argparse.Namespace, chosen: dict) -> int:
    from ..artifacts import setting_for_model
    from ..serve.server import serve

    counts = serve(setting_for_model(chosen), log=lambda line: print(line, flush=True))
    print(f"stopped: {counts['images']} images predicted in {counts['batches']} batches")
    return cli.EXIT_OK
