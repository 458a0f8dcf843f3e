"""The model directory follows the data: each data folder trains into models/<its name> by default, and a
fresh run into a folder holding a model of other classes is refused unless --overwrite says so."""

from pathlib import Path

import numpy as np
from PIL import Image

from conftest import MNIST, REPO, run_cli
from mnist_folders.data.idx import load_split
from mnist_folders.settings import Setting, default_model_dir

CLI = str(REPO / "mnist_keras.py")
TRAIN = ("--epochs", "1", "--model", "cnn_small", "--batch-size", "16", "--quiet")


def _tree(root: Path, digits: dict[str, int], per_class: int = 30) -> Path:
    """``root/train/<name>/*.png``: ``per_class`` real MNIST training images of each digit, under the names given."""
    images, labels = load_split(MNIST, "train")
    for name, digit in digits.items():
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i, k in enumerate(np.flatnonzero(labels == digit)[:per_class]):
            Image.fromarray(images[k]).save(folder / f"{i}.png")
    return root


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def test_the_default_model_directory_is_named_after_the_data_folder():
    assert default_model_dir("photos") == default_model_dir("photos/") == str(Path("models") / "photos")
    assert default_model_dir("/data/parts/mnist_data") == "models/mnist"  # the MNIST demo keeps its folder
    assert Setting().model_dir == "models/mnist" and Setting(data_dir="/srv/cats").model_dir == "models/cats"
    assert Setting(data_dir="/srv/cats", model_dir="elsewhere").model_dir == "elsewhere"


def test_two_datasets_train_into_two_folders_and_evaluate_finds_each(tmp_path):
    _tree(tmp_path / "shapes", {"a": 0, "b": 1})
    _tree(tmp_path / "marks", {"x": 7, "y": 4})
    for data in ("shapes", "marks"):
        run_cli(CLI, "--mode", "train", "--data-dir", data, *TRAIN, cwd=tmp_path)
    assert (tmp_path / "models" / "shapes" / "class_names.json").read_text().count('"a"') == 1
    assert (tmp_path / "models" / "marks" / "class_names.json").read_text().count('"x"') == 1
    # predict with only --data-dir reads the model of that folder
    (tmp_path / "marks" / "tmp").mkdir()
    Image.open(next((tmp_path / "marks" / "train" / "x").iterdir())).save(tmp_path / "marks" / "tmp" / "q.png")
    result = run_cli(CLI, "--mode", "predict", "--data-dir", "marks", "--quiet", "--runtime", "keras", cwd=tmp_path)
    assert result.stdout.splitlines()[0].split("\t")[1] in ("x", "y")


def test_a_model_of_other_classes_is_replaced_only_with_overwrite(tmp_path):
    _tree(tmp_path / "first", {"a": 0, "b": 1})
    _tree(tmp_path / "second", {"x": 7, "y": 4, "z": 3})
    model = tmp_path / "model"
    run_cli(CLI, "--mode", "train", "--data-dir", str(tmp_path / "first"), "--model-dir", str(model), *TRAIN)
    before = _snapshot(model)
    refused = run_cli(CLI, "--mode", "train", "--data-dir", str(tmp_path / "second"), "--model-dir", str(model),
                      *TRAIN, check=False)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "holds a model trained on other classes (a, b; this run's: x, y, z)" in refused.stderr
    assert "--overwrite" in refused.stderr and _snapshot(model) == before  # nothing touched
    # the same classes train again without asking
    run_cli(CLI, "--mode", "train", "--data-dir", str(tmp_path / "first"), "--model-dir", str(model), *TRAIN)
    run_cli(CLI, "--mode", "train", "--data-dir", str(tmp_path / "second"), "--model-dir", str(model), *TRAIN,
            "--overwrite")
    assert (model / "class_names.json").read_text().count('"z"') == 1


def test_overwrite_is_a_train_option_and_not_with_resume(tmp_path):
    wrong = run_cli(CLI, "--mode", "predict", "--overwrite", check=False, cwd=tmp_path)
    assert wrong.returncode == 2 and "--overwrite is read by --mode train, not predict" in wrong.stderr
    both = run_cli(CLI, "--mode", "train", "--resume", "--overwrite", check=False, cwd=tmp_path)
    assert both.returncode == 2 and "one or the other" in both.stderr
