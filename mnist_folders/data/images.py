"""Turn any image file into a model input array, the same way everywhere.

Training (tf.data pipeline), evaluation and prediction all read files through
:func:`load_image`, so a picture is converted identically wherever it is seen.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..settings import CHANNELS

# Image files by extension, compared case-insensitively: those Keras'
# image_dataset_from_directory reads (bmp, gif, jpeg, jpg, png) plus the extra
# ones its ImageDataGenerator lists (ppm, tif, tiff). Pillow decodes them all.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".tif", ".tiff")
SCALE = 1.0 / 255.0  # uint8 pixels -> [0, 1]: the one place images are rescaled


def scale(images):
    """uint8 pixels -> float32 in [0, 1]; a NumPy array or a TensorFlow tensor of any shape."""
    if hasattr(images, "astype"):
        return images.astype(np.float32) * np.float32(SCALE)
    import tensorflow as tf  # a tensor: TensorFlow is already loaded

    return tf.cast(images, tf.float32) * SCALE


class ImageReadError(Exception):
    """A file could not be read as an image; the message says why (no path)."""


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float images to 8-bit grayscale."""
    array = np.asarray(image)
    if image.mode == "F":
        if not np.isfinite(array).all():  # NaN made the whole scaled image black, with only a RuntimeWarning
            raise ImageReadError(f"float image with {int((~np.isfinite(array)).sum())} NaN or infinite pixels")
        low, high = float(array.min()), float(array.max())
        # float64: the range of float32 pixels (up to 2 x 3.4e38) overflowed, the image became black
        scaled = (array.astype(np.float64) - low) / (high - low or 1.0) * 255.0
    else:
        peak = 65535.0 if array.max() > 255 or image.mode.startswith("I;16") else 255.0
        scaled = array.astype(np.float64) * (255.0 / peak)
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def convert_mode(image: Image.Image, color_mode: str) -> Image.Image:
    """Convert any Pillow mode to ``L`` (grayscale) or ``RGB``.

    16-bit and float images are scaled to 8 bits; transparency (RGBA, LA,
    palette with a transparent colour) is flattened onto black, the background
    of MNIST digits; CMYK and YCbCr go through RGB.
    """
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba).convert("RGB")
    target = "L" if color_mode == "grayscale" else "RGB"
    return image if image.mode == target else image.convert(target)


def resize(image: Image.Image, height: int, width: int, method: str = "stretch") -> Image.Image:
    """Resize to ``(width, height)`` pixels with bilinear interpolation.

    ``stretch`` ignores the aspect ratio; ``pad`` keeps it and fills the
    margins with black; ``crop`` keeps it and cuts the centre out.
    """
    if image.size == (width, height):
        return image
    bilinear = Image.Resampling.BILINEAR
    if method == "pad":
        return ImageOps.pad(image, (width, height), method=bilinear, color=0)
    if method == "crop":
        return ImageOps.fit(image, (width, height), method=bilinear)
    return image.resize((width, height), bilinear)


def is_colour(path: str | Path, tolerance: float = 4.0) -> bool:
    """True when the image at ``path`` has colour: its channels differ by more than ``tolerance``
    grey levels on average (a 64x64 thumbnail); False for grayscale modes and unreadable files."""
    try:
        with Image.open(path) as image:
            if image.mode in ("1", "L", "LA", "I", "F") or image.mode.startswith("I;16"):
                return False
            image.draft("RGB", (64, 64))  # JPEG: decode at a reduced size
            rgb = np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.int16)
    except (OSError, SyntaxError, ValueError):
        return False
    return float(np.abs(rgb[..., 0] - rgb[..., 1]).mean() + np.abs(rgb[..., 1] - rgb[..., 2]).mean()) > tolerance


def typical_size(paths: list[str], sample: int = 200) -> tuple[int, int] | None:
    """The median ``(height, width)`` in pixels of up to ``sample`` evenly spaced files of ``paths``.

    Only the image headers are read. ``None`` when none of them is readable.
    """
    sizes = []
    for i in np.linspace(0, len(paths) - 1, min(sample, len(paths))).astype(int) if paths else []:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a size read from the header: no decompression happens
                with Image.open(paths[i]) as image:
                    sizes.append(image.size[::-1])
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            continue
    if not sizes:
        return None
    height, width = np.median(np.array(sizes), axis=0)
    return int(height), int(width)


def lighter_borders(images: np.ndarray) -> np.ndarray:
    """Which images have a border lighter than their centre: dark strokes on a light background.

    ``images`` is ``(N, H, W, C)`` (any dtype); returns ``(N,)`` bool. The
    border is the outer eighth of each side (at least one pixel); the centre
    is the middle half.
    """
    gray = images.mean(axis=-1, dtype=np.float64)
    _, h, w = gray.shape
    bh, bw = max(1, h // 8), max(1, w // 8)
    ring = np.ones((h, w), dtype=bool)
    ring[bh : h - bh, bw : w - bw] = False
    centre = gray[:, h // 4 : h - h // 4, w // 4 : w - w // 4].mean(axis=(1, 2))
    return gray[:, ring].mean(axis=1) > centre


# Modes Pillow's resize takes as they are: a thumbnail is made before the conversion in these, after it otherwise.
_RESIZABLE_MODES = ("1", "L", "P", "I", "F", "RGB", "RGBA", "LA", "CMYK", "YCbCr")


@contextmanager
def opened(path: str | Path, longest: int | None = None) -> Iterator[tuple[Image.Image, str]]:
    """Decode an image file: ``(image in the mode stored in the file, that mode)`` for the ``with`` block.

    The EXIF orientation tag is applied in place (the image as a viewer
    shows it: phones store photos sideways with such a tag). With
    ``longest``, the image is shrunk to at most ``longest`` pixels per side
    while it is decoded (a JPEG decodes at a reduced scale), so a huge image
    costs little memory.

    Raises:
        ImageReadError: not an image, truncated or corrupt data, or
            dimensions over Pillow's decompression-bomb limit; Pillow's
            errors raised inside the block become this too.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                stored = image.mode
                if longest is not None and stored in _RESIZABLE_MODES:
                    image.thumbnail((longest, longest), Image.Resampling.BILINEAR, reducing_gap=2.0)
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # not a copy: a 9000x9000 image is 81 MB a copy
                yield image, stored
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"refused: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"corrupt or truncated image ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow's parsers raise TypeError, IndexError, ... on crafted files
        raise ImageReadError(f"corrupt image ({type(exc).__name__}: {exc})") from None


def decode(path: str | Path, color_mode: str, longest: int | None = None) -> tuple[Image.Image, str]:
    """Read an image file: ``(image in L or RGB, the mode stored in the file)``.

    The file is decoded by :func:`opened` (at its own size, or at most
    ``longest`` pixels per side) and its mode converted by :func:`convert_mode`.

    Raises:
        ImageReadError: as :func:`opened`; a float image with NaN or
            infinite pixels.
    """
    with opened(path, longest) as (image, stored):
        image = convert_mode(image, color_mode)
        if longest is not None and max(image.size) > longest:  # a mode thumbnailed only once converted
            image.thumbnail((longest, longest), Image.Resampling.BILINEAR, reducing_gap=2.0)
        return image, stored


def load_image(path: str | Path, height: int, width: int, color_mode: str,
               resize_method: str = "stretch") -> np.ndarray:
    """Read an image file as a ``(height, width, C)`` uint8 array.

    ``C`` is 1 for ``grayscale`` and 3 for ``rgb``. The file is read by
    :func:`decode`; images of another size are resized by :func:`resize`
    with ``resize_method``.

    Raises:
        ImageReadError: as :func:`decode`.
    """
    image = resize(decode(path, color_mode)[0], height, width, resize_method)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., np.newaxis] if array.ndim == 2 else array


def load_images(paths: list[str], height: int, width: int, color_mode: str,
                resize_method: str = "stretch") -> tuple[np.ndarray, list[tuple[int, str]]]:
    """:func:`load_image` for each path: ``(len(paths), height, width, C)`` uint8 and the failures.

    An unreadable file leaves zeros in its row and is listed as
    ``(position in paths, reason)``; nothing is raised for it. Kept in this
    light module (NumPy and Pillow only) so that worker processes can import it
    without TensorFlow.
    """
    images = np.zeros((len(paths), height, width, CHANNELS[color_mode]), dtype=np.uint8)
    failed = []
    for i, path in enumerate(paths):
        try:
            images[i] = load_image(path, height, width, color_mode, resize_method)
        except ImageReadError as exc:
            failed.append((i, str(exc)))
    return images, failed


def invert_where_needed(images: np.ndarray, invert: str, trained_light: bool) -> np.ndarray:
    """Apply the ``invert`` setting to ``(N, H, W, C)`` uint8 images (in place; returned)."""
    if invert == "true":
        images = 255 - images
    elif invert == "auto":
        flip = lighter_borders(images) != trained_light
        images[flip] = 255 - images[flip]
    return images
