"""Read IDX files, the format of the MNIST database, into NumPy arrays.

Format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST
DATABASE"): a 4-byte big-endian magic number ``0x00 0x00 <type> <ndim>``, then
``ndim`` big-endian uint32 dimension sizes, then the data, row-major. MNIST
images have magic 2051 (``0x00000803``: uint8, 3 dims ``(N, 28, 28)``); labels
have magic 2049 (``0x00000801``: uint8, 1 dim ``(N,)``).

Files may be gzipped (detected by their first two bytes, not their name). When
a ``SHA256SUMS`` file sits beside them, listing the SHA-256 of the *decompressed*
content under the name without ``.gz``, the checksum is verified too.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from ..errors import IdxFormatError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_GZIP_MAGIC = b"\x1f\x8b"

# The type byte of the magic number -> big-endian NumPy dtype (IDX spec).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

CHECKSUM_FILE = "SHA256SUMS"


def _read_bytes(path: Path) -> bytes:
    """Return the file's content, gunzipped when it starts with the gzip magic."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise IdxFormatError(f"{path}: file not found") from None
    except OSError as exc:
        raise IdxFormatError(f"{path}: cannot read ({exc.strerror})") from None
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxFormatError(f"{path}: corrupt gzip data ({exc})") from None


def _expected_checksum(path: Path) -> str | None:
    """The SHA-256 listed for ``path`` in a sibling SHA256SUMS file, if any."""
    sums = path.parent / CHECKSUM_FILE
    if not sums.is_file():
        return None
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    for line in sums.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:
            return parts[0].lower()
    return None


def read_idx(path: str | Path, expected_magic: int | None = None, verify: bool = True) -> np.ndarray:
    """Decode a whole IDX file (gzipped or raw) into an array.

    Args:
        path: the IDX file.
        expected_magic: when given, the magic number the file must carry
            (2051 for images, 2049 for labels).
        verify: check the SHA-256 against a sibling ``SHA256SUMS`` when the
            file is listed there.

    Returns:
        An array of the shape declared in the header, in native byte order
        (``uint8`` for MNIST).

    Raises:
        IdxFormatError: unreadable file, corrupt gzip, wrong magic, unknown
            data type, a data length that differs from the declared
            dimensions, or a checksum mismatch. The message names the file.
    """
    path = Path(path)
    data = _read_bytes(path)
    if verify:
        expected = _expected_checksum(path)
        if expected is not None:
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise IdxFormatError(
                    f"{path}: checksum mismatch (SHA-256 {actual[:12]}..., "
                    f"{CHECKSUM_FILE} says {expected[:12]}...)"
                )
    if len(data) < 4:
        raise IdxFormatError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise IdxFormatError(f"{path}: wrong magic number {magic}, expected {expected_magic}")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise IdxFormatError(f"{path}: not an IDX file (magic number {magic})")
    dtype = _IDX_DTYPES[data[2]]
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_len:
        raise IdxFormatError(f"{path}: truncated header ({ndim} dimensions, {len(data)} bytes)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected_len = header_len + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected_len:
        kind = "truncated" if len(data) < expected_len else "trailing bytes"
        raise IdxFormatError(
            f"{path}: {kind}: header declares shape {shape} "
            f"({expected_len} bytes) but the file holds {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_images(path: str | Path, verify: bool = True) -> np.ndarray:
    """Read an IDX image file: magic 2051, returns ``(N, H, W)`` uint8."""
    images = read_idx(path, IMAGES_MAGIC, verify)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxFormatError(f"{path}: expected (N, H, W) uint8 images, got {images.shape} {images.dtype}")
    return images


def read_labels(path: str | Path, verify: bool = True) -> np.ndarray:
    """Read an IDX label file: magic 2049, returns ``(N,)`` uint8."""
    labels = read_idx(path, LABELS_MAGIC, verify)
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise IdxFormatError(f"{path}: expected (N,) uint8 labels, got {labels.shape} {labels.dtype}")
    return labels


# File names of the two MNIST splits (the same names serve Fashion-MNIST).
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(source: Path, stem: str) -> Path:
    for candidate in (source / f"{stem}.gz", source / stem):
        if candidate.is_file():
            return candidate
    raise IdxFormatError(f"{source / stem}[.gz]: file not found")


def load_split(source: str | Path, split: str, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Load one split (``"train"`` or ``"test"``) from a directory of IDX files.

    Returns:
        ``(images, labels)``: ``(N, H, W)`` uint8 and ``(N,)`` uint8.

    Raises:
        IdxFormatError: a file is missing or malformed, or the image and
            label counts differ.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(SPLIT_FILES)}. Received: split={split!r}")
    source = Path(source)
    images_stem, labels_stem = SPLIT_FILES[split]
    images_path, labels_path = _find(source, images_stem), _find(source, labels_stem)
    images = read_images(images_path, verify)
    labels = read_labels(labels_path, verify)
    if len(images) != len(labels):
        raise IdxFormatError(
            f"{labels_path}: {len(labels)} labels but {images_path.name} holds {len(images)} images"
        )
    return images, labels
