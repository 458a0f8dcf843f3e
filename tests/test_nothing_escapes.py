"""Defects of the second hostile probe: the high ones, a user's file truncated (H1), a user's folder
overwritten by a fresh training run (H2), class names from a model folder writing outside --sort-into (H3);
and medium and low ones (M1-M7, M10, L1-L5, L8, L14, L16-L18, L20)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURE_TRAINING, REPO, run_cli

CLI = str(REPO / "mnist_keras.py")


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file's bytes, the lock files aside (they hold the PID of the last process that locked)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


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


def _wrong_shape_onnx() -> bytes:
    """A valid ONNX graph named like ours but for 5x5 images and 1 output value."""
    from onnx import TensorProto, helper

    images = helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 5, 5, 1])
    probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 5, 5, 1])
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["probabilities"])], "g", [images],
                              [probabilities])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=9).SerializeToString()  # 9: what onnxruntime 1.31 loads


def _negative_onnx() -> bytes:
    """A valid ONNX graph with the export's input and output that gives minus the first 10 pixels."""
    from onnx import TensorProto, helper

    images = helper.make_tensor_value_info("images", TensorProto.UINT8, [None, 28, 28, 1])
    probabilities = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])
    constant = lambda name, values: helper.make_tensor(name, TensorProto.INT64, [len(values)], values)  # noqa: E731
    nodes = [helper.make_node("Cast", ["images"], ["x"], to=TensorProto.FLOAT),
             helper.make_node("Flatten", ["x"], ["flat"], axis=1),
             helper.make_node("Slice", ["flat", "starts", "ends", "axes"], ["first"]),
             helper.make_node("Neg", ["first"], ["probabilities"])]
    graph = helper.make_graph(nodes, "g", [images], [probabilities],
                              [constant("starts", [0]), constant("ends", [10]), constant("axes", [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=9).SerializeToString()  # 9: what onnxruntime 1.31 loads


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "wrong shape", "not probabilities"])
def test_a_damaged_onnx_export_is_one_line_and_auto_falls_back_to_keras(damage, exported, small_data, tmp_path):
    # M5: a current preprocessing.json (the weights' digest matches) beside a model.onnx that is not one,
    # recorded as if a broken exporter had written it (a file that differs from the record: the next test).
    model_dir = tmp_path / "m"
    shutil.copytree(exported, model_dir)
    onnx_file = model_dir / "export" / "model.onnx"
    damaged = {"garbage": lambda: b"\x08\x07 not a protobuf at all" * 50, "empty": lambda: b"",
               "truncated": lambda: onnx_file.read_bytes()[:5000], "wrong shape": _wrong_shape_onnx,
               "not probabilities": _negative_onnx}  # L18: a valid graph giving negative "probabilities"
    onnx_file.write_bytes(damaged[damage]())
    pre = model_dir / "export" / "preprocessing.json"
    description = json.loads(pre.read_text())
    description["artifacts_sha256"]["model.onnx"] = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    pre.write_text(json.dumps(description))
    predict = [CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(small_data / "tmp"),
               "--output", str(tmp_path / "p.csv")]
    reason = {"wrong shape": "takes [5, 5, 1] and gives 1 classes, where preprocessing.json says [28, 28, 1]",
              "not probabilities": "gives outputs that are not probabilities"}.get(damage,
                                                                                  "not a model onnxruntime loads")
    _one_line_refusal(run_cli(*predict, "--runtime", "onnx", check=False), str(onnx_file), reason,
                      "run --mode export again, or predict with --runtime keras")
    assert not (tmp_path / "p.csv").exists()
    fallback = run_cli(*predict, "--quiet")
    assert "(runtime keras)" in fallback.stdout and "10 predicted" in fallback.stdout
    assert fallback.stderr.count("\n") == 1 and str(onnx_file) in fallback.stderr
    assert fallback.stderr.rstrip().endswith("; predicting with Keras (run --mode export again)")


def test_an_export_cut_short_is_never_served_half_new(exported, small_data, tmp_path):
    # M6, L18: the model.onnx of an export with --invert true (killed before its preprocessing.json) beside the
    # files of the previous export, whose weights digest still matches: not served; auto predicts with Keras.
    inverting = tmp_path / "inverting"
    shutil.copytree(exported, inverting)
    (inverting / "export" / ".labels.txt.x1y2.tmp").write_text("left by an export killed mid-write (L2)")
    run_cli(CLI, "--mode", "export", "--model-dir", str(inverting), "--format", "onnx", "--invert", "true")
    # The formats kept from the previous export were made with the other rule: gone, not vouched for.
    assert sorted(p.name for p in (inverting / "export").iterdir()) == ["labels.txt", "model.onnx",
                                                                        "preprocessing.json"]
    model_dir = tmp_path / "m"
    shutil.copytree(exported, model_dir)
    shutil.copy(inverting / "export" / "model.onnx", model_dir / "export" / "model.onnx")
    predict = [CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(small_data / "tmp")]
    _one_line_refusal(run_cli(*predict, "--runtime", "onnx", check=False), "model.onnx",
                      "not the file preprocessing.json vouches for")
    auto = run_cli(*predict, "--output", str(tmp_path / "auto.csv"), "--quiet")
    assert "(runtime keras)" in auto.stdout and auto.stderr.count("\n") == 1
    assert "not the file preprocessing.json vouches for" in auto.stderr
    intact = run_cli(CLI, "--mode", "predict", "--model-dir", str(exported), "--input", str(small_data / "tmp"),
                     "--output", str(tmp_path / "intact.csv"), "--quiet")
    assert "(runtime onnx)" in intact.stdout
    classes = [[line.split(",")[1] for line in (tmp_path / name).read_text().splitlines()[1:]]
               for name in ("auto.csv", "intact.csv")]
    assert classes[0] == classes[1]
    # labels.txt is vouched for too: two classes swapped in it are refused, not served.
    labels = model_dir / "export" / "labels.txt"
    shutil.copy(exported / "export" / "model.onnx", model_dir / "export" / "model.onnx")
    names = labels.read_text().splitlines()
    labels.write_text("\n".join([names[1], names[0], *names[2:]]) + "\n")
    _one_line_refusal(run_cli(*predict, "--runtime", "onnx", check=False), "labels.txt",
                      "not the file preprocessing.json vouches for")


def test_sort_into_is_checked_before_predicting(trained_model, small_data, tmp_path):
    drop = tmp_path / "drop"
    shutil.copytree(small_data / "tmp", drop)
    # M7: inside the watched folder every copy would be predicted and copied again, forever.
    result = run_cli(CLI, "--mode", "predict", "--watch", "--model-dir", str(trained_model), "--input", str(drop),
                     "--sort-into", str(drop / "sorted"), "--output", str(tmp_path / "w.csv"), check=False)
    _one_line_refusal(result, "inside the watched folder", str(drop / "sorted"))
    assert not (drop / "sorted").exists() and not (tmp_path / "w.csv").exists()
    # L8: a folder that cannot be made is said before any prediction, not after.
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(drop),
                     "--sort-into", str(blocker / "sorted"), "--output", str(tmp_path / "p.csv"), check=False)
    _one_line_refusal(result, str(blocker / "sorted"), "--sort-into folder is not writable")
    assert not (tmp_path / "p.csv").exists() and "\t" not in result.stdout


@pytest.mark.parametrize("watch", [False, True])
def test_output_cannot_be_a_folder_or_a_file_of_the_model(watch, trained_model, small_data, tmp_path):
    # L16 (a folder, found only after predicting) and L17 (best.weights.h5 overwritten by a CSV).
    model_dir = tmp_path / "m"
    shutil.copytree(trained_model, model_dir)
    before = _snapshot(model_dir)
    for output, words in ((tmp_path, "a folder; --output names the CSV file"),
                          (model_dir / "best.weights.h5", "a file of the model itself"),
                          (model_dir / "export", "a file of the model itself")):
        result = run_cli(CLI, "--mode", "predict", *(["--watch"] if watch else []), "--model-dir", str(model_dir),
                         "--input", str(small_data / "tmp"), "--output", str(output), check=False)
        _one_line_refusal(result, str(output), words)
        assert "\t" not in result.stdout
    assert _snapshot(model_dir) == before


def test_resume_refuses_other_training_images(trained_model, small_data, tmp_path):
    # M1: 60 images more in one class: the epoch count (optimizer steps / epoch length) and the validation
    # split would no longer be the run's, and history.csv got epochs 1,2,5,6.
    model_dir = tmp_path / "m"
    shutil.copytree(trained_model, model_dir)
    data = tmp_path / "data"
    shutil.copytree(small_data / "train", data / "train", copy_function=os.link)
    for k, path in enumerate(sorted((small_data / "test" / "3").iterdir())[:60]):
        os.link(path, data / "train" / "3" / f"more_{k}.png")
    before = _snapshot(model_dir)
    result = run_cli(CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir),
                     *FIXTURE_TRAINING, "--epochs", "5", "--resume", check=False)
    _one_line_refusal(result, "the training images changed since this run began (3: ", "train without --resume")
    assert _snapshot(model_dir) == before


def test_resume_after_a_fresh_run_stopped_in_its_first_epoch_is_refused(trained_model, small_data, tmp_path):
    # M2: the fresh run trained in .staging/ and was killed; --resume would continue the previous model.
    model_dir = tmp_path / "m"
    shutil.copytree(trained_model, model_dir)
    args = [CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(model_dir),
            *FIXTURE_TRAINING, "--learning-rate", "0.0005"]
    killed = run_cli(*args, check=False, env={"MNIST_FOLDERS_KILL_AT": "1:5"})
    assert killed.returncode == -9 and (model_dir / ".staging").is_dir()
    before = _snapshot(model_dir)
    _one_line_refusal(run_cli(*args, "--resume", check=False), ".staging", "a fresh run was stopped before its first "
                      "epoch was saved", "train again without --resume")
    assert _snapshot(model_dir) == before


def test_a_model_directory_inside_a_data_folder_is_not_data(small_data, tmp_path):
    # M8: --model-dir inside the train tree became an 11th class (its training_curves.png an image of it);
    # inside the predict folder, predict classified the model's own figures. A --model-dir inside a class tree
    # is refused (test_resume_safety.py); a copy of a model directory there is left out of the listings.
    data = tmp_path / "data"
    for digit in ("0", "1"):
        (data / "train" / digit).mkdir(parents=True)
        for path in sorted((small_data / "train" / digit).iterdir())[:40]:
            os.link(path, data / "train" / digit / path.name)
    model_dir = tmp_path / "models"
    args = [CLI, "--mode", "train", "--data-dir", str(data), "--model-dir", str(model_dir), "--epochs", "1",
            "--model", "cnn_32_64_64", "--quiet"]
    run_cli(*args)
    shutil.copytree(model_dir, data / "train" / "models")  # a copy, figures included
    again = run_cli(*args)
    assert json.loads((model_dir / "class_names.json").read_text()) == ["0", "1"]
    assert "training on 64 images" in again.stdout  # 80 images, 16 held out for validation
    (data / "tmp").mkdir()
    shutil.copy(next((data / "train" / "1").iterdir()), data / "tmp" / "one.png")
    shutil.copytree(model_dir, data / "tmp" / "model")
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(model_dir), "--input", str(data / "tmp"),
                     "--quiet")
    assert "1 predicted, 0 skipped" in result.stdout


def _edited_last_row(cells: list[str], edit: str) -> list[str]:
    """history.csv's last row (epoch, loss, accuracy, val_loss, val_accuracy, seconds) edited by hand."""
    if edit == "fake best":
        return [*cells[:4], "1.0", *cells[5:]]
    if edit == "partial row":
        return cells[:2]
    return [cells[0], "nan", *cells[2:]]


@pytest.mark.parametrize("edit, words", [("fake best", "above the best checkpoint's"),
                                         ("partial row", "epoch 3 has no accuracy, val_loss, val_accuracy"),
                                         ("nan", "not a finite number")])
def test_resume_refuses_a_history_edited_by_hand(edit, words, trained_model, small_data, tmp_path):
    # L3: a fake val_accuracy 1.0 row was accepted, and then kept every real improvement from being saved.
    model_dir = tmp_path / "m"
    shutil.copytree(trained_model, model_dir)
    history = model_dir / "history.csv"
    rows = history.read_text().splitlines()
    history.write_text("\n".join([*rows[:-1], ",".join(_edited_last_row(rows[-1].split(","), edit))]) + "\n")
    before = _snapshot(model_dir)
    result = run_cli(CLI, "--mode", "train", "--data-dir", str(small_data), "--model-dir", str(model_dir),
                     *FIXTURE_TRAINING, "--epochs", "5", "--resume", check=False)
    _one_line_refusal(result, "history.csv", words, "train without --resume")
    assert _snapshot(model_dir) == before


def test_an_evaluation_of_a_model_replaced_meanwhile_writes_nothing(trained_model, small_data, tmp_path,
                                                                     monkeypatch):
    # L20: an evaluate overlapping a training run's promotion wrote a report of the old model beside the new.
    import h5py

    from mnist_folders.artifacts import setting_for_model
    from mnist_folders.errors import CheckpointError
    from mnist_folders.serve import evaluation

    model_dir = tmp_path / "m"
    shutil.copytree(trained_model, model_dir)
    for report in ("evaluation.json", "confusion_matrix.png", "misclassified.png", "reliability_diagram.png"):
        (model_dir / report).unlink(missing_ok=True)
    newer = tmp_path / "newer.weights.h5"  # what a new training run would promote: other weights
    shutil.copy(model_dir / "best.weights.h5", newer)
    with h5py.File(newer, "r+") as f:
        f.visititems(lambda name, obj: obj.__setitem__((), obj[()] * 0.5) if isinstance(obj, h5py.Dataset) else None)
    predict_tree = evaluation._predict_tree

    def promoted_meanwhile(*args, **kwargs):
        shutil.copy(newer, model_dir / "best.weights.h5")
        return predict_tree(*args, **kwargs)

    monkeypatch.setattr(evaluation, "_predict_tree", promoted_meanwhile)
    setting = setting_for_model({"model_dir": str(model_dir), "data_dir": str(small_data)})
    with pytest.raises(CheckpointError, match="replaced by a new training run while it was evaluated; nothing"):
        evaluation.evaluate(setting, progress=False)
    assert not [p.name for p in model_dir.iterdir() if p.name in ("evaluation.json", "confusion_matrix.png")]
    monkeypatch.setattr(evaluation, "_predict_tree", predict_tree)
    report = evaluation.evaluate(setting, progress=False)  # run again: the report of the model there now
    assert report.weights_sha256 == hashlib.sha256((model_dir / "best.weights.h5").read_bytes()).hexdigest()


def test_a_full_disk_during_the_savedmodel_export_is_said_so(exported, tmp_path, monkeypatch):
    # L1: TensorFlow's "No space left on device" came out as "out of memory ... lower batch_size", with
    # export/.saved_model.tmp/ left behind. Here the disk fills half-way through the SavedModel.
    import keras
    import tensorflow as tf

    model_dir = tmp_path / "m"
    shutil.copytree(exported, model_dir)
    before = _snapshot(model_dir / "export")

    def fills_the_disk(self, filepath, **kwargs):
        (Path(filepath) / "variables").mkdir(parents=True)
        (Path(filepath) / "variables" / "variables.data-00000-of-00001").write_bytes(b"\0" * 1000)
        raise tf.errors.ResourceExhaustedError(None, None, f"{filepath}/variables; No space left on device")

    # ExportArchive() makes an instance of a class of the backend: that class's write_out fails.
    monkeypatch.setattr(type(keras.export.ExportArchive()), "write_out", fills_the_disk)
    result = run_cli(CLI, "--mode", "export", "--model-dir", str(model_dir), "--format", "savedmodel", check=False)
    _one_line_refusal(result, "disk full while exporting", str(model_dir / "export"))
    assert "memory" not in result.stderr and _snapshot(model_dir / "export") == before
    assert not list((model_dir / "export").glob(".*"))


def test_a_folder_deeper_than_path_max_is_listed_as_skipped(trained_model, small_data, tmp_path):
    # L14: files under paths longer than PATH_MAX (4,096 bytes) were ignored without a word.
    drop = tmp_path / "drop"
    drop.mkdir()
    shutil.copy(next((small_data / "tmp").iterdir()), drop / "near.png")
    fd = os.open(drop, os.O_RDONLY)
    try:
        for _ in range(22):  # 22 folders of 200 characters: over 4,400 bytes below drop/
            os.mkdir("d" * 200, dir_fd=fd)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        image = os.open("deep.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        os.write(image, (drop / "near.png").read_bytes())
        os.close(image)
    finally:
        os.close(fd)
    result = run_cli(CLI, "--mode", "predict", "--model-dir", str(trained_model), "--input", str(drop),
                     "--output", str(tmp_path / "p.csv"))
    assert "1 predicted, 1 skipped" in result.stdout
    skipped = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 1 and "folder not readable (File name too long)" in skipped[0], result.stderr
