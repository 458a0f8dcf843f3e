"""Defects of the second hostile probe: the high ones, a user's file truncated (H1), a user's folder
overwritten by a fresh training run (H2), class names from a model folder writing outside --sort-into (H3);
and some medium and low ones (M4, M10, L4, L5)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO, run_cli

CLI = str(REPO / "mnist_keras.py")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_refusal(result, *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize("content", [b"my notes, not a CSV\nsecond line", b"path,class,confidence\r\nrow-cut-off"])
def test_watch_never_truncates_a_file_that_is_not_its_csv(trained_model, small_data, tmp_path, content):
    # H1: any text file, and a CSV of another model (3 columns, not this model's 7) whose last row lacks its
    # CRLF: both refused before anything is written, byte for byte intact.
    notes = tmp_path / "notes.txt"
    notes.write_bytes(content)
    result = run_cli(CLI, "--mode", "predict", "--watch", "--model-dir", str(trained_model), "--input",
                     str(small_data / "tmp"), "--output", str(notes), "--runtime", "keras", check=False)
    _one_line_refusal(result, "notes.txt", "not a predictions CSV of this model")
    assert notes.read_bytes() == content


@pytest.mark.parametrize("model_dir", ["here", ""])
def test_train_refuses_a_folder_of_user_files_and_an_empty_model_dir(small_data, tmp_path, model_dir):
    # H2: a folder holding no model but the user's files, some with the names a model directory uses.
    user = tmp_path / "here"
    (user / "export" / "deliverables").mkdir(parents=True)
    (user / "export" / "deliverables" / "report.docx").write_bytes(b"PK\x03\x04 the user's report")
    for name, text in [("setting.json", '{"mine": true}'), ("history.csv", "my,own\n"),
                       ("evaluation.json", "{}"), ("notes.txt", "notes")]:
        (user / name).write_text(text)
    before = _snapshot(user)
    # Run from inside the user's folder, as the probe did: "--model-dir here" names it from its parent.
    result = run_cli(CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir",
                     model_dir and str(user), "--epochs", "1", "--quiet", check=False, cwd=user)
    if model_dir == "":
        _one_line_refusal(result, "model_dir must name a folder")
    else:
        _one_line_refusal(result, "holds files that are not a model of this tool", "evaluation.json")
    assert _snapshot(user) == before


def test_a_model_directory_is_marked_and_trained_again(small_data, tmp_path):
    """The rule of H2 lets a model directory of this tool be trained again (fresh, not only --resume)."""
    tree = tmp_path / "train"
    for digit in ("0", "1"):
        shutil.copytree(small_data / "train" / digit, tree / digit)
    args = ("--mode", "train", "--train-dir", str(tree), "--model-dir", str(tmp_path / "m"), "--epochs", "1",
            "--model", "cnn_small", "--quiet")
    run_cli(CLI, *args)
    assert (tmp_path / "m" / ".mnist_folders").is_file()
    (tmp_path / "m" / "my_notes.txt").write_text("kept")  # the user's file beside a model: not a reason to refuse
    run_cli(CLI, *args)
    assert (tmp_path / "m" / "my_notes.txt").read_text() == "kept"


@pytest.mark.parametrize("bad", ["../../escaped", "/tmp/absolute", "..", "a\nb"])
def test_class_names_from_a_model_folder_cannot_leave_sort_into(trained_model, small_data, tmp_path, bad):
    # H3: a model folder someone gave you, its class_names.json edited.
    model_dir = tmp_path / "given"
    shutil.copytree(trained_model, model_dir)
    names = json.loads((model_dir / "class_names.json").read_text())
    names[0] = bad
    (model_dir / "class_names.json").write_text(json.dumps(names))
    sort = tmp_path / "deep" / "er" / "sorted"
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(small_data / "tmp"),
                     "--sort-into", str(sort), "--runtime", "keras", check=False)
    _one_line_refusal(result, "class_names.json", "class name")
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "deep" / "escaped").exists()
    assert not sort.exists()


def test_labels_of_an_export_are_checked_as_strictly(exported, small_data, tmp_path):
    model_dir = tmp_path / "given"
    shutil.copytree(exported, model_dir)
    labels = model_dir / "export" / "labels.txt"
    labels.write_text("../../escaped\n" + "".join(labels.read_text().splitlines(keepends=True)[1:]))
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(small_data / "tmp"),
                     "--sort-into", str(tmp_path / "sorted"), "--runtime", "onnx", check=False)
    _one_line_refusal(result, "labels.txt", "path separator")
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "sorted").exists()


def test_sort_destination_is_checked_even_when_names_pass(tmp_path):
    from mnist_folders.errors import CheckpointError
    from mnist_folders.serve.prediction import Prediction
    from mnist_folders.serve.watch import copy_into_class_folder

    image = tmp_path / "a.png"
    image.write_bytes(b"x")
    root = tmp_path / "root"
    assert copy_into_class_folder(Prediction(str(image), "cat", 0.9, []), root) == root / "cat" / "a.png"
    with pytest.raises(CheckpointError, match="outside"):
        copy_into_class_folder(Prediction(str(image), "../dog", 0.9, []), root)
    assert not (tmp_path / "dog").exists()


def test_a_class_folder_with_a_line_break_is_refused_before_training(small_data, tmp_path):
    # M4: it would give labels.txt more lines than classes.
    tree = tmp_path / "train"
    for name, digit in (("one\nline", "1"), ("two", "2")):
        (tree / name).mkdir(parents=True)
        for path in sorted((small_data / "train" / digit).iterdir())[:3]:
            shutil.copy(path, tree / name)
    result = run_cli(CLI, "--mode", "train", "--train-dir", str(tree), "--model-dir", str(tmp_path / "m"),
                     check=False)
    _one_line_refusal(result, "holds a line break", "rename the folder")
    assert not (tmp_path / "m").exists()


def test_a_model_directory_with_a_huge_image_size_is_refused(trained_model, small_data, tmp_path):
    # M10: a hand-edited setting.json made predict allocate gigabytes.
    model_dir = tmp_path / "given"
    shutil.copytree(trained_model, model_dir)
    saved = json.loads((model_dir / "setting.json").read_text())
    (model_dir / "setting.json").write_text(json.dumps({**saved, "image_height": 100_000}))
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(small_data / "tmp"),
                     "--runtime", "keras", check=False)
    _one_line_refusal(result, "setting.json", "image_height must be in [1, 2048]")


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    # L4
    config = tmp_path / "bad.toml"
    config.write_bytes(b'data_dir = "caf\xe9"\n')
    result = run_cli(CLI, "--mode", "train", "--config", str(config), "--model-dir", str(tmp_path / "m"),
                     check=False)
    _one_line_refusal(result, "bad.toml", "invalid TOML")


def test_the_kill_hook_with_a_bad_value_is_one_line(small_data, tmp_path):
    # L5
    result = run_cli(CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(tmp_path / "m"),
                     "--model", "cnn_small", "--epochs", "1", "--quiet", check=False,
                     env={"MNIST_FOLDERS_KILL_AT": "abc"})
    _one_line_refusal(result, "MNIST_FOLDERS_KILL_AT='abc'")
