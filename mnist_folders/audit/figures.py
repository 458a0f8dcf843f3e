"""The dataset check's picture: duplicate groups side by side with their paths (matplotlib, Agg backend)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # file output only; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import atomic_path  # noqa: E402

CAPTION_WIDTH = 24  # characters per caption line under an image


def duplicate_groups(rows: Sequence[tuple[str, Sequence[tuple[np.ndarray, str]]]], path: Path) -> Path:
    """One row per group: its label above the first image, every image captioned with its path.

    ``rows`` holds ``(label, [(image, caption), ...])``; images are
    ``(H, W)`` or ``(H, W, C)`` uint8 of any size (C = 1 drawn in gray).
    With no rows the figure says that no duplicates were found. Written
    atomically; returns ``path``.
    """
    columns = max((len(cells) for _, cells in rows), default=1)
    figure, axes = plt.subplots(max(1, len(rows)), columns, figsize=(2.1 * columns, 2.4 * max(1, len(rows))),
                                squeeze=False, layout="constrained")
    for axis in axes.flat:
        axis.axis("off")
    for (label, cells), row_axes in zip(rows, axes):
        for column, (axis, (image, caption)) in enumerate(zip(row_axes, cells)):
            axis.axis("on")
            axis.set_xticks([])
            axis.set_yticks([])
            gray = image.ndim == 2 or image.shape[-1] == 1
            axis.imshow(image.squeeze(-1) if image.ndim == 3 and gray else image,
                        cmap="gray" if gray else None, vmin=0, vmax=255)
            axis.set_xlabel("\n".join(textwrap.wrap(caption, CAPTION_WIDTH, break_on_hyphens=False)), fontsize=6)
            if column == 0:
                axis.set_title(label, fontsize=8, loc="left")
    if not rows:
        figure.text(0.5, 0.5, "no exact or near duplicates found", ha="center", va="center")
    else:
        figure.suptitle("worst duplicate groups (one per row)")
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
