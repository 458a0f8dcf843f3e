"""Turn any image file into a model input array, the same way everywhere.

Training (tf.data pipeline), evaluation and prediction all read files through
:func:`load_image`, so a picture is converted identically wherever it is seen.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# The extensions Keras' directory iterators list (lower-cased, compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")


class ImageReadError(Exception):
    """A file could not be read as an image; the message says why (no path)."""


def is_image_name(name: str) -> bool:
    """True for a non-hidden file name with one of :data:`IMAGE_EXTENSIONS`."""
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float images to 8-bit grayscale."""
    array = np.asarray(image)
    if image.mode == "F":
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low or 1.0) * 255.0
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
    return image.convert("L" if color_mode == "grayscale" else "RGB")


def load_image(path: str | Path, height: int, width: int, color_mode: str) -> np.ndarray:
    """Read an image file as a ``(height, width, C)`` uint8 array.

    ``C`` is 1 for ``grayscale`` and 3 for ``rgb``. Images of another size are
    resized with bilinear interpolation (aspect ratio not kept).

    Raises:
        ImageReadError: not an image, truncated or corrupt data, or
            dimensions over Pillow's decompression-bomb limit.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                image = convert_mode(image, color_mode)
    except UnidentifiedImageError:
        raise ImageReadError("not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"refused: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"corrupt or truncated image ({exc})") from None
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., np.newaxis] if array.ndim == 2 else array
