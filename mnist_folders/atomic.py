"""Write files atomically: a temporary file in the same directory, then a rename.

A reader (or a re-run after a kill) sees either the previous complete file or
the new complete file, never a truncated one. Temporary names start with a dot
and contain ``.tmp`` (``.<name>.<random>.tmp<suffix>``), so that no image
lister picks them up and :func:`remove_stale_temporaries` finds every one a
killed writer left.
"""

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# mkstemp creates files readable by the owner only; give them the permissions
# a plain open() would (0o666 minus the umask). The umask can only be read by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK
_NAME_MAX = 255  # bytes in one file name on Linux file systems


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` on success.

    ``suffix`` lets writers that insist on an extension (Keras wants ``.keras``
    or ``.weights.h5``) be given one. On any exception the temporary file is
    removed and ``final`` is left as it was. A long ``final`` name is
    shortened in the temporary name, so any valid name can be written.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    stem = final.name[: _NAME_MAX - 24 - len(suffix.encode())]
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _FILE_MODE)
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes(final: str | Path, data: bytes) -> None:
    """Atomically replace ``final`` with ``data``."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


def write_text(final: str | Path, text: str) -> None:
    """Atomically replace ``final`` with ``text`` (UTF-8)."""
    write_bytes(final, text.encode("utf-8"))


def remove_stale_temporaries(directory: str | Path, names: tuple[str, ...] | None = None) -> int:
    """Delete the temporary files that killed writers left in ``directory``; return how many.

    ``names``: only the temporaries of these final file names (those the caller alone writes): another
    process may be writing its own files there at this moment (``evaluate`` its figures while ``train``
    resumes), and its live temporaries must stay.
    """
    removed = 0
    # ".last.keras.<random>.keras" and ".best.weights.h5.<random>.weights.h5": names of version 0.1.
    legacy = [*Path(directory).glob(".last.keras.*.keras"), *Path(directory).glob(".best.weights.h5.*.weights.h5")]
    patterns = [f".{glob.escape(name)}.*.tmp*" for name in names] if names is not None else [".*.tmp*"]
    for path in [*(p for pattern in patterns for p in Path(directory).glob(pattern)), *legacy]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed
