#!/usr/bin/env python3
"""The command line: ``python mnist_keras.py --mode train|evaluate|predict|...`` (``--help`` lists the modes).

The parser is :mod:`mnist_folders.commands.arguments`; each mode runs in
:mod:`mnist_folders.commands`. Installed with ``pip install .``, the same
command is ``mnist-folders MODE [options]``.
"""

from mnist_folders.commands import cli
from mnist_folders.commands.arguments import main

if __name__ == "__main__":
    cli.run(main)
