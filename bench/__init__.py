"""Benchmark scripts: run each as `python bench/NAME.py` (see bench/README.md)."""
