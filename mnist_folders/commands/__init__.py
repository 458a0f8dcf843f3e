"""The command layer: what each ``--mode`` does, composed from the stages below it.

``train`` is fit, then calibrate, then export (:mod:`.train`); ``check`` is the
dataset audit, then the suspect labels when a model is there (:mod:`.check`);
``evaluate`` is the evaluation, then the browsable report (:mod:`.evaluate`).
Each module's ``run(args, chosen)`` takes the parsed command line and the
settings the user gave (flags over the TOML file), prints its lines and
returns the exit code (:mod:`.cli`). Importing this package loads neither
TensorFlow nor any stage: ``mnist_keras.py`` validates its arguments first.
"""

import argparse
import importlib

# --mode -> the module of this package that runs it
MODULES = {"train": "train", "lr_find": "train", "evaluate": "evaluate", "predict": "predict",
           "explain": "explain", "check": "check", "export": "deploy", "serve": "deploy"}


def dispatch(args: argparse.Namespace) -> int:
    """Run ``args.mode`` with the settings of ``args`` (its flags, over ``args.config``); the exit code."""
    from ..settings import chosen_values, options

    chosen = chosen_values(args.config, {name: getattr(args, name) for name in options()})
    module = importlib.import_module(f"{__name__}.{MODULES[args.mode]}")
    return getattr(module, "run_" + args.mode)(args, chosen)
