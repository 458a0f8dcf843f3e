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
