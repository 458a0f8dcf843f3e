"""Finished one-off experiments, kept with their results: run each as `python -m bench.experiments.NAME`
from the repository root (see bench/README.md)."""
