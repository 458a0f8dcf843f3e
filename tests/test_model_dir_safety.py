"""Reproduced for real: resume guards, the model-directory lock, safe
replacement, disk full, FIFOs, non-UTF-8 names, the predictions CSV, EXIF
orientation, divergence, one-line errors, untrusted settings and leftovers.

Every case runs the CLIs as separate processes (real SIGKILL, real second
process, real FIFO, real tmpfs, real file-size limit) on a tiny tree: 150 real
MNIST images of each of 3 classes, 1-2 epochs at batch 32. To keep the module
within its time budget on 2 cores, independent runs are started side by side,
each on its own copy of the model: the fixtures ``predict_runs``,
``train_runs`` and ``second_runs`` run the predict-only cases, the train-only
cases and the second runs over a trained model together, and each test
asserts on its own run.
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import kill_group as _kill, start_cli as _start, wait_for as _wait_for, MNIST, REPO
from mnist_folders.data.idx import load_split

CLI = str(REPO / "mnist_keras.py")
EXPORT = str(REPO / "parse_mnist.py")
CLASSES = ("0", "1", "7")
PER_CLASS = 150
# Named, not "auto": auto's choice depends on the image count and has changed between versions.
MODEL = "cnn_64_128_256"


# ---- helpers -------------------------------------------------------------------------------------

def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def _run(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
         prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``[prefix...] python args...`` from the repository root; output decoded as UTF-8 (bad bytes replaced).

    A run past ``timeout`` is killed and comes back with ``returncode`` None.
    """
    command = [*prefix, sys.executable, *args]
    try:
        return subprocess.run(command, cwd=REPO, env=env or _env(), capture_output=True,
                              encoding="utf-8", errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, None, "", f"timed out after {timeout} s (killed)")


def _run_many(jobs: list, parallel: int = 3) -> list[subprocess.CompletedProcess]:
    """Independent runs side by side; a job is a list of args or ``(args, run keywords)``."""
    jobs = [job if isinstance(job, tuple) else (job, {}) for job in jobs]
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(lambda job: _run(*job[0], **job[1]), jobs))


def _failure(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout[-1500:]}\nstderr:\n{result.stderr[-3000:]}"


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, _failure(result)
    return result


def _error_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    """The one stderr line of a run that must fail with ``code`` and no traceback."""
    assert result.returncode == code, _failure(result)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{result.stderr[-3000:]}"
    return lines[0]


def _train_args(data_dir: Path, model_dir: Path, *extra: str) -> list[str]:
    return [CLI, "--mode", "train", "--data-dir", str(data_dir), "--model-dir", str(model_dir),
            "--model", MODEL, "--batch-size", "32", "--quiet", "--format", "none", *extra]  # export: test_deploy


def _predict_args(model_dir: Path, *extra: str, quiet: bool = True) -> list[str]:
    return [CLI, "--mode", "predict", "--model-dir", str(model_dir), *(["--quiet"] if quiet else []), *extra]


def _no_work_done(result: subprocess.CompletedProcess) -> None:
    """A predict run (without --quiet) stopped before decoding or predicting: no progress bar, no result."""
    assert "%|" not in result.stderr and "img/s" not in result.stderr, f"worked before failing:\n{result.stderr}"
    assert "\t" not in result.stdout, f"predicted before failing:\n{result.stdout}"


def _copy_model(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".train.lock", ".files.lock"))
    return dest


def _edit_setting(model_dir: Path, **changes) -> None:
    setting = json.loads((model_dir / "setting.json").read_text())
    setting.update(changes)
    (model_dir / "setting.json").write_text(json.dumps(setting))


def _history(model_dir: Path) -> list[dict[str, str]]:
    path = model_dir / "history.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _save_png(array: np.ndarray, path: str | bytes) -> None:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    with open(path, "wb") as handle:  # open() takes bytes paths (non-UTF-8 names)
        handle.write(buffer.getvalue())


def _h5_finite(path: str | Path) -> bool:
    """Every float dataset of an HDF5 file is finite."""
    bad = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f" and not np.all(np.isfinite(obj[()])):
            bad.append(name)

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return not bad


def _names_folder(text: str, folder: str) -> bool:
    """``text`` names ``folder`` as a folder (not only as the start of file paths under it)."""
    return re.search(re.escape(folder.rstrip("/")) + r"(?![/\w.-])", text) is not None


def _mount_tmpfs(mount_point: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size``; the reason when it cannot be mounted here."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    return None if mounted.returncode == 0 else (mounted.stderr.strip() or "mount failed")


# ---- data and a reference model, once per module -----------------------------------------------

@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """``train/`` and ``test/`` with 3 classes of real MNIST PNGs, and ``tmp/`` with one test image per class."""
    root = tmp_path_factory.mktemp("tree")
    for split, count in (("train", PER_CLASS), ("test", 30)):
        images, labels = load_split(MNIST, split)
        for name in CLASSES:
            (root / split / name).mkdir(parents=True)
            for i in np.flatnonzero(labels == int(name))[:count]:
                _save_png(images[i], str(root / split / name / f"{i}.png"))
    (root / "tmp").mkdir()
    for name in CLASSES:
        first = sorted((root / "test" / name).iterdir())[0]
        shutil.copy(first, root / "tmp" / f"{name}_{first.name}")
    return root


@pytest.fixture(scope="module")
def base_model(tree, tmp_path_factory) -> Path:
    """The reference model, 1 epoch on ``tree`` (setting.json, best.weights.h5, last.keras, history.csv)."""
    model_dir = tmp_path_factory.mktemp("base") / "m"
    _ok(_run(*_train_args(tree, model_dir, "--epochs", "1")))
    return model_dir


# ---- 1. resume guards ----------------------------------------------------------------------------

RESUME_CHANGES = {
    "batch_size": ("--batch-size", "64"),
    "model": ("--model", "mlp"),
    "image_height": ("--image-height", "32"),
    "seed": ("--seed", "7"),
    "validation_split": ("--validation-split", "0.3"),
}


def test_resume_refuses_changed_settings_and_keeps_the_files(tree, base_model, tmp_path):
    guarded = ("setting.json", "history.csv", "best.weights.h5")
    before = {name: (base_model / name).read_bytes() for name in guarded}
    dirs = {name: _copy_model(base_model, tmp_path / name) for name in RESUME_CHANGES}
    results = _run_many([_train_args(tree, dirs[name], "--epochs", "2", "--resume", *flag)
                         for name, flag in RESUME_CHANGES.items()])
    for (name, _), result in zip(RESUME_CHANGES.items(), results):
        line = _error_line(result)
        assert "--resume cannot change" in line and f"{name}=" in line, (name, line)
        for file in guarded:
            assert (dirs[name] / file).read_bytes() == before[file], f"--resume with a changed {name} rewrote {file}"


def test_resume_applies_a_new_learning_rate_to_the_next_epoch_only(second_runs, base_model):
    case = second_runs["resume"]  # --resume --epochs 2 --learning-rate 0.0005 after 1 epoch at 0.002
    model_dir, result = case["model_dir"], _ok(case["result"])
    assert "resuming with" in result.stdout and "learning_rate=0.0005" in result.stdout, result.stdout
    assert "resuming after epoch 1" in result.stdout, result.stdout
    assert len(re.findall(r"^\d+/\d+ - ", result.stdout, re.M)) == 1, result.stdout  # one epoch trained
    rows = _history(model_dir)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert rows[0] == _history(base_model)[0]  # epoch 1 kept as it was
    assert json.loads((model_dir / "setting.json").read_text())["learning_rate"] == pytest.approx(0.0005)
    with zipfile.ZipFile(model_dir / "last.keras") as archive:  # the rate the optimizer really used
        optimizer = json.loads(archive.read("config.json"))["compile_config"]["optimizer"]["config"]
    assert optimizer["learning_rate"] == pytest.approx(0.0005, rel=1e-5)


# ---- 2. a killed retrain keeps the previous model ------------------------------------------------

def test_retrain_killed_in_its_first_epoch_keeps_the_previous_model(tree, base_model, tmp_path):
    model_dir = _copy_model(base_model, tmp_path / "m")
    guarded = ("setting.json", "best.weights.h5", "class_names.json")
    before = {name: (model_dir / name).read_bytes() for name in guarded}
    staging = model_dir / ".staging"
    process = _start(*_train_args(tree, model_dir, "--epochs", "1", "--seed", "11"))
    _wait_for(lambda: (staging / "setting.json").exists(), process)
    _kill(process)
    assert not (staging / "last.keras").exists(), "killed too late: the first epoch was already saved"
    for name in guarded:
        assert (model_dir / name).read_bytes() == before[name], f"the killed retrain changed {name}"
    predict, evaluate = _run_many([_predict_args(model_dir, "--data-dir", str(tree)),
                                   [CLI, "--mode", "evaluate", "--model-dir", str(model_dir),
                                    "--data-dir", str(tree), "--quiet"]])
    _ok(predict)
    _ok(evaluate)


def test_a_complete_retrain_replaces_the_model_and_its_staging_folder(second_runs, base_model):
    case = second_runs["fresh"]  # a fresh --seed 11 run over a model and a killed run's .staging
    model_dir = case["model_dir"]
    _ok(case["result"])
    assert not (model_dir / ".staging").exists()
    assert [row["epoch"] for row in _history(model_dir)] == ["1"]
    assert (model_dir / "history.csv").read_bytes() != (base_model / "history.csv").read_bytes()
    assert json.loads((model_dir / "setting.json").read_text())["seed"] == 11


# ---- 3. one training run per model directory; readers never see a half-replaced model ----------

def test_second_training_run_is_refused_and_predict_keeps_working(tree, base_model, tmp_path):
    model_dir = _copy_model(base_model, tmp_path / "m")
    staging = model_dir / ".staging"
    # A retrain with another model: weights and setting.json of different runs cannot fit together.
    first = _start(*_train_args(tree, model_dir, "--epochs", "300", "--model", "mlp"))  # killed once checked
    try:
        _wait_for(lambda: (staging / "setting.json").exists(), first)
        second, predict = _run_many([_train_args(tree, model_dir, "--epochs", "1"),
                                     _predict_args(model_dir, "--data-dir", str(tree))])
        assert first.poll() is None, f"the first run ended early: {first.communicate()}"
        line = _error_line(second)
        assert f"in use by another training run (PID {first.pid})" in line, line
        runs = [predict]
        # Predict on through the moment the new model replaces the previous one, and once after.
        while staging.exists() or len(runs) < 2:
            assert first.poll() is None, f"the first run ended early: {first.communicate()}"
            runs.append(_run(*_predict_args(model_dir, "--data-dir", str(tree))))
        runs.append(_run(*_predict_args(model_dir, "--data-dir", str(tree))))
        for result in runs:
            assert "does not fit" not in result.stderr, _failure(result)
            # A reader that started on the previous model may be told to run again; nothing else.
            assert result.returncode == 0 or "run the command again" in _error_line(result), _failure(result)
        assert runs[-1].returncode == 0, _failure(runs[-1])
        assert first.poll() is None
    finally:
        if first.poll() is None:
            _kill(first)
    assert json.loads((model_dir / "setting.json").read_text())["model"] == "mlp"  # the new model is current


# ---- predict-only cases, run side by side ---------------------------------------------------------

def _tiff_with_text_strip_offsets(array: np.ndarray) -> bytes:
    """A TIFF whose StripOffsets tag is typed ASCII: Pillow raises TypeError loading it."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    ifd = struct.unpack_from("<I", data, 4)[0]
    for k in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * k
        if struct.unpack_from("<H", data, entry)[0] == 273:  # StripOffsets
            struct.pack_into("<H", data, entry + 2, 2)  # type ASCII
    return bytes(data)


def _orientation_showing_upright(upright: Image.Image, stored: Image.Image) -> int:
    """The EXIF Orientation value that makes ``ImageOps.exif_transpose(stored)`` equal ``upright``."""
    for tag in (6, 8):
        image = stored.copy()
        exif = image.getexif()
        exif[0x0112] = tag
        buffer = io.BytesIO()
        image.save(buffer, "PNG", exif=exif)  # lossless, to compare pixels exactly
        with Image.open(buffer) as back:
            if np.array_equal(np.asarray(ImageOps.exif_transpose(back)), np.asarray(upright)):
                return tag
    raise AssertionError("no EXIF orientation shows the image upright")


CSV_NAMES = ["=zero", "a;b:c", "-seven"]  # new labels of classes 0, 1, 7


@pytest.fixture(scope="module")
def predict_runs(tree, base_model, tmp_path_factory):
    """Each predict-only case's inputs and run: ``{case: {"result": ..., paths...}}``."""
    root = tmp_path_factory.mktemp("predict")
    samples = sorted((tree / "tmp").iterdir())
    cases: dict[str, dict] = {}

    # 5. a FIFO among the images
    folder = root / "fifo"
    shutil.copytree(tree / "tmp", folder)
    os.mkfifo(folder / "pipe.png")
    cases["fifo"] = dict(folder=folder, output=root / "fifo.csv", timeout=120)

    # 6. a file name that is not UTF-8
    folder = root / "nonutf8"
    folder.mkdir()
    with open(os.path.join(os.fsencode(folder), b"\xff.png"), "wb") as handle:
        handle.write(samples[2].read_bytes())
    cases["nonutf8"] = dict(folder=folder, output=root / "nonutf8.csv")

    # 7. a carriage return in a file name; class names a spreadsheet would run, or with ; and :
    model_dir = _copy_model(base_model, root / "csv_model")
    (model_dir / "class_names.json").write_text(json.dumps(CSV_NAMES))
    _edit_setting(model_dir, class_names=CSV_NAMES)
    folder = root / "csv"
    folder.mkdir()
    shutil.copy(samples[0], folder / "carriage\rreturn.png")
    shutil.copy(samples[1], folder / "plain.png")
    cases["csv"] = dict(folder=folder, output=root / "csv.csv", model_dir=model_dir)

    # 8. sideways JPEGs with an EXIF orientation, their upright copies, and untagged sideways copies
    images, labels = load_split(MNIST, "test")
    folder = root / "exif"
    folder.mkdir()
    keys = []
    for digit in (1, 7):
        for k, i in enumerate(np.flatnonzero(labels == digit)[100:103]):
            upright = Image.fromarray(images[i]).convert("RGB").resize((96, 96), Image.Resampling.BILINEAR)
            stored = upright.rotate(90, expand=True)  # as a phone stores a sideways shot
            exif = stored.getexif()
            exif[0x0112] = _orientation_showing_upright(upright, stored)
            key = f"{digit}_{k}"
            upright.save(folder / f"up_{key}.jpg", "JPEG", quality=100)
            stored.save(folder / f"exif_{key}.jpg", "JPEG", quality=100, exif=exif)
            stored.save(folder / f"raw_{key}.jpg", "JPEG", quality=100)  # no tag: shown sideways
            keys.append(key)
    cases["exif"] = dict(folder=folder, output=root / "exif.csv", keys=keys)

    # 11. setting.json chooses the folder to read
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(samples[0], elsewhere / "x.png")
    for case, target in (("etc", "/etc"), ("elsewhere", str(elsewhere))):
        model_dir = _copy_model(base_model, root / f"{case}_model")
        _edit_setting(model_dir, predict_dir=target)
        cases[case] = dict(folder=None, output=root / f"{case}.csv", model_dir=model_dir)

    # 12. --output under a regular file
    blocker = root / "file"
    blocker.write_text("a file where a folder should be")
    cases["blocked"] = dict(folder=tree / "tmp", output=blocker / "sub" / "out.csv", blocker=blocker, quiet=False)

    # smaller: one file as --input, a 244-character --output name
    cases["single"] = dict(folder=samples[0], output=root / ("p" * 240 + ".csv"))

    # a TIFF on which Pillow raises TypeError (not OSError): skipped like any unreadable file
    folder = root / "odd"
    folder.mkdir()
    shutil.copy(samples[0], folder / "good.png")
    (folder / "odd.tif").write_bytes(_tiff_with_text_strip_offsets(images[0]))
    logs = root / "logs"
    logs.mkdir()
    cases["odd_tiff"] = dict(folder=folder, output=root / "odd.csv", logs=logs, env=_env(TMPDIR=str(logs)))

    # smaller: predict | head -1, with 1,500 images (more output than a pipe holds)
    folder = root / "many"
    folder.mkdir()
    for i in range(1500):
        os.link(samples[0], folder / f"{'n' * 80}_{i:04d}.png")
    cases["head"] = dict(folder=folder, output=root / "many.csv",
                         prefix=("bash", "-c", 'set +o pipefail; "$@" | head -1; echo "status=${PIPESTATUS[0]}" >&2',
                                 "bash"))

    # 12. a read-only model directory (a tmpfs remounted read-only): the default CSV path is in it
    read_only = root / "ro"
    mount_error = _mount_tmpfs(read_only, "64m")
    if mount_error is None:
        model_dir = _copy_model(base_model, read_only / "m")
        remount = subprocess.run(["mount", "-o", "remount,ro", str(read_only)], capture_output=True, text=True)
        if remount.returncode == 0:
            cases["read_only"] = dict(folder=tree / "tmp", output=None, model_dir=model_dir, quiet=False)
        else:
            mount_error = remount.stderr.strip() or "remount failed"
    cases["read_only_error"] = mount_error

    jobs, runs = [], [case for case in cases.values() if isinstance(case, dict)]
    for case in runs:
        output = ["--output", str(case["output"])] if case["output"] else []
        args = _predict_args(case.get("model_dir", base_model), *output, quiet=case.get("quiet", True))
        if case["folder"] is not None:
            args += ["--input", str(case["folder"])]
        jobs.append((args, {key: case[key] for key in ("timeout", "env", "prefix") if key in case}))
    try:
        for case, result in zip(runs, _run_many(jobs)):
            case["result"] = result
        yield cases
    finally:
        if (read_only / "m").exists() or mount_error is None:
            subprocess.run(["umount", str(read_only)], capture_output=True, check=False)


def test_fifo_in_the_predict_folder_is_not_read(predict_runs):
    case = predict_runs["fifo"]
    _ok(case["result"])
    paths = [row["path"] for row in _csv_rows(case["output"])]
    assert len(paths) == len(CLASSES) and not any(path.endswith("pipe.png") for path in paths), paths
    assert "pipe.png\t" not in case["result"].stdout


def test_non_utf8_file_name_is_predicted_and_escaped(predict_runs):
    case = predict_runs["nonutf8"]
    result = _ok(case["result"])
    assert "\\xff.png" in result.stdout, result.stdout
    assert [row["path"] for row in _csv_rows(case["output"])] == [f"{case['folder']}/\\xff.png"]


def test_predictions_csv_keeps_rows_defuses_formulas_and_splits_top_k(predict_runs):
    case = predict_runs["csv"]
    _ok(case["result"])
    with open(case["output"], newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert reader.fieldnames == ["path", "class", "confidence", "top2", "top2_confidence", "top3", "top3_confidence"]
    folder = case["folder"]
    assert sorted(row["path"] for row in rows) == sorted([str(folder / "carriage\rreturn.png"), str(folder / "plain.png")])
    for row in rows:
        assert {row["class"], row["top2"], row["top3"]} == {"'=zero", "a;b:c", "'-seven"}, row
        total = sum(float(row[key]) for key in ("confidence", "top2_confidence", "top3_confidence"))
        assert total == pytest.approx(1.0, abs=1e-4)


def test_exif_orientation_is_applied(predict_runs):
    case = predict_runs["exif"]
    _ok(case["result"])
    predicted = {Path(row["path"]).stem: row["class"] for row in _csv_rows(case["output"])}
    assert any(predicted[f"raw_{key}"] != predicted[f"up_{key}"] for key in case["keys"]), \
        f"sideways images are predicted like upright ones even untagged: this test cannot tell ({predicted})"
    for key in case["keys"]:
        assert predicted[f"exif_{key}"] == predicted[f"up_{key}"], (key, predicted)


def test_predict_names_the_folder_a_saved_setting_points_to(predict_runs):
    etc = predict_runs["etc"]["result"]
    # Exit 1 when no file there is an image (this machine's /etc), else 0 with every row read from /etc.
    if etc.returncode == 1:
        assert "no images to predict in /etc (" in etc.stdout, _failure(etc)
    else:
        _ok(etc)
        rows = _csv_rows(predict_runs["etc"]["output"])
        assert rows and all(row["path"].startswith("/etc/") for row in rows), rows
    assert "Traceback" not in etc.stderr, _failure(etc)
    assert _names_folder(etc.stdout + etc.stderr, "/etc"), "no line says /etc is the folder being read"
    case = predict_runs["elsewhere"]
    result = _ok(case["result"])
    read = {str(Path(row["path"]).parent) for row in _csv_rows(case["output"])}
    assert len(read) == 1, read
    folder = read.pop()
    assert _names_folder(result.stdout + result.stderr, folder), \
        f"nothing says that {folder} (from setting.json) is the folder being read:\n{result.stdout}{result.stderr}"


def test_output_whose_folder_cannot_be_created_fails_first(predict_runs):
    case = predict_runs["blocked"]
    line = _error_line(case["result"])
    assert str(case["blocker"]) in line, line
    _no_work_done(case["result"])


def test_single_file_input_and_a_244_character_output_name(predict_runs):
    case = predict_runs["single"]
    result = _ok(case["result"])
    assert len(case["output"].name) == 244
    assert [row["path"] for row in _csv_rows(case["output"])] == [str(case["folder"])]
    assert result.stdout.count("\t") == 2  # one prediction line: path, class, confidence


def test_a_tiff_pillow_chokes_on_is_skipped_not_fatal(predict_runs):
    case = predict_runs["odd_tiff"]
    result = _ok(case["result"])
    assert f"skipped {case['folder'] / 'odd.tif'}: corrupt image (TypeError" in result.stderr
    assert [row["path"] for row in _csv_rows(case["output"])] == [str(case["folder"] / "good.png")]
    assert not list(case["logs"].iterdir())  # no internal-error log


def test_internal_error_is_one_line_naming_the_log(tmp_path, monkeypatch, capsys):
    # No input of a user's should reach this path any more, so the bug is planted: a main that divides by zero.
    from mnist_folders.commands import cli

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(SystemExit) as exited:
        cli.run(lambda: 1 // 0)
    assert exited.value.code == 3
    line = capsys.readouterr().err
    assert line.count("\n") == 1, line
    found = re.fullmatch(r"internal error: ZeroDivisionError: .*\(traceback in (.+?\.log); please report it\)\n", line)
    assert found, line
    log = Path(found.group(1))
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "1 // 0" in log.read_text()


def test_read_only_model_dir_fails_before_predicting(predict_runs):
    if "read_only" not in predict_runs:
        pytest.skip(f"cannot mount a read-only tmpfs here: {predict_runs['read_only_error']}")
    case = predict_runs["read_only"]
    line = _error_line(case["result"])
    assert str(case["model_dir"]) in line, line
    _no_work_done(case["result"])


def test_predict_into_head_stops_quietly(predict_runs):
    result = predict_runs["head"]["result"]
    assert len(result.stdout.splitlines()) == 1, result.stdout[:500]
    assert "Broken pipe" not in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    status = int(re.search(r"status=(\d+)", result.stderr).group(1))
    assert status in (0, 141), result.stderr[-2000:]


# ---- train-only cases, run side by side -----------------------------------------------------------

@pytest.fixture(scope="module")
def train_runs(tree, tmp_path_factory):
    """Each train-only case's model directory and run: ``{case: {"result": ..., paths...}}``."""
    root = tmp_path_factory.mktemp("train")
    cases: dict[str, dict] = {}

    # 4. disk full: --model-dir on a 3 MB tmpfs (a checkpoint is ~8 MB); the system temp folder watched
    small = root / "small"
    reason = _mount_tmpfs(small, "3m")
    if reason is None:
        cases["disk_full"] = dict(model_dir=small / "m", tmp=root / "tmp_disk_full")
    # 4. the write itself fails midway: file size limit 4 MiB (EFBIG), the disk-space pre-check passes
    cases["file_too_large"] = dict(model_dir=root / "fsize", tmp=root / "tmp_fsize",
                                   prefix=("bash", "-c", 'ulimit -f 4096 && exec "$@"', "bash"))

    # 5. a FIFO in a class folder
    (root / "fifo").mkdir()
    shutil.copytree(tree / "train", root / "fifo" / "train")
    os.mkfifo(root / "fifo" / "train" / "0" / "pipe.png")
    cases["fifo"] = dict(data_dir=root / "fifo", model_dir=root / "fifo_m", timeout=120)

    # 6. a class folder whose name is not UTF-8
    train = os.fsencode(root / "caf" / "train")
    for source, name in (("0", b"caf\xe9"), ("1", b"1")):
        os.makedirs(os.path.join(train, name))
        for path in sorted((tree / "train" / source).iterdir()):
            with open(os.path.join(train, name, os.fsencode(path.name)), "wb") as handle:
                handle.write(path.read_bytes())
    cases["caf"] = dict(data_dir=root / "caf", model_dir=root / "caf_m", timeout=120)

    # 9. a learning rate that makes the loss diverge
    cases["diverge"] = dict(model_dir=root / "diverge", extra=("--optimizer", "sgd", "--learning-rate", "1e8",
                                                                "--epochs", "2"))
    # 9, 10. values refused before any work
    for name, extra in (("lr_nan", ("--learning-rate", "nan")), ("lr_inf", ("--learning-rate", "inf")),
                        ("seed_negative", ("--seed", "-1")), ("seed_huge", ("--seed", "99999999999"))):
        cases[name] = dict(model_dir=root / name, extra=extra)

    jobs = []
    for case in cases.values():
        args = _train_args(case.get("data_dir", tree), case["model_dir"], "--epochs", "1", *case.get("extra", ()))
        options = {key: case[key] for key in ("timeout", "prefix") if key in case}
        if "tmp" in case:
            case["tmp"].mkdir()
            options["env"] = _env(TMPDIR=str(case["tmp"]))
        jobs.append((args, options))
    try:
        for case, result in zip(cases.values(), _run_many(jobs)):
            case["result"] = result
        cases["small_mount_error"] = reason
        yield cases
    finally:
        if reason is None:
            subprocess.run(["umount", str(small)], check=False)


def test_disk_full_is_one_line_without_crash_or_leftovers(train_runs):
    if "disk_full" not in train_runs:
        pytest.skip(f"cannot mount a tmpfs here: {train_runs['small_mount_error']}")
    case = train_runs["disk_full"]
    result = case["result"]
    assert result.returncode is not None and result.returncode >= 0 and result.returncode != 139, _failure(result)
    assert "disk full" in _error_line(result)
    assert not list(case["model_dir"].parent.rglob(".*.tmp*"))
    assert not list(case["tmp"].iterdir()), "a failed save left files in the system temp folder"


def test_a_checkpoint_write_that_fails_midway_is_one_line(train_runs):
    case = train_runs["file_too_large"]
    result = case["result"]
    assert result.returncode is not None and result.returncode >= 0 and result.returncode != 139, _failure(result)
    line = _error_line(result)
    assert ".tmp" not in line, f"names the hidden temporary file, not the checkpoint: {line}"
    assert "best.weights.h5" in line or "last.keras" in line, line
    assert not list(case["model_dir"].rglob(".*.tmp*"))
    assert not list(case["tmp"].iterdir()), "a failed save left files in the system temp folder"


def test_fifo_in_a_class_folder_does_not_hang_training(train_runs):
    _ok(train_runs["fifo"]["result"])


def test_non_utf8_class_folder_trains_and_predicts(train_runs, tree, tmp_path):
    case = train_runs["caf"]
    _ok(case["result"])
    output = tmp_path / "p.csv"
    _ok(_run(*_predict_args(case["model_dir"], "--input", str(tree / "tmp"), "--output", str(output))))
    rows = _csv_rows(output)
    names = {row["class"] for row in rows} | {row["top2"] for row in rows}
    assert len(names) == 2 and "1" in names and any(name.startswith("caf") for name in names), rows
    # Exported (labels.txt keeps the name's bytes), the ONNX runtime gives the same rows.
    _ok(_run(CLI, "--mode", "export", "--model-dir", str(case["model_dir"]), "--format", "onnx"))
    assert (case["model_dir"] / "export" / "labels.txt").read_bytes().splitlines() == [b"1", b"caf\xe9"]
    _ok(_run(*_predict_args(case["model_dir"], "--input", str(tree / "tmp"), "--output", str(tmp_path / "o.csv"),
                            "--runtime", "onnx")))
    onnx_rows = _csv_rows(tmp_path / "o.csv")
    assert [(r["path"], r["class"], r["top2"]) for r in onnx_rows] == [(r["path"], r["class"], r["top2"]) for r in rows]


@pytest.mark.parametrize("case", ["lr_nan", "lr_inf"])
def test_non_finite_learning_rate_is_refused(case, train_runs):
    assert "learning_rate" in _error_line(train_runs[case]["result"])


def test_diverging_training_stops_and_keeps_no_nan_checkpoint(train_runs, tmp_path):
    model_dir = train_runs["diverge"]["model_dir"]
    assert "diverged" in _error_line(train_runs["diverge"]["result"])
    best = model_dir / "best.json"
    assert not best.exists() or math.isfinite(json.loads(best.read_text())["val_accuracy"])
    weights = model_dir / "best.weights.h5"
    assert not weights.exists() or _h5_finite(weights)
    last = model_dir / "last.keras"
    if last.exists():
        with zipfile.ZipFile(last) as archive:
            archive.extract("model.weights.h5", tmp_path)
        assert _h5_finite(tmp_path / "model.weights.h5")


# ---- 10. one error line, no traceback ------------------------------------------------------------

@pytest.mark.parametrize("case", ["seed_negative", "seed_huge"])
def test_bad_seed_is_one_line(case, train_runs):
    assert "seed" in _error_line(train_runs[case]["result"])


def test_too_small_image_names_the_smallest_size_cheaply(tree, tmp_path):
    """One error line, and finding the smallest size must not cost more than a training run (peak memory)."""
    gnu_time = shutil.which("time", path="/usr/bin")
    peak = tmp_path / "peak_kb"
    result = _run(*_train_args(tree, tmp_path / "m", "--epochs", "1", "--image-height", "5", "--image-width", "5"),
                  timeout=120, prefix=(gnu_time, "-o", str(peak), "-f", "%M") if gnu_time else ())
    line = _error_line(result)
    smallest = re.search(r"smallest\D*(\d+)x(\d+)", line)
    assert smallest and int(smallest.group(1)) > 5, line
    if gnu_time:
        peak_gib = int(peak.read_text().split()[-1]) / 2**20
        assert peak_gib < 3, f"the refusal peaked at {peak_gib:.1f} GiB of memory"


CORRUPTIONS = {"best.json": "{}", "dataset.json": "[]", "history.csv": "abc"}


def test_corrupt_model_files_are_one_line(tree, base_model, tmp_path):
    """--resume reads each file (one run per corrupt file); predict and evaluate see all three corrupt at once."""
    cases, jobs = [], []
    for file in CORRUPTIONS:
        model_dir = _copy_model(base_model, tmp_path / f"resume-{file}")
        (model_dir / file).write_text(CORRUPTIONS[file])
        cases.append((f"--resume with {file}={CORRUPTIONS[file]!r}", file != "dataset.json"))  # dataset.json is rewritten
        jobs.append(_train_args(tree, model_dir, "--epochs", "1", "--resume"))  # nothing left to train
    for mode in ("predict", "evaluate"):
        model_dir = _copy_model(base_model, tmp_path / mode)
        for file, content in CORRUPTIONS.items():
            (model_dir / file).write_text(content)
        cases.append((f"{mode} with all three corrupt", mode == "predict"))  # predict reads dataset.json
        jobs.append([CLI, "--mode", mode, "--model-dir", str(model_dir), "--data-dir", str(tree), "--quiet"])
    problems = []
    for (what, must_refuse), result in zip(cases, _run_many(jobs)):
        lines = result.stderr.strip().splitlines()
        if "Traceback" in result.stderr or result.returncode not in (0, 2):
            problems.append(f"{what}: exit {result.returncode}: {result.stderr[-600:]}")
        elif result.returncode == 2 and (len(lines) != 1 or not any(f in lines[0] for f in CORRUPTIONS)):
            problems.append(f"{what}: not one line naming the file: {lines}")
        elif must_refuse and result.returncode != 2:
            problems.append(f"{what}: accepted (exit 0)")
    assert not problems, "\n".join(problems)


# ---- 13. temporaries left by a kill during a checkpoint save ------------------------------------

LEFTOVERS = (".last.keras.k3j4h5q1.tmp.keras", ".best.weights.h5.a8b7c6d5.tmp.weights.h5")
LEGACY_LEFTOVERS = (".last.keras.x1y2z3w4.keras", ".best.weights.h5.q9w8e7r6.weights.h5")  # as named in the issue


@pytest.fixture(scope="module")
def second_runs(tree, base_model, tmp_path_factory) -> dict:
    """Copies of the base model seeded with a killed writer's temporaries, then run again side by side:
    ``resume`` (--resume --epochs 2 --learning-rate 0.0005) and ``fresh`` (a complete retrain, --seed 11,
    over the ``.staging`` folder of a retrain killed in its first epoch)."""
    root = tmp_path_factory.mktemp("second")
    cases = {
        "resume": dict(model_dir=_copy_model(base_model, root / "resume"),
                       extra=("--epochs", "2", "--resume", "--learning-rate", "0.0005")),
        "fresh": dict(model_dir=_copy_model(base_model, root / "fresh"), extra=("--epochs", "1", "--seed", "11")),
    }
    for case in cases.values():
        for name in LEFTOVERS + LEGACY_LEFTOVERS:
            (case["model_dir"] / name).write_bytes(b"half a checkpoint")
    (cases["fresh"]["model_dir"] / ".staging").mkdir()
    shutil.copy(base_model / "setting.json", cases["fresh"]["model_dir"] / ".staging" / "setting.json")
    results = _run_many([_train_args(tree, case["model_dir"], *case["extra"]) for case in cases.values()])
    for case, result in zip(cases.values(), results):
        case["result"] = result
    return cases


@pytest.mark.parametrize("run", ["resume", "fresh"])
def test_checkpoint_temporaries_are_removed_by_the_next_run(run, second_runs):
    _ok(second_runs[run]["result"])
    left = [name for name in LEFTOVERS if (second_runs[run]["model_dir"] / name).exists()]
    assert not left, f"after {run}: {left}"


@pytest.mark.parametrize("run", ["resume", "fresh"])
def test_legacy_checkpoint_temporaries_are_removed_by_the_next_run(run, second_runs):
    _ok(second_runs[run]["result"])
    left = [name for name in LEGACY_LEFTOVERS if (second_runs[run]["model_dir"] / name).exists()]
    assert not left, f"after {run}: {left}"


# ---- smaller items --------------------------------------------------------------------------------

def test_export_workers_are_capped_at_the_cores(tmp_path):
    # parse_mnist.py run with its process pool counted where it is made (polling /proc could miss workers).
    counting = ("import runpy, sys, concurrent.futures\n"
                "import mnist_folders.data.export as export\n"
                "asked = []\n"
                "class Counted(concurrent.futures.ProcessPoolExecutor):\n"
                "    def __init__(self, max_workers=None, **options):\n"
                "        asked.append(max_workers)\n"
                "        super().__init__(max_workers, **options)\n"
                "export.ProcessPoolExecutor = Counted\n"
                "sys.argv = sys.argv[1:]\n"
                "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
                "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
                "print('pools', asked)\n")
    result = _ok(_run("-c", counting, EXPORT, "--workers", "200", "--limit", "50", "--out", str(tmp_path / "out"),
                      "--quiet"))
    assert len(list((tmp_path / "out" / "train").rglob("*.png"))) == 50
    cores = len(os.sched_getaffinity(0))
    pools = result.stdout.strip().splitlines()[-1]
    assert pools == f"pools {[cores, cores] if cores > 1 else []}", pools  # train and test: one pool each
