"""Fast unit tests of the pure parts (NumPy and Pillow only, no TensorFlow):
image geometry and modes, the CPU probe, the predictions CSV, setting checks."""

import csv
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from mnist_folders.networks.dtype_policy import cpu_has_bf16
from mnist_folders.errors import SettingError
from mnist_folders.data.images import convert_mode, is_colour, lighter_borders, load_image, resize
from mnist_folders.names import safe_cell
from mnist_folders.serve.prediction import Prediction, to_csv
from mnist_folders.settings import Option


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
