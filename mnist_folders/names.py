"""File names as text a terminal, a log or a CSV can take.

Linux file names are bytes; Python hands undecodable ones over with
"surrogate escapes" (``b'caf\\xe9'`` -> ``'caf\\udce9'``), which cannot be
encoded to UTF-8 for printing. :func:`display` writes such bytes as ``\\xNN``;
:func:`safe_cell` keeps a CSV cell from running as a spreadsheet formula.
"""

import os


def display(path: "str | os.PathLike[str]") -> str:
    """``path`` as printable UTF-8 text: undecodable bytes become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


# A cell starting with one of these is a formula to a spreadsheet (OWASP's "CSV injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would run it as a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


# Written first into every model directory this tool trains (artifacts.claim_for_training): what makes a
# folder ours, and what the data listings leave out (a model directory inside a train or predict folder).
MODEL_DIR_MARKER = ".mnist_folders"
MAX_CLASS_NAME_BYTES = 255  # a file name's limit on Linux and macOS: a class name is a folder name


def class_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a class name (it becomes a folder of ``--sort-into`` and a line of
    ``labels.txt``), or ``None``: empty, ``.`` or ``..``, a character no file name can hold, a path separator,
    a NUL, a line break, or longer than :data:`MAX_CLASS_NAME_BYTES` bytes."""
    if name in ("", ".", ".."):
        return f"class name {name!r} is not a folder name"
    try:
        size = len(os.fsencode(name))
    except UnicodeEncodeError:  # a lone surrogate such as "\ud800": JSON holds one, no file name can
        return f"class name {ascii(name)} holds a character no file name can (an unpaired surrogate)"
    for bad, what in (("/", "a path separator"), ("\\", "a path separator"), ("\0", "a NUL"),
                      ("\n", "a line break"), ("\r", "a line break")):
        if bad in name:
            return f"class name {display(name)!r} holds {what}"
    if size > MAX_CLASS_NAME_BYTES:
        return f"class name {display(name)[:40]!r}... is longer than {MAX_CLASS_NAME_BYTES} bytes"
    return None
