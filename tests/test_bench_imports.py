"""The benchmark scripts keep up with the package: every name they import from mnist_folders exists.

Nothing else runs them in the suite (each takes minutes), so a refactor that moves a function would break
them silently; this resolves each of their imports (the ones inside functions too) against the package."""

import ast
import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_imports() -> list[tuple[str, int, str, str | None]]:
    """``(script, line, module, name or None)`` for every import of mnist_folders in bench/ (experiments too)."""
    found = []
    for path in sorted(BENCH.rglob("*.py")):  # the experiments too
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("mnist_folders"):
                found += [(path.name, node.lineno, node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [(path.name, node.lineno, alias.name, None) for alias in node.names
                          if alias.name.startswith("mnist_folders")]
    return found


def unresolved(imports: list[tuple[str, int, str, str | None]]) -> list[str]:
    missing = []
    for script, line, module, name in imports:
        try:
            imported = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"bench/{script}:{line}: {module} ({exc})")
            continue
        if name is not None and not hasattr(imported, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"bench/{script}:{line}: {module} has no {name}")
    return missing


def test_every_name_a_benchmark_imports_from_the_package_exists():
    imports = bench_imports()
    assert len({script for script, *_ in imports}) >= 15  # the parse found the scripts' imports
    assert unresolved(imports) == []


@pytest.mark.parametrize("module, name", [("mnist_folders.train.models", "MODELS"),
                                          ("mnist_folders.serve.prediction", "fit_temperature")])
def test_a_moved_name_is_reported_with_its_script_and_line(module, name):
    assert unresolved([("x.py", 3, module, name)]) == [
        f"bench/x.py:3: {module} (No module named 'mnist_folders.train.models')" if module.endswith("models")
        else f"bench/x.py:3: {module} has no {name}"]
