"""The dataset check, the image readers and the decoding workers on hostile inputs: huge images,
copies of small non-MNIST pictures, folders too deep to list, a quarantine onto a full disk, float images of
extreme values, a killed parent of worker processes."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from conftest import MNIST, REPO
from mnist_folders import audit as check
from mnist_folders.data.idx import load_split
from mnist_folders.data.images import load_image
from mnist_folders.errors import DatasetError
from mnist_folders.settings import Setting

# Runs the check in a fresh process on the tree argv[1]; prints the peak resident memory it added, in MB.
_PEAK_OF_CHECK = """
import resource, sys
import matplotlib.pyplot  # imported before measuring: drawing needs it whatever the images
from mnist_folders import audit as check
from mnist_folders.settings import Setting
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = check.run_check(Setting(data_dir=sys.argv[1], model_dir=sys.argv[1] + '/model'), progress=False,
                         log=lambda _: None)
assert len(report.exact) == 1 and len(report.exact[0].files) == 3, report.exact
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


def _digits(count: int) -> np.ndarray:
    return load_split(MNIST, "test")[0][:count]


def test_check_of_huge_images_holds_about_one_decoded_image_in_memory(tmp_path):
    # M9: three 9000x9000 PNGs (79 KB each) took 5.9 GB and 66 s; the figure then the inspection converted
    # and copied whole images (RGB, bytes) several times over.
    side = 8000  # 64 MB decoded as stored (grayscale); 192 MB each RGB copy the check used to make
    for k, digit in enumerate(_digits(20)):
        folder = tmp_path / "train" / str(k % 2)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digit).save(folder / f"{k}.png")
    big = tmp_path / "train" / "0" / "big.png"
    Image.fromarray(_digits(1)[0]).resize((side, side), Image.Resampling.BILINEAR).save(big, compress_level=1)
    for name in ("big_copy.png", "big_again.png"):
        (big.parent / name).write_bytes(big.read_bytes())
    result = subprocess.run([sys.executable, "-c", _PEAK_OF_CHECK, str(tmp_path)], capture_output=True, text=True,
                            cwd=REPO, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    added = int(result.stdout.split()[-1])
    assert added < 2 * side * side // 2**20, f"the check's peak memory grew by {added} MB"


def _deep_folder(under: Path, image: bytes, depth: int = 22) -> None:
    """``depth`` nested folders of 200 characters under ``under`` (over PATH_MAX, 4,096 bytes, from depth 21),
    ``deep.png`` at the bottom: made through directory descriptors, as a path that long cannot be opened."""
    fd = os.open(under, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d" * 200, dir_fd=fd)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = inner
        file = os.open("deep.png", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        os.write(file, image)
        os.close(file)
    finally:
        os.close(fd)


def test_check_flags_a_folder_deeper_than_path_max_as_a_folder_it_could_not_list(tmp_path):
    # L14: files under paths longer than PATH_MAX were not counted; check called the folder a "not image" file.
    for k, digit in enumerate(_digits(8)):
        for split in ("train", "tmp"):
            folder = tmp_path / split / str(k % 2)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(digit).save(folder / f"{k}.png")
    png = (tmp_path / "train" / "0" / "0.png").read_bytes()
    for under in (tmp_path / "train" / "1", tmp_path / "tmp"):
        _deep_folder(under, png)
    report = check.run_check(Setting(data_dir=str(tmp_path), model_dir=str(tmp_path / "model"),
                                     predict_dir=str(tmp_path / "tmp")), progress=False, log=lambda _: None)
    deep = [(Path(path).relative_to(tmp_path).parts[:2], why) for path, why in report.folders]
    why = "folder not readable (File name too long): the files under it are not counted or used"
    assert deep == [(("train", "1"), why), (("tmp", "d" * 200), why)], report.folders
    assert [audit.not_images for audit in report.splits.values()] == [[], [], []]


def test_quarantine_onto_a_disk_too_full_for_a_new_manifest_still_lists_only_moved_files(tmp_path, monkeypatch):
    # L19: the manifest, written first with every planned file, was rewritten after a failed move through a
    # new temporary file: on a full disk that failed too, and the manifest listed files never moved.
    root = tmp_path / "data"
    files = [root / "train" / "7" / f"{k}.png" for k in range(3)]
    files[0].parent.mkdir(parents=True)
    for k, file in enumerate(files):
        file.write_bytes(bytes([k]) * 1000)
    copy, write_text, full = shutil.copy2, check.quarantine.write_text, []

    def fills_the_disk(source, target, **options):  # the second file meets a full disk
        if Path(source) == files[1]:
            full.append(source)
            raise OSError(errno.ENOSPC, "No space left on device")
        return copy(source, target, **options)

    def no_room_once_full(path, text):
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_text(path, text)

    def other_filesystem(source, target):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    quarantine = tmp_path / "quarantine"
    monkeypatch.setattr(check.quarantine.os, "rename", other_filesystem)
    monkeypatch.setattr(check.quarantine.shutil, "copy2", fills_the_disk)
    monkeypatch.setattr(check.quarantine, "write_text", no_room_once_full)
    with pytest.raises(DatasetError, match="No space left on device after moving 1 of 3 files"):
        check.quarantine_files([(str(f), "leaked") for f in files], quarantine, root, [root / "train"])
    monkeypatch.undo()
    manifest = json.loads((quarantine / "manifest.json").read_text())
    assert [entry["path"] for entry in manifest["files"]] == ["train/7/0.png"]
    assert [f.exists() for f in files] == [False, True, True]


def test_quarantine_onto_a_full_disk_moves_nothing_when_its_manifest_cannot_be_written(tmp_path, monkeypatch):
    # L19: the manifest's own write failing came out as a bare "No space left on device", naming no file.
    leaked = tmp_path / "data" / "test" / "7" / "0.png"
    leaked.parent.mkdir(parents=True)
    leaked.write_bytes(b"0" * 100)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(check.quarantine, "write_text", full)
    quarantine = tmp_path / "quarantine"
    with pytest.raises(DatasetError, match=r"quarantine/manifest\.json: No space left on device; nothing moved$"):
        check.quarantine_files([(str(leaked), "leaked")], quarantine, tmp_path / "data", [tmp_path / "data" / "test"])
    assert leaked.exists() and not list(quarantine.rglob("*.png"))


# Decodes with the worker pool training uses from 8,192 files (lowered here), then waits, as a slow model would.
_DECODING = """
import sys, time
from mnist_folders.data import decoding
from mnist_folders.settings import Setting
decoding.PARALLEL_MIN_FILES = 2
setting = Setting(image_height=28, image_width=28, color_mode="grayscale")
with decoding.decode_chunks([sys.argv[1]] * 3000, setting) as chunks:
    next(chunks)
    print("decoding", flush=True)
    time.sleep(600)
"""


def _children(pid: int) -> list[int]:
    return [int(child) for path in Path(f"/proc/{pid}/task").glob("*/children") for child in path.read_text().split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has ended


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2 or not Path("/proc").is_dir(),
                    reason="needs 2 cores (a worker pool) and /proc (Linux)")
def test_decoding_workers_end_when_training_is_killed(tmp_path):
    # L12: SIGKILL of train on 8,192+ files (decoded by spawned workers) left the workers blocked forever.
    Image.fromarray(_digits(1)[0]).save(tmp_path / "digit.png")
    process = subprocess.Popen([sys.executable, "-c", _DECODING, str(tmp_path / "digit.png")], cwd=REPO,
                               env={"PATH": "/usr/bin:/bin"}, stdout=subprocess.PIPE,
                               text=True)
    workers = []
    try:
        assert process.stdout.readline() == "decoding\n"
        workers = _children(process.pid)
        assert len(workers) >= 2, workers  # the pool's workers (and multiprocessing's resource tracker)
        os.kill(process.pid, signal.SIGKILL)  # the parent only, as the OOM killer would
        process.wait(timeout=30)  # not communicate(): a surviving worker holds its stdout open
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], "decoding workers outlived their parent"
    finally:
        process.kill()
        process.stdout.close()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_a_float_image_of_extreme_but_finite_values_is_scaled_not_black(tmp_path):
    # L13: a float32 range near its limits overflowed while scaling: an all-black image and RuntimeWarnings.
    pixels = np.full((8, 8), -3e38, np.float32)
    pixels[4:] = 3e38
    pixels[0, 0] = 0.0
    Image.fromarray(pixels).save(tmp_path / "extreme.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = load_image(tmp_path / "extreme.tif", 8, 8, "grayscale")[..., 0]
    assert (image[0, 0], image[1, 0], image[7, 7]) == (128, 0, 255)


SAMPLE_DATA = Path(matplotlib.get_data_path()) / "sample_data"


def _photo_tiles(root: Path) -> Path:
    """A train/test tree of distinct real pictures: 31x31 JPEGs (quality 90) of the non-flat square tiles of
    matplotlib's sample images, one class per image, tiles alternating between train and test; returns the
    test tile at (0, 448) of the photo, a copy of which its pHash missed."""
    for name, side in (("grace_hopper.jpg", 64), ("Minduka_Present_Blue_Pack.png", 32), ("logo2.png", 64)):
        with Image.open(SAMPLE_DATA / name) as image:
            picture = image.convert("RGB")
        for k, (y, x) in enumerate(np.ndindex(picture.height // side, picture.width // side)):
            tile = picture.crop((x * side, y * side, (x + 1) * side, (y + 1) * side))
            if np.asarray(tile.convert("L")).std() < 15:  # flat: wall or sky, nothing to tell tiles apart by
                continue
            folder = root / ("test" if k % 2 == 0 else "train") / name.split(".")[0].split("_")[0].lower()
            folder.mkdir(parents=True, exist_ok=True)
            tile.resize((31, 31), Image.Resampling.BILINEAR).save(folder / f"{x * side}_{y * side}.jpg", quality=90)
    return root / "test" / "grace" / "0_448.jpg"


def test_a_small_real_photo_copied_larger_as_jpeg_is_leakage_and_distinct_photos_are_not_near(tmp_path):
    # M11: a 31x31 JPEG of a test image, saved into train at 61x61, quality 80, was not reported: its pHash
    # differed in 20 bits (the rule: 16). Nor may the rule find copies among distinct pictures of a class.
    source = _photo_tiles(tmp_path)
    copy = tmp_path / "train" / "grace" / "copy.jpg"
    with Image.open(source) as image:
        image.resize((61, 61), Image.Resampling.BICUBIC).save(copy, quality=80)
    report = check.run_check(Setting(data_dir=str(tmp_path), model_dir=str(tmp_path / "model")), progress=False,
                             log=lambda _: None)
    assert report.splits["train"].images + report.splits["test"].images > 80
    assert [(set(g.files), g.problem()) for g in report.near] == [({str(copy), str(source)}, "leakage")]
    assert report.exact == []


def test_train_says_a_folder_deeper_than_path_max_is_unreadable_not_a_non_image_file(tmp_path):
    # L14 in train: the folder it could not list was counted as "ignored 1 non-image files".
    from mnist_folders.train.preparation import prepare_index

    for k, digit in enumerate(_digits(8)):
        folder = tmp_path / "train" / str(k % 2)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(digit).save(folder / f"{k}.png")
    (tmp_path / "train" / "0" / "notes.txt").write_text("not an image")
    _deep_folder(tmp_path / "train" / "1", (tmp_path / "train" / "0" / "0.png").read_bytes())
    lines = []
    index = prepare_index(Setting(data_dir=str(tmp_path), model_dir=str(tmp_path / "model")), log=lines.append)
    assert len(index) == 8
    assert any(line.startswith("ignored 1 non-image files, e.g. ") and line.endswith("notes.txt") for line in lines), lines
    assert any(line.startswith("left out 1 unreadable folders (their files are not used), e.g. ")
               and line.endswith("folder not readable (File name too long)") for line in lines), lines
