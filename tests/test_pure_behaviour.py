"""Fast behaviour tests of the pure modules (NumPy, Pillow and the standard library only, no TensorFlow).

They pin down what a user sees:

- ``folders``: listing order, hidden and special files, class labels, the
  validation split, and the exact error messages that name the folder;
- ``images``: exact pixel values after 16-bit, 32-bit and float conversion,
  transparency flattened onto black, palette images, bilinear pad/crop/stretch,
  the colour threshold, the border-polarity test and the decode errors;
- ``prediction``: the batch size, the files to predict, inversion and the
  CSV text byte for byte;
- ``settings``: every :class:`Option` message, the range texts, and the
  rules between fields of :class:`Setting`.

The test images are tiny synthetic arrays or files made with Pillow in
``tmp_path``; every test runs in well under a second. Written to kill the
mutants that ``mutmut`` left alive in these modules; the CPU probe and the
settings' import cost are here too.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import REPO
from mnist_folders.data import images as images_module
from mnist_folders.data.folders import FolderIndex, files_to_predict, find_class_names, index_tree, list_files
from mnist_folders.data.images import (
    ImageReadError, convert_mode, decode, invert_where_needed, is_colour, lighter_borders, load_image, load_images,
    resize, scale,
)
from mnist_folders.errors import DatasetError, SettingError
from mnist_folders.names import safe_cell
from mnist_folders.networks.dtype_policy import cpu_has_bf16
from mnist_folders.networks.inference import inference_batch_size
from mnist_folders.registry import MODELS
from mnist_folders.serve.prediction import Prediction, csv_header, to_csv
from mnist_folders.settings import Option, Setting, chosen_values, option, read_toml

def _png(path, array):
    """Write ``array`` as an image file (format from the suffix) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path)
    return path


def _tree(root, layout):
    """Files under ``root``: ``{"a/1.png": ..., "b/x.txt": ...}``; PNG files hold a 2x2 image."""
    for relative in layout:
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if relative.lower().endswith(".png"):
            Image.new("L", (2, 2)).save(path, format="PNG")
        else:
            path.write_bytes(b"x")
    return root


# ---- the test file itself ---------------------------------------------------------------------


def test_this_file_loads_no_tensorflow():
    # In a fresh interpreter: in a full run other test files have loaded TensorFlow already.
    code = ("import sys; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/tests']; import test_pure_behaviour;"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- folders: listing ---------------------------------------------------------------------------


def test_class_names_are_the_sorted_visible_sub_folders(tmp_path):
    _tree(tmp_path, ["b/1.png", "a/1.png", "C/1.png", ".hidden/1.png", "loose.png"])
    assert find_class_names(tmp_path) == ["C", "a", "b"]


def test_missing_or_non_folder_root_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        find_class_names(missing)
    assert str(info.value) == f"{missing}: folder not found (expected one sub-folder per class)"
    a_file = tmp_path / "file.png"
    a_file.write_bytes(b"x")
    with pytest.raises(DatasetError, match="folder not found"):
        find_class_names(a_file)


def test_root_without_class_folders_says_what_layout_is_expected(tmp_path):
    _tree(tmp_path, ["loose.png", ".hidden/1.png"])
    with pytest.raises(DatasetError) as info:
        find_class_names(tmp_path)
    assert str(info.value) == f"{tmp_path}: no class sub-folders (expected {tmp_path}/<class>/<image files>)"


def test_listing_is_sorted_folder_by_folder_and_leaves_hidden_entries_out(tmp_path):
    _tree(tmp_path, ["b.png", "a.png", "sub/z.png", "sub/a.png", "a_sub/m.png", ".hid.png", ".cache/c.png",
                     "sub/.tmp-x.png"])
    files, left_out = list_files(tmp_path)
    root = str(tmp_path)
    assert files == [os.path.join(root, p) for p in ("a.png", "b.png", "a_sub/m.png", "sub/a.png", "sub/z.png")]
    assert sorted(left_out) == sorted(os.path.join(root, p) for p in (".cache", ".hid.png", "sub/.tmp-x.png"))


def test_special_files_are_left_out_but_broken_links_are_kept_for_the_decoder(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "broken.png")
    os.symlink(_png(tmp_path / "real.png", np.zeros((2, 2), np.uint8)), tmp_path / "link.png")
    files, left_out = list_files(tmp_path)
    assert [os.path.basename(f) for f in files] == ["broken.png", "link.png", "real.png"]
    assert left_out == [str(tmp_path / "pipe.png")]


# ---- folders: index_tree -----------------------------------------------------------------------


def test_index_labels_follow_the_class_order_and_other_files_are_ignored(tmp_path):
    _tree(tmp_path, ["b/2.PNG", "b/1.jpg", "b/notes.txt", "a/x/deep.tiff", "a/.DS_Store", "c/1.gif"])
    index = index_tree(tmp_path)
    assert index.class_names == ["a", "b", "c"] and index.root == tmp_path
    assert [os.path.relpath(p, tmp_path) for p in index.paths] == ["a/x/deep.tiff", "b/1.jpg", "b/2.PNG", "c/1.gif"]
    assert index.labels.tolist() == [0, 1, 1, 2] and index.labels.dtype == np.int32
    assert sorted(os.path.relpath(p, tmp_path) for p in index.ignored) == ["a/.DS_Store", "b/notes.txt"]
    assert len(index) == 4 and index.class_counts() == {"a": 1, "b": 2, "c": 1}


def test_given_class_names_fix_the_label_order(tmp_path):
    _tree(tmp_path, ["a/1.png", "b/1.png", "b/2.png"])
    index = index_tree(tmp_path, ["b", "a"])
    assert index.class_names == ["b", "a"] and index.labels.tolist() == [0, 0, 1]
    assert index.class_counts() == {"b": 2, "a": 1}


def test_folders_that_are_not_known_classes_are_refused_by_name(tmp_path):
    _tree(tmp_path, ["a/1.png", "z/1.png", "y/1.png"])
    with pytest.raises(DatasetError) as info:
        index_tree(tmp_path, ["a", "b"], require_all=False)
    assert str(info.value) == f"{tmp_path}: folders ['y', 'z'] are not among the model's classes ['a', 'b']"


def test_a_missing_class_folder_is_an_error_unless_a_subset_is_allowed(tmp_path):
    _tree(tmp_path, ["b/1.png", "d/1.png"])
    with pytest.raises(DatasetError) as info:
        index_tree(tmp_path, ["a", "b", "c", "d"])
    assert str(info.value) == f"{tmp_path}: no folder for classes ['a', 'c']"
    subset = index_tree(tmp_path, ["a", "b", "c", "d"], require_all=False)
    assert subset.labels.tolist() == [1, 3] and subset.class_names == ["a", "b", "c", "d"]
    assert subset.class_counts() == {"a": 0, "b": 1, "c": 0, "d": 1}


def test_an_empty_class_folder_names_the_folder_and_the_extensions(tmp_path):
    _tree(tmp_path, ["a/1.png", "b/readme.txt"])
    with pytest.raises(DatasetError) as info:
        index_tree(tmp_path)
    assert str(info.value) == (f"{tmp_path / 'b'}: class folder holds no images "
                               "(.png, .jpg, .jpeg, .bmp, .gif, .ppm, .tif, .tiff)")
    index = index_tree(tmp_path, require_all=False)
    assert index.class_counts() == {"a": 1, "b": 0}
    assert index.ignored == [str(tmp_path / "b" / "readme.txt")]


def test_a_tree_without_any_image_is_refused(tmp_path):
    _tree(tmp_path, ["a/readme.txt"])
    with pytest.raises(DatasetError) as info:
        index_tree(tmp_path, require_all=False)
    assert str(info.value) == f"{tmp_path}: no images found in the class folders"


# ---- folders: split --------------------------------------------------------------------------


def _index(counts):
    labels = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
    return FolderIndex(Path("tree"), [f"c{i}" for i in range(len(counts))], [f"f{i:03d}" for i in range(len(labels))],
                       labels)


def test_sorted_split_holds_out_the_first_files_of_each_class():
    train, val = _index([10, 5]).split(0.3, order="sorted")
    assert val.tolist() == [0, 1, 2, 10]  # int(0.3 * 10) = 3 and int(0.3 * 5) = 1
    assert train.tolist() == [3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14]


def test_shuffled_split_is_stratified_disjoint_ordered_and_reproducible():
    index = _index([10, 10, 3])
    train, val = index.split(0.3, seed=7)
    assert sorted(train.tolist() + val.tolist()) == list(range(23))
    assert np.bincount(index.labels[val]).tolist() == [3, 3]  # 3 of 10, 3 of 10, int(0.9) = 0 of 3
    assert train.tolist() == sorted(train.tolist()) and val.tolist() == sorted(val.tolist())
    assert val.tolist() == index.split(0.3, seed=7)[1].tolist()
    assert val.tolist() != index.split(0.3, seed=8)[1].tolist()
    # Pinned: the same seed holds out the same files in every version (runs stay comparable).
    assert val.tolist() == [0, 7, 8, 10, 18, 19]
    assert index.split(0.3)[1].tolist() == [2, 4, 6, 11, 13, 19]  # seed 0 by default


def test_shuffled_split_draws_each_class_on_its_own():
    # Two classes of the same size get different choices: the class is part of the seed.
    train, val = _index([20, 20]).split(0.25, seed=3)
    first, second = val[:5], val[5:] - 20
    assert len(first) == len(second) == 5 and first.tolist() != second.tolist()


def test_subset_keeps_the_classes_and_picks_paths_and_labels():
    index = _index([2, 3])
    part = index.subset(np.array([4, 0]))
    assert part.paths == ["f004", "f000"] and part.labels.tolist() == [1, 0]
    assert part.class_names == index.class_names and part.root is index.root and part.ignored == []


# ---- images: bit depth -------------------------------------------------------------------------


def test_16_bit_images_are_scaled_from_the_full_16_bit_range():
    # 33025 * 255 / 65535 = 128.50... rounds to 129 (with 65536 it would round to 128).
    sixteen = np.array([[0, 257, 33025, 65535]], dtype=np.uint16)
    assert np.asarray(convert_mode(Image.fromarray(sixteen), "grayscale")).tolist() == [[0, 1, 129, 255]]
    # Dark 16-bit pictures stay dark: 200 of 65535 is not 200 of 255.
    dark = np.array([[0, 200, 255]], dtype=np.uint16)
    assert np.asarray(convert_mode(Image.fromarray(dark), "grayscale")).tolist() == [[0, 1, 1]]


def test_32_bit_integer_images_use_8_bit_range_unless_values_exceed_it():
    eight = np.array([[0, 100, 254, 255]], dtype=np.int32)  # mode "I" holding 8-bit values
    assert np.asarray(convert_mode(Image.fromarray(eight), "grayscale")).tolist() == [[0, 100, 254, 255]]
    wide = np.array([[-1000, 0, 256, 32768, 100000]], dtype=np.int32)  # beyond 255: a 16-bit range, clipped
    assert np.asarray(convert_mode(Image.fromarray(wide), "grayscale")).tolist() == [[0, 0, 1, 128, 255]]
    just_over = np.array([[0, 256]], dtype=np.int32)  # 256 is already 16-bit: about 1 grey level
    assert np.asarray(convert_mode(Image.fromarray(just_over), "grayscale")).tolist() == [[0, 1]]


def test_float_images_are_stretched_from_their_minimum_to_their_maximum():
    floats = np.array([[2.0, 2.6, 3.0, 12.0]], dtype=np.float32)
    assert np.asarray(convert_mode(Image.fromarray(floats), "grayscale")).tolist() == [[0, 15, 26, 255]]
    unit = np.array([[0.0, 0.6, 1.0]], dtype=np.float32)
    assert np.asarray(convert_mode(Image.fromarray(unit), "grayscale")).tolist() == [[0, 153, 255]]
    flat = np.full((1, 3), 5.0, dtype=np.float32)  # no range: all black, no division by zero
    assert np.asarray(convert_mode(Image.fromarray(flat), "grayscale")).tolist() == [[0, 0, 0]]


def test_a_float_tiff_with_a_nan_pixel_is_unreadable_not_black(tmp_path):
    # one NaN made the whole image black (training and prediction), with a RuntimeWarning.
    digit = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(8, 8)
    digit[3, 4] = np.nan
    Image.fromarray(digit).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match="^float image with 1 NaN or infinite pixels$"):
        load_image(tmp_path / "nan.tif", 8, 8, "grayscale")
    paths = [str(tmp_path / "nan.tif")]
    Image.fromarray(np.nan_to_num(digit)).save(tmp_path / "fine.tif")
    images, failed = load_images([*paths, str(tmp_path / "fine.tif")], 8, 8, "grayscale")
    assert [index for index, _ in failed] == [0] and images[0].max() == 0 and images[1].max() == 255


def test_deep_images_in_rgb_mode_become_grey_rgb():
    sixteen = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert np.asarray(convert_mode(sixteen, "rgb")).tolist() == [[[0, 0, 0], [255, 255, 255]]]


# ---- images: transparency, palettes, channels -------------------------------------------------------


def test_fully_transparent_pixels_become_exactly_black():
    rgba = Image.new("RGBA", (2, 1), (200, 100, 50, 0))
    rgba.putpixel((1, 0), (200, 100, 50, 255))
    assert np.asarray(convert_mode(rgba, "rgb")).tolist() == [[[0, 0, 0], [200, 100, 50]]]


def test_grey_with_alpha_is_flattened_onto_black():
    la = Image.new("LA", (2, 1), (200, 0))
    la.putpixel((1, 0), (200, 255))
    assert np.asarray(convert_mode(la, "grayscale")).tolist() == [[0, 200]]
    pa = Image.new("PA", (2, 1))
    pa.putpalette([0, 0, 0, 255, 255, 255])
    pa.putpixel((0, 0), (1, 0))
    pa.putpixel((1, 0), (1, 255))
    assert np.asarray(convert_mode(pa, "grayscale")).tolist() == [[0, 255]]


def _palette(transparent: bool) -> Image.Image:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 255, 255, 255, 0, 0])  # 0: white, 1: red
    image.putpixel((1, 0), 1)
    if transparent:
        image.info["transparency"] = 0  # the white entry is see-through
    return image


def test_palette_images_keep_their_colours_and_their_transparent_entry():
    assert np.asarray(convert_mode(_palette(False), "rgb")).tolist() == [[[255, 255, 255], [255, 0, 0]]]
    assert np.asarray(convert_mode(_palette(True), "rgb")).tolist() == [[[0, 0, 0], [255, 0, 0]]]
    assert np.asarray(convert_mode(_palette(True), "grayscale")).tolist() == [[0, 76]]


def test_colour_and_grey_modes_are_converted_to_the_requested_channels():
    red = Image.new("RGB", (1, 1), (255, 0, 0))
    grey = convert_mode(red, "grayscale")
    assert grey.mode == "L" and grey.getpixel((0, 0)) == 76  # ITU-R 601-2 luma
    assert convert_mode(Image.new("L", (1, 1), 9), "rgb").getpixel((0, 0)) == (9, 9, 9)
    same = Image.new("L", (1, 1), 9)
    assert convert_mode(same, "grayscale") is same  # already right: not copied
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    assert convert_mode(cmyk, "rgb").getpixel((0, 0)) == (255, 0, 0)


# ---- images: geometry ------------------------------------------------------------------------------


_RAMP = Image.fromarray(np.array([[0, 255]], dtype=np.uint8))  # 2 x 1: black, white


def test_stretch_interpolates_bilinearly():
    # Pixel centres of 4 columns fall at -0.25, 0.25, 0.75, 1.25 of the 2 source columns.
    assert np.asarray(resize(_RAMP, 1, 4, "stretch")).tolist() == [[0, 64, 191, 255]]
    assert np.asarray(resize(_RAMP, 1, 4)).tolist() == [[0, 64, 191, 255]]  # stretch by default


def test_pad_interpolates_bilinearly_and_fills_black():
    out = np.asarray(resize(_RAMP, 4, 4, "pad"))
    assert out.tolist() == [[0, 0, 0, 0], [0, 64, 191, 255], [0, 64, 191, 255], [0, 0, 0, 0]]
    white = Image.new("RGB", (4, 2), (255, 255, 255))
    padded = np.asarray(resize(white, 4, 4, "pad"))
    assert padded[0].tolist() == [[0, 0, 0]] * 4 and padded[1].tolist() == [[255, 255, 255]] * 4


def test_crop_interpolates_bilinearly_from_the_centre():
    wide = Image.fromarray(np.array([[0, 0, 255, 255]] * 2, dtype=np.uint8))  # 4 x 2: the centre is 0, 255
    assert np.asarray(resize(wide, 4, 4, "crop")).tolist() == [[0, 64, 191, 255]] * 4  # the centre 2 x 2, enlarged
    assert np.asarray(resize(wide, 4, 4, "stretch")).tolist() == [[0, 0, 255, 255]] * 4


def test_an_image_of_the_target_size_is_returned_as_it_is():
    image = Image.new("L", (3, 2))
    assert resize(image, 2, 3, "pad") is image


# ---- images: colour detection -------------------------------------------------------------------


@pytest.mark.parametrize("rgb, expected", [
    ((100, 104, 104), False),  # channel differences add up to 4: the tolerance itself is still grey
    ((100, 105, 105), True),  # 5
    ((100, 100, 105), True),  # 0 + 5
    ((100, 104, 100), True),  # 4 + 4
    ((100, 101, 100), False),  # 1 + 1, with green above red (no unsigned wrap-around)
    ((101, 100, 101), False),
])
def test_colour_means_channel_differences_above_4_grey_levels(tmp_path, rgb, expected):
    path = tmp_path / "c.png"
    Image.new("RGB", (64, 64), rgb).save(path)
    assert is_colour(path) is expected


def test_colour_tolerance_can_be_raised(tmp_path):
    path = tmp_path / "c.png"
    Image.new("RGB", (64, 64), (100, 110, 100)).save(path)  # 10 + 10
    assert is_colour(path, tolerance=19.0) and not is_colour(path, tolerance=20.0)


def test_grey_modes_and_grey_print_files_have_no_colour(tmp_path):
    Image.new("L", (8, 8), 200).save(tmp_path / "l.png")
    Image.new("LA", (8, 8), (200, 30)).save(tmp_path / "la.png")
    Image.new("CMYK", (8, 8), (0, 100, 100, 255)).save(tmp_path / "black.tif")  # all ink black: no colour
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "red.tif")
    names = ("l.png", "la.png", "black.tif", "red.tif")
    assert [is_colour(tmp_path / n) for n in names] == [False, False, False, True]


def test_colour_detection_reads_large_jpegs(tmp_path):
    Image.new("RGB", (640, 480), (200, 30, 30)).save(tmp_path / "red.jpg")
    Image.new("RGB", (640, 480), (90, 90, 90)).save(tmp_path / "grey.jpg")
    assert is_colour(tmp_path / "red.jpg") and not is_colour(tmp_path / "grey.jpg")


# ---- images: border polarity ----------------------------------------------------------------------


def _frame(size=16, ring=0, centre=0):
    """A square of value ``ring`` whose middle half is ``centre``."""
    image = np.full((size, size), ring, dtype=np.uint8)
    q = size // 4
    image[q : size - q, q : size - q] = centre
    return image


def test_lighter_borders_compares_the_outer_eighth_with_the_middle_half():
    cases = []
    light_bottom = _frame(ring=0, centre=50)
    light_bottom[-2:] = 255  # the two bottom rows (the whole border band) are light
    cases.append((light_bottom, True))
    cases.append((light_bottom.T.copy(), True))  # the two right columns
    for line in ((3, slice(4, 12)), (12, slice(4, 12))):  # a bright row just outside the middle half
        image = _frame(ring=10, centre=0)
        image[line] = 255
        cases += [(image, True), (image.T.copy(), True)]
    cases.append((np.full((16, 16), 77, np.uint8), False))  # uniform: the border is not lighter
    images = np.stack([c[0] for c in cases])[..., None]
    assert lighter_borders(images).tolist() == [c[1] for c in cases]


@pytest.mark.parametrize("size, outer, inner, rest", [
    (16, 0, 255, 100),  # band of 2 rows: both count (a 1-row band would see only the dark outer row)
    (8, 255, 0, 150),  # band of 1 row, 8 // 8: the dark row just inside does not count
])
def test_the_border_band_is_one_eighth_of_the_side_and_at_least_one_pixel(size, outer, inner, rest):
    rows = np.full((size, size), rest, dtype=np.uint8)
    rows[[0, -1]] = outer
    rows[[1, -2]] = inner
    images = np.stack([rows, rows.T])[..., None]  # the same along the columns
    assert lighter_borders(images).tolist() == [True, True]


def test_lighter_borders_judges_each_image_on_its_own_and_averages_channels():
    images = np.stack([_frame(ring=100, centre=50), _frame(ring=10, centre=200), _frame(ring=30, centre=0)])
    assert lighter_borders(images[..., None]).tolist() == [True, False, True]
    rgb = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    rgb[0, ..., 0] = _frame(ring=255, centre=0)  # a red border: grey level 255 / 3
    rgb[0, 4:12, 4:12, 1] = 200  # a green centre: 200 / 3, darker
    assert lighter_borders(rgb).tolist() == [True]
    rgb[0, 4:12, 4:12, 2] = 200  # a cyan centre: 400 / 3, lighter
    assert lighter_borders(rgb).tolist() == [False]


# ---- images: decoding ------------------------------------------------------------------------------


def test_decode_reports_the_stored_mode_and_returns_the_requested_one(tmp_path):
    path = _png(tmp_path / "deep.png", np.array([[0, 65535]], dtype=np.uint16))
    image, stored = decode(path, "grayscale")
    assert stored == "I;16" and image.mode == "L" and np.asarray(image).tolist() == [[0, 255]]
    rgb, stored = decode(_png(tmp_path / "p.png", np.zeros((1, 1, 3), np.uint8)), "grayscale")
    assert stored == "RGB" and rgb.mode == "L"


def test_decode_errors_say_what_is_wrong_without_the_path(tmp_path):
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ImageReadError) as info:
        decode(tmp_path / "text.png", "grayscale")
    assert str(info.value) == "not an image file Pillow can read"
    data = (_png(tmp_path / "full.png", np.arange(4096, dtype=np.uint8).reshape(64, 64) * 3)).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as info:
        decode(tmp_path / "cut.png", "grayscale")
    assert str(info.value).startswith("corrupt or truncated image (") and str(info.value).endswith(")")


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for size in ((11, 10), (30, 30)):  # over the limit (Pillow warns), over twice the limit (Pillow raises)
        path = _png(tmp_path / f"{size[0]}.png", np.zeros(size, np.uint8))
        with pytest.raises(ImageReadError) as info:
            decode(path, "grayscale")
        assert str(info.value).startswith("refused: Image size (")


def test_other_pillow_warnings_do_not_reject_a_file(tmp_path):
    # A PNG with an animation-control chunk that declares 0 frames: Pillow warns and reads the still image.
    data = _png(tmp_path / "ok.png", np.full((2, 2), 7, np.uint8)).read_bytes()
    body = b"acTL" + struct.pack(">II", 0, 0)
    chunk = struct.pack(">I", 8) + body + struct.pack(">I", zlib.crc32(body))
    end_of_ihdr = 8 + 8 + 13 + 4
    (tmp_path / "apng.png").write_bytes(data[:end_of_ihdr] + chunk + data[end_of_ihdr:])
    with pytest.warns(UserWarning, match="Invalid APNG"):
        image, _ = decode(tmp_path / "apng.png", "grayscale")
    assert np.asarray(image).tolist() == [[7, 7], [7, 7]]


def test_a_crash_inside_pillow_is_reported_as_a_corrupt_image(tmp_path, monkeypatch):
    def crash(image, **options):
        raise IndexError("tile 7 out of range")

    monkeypatch.setattr(ImageOps, "exif_transpose", crash)
    with pytest.raises(ImageReadError) as info:
        decode(_png(tmp_path / "a.png", np.zeros((2, 2), np.uint8)), "grayscale")
    assert str(info.value) == "corrupt image (IndexError: tile 7 out of range)"


def test_load_image_returns_height_width_channels(tmp_path):
    path = _png(tmp_path / "c.png", np.full((2, 4, 3), (255, 0, 0), np.uint8))
    grey = load_image(path, 2, 4, "grayscale")
    assert grey.shape == (2, 4, 1) and grey.dtype == np.uint8 and (grey == 76).all()
    rgb = load_image(path, 2, 4, "rgb")
    assert rgb.shape == (2, 4, 3) and rgb[0, 0].tolist() == [255, 0, 0]
    padded = load_image(path, 4, 4, "grayscale", "pad")[..., 0]
    assert padded[0].tolist() == [0, 0, 0, 0] and padded[1].tolist() == [76, 76, 76, 76]


def test_load_images_leaves_zeros_for_unreadable_files_and_lists_them(tmp_path):
    good = _png(tmp_path / "good.png", np.full((2, 4, 3), 200, np.uint8))  # 4 wide, 2 high, grey RGB
    (tmp_path / "bad.png").write_bytes(b"nope")
    images, failed = load_images([str(tmp_path / "bad.png"), str(good)], 4, 4, "grayscale", "pad")
    assert images.shape == (2, 4, 4, 1) and images.dtype == np.uint8
    assert (images[0] == 0).all()
    assert images[1, ..., 0].tolist() == [[0] * 4, [200] * 4, [200] * 4, [0] * 4]
    assert failed == [(0, "not an image file Pillow can read")]
    empty, failed = load_images([], 5, 6, "grayscale")
    assert empty.shape == (0, 5, 6, 1) and failed == []


def test_scale_maps_uint8_to_float32_unit_range():
    out = scale(np.array([0, 51, 255], dtype=np.uint8))
    assert out.dtype == np.float32 and out.tolist() == pytest.approx([0.0, 0.2, 1.0], abs=1e-7)
    assert images_module.SCALE == 1.0 / 255.0


# ---- prediction: pure helpers and the CSV --------------------------------------------------------------


def test_inference_batch_is_about_64_mb_of_float32_within_8_and_1024():
    assert inference_batch_size((28, 28, 1)) == 1024
    assert inference_batch_size((512, 512, 3)) == 21  # 64 MiB / (4 * 786,432 bytes)
    assert inference_batch_size((2048, 2048, 3)) == 8
    assert inference_batch_size((128, 128, 1)) == 1024 and inference_batch_size((256, 256, 1)) == 256


def test_files_to_predict_takes_a_file_or_a_folder(tmp_path):
    image = _png(tmp_path / "one.png", np.zeros((2, 2), np.uint8))
    assert files_to_predict(image) == ([str(image)], [])
    folder = tmp_path / "in"
    _tree(folder, ["b.png", "a.txt", ".hidden.png"])
    os.mkfifo(folder / "pipe")
    files, skipped = files_to_predict(folder)
    assert files == [str(folder / "a.txt"), str(folder / "b.png")]
    assert skipped == [(str(folder / "pipe"), "not a regular file")]  # hidden files are not reported


def test_files_to_predict_names_a_missing_target(tmp_path):
    with pytest.raises(DatasetError) as info:
        files_to_predict(tmp_path / "nothing")
    assert str(info.value) == f"{tmp_path / 'nothing'}: no such folder or image file to predict"


def test_invert_where_needed_follows_the_setting():
    dark_on_light = np.full((1, 16, 16, 1), 255, np.uint8)
    dark_on_light[0, 4:12, 4:12] = 0
    light_on_dark = 255 - dark_on_light
    both = np.concatenate([dark_on_light, light_on_dark])
    assert (invert_where_needed(both.copy(), "true", False) == 255 - both).all()
    assert (invert_where_needed(both.copy(), "false", False) == both).all()
    auto = invert_where_needed(both.copy(), "auto", trained_light=False)  # trained on light digits on black
    assert (auto == np.concatenate([light_on_dark, light_on_dark])).all()
    auto = invert_where_needed(both.copy(), "auto", trained_light=True)
    assert (auto == np.concatenate([dark_on_light, dark_on_light])).all()


def test_rank_orders_classes_by_probability_and_flags_low_confidence():
    from mnist_folders.serve.prediction import UNCERTAIN, rank  # new in this version: imported here, not at the top

    probabilities = np.array([[0.125, 0.5, 0.375, 0.0], [0.25, 0.25, 0.125, 0.375], [0.5, 0.5, 0.0, 0.0]])
    names, paths = ["a", "b", "c", "d"], ["x.png", "y.png", "z.png"]
    rows = rank(probabilities.astype(np.float32), names, paths, min_confidence=0.375)
    assert [r.path for r in rows] == paths
    assert rows[0].top_k == [("b", 0.5), ("c", 0.375), ("a", 0.125)]
    assert [[name for name, _ in r.top_k] for r in rows[1:]] == [["d", "a", "b"], ["a", "b", "c"]]  # ties: in order
    assert [(r.class_name, r.confidence, r.uncertain) for r in rows] == [("b", 0.5, False), ("d", 0.375, False),
                                                                         ("a", 0.5, False)]  # 0.375: not under it
    unsure = rank(probabilities[1:2], names, ["y.png"], min_confidence=0.5)[0]
    assert (unsure.class_name, unsure.confidence, unsure.uncertain, unsure.top_k[0]) == (UNCERTAIN, 0.375, True,
                                                                                         ("d", 0.375))
    many = np.zeros((1, 40), np.float32)
    many[0, [5, 20, 33, 39]] = 0.25  # a four-way tie among 40 classes: the first classes win
    assert [name for name, _ in rank(many, [f"c{i}" for i in range(40)], ["m"])[0].top_k] == ["c5", "c20", "c33"]
    two = rank(np.array([[0.25, 0.75]], np.float32), ["a", "b"], ["p"])[0]  # fewer classes than TOP_K
    assert two.top_k == [("b", 0.75), ("a", 0.25)] and two.class_name == "b" and not two.uncertain


def test_csv_header_lists_the_runners_up():
    assert csv_header(1) == ["path", "class", "confidence"]
    assert csv_header(2) == ["path", "class", "confidence", "top2", "top2_confidence"]
    assert csv_header() == csv_header(3) == ["path", "class", "confidence", "top2", "top2_confidence", "top3",
                                             "top3_confidence"]


def test_csv_text_is_exact_with_crlf_and_six_decimals():
    rows = [Prediction("d/a.png", "7", 0.9123456, [("7", 0.9123456), ("1", 0.05)]),
            Prediction("d/b, c.png", "+1", 0.5, [("+1", 0.5), ("7", 0.25)])]
    assert to_csv(rows) == ("path,class,confidence,top2,top2_confidence\r\n"
                            "d/a.png,7,0.912346,1,0.050000\r\n"
                            "\"d/b, c.png\",'+1,0.500000,7,0.250000\r\n")


def test_csv_of_no_predictions_is_the_default_header():
    assert to_csv([]) == "path,class,confidence,top2,top2_confidence,top3,top3_confidence\r\n"


# ---- settings: Option ------------------------------------------------------------------------------


@pytest.mark.parametrize("rules, text, phrase", [
    ({}, "", None),
    ({"low": 1}, ">= 1", "at least 1"),
    ({"low": 0.0, "low_open": True}, "> 0", "greater than 0"),
    ({"low": 0.0, "high": 1.0}, "[0, 1]", "in [0, 1]"),
    ({"low": 0.0, "high": 1.0, "low_open": True, "high_open": True}, "(0, 1)", "in (0, 1)"),
    ({"low": 0.5, "high": 180.0, "high_open": True}, "[0.5, 180)", "in [0.5, 180)"),
    ({"low": 1e-05, "high": 2**31 - 1, "low_open": True}, "(1e-05, 2147483647]", "in (1e-05, 2147483647]"),
])
def test_range_text_and_phrase(rules, text, phrase):
    opt = Option("h", "training", "float", **rules)
    assert opt.range_text() == text
    if phrase is not None:
        assert opt.range_phrase() == phrase


@pytest.mark.parametrize("rules, value, ok", [
    ({"low": 1}, 1, True), ({"low": 1}, 0, False),
    ({"low": 1, "low_open": True}, 1, False), ({"low": 1, "low_open": True}, 2, True),
    ({"low": 0, "high": 5}, 5, True), ({"low": 0, "high": 5}, 6, False),
    ({"low": 0, "high": 5, "high_open": True}, 5, False), ({"low": 0, "high": 5, "high_open": True}, 4, True),
    ({"low": 0, "low_open": True, "high": 5}, 5, True),
    ({}, 10**9, True),
])
def test_bounds_are_inclusive_unless_open(rules, value, ok):
    opt = Option("h", "training", "int", **rules)
    if ok:
        opt.check("n", value)
    else:
        with pytest.raises(SettingError, match=r"^n must be "):
            opt.check("n", value)


def _message(opt, value, name="x"):
    with pytest.raises(SettingError) as info:
        opt.check(name, value)
    return str(info.value)


def test_type_errors_name_the_setting_the_type_and_the_words_allowed():
    words = Option("h", "training", "int", low=1, choices=("auto", "max"))
    assert _message(words, "ten", "epochs") == "epochs must be of type int or one of auto, max. Received: epochs='ten'"
    assert _message(words, 2.5, "epochs") == "epochs must be of type int or one of auto, max. Received: epochs=2.5"
    words.check("epochs", "max")
    assert _message(Option("h", "image", "int"), "7") == "x must be of type int. Received: x='7'"
    assert _message(Option("h", "image", "str", choices=("a", "b")), 3) == "x must be of type str. Received: x=3"
    assert _message(Option("h", "image", "float", low=0), "1") == "x must be of type float. Received: x='1'"


def test_a_word_outside_the_choices_lists_them():
    opt = Option("h", "image", "str", choices=("stretch", "pad"))
    assert _message(opt, "crop", "resize_method") == ("resize_method must be one of stretch, pad. "
                                                      "Received: resize_method='crop'")
    opt.check("resize_method", "pad")
    Option("h", "paths", "str").check("train_dir", "anything/at all")  # no choices: any text


def test_choices_can_be_computed_when_checked():
    opt = Option("h", "training", "str", choices=lambda: ("mlp", "cnn"))
    assert opt.allowed() == ("mlp", "cnn")
    opt.check("model", "cnn")
    assert _message(opt, "big", "model") == "model must be one of mlp, cnn. Received: model='big'"


def test_out_of_range_messages_use_words():
    assert _message(Option("h", "t", "int", low=1), 0, "epochs") == "epochs must be at least 1. Received: epochs=0"
    assert _message(Option("h", "t", "float", low=0.0, low_open=True), -0.5, "learning_rate") == (
        "learning_rate must be greater than 0. Received: learning_rate=-0.5")
    assert _message(Option("h", "t", "float", low=0.0, high=1.0, high_open=True), 1.0, "zoom_range") == (
        "zoom_range must be in [0, 1). Received: zoom_range=1.0")
    assert _message(Option("h", "t", "float", low=0.0), float("inf")) == "x must be at least 0. Received: x=inf"
    unit = Option("h", "t", "float", low=0.0, high=1.0)
    assert _message(unit, float("nan")) == "x must be in [0, 1]. Received: x=nan"


def test_names_are_a_list_of_strings():
    opt = Option("h", "classes", "names")
    opt.check("class_names", ["a", "b"])
    opt.check("class_names", [])
    for bad in ("a,b", ["a", 1], ("a", "b")):
        assert _message(opt, bad, "class_names").startswith("class_names must be of type names. Received: ")


def test_option_fields_infer_the_kind_from_the_default():
    fields = {
        "i": option(3, "an int", "image"), "f": option(0.5, "a float", "training", low=0.0),
        "s": option("x", "a str", "paths"), "n": option(None, "names", "classes", "names"),
    }
    assert {k: f.metadata["option"].kind for k, f in fields.items()} == {"i": "int", "f": "float", "s": "str",
                                                                        "n": "names"}
    assert [f.default for f in fields.values()] == [3, 0.5, "x", None]
    described = fields["f"].metadata["option"]
    assert (described.help, described.group, described.low) == ("a float", "training", 0.0)


# ---- settings: Setting ----------------------------------------------------------------------------


def test_a_named_model_fills_its_own_defaults():
    s = Setting(model="strong")
    spec = MODELS["strong"]
    assert (s.optimizer, s.learning_rate, s.lr_decay, s.label_smoothing) == (
        spec.optimizer, spec.learning_rate, spec.lr_decay, spec.label_smoothing)
    assert (s.rotation_range, s.shift_range, s.zoom_range, s.dtype_policy) == (
        spec.rotation_range, spec.shift_range, spec.zoom_range, spec.dtype_policy)
    assert s.augments
    assert Setting(model="strong", optimizer="sgd").optimizer == "sgd"  # a chosen value wins
    plain = Setting(model="mlp")
    assert not plain.augments and plain.learning_rate == 0.001
    assert Setting().optimizer is None  # model = auto: chosen when training sees the data


def test_paths_default_under_data_dir():
    s = Setting(data_dir="d")
    assert (str(s.train_path), str(s.test_path), str(s.predict_path)) == ("d/train", "d/test", "d/tmp")
    assert s.val_path is None and str(s.model_path) == "models/d"  # the model directory follows the data
    s = Setting(data_dir="d", train_dir="t", test_dir="e", val_dir="v", predict_dir="p", model_dir="m")
    assert [str(p) for p in (s.train_path, s.test_path, s.val_path, s.predict_path, s.model_path)] == [
        "t", "e", "v", "p", "m"]


def test_input_shape_needs_a_resolved_colour_mode():
    assert Setting(color_mode="rgb", image_height=32, image_width=24).input_shape == (32, 24, 3)
    assert Setting(color_mode="grayscale").channels == 1
    with pytest.raises(KeyError):
        Setting().channels


def test_toml_booleans_for_invert_become_words():
    assert Setting(invert=True).invert == "true" and Setting(invert=False).invert == "false"


@pytest.mark.parametrize("values, message", [
    ({"model_dir": " "}, "model_dir must name a folder. Received: model_dir=''"),
    ({"image_height": None}, "image_height must be set. Received: image_height=None"),
    ({"pipeline": "idg", "resize_method": "pad"},
     "resize_method='pad' needs pipeline='tfdata' (ImageDataGenerator only stretches)"),
    ({"class_names": ["a", "b", "a"]}, "class_names has duplicates. Received: ['a', 'b', 'a']"),
    ({"class_names": ["a"]}, "class_names needs at least 2 classes. Received: ['a']"),
    ({"class_names": "a,b"}, "class_names must be of type names. Received: class_names='a,b'"),
    ({"image_width": 0}, "image_width must be in [1, 2048]. Received: image_width=0"),
    ({"model": ["mlp"]}, "model must be of type str. Received: model=['mlp']"),
])
def test_setting_errors_name_the_bad_value(values, message):
    with pytest.raises(SettingError) as info:
        Setting(**values)
    assert str(info.value) == message


def test_valid_combinations_are_accepted():
    Setting(pipeline="idg", resize_method="stretch", class_names=["a", "b"], optimizer=None, model="auto")
    Setting(train_dir=None, val_dir=None, backbone_weights=None)


def test_unknown_keys_suggest_the_closest_and_name_the_source():
    with pytest.raises(SettingError) as info:
        Setting.from_dict({"image_hieght": 3}, source="my.toml")
    assert str(info.value) == "my.toml: unknown setting 'image_hieght' (did you mean 'image_height'?)"
    with pytest.raises(SettingError) as info:
        Setting.from_dict({"zzz": 3})
    assert str(info.value) == "settings: unknown setting 'zzz'"
    assert Setting.from_dict({"epochs": 4}).epochs == 4


def test_toml_file_then_flags(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('epochs = 3\nmodel_dir = "m"\ninvert = true\n')
    assert chosen_values(config, {"epochs": 5, "seed": None}) == {"epochs": 5, "model_dir": "m", "invert": True}
    assert chosen_values(None, None) == {}
    s = Setting.from_sources(config, {"epochs": 5, "seed": None})
    assert (s.epochs, s.model_dir, s.invert, s.seed) == (5, "m", "true", 1337)
    assert Setting.from_sources() == Setting()
    config.write_text("epoch = 3\n")
    with pytest.raises(SettingError, match=f"^{config}: unknown setting 'epoch'"):
        Setting.from_sources(config)
    with pytest.raises(SettingError, match="^settings: unknown setting 'epoch'"):
        Setting.from_sources(None, {"epoch": 3})


def test_toml_errors_name_the_file(tmp_path):
    with pytest.raises(SettingError) as info:
        read_toml(tmp_path / "missing.toml")
    assert str(info.value) == f"{tmp_path / 'missing.toml'}: config file not found"
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = = 3\n")
    with pytest.raises(SettingError) as info:
        read_toml(bad)
    assert str(info.value).startswith(f"{bad}: invalid TOML (") and "line 1" in str(info.value)
    sections = tmp_path / "sections.toml"
    sections.write_text('seed = 1\n[training]\nepochs = 3\n')
    with pytest.raises(SettingError) as info:
        read_toml(sections)
    assert str(info.value) == f"{sections}: sections are not used; put 'training''s keys at the top level"
    (tmp_path / "ok.toml").write_text('seed = 1\nclass_names = ["a", "b"]\n')
    assert read_toml(str(tmp_path / "ok.toml")) == {"seed": 1, "class_names": ["a", "b"]}


def test_a_saved_setting_takes_the_users_choices_but_not_contradictions():
    saved = Setting(model="mlp", color_mode="grayscale", data_dir="old", train_dir="old/tr", test_dir="old/te",
                    predict_dir="old/p", model_dir="models/x", image_height=20)
    moved = Setting.for_model(saved, {"data_dir": "new", "invert": "true", "image_height": 20})
    assert [str(p) for p in (moved.train_path, moved.test_path, moved.predict_path)] == [
        "new/train", "new/test", "new/tmp"]
    assert moved.invert == "true" and moved.model == "mlp" and moved.model_dir == "models/x"
    kept = Setting.for_model(saved, {"test_dir": "other"})
    assert (str(kept.train_path), str(kept.test_path), kept.data_dir) == ("old/tr", "other", "old")
    with pytest.raises(SettingError) as info:
        Setting.for_model(saved, {"image_height": 32, "color_mode": "rgb", "seed": 3})
    assert str(info.value) == ("models/x: the model was trained otherwise; remove image_height=32 (trained with 20), "
                               "color_mode='rgb' (trained with 'grayscale') or train a new model")


def test_to_dict_and_replace():
    s = Setting(seed=5)
    values = s.to_dict()
    assert values["seed"] == 5 and set(values) == {f.name for f in dataclasses.fields(Setting)}
    other = s.replace(seed=6)
    assert other.seed == 6 and s.seed == 5
    with pytest.raises(SettingError):
        s.replace(seed=-1)


# ---- evaluation metrics (NumPy only) ----

def test_confusion_matrix_rows_are_true_classes_and_columns_predicted():
    from mnist_folders.serve.evaluation import confusion_matrix

    matrix = confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 4)
    assert matrix.tolist() == [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]


def test_cross_entropy_is_keras_categorical_crossentropy():
    from mnist_folders.serve.evaluation import cross_entropy

    p = np.array([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.5, 0.25, 0.25]], dtype=np.float32)
    expected = -(np.log(0.7) + np.log(1 - 1e-7) + np.log(0.25)) / 3  # 1.0 clipped to 1 - epsilon
    assert cross_entropy(p, np.array([0, 1, 2])) == pytest.approx(expected, rel=1e-6)
    assert cross_entropy(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-np.log(1e-7), rel=1e-6)
    assert cross_entropy(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 0.0


def test_misclassified_keeps_the_most_confident_mistakes_across_chunks():
    from mnist_folders.serve.evaluation import Mistakes

    kept = Mistakes(np.zeros((0, 1, 1, 1), np.uint8), *(np.zeros(0, t) for t in (np.int64, np.int64, np.float32,
                                                                              np.int64)))
    for start, confidences in ((0, [0.6, 0.9, 0.7]), (3, [0.95, 0.6, 0.8])):
        probabilities = np.array([[c, 1 - c] for c in confidences], dtype=np.float32)  # every answer: class 0
        images = np.arange(start, start + 3, dtype=np.uint8).reshape(3, 1, 1, 1)
        kept = kept.add(images, np.array([1, 1, 1]), probabilities, np.arange(start, start + 3), limit=4)
    assert kept.order.tolist() == [3, 1, 5, 2]  # the four most confident of six, most confident first
    assert kept.images.ravel().tolist() == [3, 1, 5, 2] and kept.predicted.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("classes", [10, 1001])
def test_the_text_report_stays_short_with_a_thousand_classes(classes):
    # 1,001 classes printed the whole matrix (5 MB).
    from mnist_folders.serve.evaluation import EvaluationReport, format_report

    names = [f"class_{k}" for k in range(classes)]
    confusion = np.eye(classes, dtype=int) * 3
    confusion[5, 7], confusion[2, 0] = 9, 4  # the most frequent confusions, in that order
    report = EvaluationReport("test", int(confusion.sum()), 0.5, 0.9, 0.9, names, [3] * classes, [1.0] * classes,
                              [1.0] * classes, confusion.tolist(), [], [], [])
    text = format_report(report)
    if classes == 10:
        assert "confusion matrix (rows: true class" in text and len(text.splitlines()) < 40
    else:
        assert len(text) < 100 * classes  # the per-class table, not a 1001 x 1001 matrix
        confusions = text.split("matrix is in evaluation.json)\n")[1].splitlines()
        assert confusions == ["  class_5 -> class_7: 9", "  class_2 -> class_0: 4"]


def test_a_row_cut_inside_a_quoted_line_break_is_dropped_whole(tmp_path):
    # a kill cut a row inside a quoted name holding CR/LF; the restarted watcher cut the file at
    # that CRLF, kept half a row, and appended to it.
    from mnist_folders.serve.prediction import csv_header
    from mnist_folders.serve.watch import read_done

    header = ",".join(csv_header(3)) + "\r\n"
    whole = '"dir/new\r\nline.png",7,0.9,1,0.05,2,0.01\r\n"say ""hi"".png",1,0.8,7,0.1,2,0.05\r\n'
    cut = '"dir/second\r\nline.png",3,0.'
    path = tmp_path / "watch.csv"
    path.write_bytes((header + whole + cut).encode())
    assert read_done(path, csv_header(3)) == {"dir/new\r\nline.png", 'say "hi".png'}
    assert path.read_bytes() == (header + whole).encode()


def test_an_idle_watcher_lists_the_folder_less_and_less_often(tmp_path):
    # 4 listings a second of 20,000 predicted files kept 31 % of a core busy.
    from mnist_folders.serve.watch import WatchState, poll_interval, ready_files

    state = WatchState(last_change=100.0)
    assert [poll_interval(state, 100.0 + idle, 0.25) for idle in (0, 1.9, 5, 10, 60)] == [0.25, 0.25, 0.5, 1.0, 2.0]
    (tmp_path / "new.png").write_bytes(b"x")
    ready_files(tmp_path, state, 500.0, 0.5)  # a file appears: back to the short interval
    assert state.last_change == 500.0 and poll_interval(state, 500.5, 0.25) == 0.25
    ready_files(tmp_path, state, 501.0, 0.5)  # unchanged since: no new change
    assert state.last_change == 500.0


# ---- image geometry and modes, the CPU probe, the predictions CSV, setting checks ----

def _white(width: int, height: int) -> Image.Image:
    return Image.new("L", (width, height), 255)


def test_pad_keeps_the_aspect_ratio_with_black_margins():
    out = np.asarray(resize(_white(40, 20), 20, 20, "pad"))  # a 2:1 image into a square
    assert out.shape == (20, 20)
    assert (out[:5] == 0).all() and (out[-5:] == 0).all()  # margins above and below
    assert (out[6:14] == 255).all()  # the image, full width, in the middle


def test_crop_keeps_the_aspect_ratio_and_cuts_the_centre():
    image = np.zeros((20, 40), dtype=np.uint8)
    image[:, 10:30] = 255  # a white centre square between black sides
    out = np.asarray(resize(Image.fromarray(image), 20, 20, "crop"))
    assert out.shape == (20, 20) and (out == 255).all()


def test_stretch_fills_the_whole_target():
    image = np.zeros((20, 40), dtype=np.uint8)
    image[:, :20] = 255  # left half white
    out = np.asarray(resize(Image.fromarray(image), 10, 10, "stretch"))
    assert out.shape == (10, 10) and (out[:, :4] == 255).all() and (out[:, 6:] == 0).all()


def test_transparency_is_flattened_onto_black_and_16_bit_is_scaled():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 128))
    rgb = np.asarray(convert_mode(rgba, "rgb"))
    assert rgb.shape == (4, 4, 3) and abs(int(rgb[0, 0, 0]) - 128) <= 1 and rgb[0, 0, 1:].tolist() == [0, 0]
    sixteen = Image.fromarray(np.full((4, 4), 65535 // 2, dtype=np.uint16))
    assert abs(int(np.asarray(convert_mode(sixteen, "grayscale"))[0, 0]) - 127) <= 1


def test_exif_orientation_is_applied(tmp_path):
    image = np.zeros((10, 30), dtype=np.uint8)
    image[:, :5] = 255  # a bright strip on the left of a wide image
    stored = Image.fromarray(image).rotate(90, expand=True)  # stored sideways: 30 high, 10 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    stored.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = load_image(tmp_path / "phone.jpg", 10, 30, "grayscale")[..., 0]
    assert upright[:, :5].mean() > 200 and upright[:, 10:].mean() < 30


def test_colour_detection(tmp_path):
    _white(8, 8).convert("RGB").save(tmp_path / "grey_rgb.png")
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "red.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    assert [is_colour(tmp_path / n) for n in ("grey_rgb.png", "red.png", "junk.png")] == [False, True, False]


def test_lighter_borders_tells_dark_on_light():
    dark = np.zeros((2, 16, 16, 1), dtype=np.uint8)
    dark[0, 4:12, 4:12] = 255  # a white digit on black
    dark[1] = 255 - dark[0]  # a black digit on white
    assert lighter_borders(dark).tolist() == [False, True]


def test_cpu_probe_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("model name\t: x\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert cpu_has_bf16(info)
    info.write_text("flags\t\t: fpu sse avx512f\nbugs\t\t: avx512_bf16_lookalike\n")
    assert not cpu_has_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu amx_tile amx_bf16\n")
    assert cpu_has_bf16(info)
    assert not cpu_has_bf16(tmp_path / "missing")
    if Path("/proc/cpuinfo").is_file():  # the real file: the answer grep gives
        grep = subprocess.run(["grep", "-qwE", "^flags.*(avx512_bf16|amx_bf16)", "/proc/cpuinfo"])
        assert cpu_has_bf16() == (grep.returncode == 0)


def test_predictions_csv_round_trips_awkward_names():
    names = ["=cmd()", "a;b:c", "plain"]
    rows = [Prediction("dir/with\rreturn.png", names[0], 0.7, [(names[0], 0.7), (names[1], 0.2), (names[2], 0.1)]),
            Prediction(b"caf\xe9.png".decode("utf-8", "surrogateescape"), names[1], 0.5,
                       [(names[1], 0.5), (names[2], 0.3), (names[0], 0.2)])]
    parsed = list(csv.DictReader(io.StringIO(to_csv(rows), newline="")))
    assert len(parsed) == 2
    assert parsed[0]["path"] == "dir/with\rreturn.png" and parsed[0]["class"] == "'=cmd()"
    assert parsed[0]["top2"] == "a;b:c" and float(parsed[0]["top2_confidence"]) == 0.2
    assert parsed[1]["path"] == "caf\\xe9.png"
    assert [float(parsed[1][k]) for k in ("confidence", "top2_confidence", "top3_confidence")] == [0.5, 0.3, 0.2]
    assert safe_cell("-1") == "'-1" and safe_cell("1-") == "1-"


@pytest.mark.parametrize("value, ok", [(0, False), (1, True), (0.5, True), (1.5, False), (float("nan"), False),
                                       (True, False), ("1", False)])
def test_option_checks_type_and_range(value, ok):
    option = Option("help", "training", "float", low=0.0, high=1.0, low_open=True)
    if ok:
        option.check("x", value)
    else:
        with pytest.raises(SettingError, match="x must"):
            option.check("x", value)


def test_option_accepts_words_beside_integers():
    option = Option("help", "training", "int", low=1, choices=("auto",))
    option.check("epochs", "auto")
    option.check("epochs", 3)
    for bad in ("ten", 0, 2.5):
        with pytest.raises(SettingError):
            option.check("epochs", bad)


def test_settings_and_help_do_not_load_tensorflow():
    # --help and every settings error must come back fast: no TensorFlow or Keras import on that path.
    code = ("import sys, mnist_folders.settings, mnist_folders.serve.prediction, mnist_folders.commands.cli;"
            "mnist_folders.settings.Setting(model='strong');"
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "[]"
