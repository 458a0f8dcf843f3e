"""The package's imports run one way: core <- data <- networks <- stages <- commands.

Parsed from the source (every import, the ones inside functions too), so a lazy import against the
direction fails here as surely as one at the top of a module.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mnist_folders"
# Layer of each sub-package; a module directly in the package is core (settings, registry, layout, errors,
# atomic writes, locks, artifacts, plots).
LAYERS = {"data": 1, "networks": 2, "train": 3, "serve": 3, "explain": 3, "audit": 3, "commands": 4}
LAYER_NAMES = {0: "core", 1: "data", 2: "networks", 3: "stages", 4: "commands"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _group(module: str) -> str:
    """The sub-package of ``mnist_folders.x.y`` (``x``), or ``core`` for a module directly in the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else "core"


def package_imports() -> list[tuple[str, int, str]]:
    """``(importing module, line, imported module)`` for every import of a package module in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                    targets = [target] if node.module else [f"{target}.{alias.name}" for alias in node.names]
                else:
                    targets = [node.module or ""]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            found += [(name, node.lineno, t) for t in targets if t == "mnist_folders" or t.startswith("mnist_folders.")]
    return found


def against_the_direction(imports: list[tuple[str, int, str]]) -> list[str]:
    """The imports that go up a layer or across from one stage to another, as readable lines."""
    wrong = []
    for source, line, target in imports:
        if target == "mnist_folders":
            continue
        a, b = _group(source), _group(target)
        rank_a, rank_b = LAYERS.get(a, 0), LAYERS.get(b, 0)
        if rank_b > rank_a or (rank_a == rank_b == 3 and a != b):
            wrong.append(f"{source}:{line} imports {target} ({LAYER_NAMES[rank_a]} {a} -> {LAYER_NAMES[rank_b]} {b})")
    return wrong


def test_imports_run_down_the_layers_and_no_stage_imports_another():
    imports = package_imports()
    assert len(imports) > 200  # the parse found the package's imports
    assert against_the_direction(imports) == []


@pytest.mark.parametrize("source, target", [
    ("mnist_folders.settings", "mnist_folders.train.models"),  # core reaching up to a stage
    ("mnist_folders.data.folders", "mnist_folders.networks.inference"),  # data reaching up
    ("mnist_folders.train.training", "mnist_folders.serve.deploy"),  # one stage importing another
    ("mnist_folders.networks.saved", "mnist_folders.commands.train"),
])
def test_an_import_against_the_direction_is_named(source, target):
    assert against_the_direction([(source, 7, target)]) == [
        f"{source}:7 imports {target} "
        f"({LAYER_NAMES[LAYERS.get(_group(source), 0)]} {_group(source)} -> "
        f"{LAYER_NAMES[LAYERS.get(_group(target), 0)]} {_group(target)})"]


def test_imports_down_or_within_a_stage_are_allowed():
    assert against_the_direction([("mnist_folders.commands.train", 1, "mnist_folders.train.training"),
                                  ("mnist_folders.serve.watch", 2, "mnist_folders.serve.prediction"),
                                  ("mnist_folders.audit.suspects", 3, "mnist_folders.networks.inference"),
                                  ("mnist_folders.networks.saved", 4, "mnist_folders.artifacts"),
                                  ("mnist_folders.data.images", 5, "mnist_folders.settings")]) == []
