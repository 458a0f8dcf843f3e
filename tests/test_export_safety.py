"""Export and the inference runtimes under hostile conditions: a class name
no file can carry, damaged or swapped artifacts, an export killed between two of its files, what a killed
export leaves behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from test_nothing_escapes import _one_line_refusal

CLI = str(REPO / "mnist_keras.py")


@pytest.fixture
def model_dir(exported, tmp_path) -> Path:
    """A private copy of the exported fixture model (every format)."""
    copy = tmp_path / "m"
    shutil.copytree(exported, copy)
    return copy


def test_an_export_killed_mid_savedmodel_does_not_block_the_next_export(model_dir):
    # L2: a kill while the SavedModel was written left export/.saved_model.tmp/ (a folder): every later export
    # stopped on "error: .../.saved_model.tmp: Is a directory", and the stale temporaries stayed.
    export = model_dir / "export"
    (export / ".saved_model.tmp" / "variables").mkdir(parents=True)
    (export / ".saved_model.tmp" / "saved_model.pb").write_bytes(b"half a graph")
    (export / ".labels.txt.k3j4h5.tmp").write_text("0\n1\n")
    (export / ".model.onnx.a8b7c6.tmp.onnx").write_bytes(b"\x08\x07")
    (export / ".notes.tmp").write_text("not ours")  # a file no export writes is left alone
    result = run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "onnx", check=False)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in export.iterdir() if p.name.startswith(".")) == [".notes.tmp"]


def test_a_class_name_no_file_can_carry_is_refused_before_anything_is_written(model_dir, small_data, tmp_path):
    # M3: a hand-edited class_names.json holding a lone surrogate ("\ud800": valid JSON, no file name can
    # hold it) was an internal error (exit 3) in every mode.
    shutil.rmtree(model_dir / "export")
    names_file = model_dir / "class_names.json"
    names = json.loads(names_file.read_text())
    names_file.write_text(json.dumps([*names[:3], "x\ud800", *names[4:]]))
    result = run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "onnx", check=False)
    _one_line_refusal(result, str(names_file), "unpaired surrogate")
    assert not (model_dir / "export").exists()
    predicted = run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(small_data / "tmp"),
                        "--output", str(tmp_path / "p.csv"), "--runtime", "keras", check=False)
    _one_line_refusal(predicted, str(names_file), "unpaired surrogate")


def test_a_class_folder_name_that_is_not_utf8_is_exported_byte_for_byte(model_dir, small_data, tmp_path):
    # M3: a class folder named with undecodable bytes (b"caf\xe9", Python's "caf\udce9") is a file name: its
    # export writes labels.txt with those bytes, and the ONNX runtime gives the name back.
    shutil.rmtree(model_dir / "export")
    names_file = model_dir / "class_names.json"
    names = json.loads(names_file.read_text())
    names_file.write_text(json.dumps([*names[:3], "caf\udce9", *names[4:]]))
    run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "onnx")
    assert sorted(p.name for p in (model_dir / "export").iterdir()) == ["labels.txt", "model.onnx",
                                                                        "preprocessing.json"]
    assert (model_dir / "export" / "labels.txt").read_bytes().splitlines()[3] == b"caf\xe9"
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(small_data / "tmp"),
                     "--output", str(tmp_path / "p.csv"), "--runtime", "onnx", "--quiet")
    assert "caf\\xe9" in result.stdout  # printed as display() writes it


def _predict(model_dir: Path, small_data: Path, output: Path, *args: str):
    return run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(small_data / "tmp"),
                   "--output", str(output), "--quiet", *args, check=False)


@pytest.mark.parametrize("damage", ["not an object", "shape of text", "no labels", "no preprocessing"])
def test_a_damaged_export_description_is_one_line_and_auto_says_why_it_uses_keras(damage, model_dir, small_data,
                                                                                 tmp_path):
    # M5: preprocessing.json holding JSON that is not an object, or a shape of text, was an internal error
    # (AttributeError, TypeError: exit 3) in every runtime; a model.onnx without its labels.txt or preprocessing.json (the first export of a model
    # cut short) made runtime auto use Keras without a word.
    export = model_dir / "export"
    damaged = export / ("labels.txt" if damage == "no labels" else "preprocessing.json")
    if damage == "not an object":
        damaged.write_text("[1, 2]")
    elif damage == "shape of text":  # was a TypeError (exit 3) as the runtime was tried on a black image
        description = json.loads(damaged.read_text())
        damaged.write_text(json.dumps({**description, "input": {**description["input"], "shape": [None, "x"]}}))
    else:
        damaged.unlink()
    refused = _predict(model_dir, small_data, tmp_path / "onnx.csv", "--runtime", "onnx")
    _one_line_refusal(refused, str(damaged), "run --mode export again, or predict with --runtime keras")
    assert not (tmp_path / "onnx.csv").exists()
    auto = _predict(model_dir, small_data, tmp_path / "auto.csv")
    assert auto.returncode == 0 and "10 predicted" in auto.stdout and "(runtime keras)" in auto.stdout
    assert auto.stderr.count("\n") == 1 and str(damaged) in auto.stderr, auto.stderr
    assert auto.stderr.rstrip().endswith("; predicting with Keras (run --mode export again)")


def test_a_keras_model_giving_nan_is_refused_not_served(trained_model, small_data, tmp_path):
    # L18: NaN in best.weights.h5 (the Keras runtime checks no digest: the weights are the model) answered
    # class 0 with confidence "nan" for every image.
    import h5py
    import numpy as np

    model_dir = tmp_path / "m"
    shutil.copytree(trained_model, model_dir, ignore=shutil.ignore_patterns("export"))
    with h5py.File(model_dir / "best.weights.h5", "r+") as weights:
        kernels = []
        weights.visititems(lambda name, item: kernels.append(item)
                           if isinstance(item, h5py.Dataset) and name.startswith("layers/") else None)
        kernels[-1][...] = np.nan
    result = _predict(model_dir, small_data, tmp_path / "p.csv", "--runtime", "keras")
    _one_line_refusal(result, str(model_dir / "best.weights.h5"),
                      "gives outputs that are not probabilities (NaN or infinite values)")
    assert not (tmp_path / "p.csv").exists()


def test_an_export_killed_between_any_two_of_its_file_writes_is_never_served_half_new(exported, model_dir,
                                                                                      small_data, tmp_path,
                                                                                      monkeypatch):
    # M6: SIGKILL of "export --invert true" between the model.onnx rename and preprocessing.json left the new
    # (inverting) graph beside the old preprocessing.json, whose weights digest still matched: the default
    # predict answered 0 of 10 samples right, silently. Here the model directory is copied after each change
    # the export makes to export/ (each file renamed into place or removed): each copy is the model directory
    # a kill at that point leaves. Each runtime either refuses it or predicts with one whole export.
    import numpy as np

    from mnist_folders.data.images import load_image
    from mnist_folders.errors import CheckpointError
    from mnist_folders.serve.runtime import ExportedModel

    export, states = model_dir / "export", []

    def after(change, moves: bool):
        def changed(path, *args, **kwargs):
            result = change(path, *args, **kwargs)
            target = Path(args[0] if moves else path)
            if target.parent == export and not target.name.startswith("."):  # not a temporary
                states.append(tmp_path / f"killed{len(states)}")
                # Hard links: the export replaces files by renames (new inodes), never rewrites one in place.
                shutil.copytree(model_dir, states[-1], ignore=shutil.ignore_patterns(".saved_model.tmp"),
                                copy_function=os.link)
            return result
        return changed

    for owner, name in ((os, "replace"), (Path, "rename"), (Path, "unlink"), (shutil, "rmtree")):
        monkeypatch.setattr(owner, name, after(getattr(owner, name), moves=name in ("replace", "rename")))
    run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "savedmodel,tflite,onnx",
            "--invert", "true")
    monkeypatch.undo()
    # The old int8 file removed, 3 formats, labels.txt, preprocessing.json; the SavedModel's old folder removed.
    assert len(states) >= 7, [sorted(p.name for p in (s / "export").iterdir()) for s in states]
    # Every file of the export is recorded (the SavedModel was not: a half-new one was vouched for).
    manifest = json.loads((export / "preprocessing.json").read_text())
    assert sorted(manifest["artifacts_sha256"]) == sorted(p.name for p in export.iterdir()
                                                          if p.name != "preprocessing.json")
    from mnist_folders.serve.deploy import artifact_digest
    from mnist_folders.serve.runtime import vouched_export


    samples = sorted((small_data / "tmp").glob("sample_*.png"))
    images = np.stack([load_image(p, 28, 28, "grayscale", "stretch") for p in samples])
    labels = np.array([int(p.stem.split("_")[1]) for p in samples])
    old_savedmodel, new_savedmodel = (artifact_digest(d / "export" / "saved_model") for d in (exported, model_dir))
    for state in states:
        for runtime in ("onnx", "tflite", "tflite_int8"):
            try:
                exported = ExportedModel(state, runtime)
            except CheckpointError:
                continue  # refused: predict says so, and auto uses Keras
            given = 255 - images if exported.invert == "true" else images  # what this export was made for
            right = int((exported.predict(given).argmax(axis=1) == labels).sum())
            assert right >= 8, f"{state.name}, {runtime} (invert {exported.invert}): {right} of 10 right"
        try:
            preprocessing, _ = vouched_export(state, state / "export" / "saved_model")
        except CheckpointError:
            continue
        expected = old_savedmodel if preprocessing["invert"]["setting"] == "auto" else new_savedmodel
        assert artifact_digest(state / "export" / "saved_model") == expected, f"{state.name}: a SavedModel of " \
            "another export vouched for"
    default = _predict(states[-2], small_data, tmp_path / "p.csv")  # killed just before preprocessing.json
    assert default.returncode == 0 and "(runtime keras)" in default.stdout
    rows = (tmp_path / "p.csv").read_text().splitlines()[1:]
    assert sum(Path(row.split(",")[0]).stem == f"sample_{row.split(',')[1]}" for row in rows) >= 8


@pytest.mark.parametrize("full_at", ["labels.txt", "preprocessing.json"])
def test_a_disk_filling_up_as_the_export_is_committed_is_said_so(full_at, model_dir, monkeypatch):
    # L1: the disk filling up as labels.txt or preprocessing.json was written came out as
    # "error: .../export/.labels.txt.mtjy5tfr.tmp: No space left on device": a hidden temporary's name.
    import errno

    real = Path.write_bytes

    def fills_the_disk(self, data):
        if self.name.startswith(f".{full_at}."):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", fills_the_disk)
    result = run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "onnx", check=False)
    _one_line_refusal(result, "disk full while exporting; free space and export again", str(model_dir / "export"))
    assert ".tmp" not in result.stderr and not list((model_dir / "export").glob(".*"))


def test_a_second_export_of_one_model_at_once_is_refused(model_dir):
    # L2: two exports at once removed each other's files mid-write (the SavedModel staging folder, each other's
    # temporaries): "error: .../export/.saved_model.tmp: Is a directory". The export holds a lock (here held
    # as the first export would hold it) and a second one stops before touching export/.
    import fcntl

    from test_nothing_escapes import _snapshot

    before = _snapshot(model_dir / "export")
    with open(model_dir / ".export.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(f"{os.getpid()}\n")
        held.flush()
        result = run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "onnx", check=False)
    _one_line_refusal(result, f"another export of this model is running (PID {os.getpid()}); wait for it")
    assert _snapshot(model_dir / "export") == before
    run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "onnx")  # once it has finished


def test_the_server_answers_a_class_folder_name_that_is_not_utf8(model_dir, small_data, tmp_path):
    # M3 (serving): a class named b"caf\xe9" made every answer of that class, and /metadata, an HTTP 500
    # (UnicodeEncodeError in the JSON response); it is written as predict prints it, "caf\xe9".
    from test_serve import Server

    names_file = model_dir / "class_names.json"
    names = json.loads(names_file.read_text())
    names_file.write_text(json.dumps(["caf\udce9", *names[1:]]))
    run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "onnx")
    with Server(model_dir, tmp_path) as server:
        metadata = server.client.get("/metadata")
        assert metadata.status_code == 200 and metadata.json()["classes"][0] == "caf\\xe9", metadata.text
        zero = (small_data / "tmp" / "sample_0.png").read_bytes()
        response = server.client.post("/predict", files=[("file", ("zero.png", zero))])
        assert response.status_code == 200, response.text
        assert response.json()["predictions"][0]["class"] == "caf\\xe9"
        assert server.stop() == 0
