"""what ``--mode predict`` (with and without ``--watch``) writes, and where: the CSV never
over a file of the model, never shared by two runs, mended after a kill; ``--sort-into`` never inside the
predict folder; an idle watcher lists its folder only when the folder changed."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time

import pytest

from conftest import REPO, kill_group, run_cli, start_cli, wait_for

CLI = str(REPO / "mnist_keras.py")


def _one_line_refusal(result, *words: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr
    assert "\t" not in result.stdout and "watching" not in result.stdout  # said before any model is loaded


def _digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("watch", [False, True])
def test_output_cannot_be_any_file_of_the_model_nor_under_a_file(watch, exported, small_data, tmp_path):
    # L17: --output export/model.onnx replaced the ONNX model by a CSV (only the top-level names were refused).
    model_dir = tmp_path / "m"
    shutil.copytree(exported, model_dir)
    (tmp_path / "link.csv").symlink_to(model_dir / "best.weights.h5")
    before = _digest(model_dir)
    mode = ["--mode", "predict", *(["--watch"] if watch else []), "--model-dir", str(model_dir),
            "--input", str(small_data / "tmp")]
    for output in (model_dir / "export" / "model.onnx", model_dir / "export" / "new.csv",
                   model_dir / "logs" / "p.csv", tmp_path / "link.csv"):
        _one_line_refusal(run_cli(CLI, *mode, "--output", str(output), check=False), str(output),
                          "a file of the model itself")
    # L16: a folder that cannot be made for the CSV is said before the model loads (watch said it after).
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    _one_line_refusal(run_cli(CLI, *mode, "--output", str(blocker / "p.csv"), check=False), str(blocker),
                      "folder for the predictions CSV is not writable")
    assert _digest(model_dir) == before


def test_sort_into_inside_the_predict_folder_is_refused_without_watch_too(trained_model, small_data, tmp_path):
    # M7: the next batch run predicted the copies and copied them again (10 images, 30 files after two runs).
    drop = tmp_path / "drop"
    shutil.copytree(small_data / "tmp", drop)
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(drop),
                     "--sort-into", str(drop / "sorted"), "--output", str(tmp_path / "p.csv"), check=False)
    _one_line_refusal(result, str(drop / "sorted"), "inside the predict folder", "by the next run")
    assert not (drop / "sorted").exists() and not (tmp_path / "p.csv").exists()


@pytest.fixture()
def watcher(exported, small_data, tmp_path):
    """A watcher (a real process) on ``tmp_path/drop`` writing ``tmp_path/w.csv``, once it has predicted one
    image: ``(process, drop, csv)``; killed at the end."""
    drop, out = tmp_path / "drop", tmp_path / "w.csv"
    drop.mkdir()
    shutil.copy(small_data / "tmp" / "sample_0.png", drop)
    process = start_cli(CLI, "--mode", "predict", "--watch", "--model-dir", str(exported), "--input", str(drop),
                        "--output", str(out))
    wait_for(lambda: out.exists() and out.read_bytes().count(b"\r\n") == 2, process, timeout=120)
    yield process, drop, out
    if process.poll() is None:
        kill_group(process)


def test_a_batch_predict_on_a_watchers_csv_is_refused_naming_the_watcher(watcher, exported):
    # L9: a batch predict replaced the watcher's CSV; the watcher's lock was left on the old file, and a second
    # watcher was let in on the new one (every file then predicted twice).
    process, drop, out = watcher
    before = out.read_bytes()
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(exported), "--input", str(drop),
                     "--output", str(out), check=False)
    _one_line_refusal(result, str(out), f"in use by another predict run (PID {process.pid})")
    assert out.read_bytes() == before
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0


@pytest.mark.parametrize("cut", [1, 20, 63, 64])
def test_a_header_cut_by_a_kill_is_mended_not_refused(tmp_path, cut):
    # L7: a kill during the first write left part of the header; the restarted watcher refused its own CSV
    # ("not a predictions CSV of this model") and the user had to delete it.
    from mnist_folders.serve.prediction import csv_header
    from mnist_folders.serve.watch import read_done

    path = tmp_path / "w.csv"
    header = (",".join(csv_header(3)) + "\r\n").encode()
    assert len(header) == 65  # 64: cut between CR and LF
    path.write_bytes(header[:cut])
    assert read_done(path, csv_header(3)) == set() and path.read_bytes() == b""


def test_an_idle_watcher_lists_its_folder_only_when_a_folder_changed(tmp_path, monkeypatch):
    # L10: every poll listed and stat-ed all 20,000 predicted files (85 ms of CPU a poll, 31 % of a core at
    # 4 polls a second); idle, a poll now looks at the folders' mtimes only.
    from mnist_folders.data.folders import list_files
    from mnist_folders.serve import watch

    (tmp_path / "empty").mkdir()
    for k in range(50):
        (tmp_path / f"{k}.png").write_bytes(b"x")
    state = watch.WatchState(done={watch.path_cell(str(tmp_path / f"{k}.png")) for k in range(50)})
    old = 1_000_000_000 * 10**9  # 2001: no folder changed lately
    for folder in (tmp_path, tmp_path / "empty"):
        os.utime(folder, ns=(old, old))
    listings, stats, real_stat = [], [], os.stat
    monkeypatch.setattr(watch, "list_files", lambda folder: listings.append(folder) or list_files(folder))
    monkeypatch.setattr(os, "stat", lambda path, *a, **k: stats.append(path) or real_stat(path, *a, **k))
    assert watch.ready_files(tmp_path, state, 100.0, 0.5) == [] and len(listings) == 1
    stats.clear()
    for second in range(1, 10):
        assert watch.ready_files(tmp_path, state, 100.0 + second, 0.5) == []
    assert len(listings) == 1 and len(stats) == 2 * 9  # no listing again; the 2 folders' mtimes a poll
    # A file dropped into the empty sub-folder changes that folder's mtime: listed, then taken once settled.
    (tmp_path / "empty" / "new.png").write_bytes(b"x")
    assert watch.ready_files(tmp_path, state, 110.0, 0.5) == [] and len(listings) == 2
    assert watch.ready_files(tmp_path, state, 111.0, 0.5) == [str(tmp_path / "empty" / "new.png")]
    # Still a full listing now and then, whatever the mtimes say (a file system that keeps none).
    watch.ready_files(tmp_path, state, 111.0 + watch.FULL_LISTING_SECONDS, 0.5)
    assert len(listings) == 4


def test_the_watchers_csv_is_not_listed_when_the_folder_is_reached_through_a_link(watcher, exported, small_data,
                                                                                  tmp_path):
    # L11: the CSV was left out by its absolute path: --input through a link listed it as "skipped" after
    # every batch.
    process, drop, _ = watcher
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    (tmp_path / "link").symlink_to(drop)
    out = drop / "own.csv"
    process = start_cli(CLI, "--mode", "predict", "--watch", "--model-dir", str(exported), "--input",
                        str(tmp_path / "link"), "--output", str(out))
    try:
        for k in range(2):
            shutil.copy(small_data / "tmp" / f"sample_{k + 1}.png", drop)
            wait_for(lambda: out.exists() and out.read_bytes().count(b"\r\n") == k + 3, process, timeout=120)
        # Longer than the settle time and the slack of the folders' mtimes: the grown CSV would be tried now.
        wait_for(lambda: time.sleep(0.1) or time.time_ns() - os.stat(drop).st_mtime_ns > 3e9, process, timeout=10)
        process.send_signal(signal.SIGTERM)
        printed, warned = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            kill_group(process)
    assert process.returncode == 0 and "own.csv" not in warned, warned
    assert "stopped: 3 predicted, 0 skipped" in printed, printed


def test_a_class_folder_of_sort_into_that_cannot_be_made_is_said_before_predicting(trained_model, small_data,
                                                                                   tmp_path):
    # L8: only --sort-into itself was checked; a file named like a class in it failed the copies after the
    # CSV was written (in watch mode after the batch's rows: those images were never sorted).
    sort = tmp_path / "sorted"
    sort.mkdir()
    (sort / "7").write_text("a file where the class folder should be")
    for watch in ([], ["--watch"]):
        result = run_cli(CLI, "--mode", "predict", *watch, "--model-dir", str(trained_model), "--input",
                         str(small_data / "tmp"), "--sort-into", str(sort), "--output", str(tmp_path / "p.csv"),
                         check=False)
        _one_line_refusal(result, str(sort / "7"), "--sort-into class folder is not writable")
        assert not (tmp_path / "p.csv").exists() and sorted(p.name for p in sort.iterdir()) == ["7"]


def test_a_batch_predicts_own_csv_inside_the_folder_is_not_listed_next_time(trained_model, small_data, tmp_path):
    # L11, batch predict: the CSV of the previous run was listed as "skipped: not an image file" on every run.
    drop = tmp_path / "drop"
    shutil.copytree(small_data / "tmp", drop)
    args = (CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(drop), "--output",
            str(drop / "p.csv"), "--quiet")
    run_cli(*args)
    again = run_cli(*args)
    assert "p.csv" not in again.stderr and "10 predicted, 0 skipped" in again.stdout, (again.stdout, again.stderr)


def test_a_predict_folder_that_is_a_class_folder_of_sort_into_is_refused(trained_model, small_data, tmp_path):
    # M7, the other way round: --input sorted/3 --sort-into sorted copied each 3 back into the folder predicted
    # (a watcher: forever).
    drop = tmp_path / "sorted" / "3"
    shutil.copytree(small_data / "tmp", drop)
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(drop),
                     "--sort-into", str(tmp_path / "sorted"), "--output", str(tmp_path / "p.csv"), check=False)
    _one_line_refusal(result, f"puts copies in {drop}, inside the predict folder", "by the next run")
    assert sorted(p.name for p in drop.iterdir()) == sorted(p.name for p in (small_data / "tmp").iterdir())
