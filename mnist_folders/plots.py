"""PNG figures with matplotlib's Agg backend (no display needed): training
curves, confusion matrix, misclassified images and per-class samples.

Each function writes one PNG atomically and returns its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # file output only; must precede pyplot's import
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .atomic import atomic_path  # noqa: E402
from .names import display  # noqa: E402

MISCLASSIFIED_SHOWN = 40  # images in misclassified.png, most confident mistakes first


def _save(figure: plt.Figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def _show_image(axis: plt.Axes, image: np.ndarray) -> None:
    """Draw an ``(H, W, C)`` uint8 image, grayscale when ``C == 1``."""
    if image.shape[-1] == 1:
        axis.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
    else:
        axis.imshow(image)
    axis.set_xticks([])
    axis.set_yticks([])


def training_curves(history: Sequence[dict[str, float]], path: Path) -> Path:
    """Accuracy and loss per epoch, training and validation, side by side."""
    epochs = [int(row["epoch"]) for row in history]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("accuracy", "loss")):
        for prefix, label in (("", "training"), ("val_", "validation")):
            values = [row.get(prefix + metric) for row in history]
            if any(v is not None for v in values):
                axis.plot(epochs, values, marker="o", label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    return _save(figure, path)


def confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path) -> Path:
    """The confusion matrix as a heat map with counts (rows true, columns predicted)."""
    matrix = np.asarray(confusion)
    class_names = [display(name) for name in class_names]  # folder names with undecodable bytes
    n = len(class_names)
    size = min(max(5.0, 0.6 * n), 30.0)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    if n <= 30:  # counts and tick labels stop being legible beyond this
        axis.set_xticks(range(n), class_names, rotation=90 if n > 10 else 0)
        axis.set_yticks(range(n), class_names)
        threshold = matrix.max() / 2
        for i in range(n):
            for j in range(n):
                axis.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8,
                          color="white" if matrix[i, j] > threshold else "black")
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    axis.set_title("confusion matrix")
    return _save(figure, path)


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, float]], path: Path) -> Path:
    """Accuracy against confidence per bin, one line per curve, with the diagonal of perfect calibration;
    under it, how many images each bin holds (a point made of 3 images is noise, one of 9,000 is not).

    ``curves`` maps a label (e.g. "before calibration") to
    :func:`mnist_folders.networks.calibration.reliability`'s ``(confidence, accuracy,
    count)`` arrays plus the curve's ECE; empty bins are not drawn. Marker areas
    grow with the bin's count too.
    """
    figure, (axis, counts_axis) = plt.subplots(2, 1, figsize=(5.5, 7.2), sharex=True,
                                               gridspec_kw={"height_ratios": [3, 1.2]})
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    bins = len(next(iter(curves.values()))[2]) if curves else 1
    width = 1.0 / bins / (len(curves) or 1)
    for i, (label, (confidence, accuracy, count, ece)) in enumerate(curves.items()):
        used = count > 0
        line = axis.plot(confidence[used], accuracy[used], label=f"{label} (ECE {ece:.4f})")[0]
        sizes = 12 + 140 * np.sqrt(count[used] / max(count.max(), 1))
        axis.scatter(confidence[used], accuracy[used], s=sizes, color=line.get_color(), zorder=3)
        left = np.arange(bins) / bins + i * width
        counts_axis.bar(left, count, width=width, align="edge", color=line.get_color(), label=label)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_ylabel("accuracy in the bin")
    axis.set_title("reliability diagram (test images)")
    axis.legend(loc="upper left")
    counts_axis.set_yscale("symlog", linthresh=10)
    counts_axis.set_ylabel("images in the bin")
    counts_axis.set_xlabel("confidence (top probability; mean of the bin above)")
    return _save(figure, path)


def explanation(image: np.ndarray, overlaid: np.ndarray, title: str, path: Path) -> Path:
    """The model's input ``(H, W, C)`` uint8 beside its Grad-CAM overlay ``(H, W, 3)`` uint8, titled with
    the top classes."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(6.4, 3.6))
    _show_image(left, image)
    left.set_title("the model's input", fontsize=9)
    _show_image(right, overlaid)
    right.set_title("Grad-CAM of the top class", fontsize=9)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def image_grid(images: np.ndarray, titles: Sequence[str], path: Path, columns: int = 10, title: str = "") -> Path:
    """A grid of ``(N, H, W, C)`` uint8 images, each with a short title."""
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, text in zip(axes.flat, images, titles):
        axis.axis("on")
        _show_image(axis, image)
        axis.set_title(text, fontsize=7)
    if title:
        figure.suptitle(title)
    return _save(figure, path)


def misclassified(images: np.ndarray, true: Sequence[str], predicted: Sequence[str], confidence: Sequence[float],
                  path: Path, limit: int = MISCLASSIFIED_SHOWN, total: int | None = None) -> Path:
    """Up to ``limit`` wrongly classified images titled ``true -> predicted (confidence)``, in the order given;
    ``total``: how many were wrong in all (default ``len(images)``)."""
    titles = [f"{t} -> {p} ({c:.0%})" for t, p, c in zip(true, predicted, confidence)][:limit]
    shown = min(limit, len(images))
    total = len(images) if total is None else total
    return image_grid(images[:limit], titles, path, title=f"misclassified test images ({shown} of {total})")


def samples_per_class(images: np.ndarray, labels: np.ndarray, path: Path, per_class: int = 10) -> Path:
    """The first ``per_class`` images of each label, one row per class.

    ``images`` is ``(N, H, W)`` or ``(N, H, W, C)`` uint8; ``labels`` ``(N,)``.
    """
    if images.ndim == 3:
        images = images[..., np.newaxis]
    rows, titles = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)[:per_class]
        rows.extend(images[members])
        titles.extend([str(int(label))] * len(members))
        blanks = per_class - len(members)
        rows.extend([np.zeros_like(images[0])] * blanks)
        titles.extend([""] * blanks)
    return image_grid(np.stack(rows), titles, path, columns=per_class, title="samples per class")


def lr_sweep(learning_rates: Sequence[float], smoothed_losses: Sequence[float], suggestion: float,
             path: Path) -> Path:
    """Loss against learning rate (log scale) with the suggested rate marked; for ``--mode lr_find``."""
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(learning_rates, smoothed_losses, label="training loss (smoothed)")
    axis.axvline(suggestion, color="tab:red", linestyle="--", label=f"suggested learning_rate {suggestion:.2g}")
    axis.set_xscale("log")
    finite = [v for v in smoothed_losses if np.isfinite(v)]
    if finite:
        axis.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.05)
    axis.set_xlabel("learning rate")
    axis.set_ylabel("loss")
    axis.legend()
    return _save(figure, path)
