"""Beyond memory and one device: the three image caches give the same batches, auto picks by size,
evaluate keeps only what its picture needs, and mirrored training matches one device."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_cli
from mnist_folders.data import image_cache
from mnist_folders.data.folders import index_tree
from mnist_folders.settings import Setting

CLI = str(REPO / "mnist_keras.py")


def _history_rows(model_dir):
    """history.csv's lines without the seconds and steps columns: "epoch,loss,accuracy,val_loss,val_accuracy"."""
    lines = (model_dir / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy,seconds,steps", lines[0]
    return [",".join(line.split(",")[:5]) for line in lines]


@pytest.fixture(scope="module")
def subset_2000(small_data, tmp_path_factory):
    data = tmp_path_factory.mktemp("mw") / "data"
    for digit in range(10):
        (data / "train" / str(digit)).mkdir(parents=True)
        for path in sorted((small_data / "train" / str(digit)).iterdir())[:200]:
            shutil.copy(path, data / "train" / str(digit))
    return data


@pytest.fixture(scope="module")
def tree(small_data, tmp_path_factory):
    """300 training images of 3 classes with one unreadable file, RGB-recoloured and resized to 20x24."""
    from PIL import Image

    root = tmp_path_factory.mktemp("scale") / "train"
    for digit in ("1", "4", "7"):
        (root / digit).mkdir(parents=True)
        for k, path in enumerate(sorted((small_data / "train" / digit).iterdir())[:100]):
            gray = np.asarray(Image.open(path))
            Image.fromarray(np.stack([gray, gray // 2, 255 - gray], axis=-1)).resize((20, 24)).save(
                root / digit / f"{k:03d}.png")
    (root / "4" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _batches(setting, index, epoch, count=3):
    from mnist_folders.data.pipeline import training_data

    data = training_data(setting, index, progress=False)
    data.set_epoch(epoch)
    train = [(x.numpy(), y.numpy()) for x, y in data.train.take(count)]
    validation = [(x.numpy(), y.numpy()) for x, y in data.validation]
    return data, train, validation


def test_the_three_caches_serve_the_same_batches(tree, tmp_path):
    base = Setting(train_dir=str(tree), model_dir=str(tmp_path / "m"), image_height=24, image_width=20,
                   color_mode="rgb", batch_size=32, rotation_range=10.0, model="cnn_small")
    index = index_tree(tree, ["1", "4", "7"])
    results = {mode: _batches(base.replace(cache=mode), index, epoch=2) for mode in ("memory", "disk", "none")}
    memory = results["memory"]
    assert memory[0].failed == [(str(tree / "4" / "broken.png"), memory[0].failed[0][1])]
    for mode in ("disk", "none"):
        data, train, validation = results[mode]
        assert data.failed == memory[0].failed and data.cache_note.startswith(f"cache={mode}")
        assert np.array_equal(data.train_labels, memory[0].train_labels)
        for (x, y), (mx, my) in zip(train + validation, memory[1] + memory[2]):
            assert np.array_equal(x, mx) and np.array_equal(y, my)  # augmented the same way too
    other_epoch = _batches(base.replace(cache="disk"), index, epoch=3)[1]
    assert not np.array_equal(other_epoch[0][1], memory[1][0][1])  # another epoch, another order
    assert len(list((tmp_path / "m" / ".cache").glob("*.u8"))) == 1  # one file, reused by the second disk run


def test_auto_keeps_small_data_in_memory_and_large_data_on_disk(monkeypatch):
    setting = Setting(image_height=224, image_width=224, color_mode="rgb")
    monkeypatch.setattr(image_cache, "available_memory", lambda: 16 * 2**30)
    assert image_cache.choose_mode(setting, 20_000)[0] == "memory"  # 2.8 GiB decoded
    mode, why = image_cache.choose_mode(setting, 200_000)  # 28 GiB
    assert mode == "disk" and why == "cache=auto -> disk: 28.0 GiB decoded is over 25% of the 16.0 GiB available"
    assert image_cache.choose_mode(setting.replace(cache="none"), 200_000)[0] == "none"


def test_available_memory_reads_meminfo(tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal:       24576000 kB\nMemAvailable:   20000000 kB\n")
    assert image_cache.available_memory(tmp_path / "meminfo") == 20000000 * 1024
    assert image_cache.available_memory(tmp_path / "missing") is None


def test_mirrored_over_two_logical_cpus_matches_one_device(subset_2000, tmp_path):
    """Same global batch, no dropout, float32: the two replicas' averaged gradients are one device's up to
    the order of float additions; over 50 steps that moves the logged values by about 1 % at most
    (a replica training on half the data alone, or unsynchronised weights, would be far off)."""
    for strategy in ("one_device", "mirrored"):
        result = run_cli(CLI, "--mode", "train", "--data-dir", str(subset_2000), "--model-dir", str(tmp_path / strategy),
                         "--model", "cnn_32_64_64", "--dtype-policy", "float32", "--epochs", "2", "--batch-size",
                         "64", "--strategy", strategy, "--quiet")
        assert ("mirrored over 2 logical CPU devices" in result.stdout) == (strategy == "mirrored")
    for one, two in zip(_history_rows(tmp_path / "one_device")[1:], _history_rows(tmp_path / "mirrored")[1:]):
        assert [float(v) for v in two.split(",")] == pytest.approx([float(v) for v in one.split(",")], rel=2e-2)
    assert float(_history_rows(tmp_path / "mirrored")[-1].split(",")[-1]) > 0.8  # it learned (val_accuracy)


def _free_ports(count):
    """Free ports below the kernel's ephemeral range: a port taken from that range can meanwhile become the
    source port of one worker's own connection attempt to it (a TCP self-connect), which breaks the cluster."""
    import random
    import socket

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) \
        if Path("/proc/sys/net/ipv4/ip_local_port_range").exists() else 32768
    ports = []
    for port in random.Random().sample(range(max(1024, low - 12000), low), 200):
        try:
            with socket.socket() as s:
                s.bind(("", port))
        except OSError:
            continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise AssertionError(f"no {count} free ports below {low}")


def _expect_exit_codes(results, codes):
    """Fail with both workers' whole output (an assertion's repr would be cut short) unless they exited so."""
    if [code for _, code in results] != codes:
        pytest.fail(f"exit codes {[code for _, code in results]}, expected {codes}\n" + "\n".join(
            f"--- worker {i}: exit {code}\nstdout:\n{out}\nstderr:\n{err}"
            for i, ((out, err), code) in enumerate(results)), pytrace=False)


def _two_workers(args, env_extra=({}, {})):
    """Start worker 0 (the chief) and worker 1 of a loopback cluster; wait for both; return both results."""
    from conftest import start_cli

    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(2)]}
    processes = [start_cli(*args, env={"TF_CONFIG": json.dumps({"cluster": cluster,
                                                                "task": {"type": "worker", "index": i}}),
                                       **env_extra[i]}) for i in range(2)]
    return [(p.communicate(timeout=300), p.returncode) for p in processes]


def test_two_workers_train_like_one_process_and_resume_after_a_worker_dies(subset_2000, tmp_path):
    import os
    import tempfile

    def args(model_dir, *extra):
        return (CLI, "--mode", "train", "--data-dir", str(subset_2000), "--model-dir", str(model_dir),
                "--model", "cnn_32_64_64", "--dtype-policy", "float32", "--epochs", "2", "--batch-size", "64",
                "--quiet", *extra)

    run_cli(*args(tmp_path / "one"), "--strategy", "one_device")
    together = _two_workers(args(tmp_path / "two", "--tensorboard"))
    _expect_exit_codes(together, [0, 0])
    runs = list((tmp_path / "two" / "logs").iterdir())  # TensorBoard: the chief's logs only, of each epoch
    assert len(runs) == 1 and len(list((runs[0] / "validation").glob("events.out.tfevents.*"))) == 1
    assert "on worker 0 of 2 (multi_worker)" in together[0][0][0]
    # Same global batches, no dropout, float32: the two workers' summed gradients are one process's up to
    # the order of float additions, so the training loss and accuracy agree to a few parts in 10,000. Those
    # rounding differences grow over 60 steps: on a CPU with AMX (2026-12-02) the second epoch's val_loss
    # differed by 0.5 % and val_accuracy by 2 of 400 images, so validation is held to 1 %.
    for one, two in zip(_history_rows(tmp_path / "one")[1:], _history_rows(tmp_path / "two")[1:]):
        one, two = [float(v) for v in one.split(",")], [float(v) for v in two.split(",")]
        assert two[:3] == pytest.approx(one[:3], rel=2e-3) and two[3:5] == pytest.approx(one[3:5], rel=1e-2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "two"]  # the chief's folder only
    assert not [p for p in os.listdir(tempfile.gettempdir()) if p.startswith("mnist_folders-worker-")]

    # Worker 1 killed after batch 5 of epoch 2: the chief stops with one line; both restarted with --resume.
    killed = _two_workers(args(tmp_path / "killed"), ({}, {"MNIST_FOLDERS_KILL_AT": "2:5"}))
    _expect_exit_codes(killed, [2, -9])
    assert "lost contact with another worker" in killed[0][0][1] and "--resume" in killed[0][0][1]
    resumed = _two_workers(args(tmp_path / "killed", "--resume"))
    _expect_exit_codes(resumed, [0, 0])
    assert "resuming after epoch 1 of 2" in resumed[0][0][0]
    assert _history_rows(tmp_path / "killed") == _history_rows(tmp_path / "two")  # exactly the uninterrupted run


def test_a_worker_says_whom_it_waits_for_and_gives_up_in_time(subset_2000, tmp_path):
    # a TF_CONFIG naming a worker that never starts hung without a word: it says whom it awaits...
    import os
    import subprocess
    import sys
    import time

    from conftest import kill_group

    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    env = {**os.environ, "MNIST_FOLDERS_WORKER_WAIT": "20",
           "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})}
    output = tmp_path / "worker0.txt"
    with open(output, "w") as out:  # a file, read while the worker runs (a pipe could fill and block it)
        process = subprocess.Popen([sys.executable, CLI, "--mode", "train", "--data-dir", str(subset_2000),
                                    "--model-dir", str(tmp_path / "m"), "--epochs", "1", "--format", "none",
                                    "--quiet"], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        expected = f"worker 0 of 2: waiting for worker 1 at localhost:{ports[1]}"
        deadline = time.monotonic() + 120
        while expected not in output.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert expected in output.read_text(), output.read_text()
        # ... and gives up after MNIST_FOLDERS_WORKER_WAIT seconds (here 20) with one line, nothing written.
        assert process.wait(timeout=120) == -9  # killed by its watchdog: TensorFlow waits holding the GIL
        lines = output.read_text().splitlines()
        assert lines[-1] == (f"error: worker 0 of 2: no answer from localhost:{ports[1]} within 20 s "
                             "(MNIST_FOLDERS_WORKER_WAIT); start every worker, or check TF_CONFIG")
        assert not (tmp_path / "m").exists() or not list((tmp_path / "m").iterdir())
    finally:
        if process.poll() is None:
            kill_group(process)


def test_a_collective_aborted_by_a_lost_peer_is_one_line_anywhere_in_training():
    # CI, 2026-12-02: a worker whose peer went away failed with "internal error: ... Collective ops is aborted
    # by: Socket closed" (exit 3): raised outside the epoch loop and of a code that loop did not expect.
    import tensorflow as tf

    from mnist_folders.errors import TrainingError
    from mnist_folders.train import multi_worker

    role = multi_worker.Role(1, 2, ("localhost:1", "localhost:2"))
    aborted = "Collective ops is aborted by: Socket closed\nThe error could be from a previous operation."
    for error in (tf.errors.InternalError(None, None, aborted), tf.errors.UnavailableError(None, None, "down"),
                  tf.errors.AbortedError(None, None, "peer restarted")):
        with pytest.raises(TrainingError) as caught, multi_worker.lost_contact(role):
            raise error
        assert str(caught.value).startswith(f"worker 1: lost contact with another worker ({type(error).__name__}: ")
        assert str(caught.value).endswith("start every worker again with --resume")
    with pytest.raises(tf.errors.InvalidArgumentError), multi_worker.lost_contact(role):  # a bug stays a bug
        raise tf.errors.InvalidArgumentError(None, None, "shapes differ")
    with pytest.raises(tf.errors.UnavailableError), multi_worker.lost_contact(None):  # one process: no peers
        raise tf.errors.UnavailableError(None, None, "down")


def test_a_worker_proving_the_folder_writable_does_not_make_it_foreign(tmp_path):
    # Found with two workers (and the CI failure of 2026-12-02): worker 1's ".write-test" probe, seen by the
    # chief mid-write under its temporary name, made the chief refuse the new model directory as "not ours".
    from mnist_folders import artifacts
    from mnist_folders.train import run_directory
    from mnist_folders.errors import CheckpointError

    folder = tmp_path / "new"
    folder.mkdir()
    (folder / "..write-test.fdtxxsvt.tmp").write_bytes(b"ok\n")
    (folder / "..train.lock.abc.tmp").write_bytes(b"")
    run_directory.claim_for_training(folder)
    assert (folder / artifacts.MARKER).exists()
    other = tmp_path / "theirs"
    other.mkdir()
    (other / ".write-test-notes.txt").write_text("a user's file")  # not one of our names: still refused
    with pytest.raises(CheckpointError, match="not a model of this tool"):
        run_directory.claim_for_training(other)
