"""``--mode predict --watch``: files dropped one by one and in bursts, written slowly, renamed into place,
junk, sub-folders, SIGTERM and a restart; the CSV checked row by row against a batch predict."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import time

import pytest

from conftest import REPO, kill_group, run_cli, start_cli, wait_for

CLI = str(REPO / "mnist_keras.py")


def _rows(path):
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))[1:]


def _stop(process):
    """SIGTERM, then the process must end by itself with exit 0: ``(stdout, stderr)``."""
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out, err


@pytest.fixture()
def started():
    """Start watchers with ``started(*args)``; any still running when the test ends (a failure) is killed."""
    processes = []

    def start(*args):
        processes.append(start_cli(*args))
        return processes[-1]

    yield start
    for process in processes:
        if process.poll() is None:
            kill_group(process)


@pytest.fixture()
def sources(small_data):
    """Test PNGs by class: ``[(path, class), ...]``, two per digit."""
    return [(path, str(digit)) for digit in range(10)
            for path in sorted((small_data / "test" / str(digit)).iterdir())[:2]]


def test_watch_predicts_each_arrival_once_and_survives_a_restart(exported, sources, started, tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "watch.csv"
    drop.mkdir()
    args = [CLI, "--mode", "predict", "--watch", "--model-dir", str(exported), "--input", str(drop),
            "--output", str(out)]
    watcher = started(*args)
    rows = lambda: _rows(out)  # noqa: E731

    # One file, then a burst of ten.
    shutil.copy(sources[0][0], drop / "first.png")
    wait_for(lambda: len(rows()) == 1, watcher, timeout=120)
    for k, (path, _) in enumerate(sources[1:11]):
        shutil.copy(path, drop / f"burst_{k}.png")
    wait_for(lambda: len(rows()) == 11, watcher)

    # Written slowly: half now, the rest after the settle time; and one written under a temporary name.
    data = sources[11][0].read_bytes()
    with open(drop / "slow.png", "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(1.5)
        f.write(data[len(data) // 2 :])
    (drop / "renamed.png.part").write_bytes(sources[12][0].read_bytes())
    time.sleep(1.0)
    os.rename(drop / "renamed.png.part", drop / "renamed.png")
    (drop / "notes.txt").write_text("not an image")
    (drop / "sub").mkdir()
    shutil.copy(sources[13][0], drop / "sub" / "nested.png")
    wait_for(lambda: len(rows()) == 14, watcher)
    printed, warned = _stop(watcher)
    assert "stopped: 14 predicted" in printed
    assert warned.splitlines().count(f"skipped {drop / 'notes.txt'}: not an image file Pillow can read") == 1

    # While stopped, one more; the restarted watcher predicts only that one.
    shutil.copy(sources[14][0], drop / "while_stopped.png")
    watcher = started(*args)
    wait_for(lambda: len(rows()) == 15, watcher, timeout=120)
    time.sleep(1.0)  # time to predict anything twice, were it going to
    assert "stopped: 1 predicted" in _stop(watcher)[0]

    watched = rows()
    names = [os.path.relpath(r[0], drop) for r in watched]
    assert sorted(names) == sorted(["first.png", *(f"burst_{k}.png" for k in range(10)), "slow.png",
                                    "renamed.png", os.path.join("sub", "nested.png"), "while_stopped.png"])
    truth = {"first.png": sources[0][1], **{f"burst_{k}.png": sources[k + 1][1] for k in range(10)},
             "slow.png": sources[11][1], "renamed.png": sources[12][1],
             os.path.join("sub", "nested.png"): sources[13][1], "while_stopped.png": sources[14][1]}
    assert sum(r[1] == truth[name] for name, r in zip(names, watched)) >= 13  # a model at ~97 % accuracy
    # Row by row what a batch predict of the folder writes (same model, same runtime).
    run_cli(CLI, "--mode", "predict", "--model-dir", str(exported), "--input", str(drop),
            "--output", str(tmp_path / "batch.csv"), "--quiet", check=False)
    batch = {r[0]: r for r in _rows(tmp_path / "batch.csv")}
    for row in watched:
        assert row[:2] == batch[row[0]][:2] and row[3::2] == batch[row[0]][3::2]
        for mine, theirs in zip(row[2::2], batch[row[0]][2::2]):
            assert float(mine) == pytest.approx(float(theirs), abs=2e-6)
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_a_partial_last_row_from_a_kill_is_dropped_and_predicted_again(exported, sources, started, tmp_path):
    drop, out = tmp_path / "drop", tmp_path / "watch.csv"
    drop.mkdir()
    shutil.copy(sources[0][0], drop / "a.png")
    shutil.copy(sources[1][0], drop / "b.png")
    header = "path,class,confidence,top2,top2_confidence,top3,top3_confidence\r\n"
    out.write_bytes(f"{header}{drop / 'a.png'},7,0.9,1,0.05,2,0.01\r\n{drop / 'b.png'},3,0.8".encode())
    watcher = started(CLI, "--mode", "predict", "--watch", "--model-dir", str(exported), "--input", str(drop),
                        "--output", str(out))
    wait_for(lambda: [len(r) for r in _rows(out)] == [7, 7], watcher, timeout=120)
    assert "stopped: 1 predicted" in _stop(watcher)[0]
    rows = _rows(out)
    assert rows[0][:3] == [str(drop / "a.png"), "7", "0.9"]  # kept as it was: never predicted twice
    assert rows[1][0] == str(drop / "b.png") and len(rows[1]) == 7


def test_watch_refuses_a_csv_of_another_kind(exported, tmp_path):
    (tmp_path / "drop").mkdir()
    (tmp_path / "other.csv").write_text("name,age\r\nada,36\r\n")
    result = run_cli(CLI, "--mode", "predict", "--watch", "--model-dir", str(exported), "--input",
                     str(tmp_path / "drop"), "--output", str(tmp_path / "other.csv"), check=False)
    assert result.returncode == 2 and "not a predictions CSV of this model" in result.stderr
    assert (tmp_path / "other.csv").read_bytes() == b"name,age\r\nada,36\r\n"  # untouched


def test_the_watchers_own_csv_inside_the_folder_is_not_skipped_nor_shared(exported, sources, started, tmp_path):
    # the CSV grows after each batch, so it was "skipped" again after every one.
    drop = tmp_path / "drop"
    drop.mkdir()
    out = drop / "watch.csv"
    watcher = started(CLI, "--mode", "predict", "--watch", "--model-dir", str(exported), "--input", str(drop),
                      "--output", str(out))
    for k in range(3):
        shutil.copy(sources[k][0], drop / f"{k}.png")
        wait_for(lambda: len(_rows(out)) == k + 1, watcher, timeout=120)
        time.sleep(1.0)  # longer than the settle time: the grown CSV would be tried now
    # L9: a second watcher on the same CSV would predict every file again: it stops at once.
    second = started(CLI, "--mode", "predict", "--watch", "--model-dir", str(exported), "--input", str(drop),
                     "--output", str(out))
    _, refusal = second.communicate(timeout=120)
    assert second.returncode == 2 and refusal.strip().endswith(f"in use by another predict run (PID {watcher.pid}); "
                                                              "stop that one or choose another --output"), refusal
    printed, warned = _stop(watcher)
    assert "stopped: 3 predicted, 0 skipped" in printed and "watch.csv" not in warned, (printed, warned)
    assert len(_rows(out)) == 3
