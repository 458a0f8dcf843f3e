"""The benchmarks behind figures the docs quote run end to end on tiny inputs (one repeat each): a refactor
that breaks one fails here, not in a later session's measurement. Their figures are not checked: a test is
no benchmark (timings on 2 shared cores say nothing in a second)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO


def _bench(script: str, *args: str, results: Path) -> dict:
    env = {**os.environ, "MNIST_FOLDERS_BENCH_RESULTS": str(results)}
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    name = Path(script).stem
    assert (results / f"{name}.md").read_text().startswith("Machine: ")
    return json.loads((results / f"{name}.json").read_text())


def test_predict_speed_compares_the_library_with_the_floor(trained_model, small_data, tmp_path):
    data = _bench("predict_speed.py", "--repeats", "1", "--sizes", "60", "--model-dir", str(trained_model),
                  "--data-dir", str(small_data), results=tmp_path)
    row = data["sizes"]["60"]
    assert {"cli", "library", "floor", "decode"} <= set(row) and row["library_over_floor"] > 0


def test_check_speed_compares_the_check_with_decoding_alone(small_data, tmp_path):
    tree = tmp_path / "tree"
    for split in ("train", "test"):  # 20 images of each class and split
        for folder in sorted((small_data / split).iterdir()):
            (tree / split / folder.name).mkdir(parents=True)
            for path in sorted(folder.iterdir())[:20]:
                shutil.copy(path, tree / split / folder.name / path.name)
    data = _bench("check_speed.py", "--repeats", "1", "--data-dir", str(tree), "--results", str(tmp_path),
                  results=tmp_path)
    assert data["runs"]["check"][0]["found"]["images"] == 400
    assert data["seconds"]["check"]["median"] > 0 and data["seconds"]["decode"]["median"] > 0
