"""Faults injected for real: processes killed with signals, corrupted files, bad folders."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import kill_group as _kill, start_cli as _start, wait_for as _wait_for, EPOCHS, FIXTURE_TRAINING, MNIST, REPO, run_cli
from mnist_folders.data.idx import load_split

CLI = str(REPO / "mnist_keras.py")
EXPORT = str(REPO / "parse_mnist.py")


def _history(model_dir: Path) -> list[dict[str, str]]:
    path = model_dir / "history.csv"
    if not path.exists():
        return []
    with path.open() as handle:
        return list(csv.DictReader(handle))


def _same_training(a: Path, b: Path) -> None:
    """Two model directories hold the same epochs with the same metrics (timings aside)."""
    rows_a, rows_b = _history(a), _history(b)
    assert [r["epoch"] for r in rows_b] == [str(e) for e in range(1, EPOCHS + 1)]
    for ra, rb in zip(rows_a, rows_b):  # every value as written, timings aside
        assert {k: v for k, v in ra.items() if k != "seconds"} == {k: v for k, v in rb.items() if k != "seconds"}
    assert json.loads((a / "best.json").read_text()) == json.loads((b / "best.json").read_text())


@pytest.mark.parametrize("moment", ["mid-epoch", "epoch-boundary"])
def test_killed_training_resumes_like_an_uninterrupted_run(moment, small_data, trained_model, tmp_path):
    model_dir = tmp_path / "m"
    args = [CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(model_dir),
            *FIXTURE_TRAINING, "--quiet"]
    # mid-epoch: after batch 10 of epoch 2; epoch-boundary: once epoch 2's history row is written but
    # before its last.keras (the epoch's commit point), so the resume must drop that row.
    # The mid-epoch case also switches the image cache: killed reading a disk cache, resumed decoding
    # per batch (cache=none); trained_model held the images in memory. The batches must not differ.
    point = "2:10" if moment == "mid-epoch" else "2:history"
    caches = ("disk", "none") if moment == "mid-epoch" else ("auto", "auto")
    killed = run_cli(*args, "--cache", caches[0], check=False, env={"MNIST_FOLDERS_KILL_AT": point})
    assert killed.returncode == -9
    assert len(_history(model_dir)) == (1 if moment == "mid-epoch" else 2)
    if caches[0] == "disk":  # kept for the resume: one file of 28x28 rows per readable image
        assert [p.stat().st_size for p in (model_dir / ".cache").glob("*.u8")] == [5000 * 28 * 28]
    result = run_cli(*args, "--resume", "--cache", caches[1])
    assert f"resuming after epoch 1 of {EPOCHS}" in result.stdout
    assert not [p for p in model_dir.iterdir() if p.suffix == ".tmp"] and not (model_dir / ".cache").exists()
    _same_training(trained_model, model_dir)  # trained_model: the same settings, never interrupted


@pytest.mark.slow
def test_killed_export_completes_on_rerun(tmp_path):
    out = tmp_path / "out"
    process = _start(EXPORT, "--out", str(out), "--quiet")
    _wait_for(lambda: (out / "train" / "9").is_dir() and len(list((out / "train").rglob("*.png"))) > 3000, process)
    _kill(process)
    partial = len(list(out.rglob("*.png")))
    assert 0 < partial < 70_000
    result = run_cli(EXPORT, "--out", str(out), "--quiet")
    assert "already there" in result.stdout
    assert not list(out.rglob(".*.tmp"))
    for split in ("train", "test"):
        images, labels = load_split(MNIST, split)
        files = sorted((out / split).rglob("*.png"))
        assert len(files) == len(images)
        for path in files:  # every PNG complete and equal to its source image
            index = int(path.stem)
            assert path.parent.name == str(labels[index])
            with Image.open(path) as png:
                assert np.array_equal(np.asarray(png), images[index]), path


def test_kill_during_an_atomic_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "history.csv"
    target.write_text("epoch\n1\n")
    writer = (
        "import sys, time\n"
        "from mnist_folders.atomic import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('epoch\\n1\\n2')\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(60)\n"
    )
    process = _start("-c", writer)
    assert process.stdout.readline().strip() == "writing"
    _kill(process)
    assert target.read_text() == "epoch\n1\n"


def test_evaluate_and_predict_read_complete_checkpoints_while_training(small_data, trained_model, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(trained_model, model_dir)  # a checkpoint exists from the start
    # --resume keeps it there throughout (a fresh run removes the old checkpoint until its first epoch ends);
    # a recorded best of 0 makes every resumed epoch a new best: best.weights.h5 is replaced each epoch.
    (model_dir / "best.json").write_text(json.dumps({**json.loads((model_dir / "best.json").read_text()),
                                                     "val_accuracy": 0.0}))
    rows = _history(model_dir)  # history.csv agrees (a row above the best is refused as edited by hand)
    with (model_dir / "history.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**row, "val_accuracy": "0.0"} for row in rows)
    process = _start(CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(model_dir),
                     *FIXTURE_TRAINING, "--epochs", str(EPOCHS + 3), "--resume", "--quiet")
    runs, while_training, weights_seen = 0, 0, set()
    while process.poll() is None or runs < 2:
        mode = ["evaluate", "predict"][runs % 2]
        while_training += process.poll() is None
        weights_seen.add(hashlib.sha256((model_dir / "best.weights.h5").read_bytes()).hexdigest())
        (model_dir / "evaluation.json").unlink(missing_ok=True)
        result = run_cli(CLI, "--mode", mode, "--data-dir", str(small_data), "--model-dir", str(model_dir),
                         "--quiet", check=False)
        replaced = "the model was replaced by a new training run while it was evaluated; nothing written"
        if mode == "evaluate" and result.returncode == 2:  # a swap during the evaluation: said, no report
            assert replaced in result.stderr and result.stderr.count("\n") == 1, result.stderr
            assert not (model_dir / "evaluation.json").exists()
        else:
            assert result.returncode == 0, result.stderr
        if mode == "evaluate" and result.returncode == 0:  # a whole checkpoint, not a half-written one
            assert json.loads((model_dir / "evaluation.json").read_text())["accuracy"] > 0.85
        runs += 1
    assert process.wait() == 0
    weights_seen.add(hashlib.sha256((model_dir / "best.weights.h5").read_bytes()).hexdigest())
    assert while_training >= 2 and len(weights_seen) >= 2, "no checkpoint was replaced while evaluate and predict ran"
    assert json.loads((model_dir / "best.json").read_text())["epoch"] > EPOCHS


def test_unwritable_model_dir_fails_before_training(small_data, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    started = time.monotonic()
    result = run_cli(CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(blocker / "m"),
                     check=False)
    assert result.returncode == 2 and "not writable" in result.stderr and str(blocker) in result.stderr
    assert "Epoch" not in result.stdout and result.stderr.count("\n") == 1
    assert time.monotonic() - started < 60
    result = run_cli(EXPORT, "--out", str(blocker / "data"), "--limit", "10", check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and str(blocker) in result.stderr


@pytest.fixture
def messy_train(small_data, tmp_path):
    """A copy of two small classes with junk inside."""
    root = tmp_path / "train"
    for digit in ("0", "1"):
        (root / digit).mkdir(parents=True)
        for path in sorted((small_data / "train" / digit).iterdir())[:150]:
            shutil.copy(path, root / digit)
    (root / "0" / "zero_bytes.png").write_bytes(b"")
    (root / "0" / "text.png").write_text("I am not a PNG")
    png = next((root / "1").iterdir()).read_bytes()
    (root / "1" / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "1" / "loop").symlink_to(root / "1")  # a folder symlink loop: not followed
    (root / "1" / "self.png").symlink_to(root / "1" / "self.png")  # a file symlink loop
    return root


def test_unreadable_training_files_are_listed_before_training_or_refused(messy_train, tmp_path):
    args = [CLI, "--mode", "train", "--train-dir", str(messy_train), "--model-dir", str(tmp_path / "m"),
            "--epochs", "1", "--quiet"]
    result = run_cli(*args)
    before_training = result.stdout.split("Epoch 1/1")[0]
    for name in ("0/zero_bytes.png", "0/text.png", "1/truncated.png", "1/self.png"):
        assert f"skipped {messy_train / name}" in before_training
    assert "training on 240 images" in result.stdout  # 300 good images, 20 % held out
    strict = run_cli(*args, "--strict", check=False)
    assert strict.returncode == 2 and "4 unreadable files" in strict.stderr and strict.stderr.count("\n") == 1
    idg = run_cli(*args, "--pipeline", "idg", check=False)
    assert idg.returncode == 2 and "pipeline=tfdata" in idg.stderr and "Traceback" not in idg.stderr


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda root: root.mkdir(), "no class sub-folders"),
        (lambda root: (root / "a").mkdir(parents=True), "only one class folder"),
        (lambda root: [(root / d).mkdir(parents=True) for d in ("a", "b")], "class folder holds no images"),
    ],
)
def test_unusable_train_trees_are_one_line(make, message, tmp_path):
    root = tmp_path / "train"
    make(root)
    result = run_cli(CLI, "--mode", "train", "--train-dir", str(root), "--model-dir", str(tmp_path / "m"),
                     check=False)
    assert result.returncode == 2 and message in result.stderr and result.stderr.count("\n") == 1


def test_predict_survives_every_kind_of_junk(trained_model, small_data, tmp_path):
    folder = tmp_path / "tmp"
    (folder / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(small_data / "tmp" / "sample_4.png", folder / "nested" / "deeper" / "four.png")
    Image.open(small_data / "tmp" / "sample_2.png").convert("CMYK").save(folder / "two_cmyk.jpg")
    Image.new("1", (20_000, 20_000)).save(folder / "bomb.png")  # 400 megapixels declared, a few KB on disk
    (folder / "archive.zip").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    (folder / "empty.jpg").write_bytes(b"")
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(folder),
                     "--quiet", check=False)
    assert result.returncode == 0, result.stderr
    answers = dict(line.split("\t")[:2] for line in result.stdout.splitlines() if "\t" in line)
    assert answers == {str(folder / "nested" / "deeper" / "four.png"): "4", str(folder / "two_cmyk.jpg"): "2"}
    assert "bomb.png: refused" in result.stderr and "decompression bomb" in result.stderr.lower()
    for junk in ("archive.zip", "empty.jpg"):
        assert f"skipped {folder / junk}" in result.stderr


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "class_names.json").unlink(), "class_names.json: missing"),
        (lambda d: (d / "class_names.json").write_text('["a", "b", "c"]'), "does not fit model"),
        (lambda d: (d / "best.weights.h5").write_bytes(b"\x89HDF\r\n garbage"), "best.weights.h5"),
        (lambda d: (d / "setting.json").write_text("{not json"), "setting.json: unreadable"),
    ],
)
def test_damaged_model_dir_is_one_line(damage, message, trained_model, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(trained_model, model_dir)
    damage(model_dir)
    for mode in ("evaluate", "predict"):
        result = run_cli(CLI, "--mode", mode, "--model-dir", str(model_dir), "--quiet", check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1


def test_corrupt_last_checkpoint_refuses_resume(small_data, trained_model, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(trained_model, model_dir)
    data = bytearray((model_dir / "last.keras").read_bytes())
    (model_dir / "last.keras").write_bytes(bytes(data[: len(data) // 3]))
    result = run_cli(CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(model_dir),
                     *FIXTURE_TRAINING, "--epochs", "5", "--resume", "--quiet", check=False)
    assert result.returncode == 2 and "last.keras: cannot load" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("epoch = 3\n", "unknown setting 'epoch' (did you mean 'epochs'?)"),
        ('batch_size = "big"\n', "batch_size must be of type int"),
        ("validation_split = 1.5\n", "validation_split must be in (0, 1)"),
        ("epochs = [\n", "invalid TOML"),
    ],
)
def test_bad_config_is_one_line(text, message, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    result = run_cli(CLI, "--mode", "train", "--config", str(config), check=False)
    assert result.returncode == 2 and message in result.stderr
    assert result.stderr.count("\n") == 1


def test_corrupt_idx_through_the_cli_is_one_line(tmp_path):
    source = tmp_path / "mnist"
    shutil.copytree(MNIST, source)
    data = (source / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (source / "t10k-labels-idx1-ubyte.gz").write_bytes(data[: len(data) - 40])
    result = run_cli(EXPORT, "--source", str(source), "--out", str(tmp_path / "o"), "--limit", "50", check=False)
    assert result.returncode == 2 and "t10k-labels-idx1-ubyte.gz: corrupt gzip" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()  # every input is checked before anything is written


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended; only its exit status waits to be read


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or not Path("/proc").is_dir(),
                    reason="needs 2 cores (a worker pool) and /proc (Linux)")
def test_export_workers_end_when_the_exporter_is_killed(tmp_path):
    # SIGKILL of parse_mnist.py left its pool's workers blocked forever (120 MB each).
    process = _start(EXPORT, "--out", str(tmp_path / "out"), "--quiet")

    def workers() -> list[int]:
        found = []
        for path in Path(f"/proc/{process.pid}/task").glob("*/children"):
            found += [int(pid) for pid in path.read_text().split()]
        return found

    _wait_for(lambda: len(workers()) >= 2, process, timeout=120)
    pids = workers()
    os.kill(process.pid, signal.SIGKILL)  # the parent only, as the OOM killer would
    process.communicate(timeout=30)
    try:
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if _alive(pid)], "worker processes outlived the exporter"
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
