"""Write files atomically: a temporary file in the same directory, then a rename.

A reader (or a re-run after a kill) sees either the previous complete file or
the new complete file, never a truncated one. Temporary names start with a dot
and end in ``.tmp`` so that no image lister picks them up.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# mkstemp creates files readable by the owner only; give them the permissions
# a plain open() would (0o666 minus the umask). The umask can only be read by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_path(final: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` on success.

    ``suffix`` lets writers that insist on an extension (Keras wants ``.keras``
    or ``.weights.h5``) be given one. On any exception the temporary file is
    removed and ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, _FILE_MODE)
    try:
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


def remove_stale_temporaries(directory: str | Path) -> int:
    """Delete ``.*.tmp`` files that a killed writer left in ``directory``; return how many."""
    removed = 0
    for path in Path(directory).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed
