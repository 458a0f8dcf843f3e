"""--resume, the model directory and evaluate stay consistent with what is really there
(M1, M2, M8, L3, L20)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, run_cli

CLI = str(REPO / "mnist_keras.py")
TRAINING = ("--model", "cnn_32_64_64", "--batch-size", "32", "--quiet")  # 320 training images: 10 steps an epoch


@pytest.fixture(scope="module")
def base(registry_data, tmp_path_factory) -> tuple[Path, Path]:
    """``(data, model_dir)``: a linked copy of the registry tree, and 2 epochs trained on it."""
    root = tmp_path_factory.mktemp("resume_safety")
    data = root / "data"
    shutil.copytree(registry_data, data, copy_function=os.link)
    model_dir = root / "model"
    run_cli(CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir), "--epochs", "2",
            *TRAINING)
    return data, model_dir


@pytest.fixture
def copy(base, tmp_path) -> tuple[Path, Path]:
    """A copy of :func:`base` for one test to change: ``(data, model_dir)``."""
    data, model_dir = tmp_path / "data", tmp_path / "model"
    shutil.copytree(base[0], data, copy_function=os.link)
    shutil.copytree(base[1], model_dir)
    return data, model_dir


def _files(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, the lock files aside (they hold the PID of the last process that locked)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def _refused(result, *words: str) -> None:
    """One ``error:`` line naming every one of ``words``, exit code 2, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def _resume(data: Path, model_dir: Path, epochs: int = 3, **kwargs):
    return run_cli(CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir),
                   "--epochs", str(epochs), *TRAINING, "--resume", check=False, **kwargs)


def test_resume_continues_at_the_epoch_of_the_history(copy):
    data, model_dir = copy
    result = _resume(data, model_dir)
    assert result.returncode == 0, result.stderr
    assert "resuming after epoch 2 of 3" in result.stdout
    rows = (model_dir / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,loss,accuracy,val_loss,val_accuracy,seconds,steps"
    assert [(r.split(",")[0], r.split(",")[-1]) for r in rows[1:]] == [("1", "10"), ("2", "20"), ("3", "30")]


def test_resume_refuses_other_images_of_the_same_counts(copy, tmp_path):
    # M1: other files, as many per class: the run continued silently on other images and another validation split.
    data, model_dir = copy
    victim = sorted((data / "train" / "3").iterdir())[0]
    other = next(p for p in sorted((data / "test" / "3").iterdir()) if p.stat().st_size != victim.stat().st_size)
    victim.unlink()
    shutil.copy(other, victim)
    before = _files(model_dir)
    _refused(_resume(data, model_dir), str(data / "train"), "the training images changed since this run began",
             "as many per class, but other files or sizes", "train without --resume")
    assert _files(model_dir) == before


def test_resume_refuses_images_damaged_in_place(copy):
    # M1: files of the same names and sizes that no longer decode: fewer steps an epoch, so that the epoch counted
    # from the optimizer's steps was 4 of 6 where 2 were done, and history.csv held epochs 1,2,5,6.
    data, model_dir = copy
    for folder in sorted((data / "train").iterdir()):
        for path in sorted(folder.iterdir())[::2]:
            size = path.stat().st_size
            path.unlink()
            path.write_bytes(b"\0" * size)
    before = _files(model_dir)
    _refused(_resume(data, model_dir), "dataset.json", "readable train images", "train without --resume")
    assert _files(model_dir) == before


def test_resume_refuses_a_checkpoint_that_matches_no_epoch_of_the_history(copy):
    # M1: the epoch comes from history.csv, matched with last.keras by the optimizer's step count.
    data, model_dir = copy
    history = model_dir / "history.csv"
    rows = history.read_text().splitlines()
    history.write_text("\n".join([*rows[:-1], rows[-1].rsplit(",", 1)[0] + ",21"]) + "\n")
    before = _files(model_dir)
    _refused(_resume(data, model_dir), "last.keras", "20 optimizer steps match no epoch of history.csv",
             "train without --resume")
    assert _files(model_dir) == before


def test_the_completed_epoch_is_the_history_row_of_the_checkpoint(tmp_path):
    from mnist_folders.errors import CheckpointError
    from mnist_folders.train.resume import checkpoint_epoch

    rows = [{"epoch": 1.0, "steps": 10.0}, {"epoch": 2.0, "steps": 20.0}]
    assert checkpoint_epoch(tmp_path, rows, 20, steps_per_epoch=5) == 2  # the epoch length does not matter
    assert checkpoint_epoch(tmp_path, rows, 10, steps_per_epoch=5) == 1  # killed between the row and last.keras
    with pytest.raises(CheckpointError, match="40 optimizer steps match no epoch of history.csv"):
        checkpoint_epoch(tmp_path, rows, 40, steps_per_epoch=10)
    old = [{"epoch": 1.0}, {"epoch": 2.0}]  # a history of a version before the steps column
    assert checkpoint_epoch(tmp_path, old, 20, steps_per_epoch=10) == 2
    with pytest.raises(CheckpointError, match="match no epoch"):  # 4 epochs of 5 steps: not this history's
        checkpoint_epoch(tmp_path, old, 20, steps_per_epoch=5)


def test_resume_after_a_fresh_run_stopped_while_reading_its_images_is_refused(copy, monkeypatch):
    # M2: Ctrl-C while the new run read its images (before any .staging/): --resume then continued the previous
    # model on the new data. The refusal says which model --resume would continue.
    from mnist_folders.train import training

    data, model_dir = copy
    args = (CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir), "--epochs", "3",
            *TRAINING)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(training, "load_training_data", interrupted)
        stopped = run_cli(*args, "--learning-rate", "0.0005", check=False)
    assert stopped.returncode == 130 and (model_dir / ".staging").is_dir()
    best = json.loads((model_dir / "best.json").read_text())
    trained_on = json.loads((model_dir / "dataset.json").read_text())["train_dir"]
    before = _files(model_dir)
    _refused(run_cli(*args, "--learning-rate", "0.0005", "--resume", check=False), ".staging",
             "a fresh run was stopped before its first epoch was saved",
             f"would continue the previous run's model (best epoch {best['epoch']}, val_accuracy "
             f"{best['val_accuracy']}, trained on {trained_on})", "train again without --resume")
    assert _files(model_dir) == before


def test_a_fresh_run_refused_while_reading_its_images_leaves_the_model_resumable(copy, monkeypatch):
    from mnist_folders.errors import DatasetError
    from mnist_folders.train import training

    data, model_dir = copy

    def refused(*args, **kwargs):
        raise DatasetError("refused")

    with monkeypatch.context() as patch:
        patch.setattr(training, "load_training_data", refused)
        result = run_cli(CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir),
                         *TRAINING, check=False)
    _refused(result, "refused")
    assert not (model_dir / ".staging").exists()


@pytest.mark.parametrize("where", ["train", "test"])
def test_a_model_directory_inside_a_class_tree_is_refused(where, copy, tmp_path):
    # M8: an empty --model-dir made in the train tree became a class called "models" ("holds no images"); a
    # model directory inside a class tree would be read as one.
    data, model_dir = copy
    inside = data / where / "models"
    if where == "train":
        inside.mkdir()
        result = run_cli(CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(inside), *TRAINING,
                         check=False)
    else:
        shutil.copytree(model_dir, inside)
        result = run_cli(CLI, "--mode", "evaluate", "--data-dir", str(data), "--model-dir", str(inside), "--quiet",
                         check=False)
    _refused(result, str(inside), f"inside the {where} folder {data / where}", "choose a --model-dir outside")
    if where == "train":
        assert not any(inside.iterdir())  # refused before anything was written there


def _edit_history(model_dir: Path, edit: str) -> None:
    """history.csv (epoch, loss, accuracy, val_loss, val_accuracy, seconds, steps) edited by hand."""
    path = model_dir / "history.csv"
    header, *rows = [line.split(",") for line in path.read_text().splitlines()]
    best = json.loads((model_dir / "best.json").read_text())["epoch"]
    if edit == "epoch 2.0":
        rows[1][0] = "2.0"
    elif edit == "column renamed":
        header[3] = "vl"
    elif edit == "column added":
        header, rows = [*header, "mine"], [[*row, "1"] for row in rows]
    elif edit == "negative loss":
        rows[0][1] = "-1"
    elif edit == "best lowered":
        rows[best - 1][4] = "0.01"
    elif edit == "row dropped":
        rows = rows[:1]
    path.write_text("\n".join(",".join(row) for row in [header, *rows]) + "\n")


@pytest.mark.parametrize("edit, words", [
    ("epoch 2.0", "row 2 is not epoch 2"),
    ("column renamed", "columns ["),
    ("column added", "columns ["),
    ("negative loss", "epoch 1 holds a negative loss"),
    ("best lowered", "the best checkpoint's is"),
    ("row dropped", "match no epoch of history.csv (1 epochs)"),
])
def test_resume_refuses_a_history_edited_by_hand(edit, words, copy):
    # L3: rows edited by hand or partial were accepted; they decide the best epoch, patience and the epoch count.
    data, model_dir = copy
    _edit_history(model_dir, edit)
    before = _files(model_dir)
    _refused(_resume(data, model_dir), words, "train without --resume")
    assert _files(model_dir) == before


def test_evaluate_takes_the_settings_of_the_weights_it_reads(copy, monkeypatch):
    # L20: a promotion between reading setting.json and the weights evaluated the new weights with the old settings.
    from mnist_folders import artifacts
    from mnist_folders.serve import evaluation

    data, model_dir = copy
    assert json.loads((model_dir / "setting.json").read_text())["resize_method"] == "stretch"
    ensure_writable, predict_tree, seen = artifacts.ensure_writable, evaluation._predict_tree, []

    def promoted_meanwhile(folder, *args, **kwargs):  # evaluate's first step, after the CLI read setting.json
        saved = json.loads((model_dir / "setting.json").read_text())
        artifacts.write_json(model_dir / "setting.json", {**saved, "resize_method": "pad"})
        return ensure_writable(folder, *args, **kwargs)

    def recorded(model, index, setting, progress):
        seen.append(setting.resize_method)
        return predict_tree(model, index, setting, progress)

    monkeypatch.setattr(artifacts, "ensure_writable", promoted_meanwhile)
    monkeypatch.setattr(evaluation, "_predict_tree", recorded)
    run_cli(CLI, "--mode", "evaluate", "--data-dir", str(data), "--model-dir", str(model_dir), "--quiet")
    assert seen == ["pad"]


def test_evaluate_writes_its_report_under_the_readers_lock(copy, monkeypatch):
    # L20: a promotion between evaluate's last check and its writes left a stale evaluation.json beside the new
    # model. While the report is written, the exclusive lock a promotion takes is not to be had.
    from mnist_folders import artifacts
    from mnist_folders.locking import FILES_LOCK
    from mnist_folders.serve.evaluation import evaluate

    data, model_dir = copy
    write_json, promotion_waits = artifacts.write_json, []

    def write_json_trying_to_promote(path, content):
        if path.name == "evaluation.json":
            fd = os.open(model_dir / FILES_LOCK, os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                promotion_waits.append(False)
            except BlockingIOError:
                promotion_waits.append(True)
            finally:
                os.close(fd)
        write_json(path, content)

    monkeypatch.setattr(artifacts, "write_json", write_json_trying_to_promote)
    report = evaluate(artifacts.setting_for_model({"data_dir": str(data), "model_dir": str(model_dir)}),
                      progress=False)
    assert promotion_waits == [True]
    assert json.loads((model_dir / "evaluation.json").read_text())["weights_sha256"] == report.weights_sha256
