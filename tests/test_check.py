"""The dataset check on a tree of real MNIST PNGs with injected faults, and suspect labels from a trained model."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MNIST, REPO, run_cli
from mnist_folders import audit as check
from mnist_folders.errors import DatasetError
from mnist_folders.data.images import ImageReadError, load_image
from mnist_folders.settings import Setting

TRAIN_PER_CLASS, TEST_PER_CLASS = 20, 10


def _first(small_data: Path, split: str, digit: int, n: int, skip: int = 0) -> list[Path]:
    return sorted((small_data / split / str(digit)).glob("*.png"))[skip : skip + n]


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def build_faulty_tree(small_data: Path, root: Path) -> dict[str, Path]:
    """A train/test/tmp tree of distinct MNIST PNGs plus one of each fault; returns the faults' paths."""
    for split, n in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for digit in range(10):
            for source in _first(small_data, split, digit, n):
                _copy(source, root / split / str(digit) / source.name)
    for digit in (0, 1):
        source = _first(small_data, "test", digit, 1, skip=TEST_PER_CLASS)[0]
        _copy(source, root / "tmp" / f"sample_{digit}.png")
    leaked = sorted((root / "train" / "3").iterdir())[0]
    copied = sorted((root / "train" / "5").iterdir())[0]
    faults = {
        "leaked": leaked,
        "leak_png": _copy(leaked, root / "test" / "3" / "leak_copy.png"),
        "leak_jpeg": root / "test" / "3" / "leak_resized.jpg",
        "conflict_source": copied,
        "conflict": _copy(copied, root / "train" / "6" / "conflict_copy.png"),
        "empty": root / "train" / "empty_class",
        "hidden": root / "train" / ".ipynb_checkpoints",
        "text_png": root / "train" / "4" / "notes.png",
        "not_image": root / "train" / "4" / "readme.txt",
        "tiny": root / "train" / "tiny",
    }
    with Image.open(leaked) as image:  # the same digit re-encoded: JPEG, 40x40
        image.resize((40, 40), Image.Resampling.BICUBIC).save(faults["leak_jpeg"], quality=90)
    faults["empty"].mkdir()
    _copy(leaked, faults["hidden"] / "3" / "copy.png")  # training skips hidden folders: no duplicate either
    faults["text_png"].write_text("not a picture\n")
    faults["not_image"].write_text("notes\n")
    _copy(_first(small_data, "train", 8, 1, skip=TRAIN_PER_CLASS)[0], faults["tiny"] / "only.png")
    return faults


@pytest.fixture(scope="module")
def faulty(small_data, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("check") / "data"
    return root, build_faulty_tree(small_data, root)


@pytest.fixture(scope="module")
def report(faulty, tmp_path_factory) -> check.CheckReport:
    root, _ = faulty
    model_dir = tmp_path_factory.mktemp("check_model")
    return check.run_check(Setting(data_dir=str(root), model_dir=str(model_dir)), progress=False, log=lambda _: None)


def _groups(groups: list[check.DuplicateGroup]) -> list[tuple[set[str], str]]:
    return sorted(((set(g.files), g.problem()) for g in groups), key=lambda item: sorted(item[0]))


def test_exact_duplicates_are_the_injected_ones_only(report, faulty):
    _, f = faulty
    assert _groups(report.exact) == sorted([
        ({str(f["leaked"]), str(f["leak_png"])}, "leakage"),
        ({str(f["conflict_source"]), str(f["conflict"])}, "label conflict"),
    ], key=lambda item: sorted(item[0]))


def test_resized_jpeg_copy_is_a_near_duplicate_across_splits(report, faulty):
    _, f = faulty
    assert _groups(report.near) == [({str(f["leaked"]), str(f["leak_jpeg"])}, "leakage")]
    assert report.near[0].distance <= check.NEAR_DISTANCE


def test_unreadable_and_non_image_files_with_trainings_reasons(report, faulty):
    _, f = faulty
    with pytest.raises(ImageReadError) as reason:
        load_image(f["text_png"], 28, 28, "grayscale")
    assert report.unreadable == [(str(f["text_png"]), str(reason.value))]
    assert str(f["not_image"]) in report.splits["train"].not_images


def test_unintended_folders_counts_and_sizes(report, faulty):
    root, f = faulty
    flagged = {Path(path).name: why for path, why in report.folders}
    assert set(flagged) == {".ipynb_checkpoints", "empty_class", "tiny"}
    assert flagged[".ipynb_checkpoints"].startswith("hidden") and flagged["empty_class"].startswith("empty")
    assert flagged["tiny"].startswith("very small")
    counts = report.splits["train"].class_counts
    assert counts["tiny"] == 1 and counts["empty_class"] == 0 and counts["4"] == TRAIN_PER_CLASS + 1
    assert report.imbalance_ratio == (TRAIN_PER_CLASS + 1) / 1
    assert report.only_in_train == ["tiny"] and report.only_in_test == []
    assert report.splits["predict"].images == 2
    readable_28 = (10 * TRAIN_PER_CLASS + 2) + (10 * TEST_PER_CLASS + 1) + 2
    assert report.sizes == {"28x28": readable_28, "40x40": 1}
    assert report.longer_side == {"<=32": readable_28, "33-64": 1} and report.modes == {"L": readable_28 + 1}
    assert report.upscaled == 0.0 and report.downscaled == 0.0
    written = json.loads(report.json_path.read_text())
    assert written["exact_duplicates"]["leakage"] == 1 and written["exact_duplicates"]["label_conflict"] == 1
    assert written["near_duplicates"]["max_distance"] == check.NEAR_DISTANCE
    with Image.open(report.figure_path) as figure:
        assert figure.format == "PNG"


def test_rgb_tree_of_mixed_formats_and_sizes(small_data, tmp_path):
    """Not digits alone: coloured, resized, the same picture as PNG and BMP (exact: same pixels)."""
    sources = _first(small_data, "train", 2, 20)
    for k, source in enumerate(sources[:18]):
        name = "red" if k % 2 else "blue"
        with Image.open(source) as digit:
            gray = np.asarray(digit.resize((48, 48), Image.Resampling.BILINEAR))
        rgb = np.stack([gray, gray // 2, 255 - gray] if name == "blue" else [gray, gray // 3, gray // 4], axis=-1)
        (tmp_path / "train" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(tmp_path / "train" / name / f"{k:02d}.png")
    first = tmp_path / "train" / "red" / "01.png"
    with Image.open(first) as image:
        image.save(tmp_path / "train" / "red" / "copy.bmp")
    for source, size in ((sources[18], 200), (sources[19], 10)):  # shrunk, enlarged more than 2x
        with Image.open(source) as digit:
            digit.convert("RGB").resize((size, size)).save(tmp_path / "train" / "blue" / f"size_{size}.png")
    setting = Setting(data_dir=str(tmp_path), model_dir=str(tmp_path / "model"), color_mode="rgb",
                      image_height=32, image_width=32)
    found = check.run_check(setting, progress=False, log=lambda _: None)
    assert _groups(found.exact) == [({str(first), str(tmp_path / "train" / "red" / "copy.bmp")}, "within a class")]
    assert found.near == [] and found.unreadable == [] and found.folders == []
    assert found.modes == {"RGB": 21} and found.sizes == {"48x48": 19, "200x200": 1, "10x10": 1}
    assert found.upscaled == found.downscaled == 1 / 21
    assert not found.splits["test"].exists and found.only_in_train == []


def test_strict_raises_one_line_after_writing_the_report(faulty, tmp_path):
    root, f = faulty
    setting = Setting(data_dir=str(root), model_dir=str(tmp_path / "model"))
    with pytest.raises(DatasetError) as error:
        check.run_check(setting, strict=True, progress=False, log=lambda _: None)
    message = str(error.value)
    assert "\n" not in message and str(f["conflict"]) in message
    assert (tmp_path / "model" / check.CHECK_JSON).exists()


def _tree_digest(*roots: Path) -> dict[str, str]:
    """Each file's content digest, keyed by its path relative to its root."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def test_quarantine_moves_unreadable_and_leaked_copies_and_restores(faulty, tmp_path):
    source_root, _ = faulty
    root = tmp_path / "data"
    shutil.copytree(source_root, root)
    before = _tree_digest(root)
    quarantine = tmp_path / "quarantine"
    setting = Setting(data_dir=str(root), model_dir=str(tmp_path / "model"))
    report = check.run_check(setting, quarantine=quarantine, progress=False, log=lambda _: None)
    moved = {"train/4/notes.png", "test/3/leak_copy.png"}
    assert {str(Path(p).relative_to(root)) for p, _ in report.quarantined} == moved
    for relative in moved:
        assert not (root / relative).exists() and (quarantine / relative).exists()
    assert (root / "test" / "3" / "leak_resized.jpg").exists()  # a near duplicate: reported, not moved
    manifest = json.loads((quarantine / check.QUARANTINE_MANIFEST).read_text())
    assert {entry["path"] for entry in manifest["files"]} == moved
    assert len(_tree_digest(root)) + len(moved) == len(before)  # nothing deleted
    again = check.run_check(setting, progress=False, log=lambda _: None)
    assert [g.problem() for g in again.exact] == ["label conflict"] and again.unreadable == []
    restored, kept = check.restore_quarantine(quarantine)
    assert {str(Path(p).relative_to(root)) for p in restored} == moved and kept == 0
    assert _tree_digest(root) == before
    assert json.loads((quarantine / check.QUARANTINE_MANIFEST).read_text())["files"] == []


def test_restore_through_the_cli_puts_back_what_quarantine_moved_and_nothing_else(faulty, tmp_path):
    # --help promised a manifest "to move them back", but no command read it.
    source_root, _ = faulty
    root, quarantine, outside = tmp_path / "data", tmp_path / "quarantine", tmp_path / "outside.png"
    shutil.copytree(source_root, root)
    before = _tree_digest(root)
    cli = str(REPO / "mnist_keras.py")
    run_cli(cli, "--mode", "check", "--data-dir", str(root), "--model-dir", str(tmp_path / "m"), "--quarantine",
            str(quarantine), "--quiet")
    assert len(_tree_digest(root)) == len(before) - 2
    both = run_cli(cli, "--mode", "check", "--restore", str(quarantine), "--quarantine", str(quarantine), check=False)
    assert both.returncode == 2 and "one at a time" in both.stderr
    # An edited manifest naming a path outside the data folder: refused before anything moves.
    manifest = quarantine / check.QUARANTINE_MANIFEST
    good = manifest.read_text()
    data = json.loads(good)
    manifest.write_text(json.dumps({**data, "files": [*data["files"], {"path": "../outside.png", "reason": "x"}]}))
    (quarantine.parent / "outside.png").write_bytes(b"not ours")
    hostile = run_cli(cli, "--mode", "check", "--restore", str(quarantine), check=False)
    assert hostile.returncode == 2 and hostile.stderr.count("\n") == 1, hostile.stderr
    assert "../outside.png is not a path inside the data folder; nothing restored" in hostile.stderr
    assert len(_tree_digest(root)) == len(before) - 2 and outside.read_bytes() == b"not ours"
    manifest.write_text(good)
    restored = run_cli(cli, "--mode", "check", "--restore", str(quarantine))
    assert f"restored 2 files from {quarantine} to their places" in restored.stdout
    assert _tree_digest(root) == before
    again = run_cli(cli, "--mode", "check", "--restore", str(quarantine))
    assert "restored 0 files" in again.stdout
    missing = run_cli(cli, "--mode", "check", "--restore", str(tmp_path / "nowhere"), check=False)
    assert missing.returncode == 2 and "no quarantine manifest" in missing.stderr


def test_quarantine_refuses_a_folder_inside_a_split(faulty, tmp_path):
    root, _ = faulty
    setting = Setting(data_dir=str(root), model_dir=str(tmp_path / "model"))
    with pytest.raises(DatasetError, match="inside"):
        check.run_check(setting, quarantine=root / "train" / "quarantine", progress=False, log=lambda _: None)
    assert not (root / "train" / "quarantine").exists()


def test_worker_processes_find_the_same(faulty, monkeypatch):
    root, _ = faulty
    paths = sorted(str(p) for p in root.rglob("*.png") if ".ipynb" not in str(p))
    serial = check.inspect_all(paths, "grayscale")
    monkeypatch.setattr(check.fingerprints, "PARALLEL_MIN_FILES", 1)
    monkeypatch.setattr(check.fingerprints, "CHUNK_FILES", 64)  # several chunks, so both workers get some
    parallel = check.inspect_all(paths, "grayscale")
    assert parallel.failed == serial.failed and parallel.modes == serial.modes
    for name in ("sizes", "digests", "hashes"):
        np.testing.assert_array_equal(getattr(parallel, name), getattr(serial, name))


def test_check_imports_neither_tensorflow_nor_matplotlib():
    code = ("import sys, mnist_folders.audit; "
            "print([m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_near_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 256, size=(400, 32), dtype=np.uint8)
    flips = [rng.choice(256, size=k, replace=False) for k in range(30)]  # copies at distances 0..29
    flips.append(np.arange(check.NEAR_DISTANCE))  # the hardest: one flipped bit in all chunks but one
    for row, flipped in zip(range(0, 2 * len(flips), 2), flips):
        bits = np.unpackbits(hashes[row])
        bits[flipped] ^= 1
        hashes[row + 1] = np.packbits(bits)
    bits = np.unpackbits(hashes, axis=1).astype(np.int32)
    distance = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    i, j = np.nonzero(np.triu(distance <= check.NEAR_DISTANCE, k=1))
    expected = np.stack([i, j, distance[i, j]], axis=1)
    found = check.near_pairs(hashes, check.NEAR_DISTANCE)
    assert len(expected) == check.NEAR_DISTANCE + 2
    np.testing.assert_array_equal(found[np.lexsort((found[:, 1], found[:, 0]))], expected)


def test_csv_cells_are_not_formulas():
    assert check.safe_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert check.safe_cell("-2+3") == "'-2+3" and check.safe_cell("7") == "7"


def test_a_mislabelled_image_ranks_at_the_top(trained_model, small_data, tmp_path):
    from mnist_folders.networks.saved import load_trained_model

    model, setting, class_names = load_trained_model(trained_model)
    tree = tmp_path / "train"
    for digit in range(10):  # test images: the model never trained on them
        for source in _first(small_data, "test", digit, 15):
            _copy(source, tree / str(digit) / source.name)
    wrong = _copy(_first(small_data, "test", 1, 1, skip=15)[0], tree / "7" / "wrong_one.png")
    setting = setting.replace(train_dir=str(tree), model_dir=str(tmp_path / "model"))
    suspects = check.find_suspect_labels(setting, model, class_names, progress=False, limit=20)
    assert str(wrong) in [s.path for s in suspects[:3]]
    top = next(s for s in suspects if s.path == str(wrong))
    assert (top.given, top.predicted, top.split) == ("7", "1", "train")
    assert top.given_probability < 0.05
    with (tmp_path / "model" / check.SUSPECT_CSV).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "given_class", "predicted_class", "given_probability", "split"]
    assert len(rows) == 20 and {row["split"] for row in rows} <= {"train", "validation"}
    assert float(rows[0]["given_probability"]) <= float(rows[-1]["given_probability"])
    assert (tmp_path / "model" / check.SUSPECT_FIGURE).exists()


def test_the_duplicates_figure_draws_thumbnails_of_large_images(small_data, tmp_path, monkeypatch):
    # three 9000x9000 duplicates were drawn at full size (5.9 GB, 66 s).
    from mnist_folders.audit import figures as check_plots

    for digit in ("3", "8"):
        (tmp_path / "train" / digit).mkdir(parents=True)
        for source in _first(small_data, "train", int(digit), 6):
            shutil.copy(source, tmp_path / "train" / digit / source.name)
    with Image.open(_first(small_data, "train", 3, 1)[0]) as digit:
        big = digit.resize((3000, 2000), Image.Resampling.BILINEAR)
    for name in ("big.png", "big_copy.png"):
        big.save(tmp_path / "train" / "3" / name)
    drawn = []
    monkeypatch.setattr(check_plots, "duplicate_groups", lambda rows, path: drawn.extend(rows) or path)
    found = check.run_check(Setting(data_dir=str(tmp_path), model_dir=str(tmp_path / "model")), progress=False,
                            log=lambda _: None)
    assert _groups(found.exact) == [({str(tmp_path / "train" / "3" / n) for n in ("big.png", "big_copy.png")},
                                     "within a class")]
    cells = [cell for _, row in drawn for cell, _ in row]
    assert all(max(cell.shape[:2]) <= 128 for cell in cells)
    big = [cell.shape for cell in cells if cell.shape[0] > 28]  # the copies (also near the 28x28 source)
    assert len(big) >= 2 and set(big) == {(85, 128, 3)}


def test_quarantine_onto_a_full_disk_moves_whole_files_and_lists_only_those(tmp_path, monkeypatch):
    # a full disk left a partial copy and a manifest listing files never moved.
    import errno

    from mnist_folders.errors import DatasetError

    root = tmp_path / "data"
    files = []
    for k in range(3):
        files.append(root / "train" / "7" / f"{k}.png")
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        files[-1].write_bytes(bytes([k]) * 1000)
    copies = []
    copy = shutil.copy2

    def fills_the_disk(source, target, **options):  # the second file meets a full disk half-way
        copies.append(source)
        if len(copies) == 2:
            Path(target).write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(source, target, **options)

    def other_filesystem(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    quarantine = tmp_path / "quarantine"
    monkeypatch.setattr(check.quarantine.os, "rename", other_filesystem)
    monkeypatch.setattr(check.quarantine.shutil, "copy2", fills_the_disk)
    with pytest.raises(DatasetError, match="No space left on device after moving 1 of 3 files; the others stay"):
        check.quarantine_files([(str(f), "leaked") for f in files], quarantine, root, [root / "train"])
    monkeypatch.undo()
    assert sorted(p.relative_to(quarantine).as_posix() for p in quarantine.rglob("*") if p.is_file()) == [
        "manifest.json", "train/7/0.png"]
    manifest = json.loads((quarantine / "manifest.json").read_text())
    assert [entry["path"] for entry in manifest["files"]] == ["train/7/0.png"]
    assert [f.exists() for f in files] == [False, True, True]
    assert check.restore_quarantine(quarantine) == ([str(files[0])], 0) and files[0].read_bytes() == bytes([0]) * 1000


def test_a_resized_reencoded_copy_is_found_on_small_scanned_looking_jpegs(tmp_path):
    # not MNIST's PNGs: 31x31 JPEGs of dark ink on grey, noisy paper; a test image saved into
    # train at 61x61, JPEG quality 80, must be reported as leakage.
    from mnist_folders.data.idx import load_split

    images, labels = load_split(MNIST, "test")
    rng = np.random.default_rng(0)
    for split, start in (("train", 0), ("test", 500)):
        for digit in range(10):
            (tmp_path / split / str(digit)).mkdir(parents=True)
            for k, i in enumerate(np.flatnonzero(labels == digit)[start // 10 :][:20]):
                scan = np.clip(230 - images[i] * 0.8 + rng.normal(0, 6, images[i].shape), 0, 255).astype(np.uint8)
                Image.fromarray(scan).resize((31, 31), Image.Resampling.BILINEAR).save(
                    tmp_path / split / str(digit) / f"{k}.jpg", quality=90)
    source = tmp_path / "test" / "4" / "3.jpg"
    with Image.open(source) as image:
        image.resize((61, 61), Image.Resampling.BICUBIC).save(tmp_path / "train" / "4" / "copy.jpg", quality=80)
    found = check.run_check(Setting(data_dir=str(tmp_path), model_dir=str(tmp_path / "model")), progress=False,
                            log=lambda _: None)
    assert _groups(found.near) == [({str(tmp_path / "train" / "4" / "copy.jpg"), str(source)}, "leakage")]
    assert found.exact == []
