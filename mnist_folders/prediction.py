"""Predict every image file in a folder with a trained model, in batches."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import artifacts
from .atomic import write_text
from .errors import DatasetError
from .images import border_is_lighter
from .pipeline import decode_images, scale

PREDICT_BATCH = 256  # images per forward pass
TOP_K = 3


@dataclass
class Prediction:
    """One file's result: the top class name, its softmax probability, and the top-k."""

    path: str
    class_name: str
    confidence: float
    top_k: list[tuple[str, float]]


@dataclass
class PredictionRun:
    """All files' predictions, plus the files that were skipped and why."""

    predictions: list[Prediction]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    csv_path: Path | None = None


def predict_probabilities(model, images: np.ndarray, progress: bool = False) -> np.ndarray:
    """Softmax outputs ``(N, classes)`` float32 for ``(N, H, W, C)`` uint8 images, in batches."""
    return model.predict(scale(images), batch_size=PREDICT_BATCH, verbose=1 if progress else 0)


def list_files(folder: Path) -> list[str]:
    """Every non-hidden file under ``folder`` (sub-folders included), sorted.

    Raises:
        DatasetError: ``folder`` does not exist or is not a folder.
    """
    if not folder.is_dir():
        raise DatasetError(f"{folder}: folder to predict not found")
    files = []
    for dirpath, dirnames, names in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        files.extend(os.path.join(dirpath, n) for n in names if not n.startswith("."))
    return sorted(files)


def predict_folder(model_dir: Path, folder: Path | None = None, output: Path | None = None,
                   progress: bool = True, invert: str | None = None) -> PredictionRun:
    """Predict every image under ``folder`` with the best checkpoint of ``model_dir``.

    Any file Pillow reads is converted to the model's input (size, color mode,
    bit depth; see :func:`mnist_folders.images.load_image`); other files are
    skipped and listed. All images go through the model in batches of
    :data:`PREDICT_BATCH`.

    Args:
        model_dir: a trained model directory.
        folder: the images; default: the saved Setting's ``predict_dir``.
        output: the CSV to write; default ``<model_dir>/predictions.csv``.
            Columns: path, class, confidence, top3 (``name:probability``
            pairs joined by ``;``).
        progress: show tqdm bars.
        invert: ``auto``, ``true`` or ``false`` (see ``Setting.invert``);
            default: the saved Setting's.

    Raises:
        CheckpointError: no trained model in ``model_dir``.
        DatasetError: ``folder`` does not exist.
    """
    model, setting, class_names = artifacts.load_trained_model(model_dir)
    folder = Path(folder) if folder else setting.predict_path
    paths = list_files(folder)
    decoded = decode_images(paths, setting, progress, "read images")
    run = PredictionRun([], decoded.failed)
    if len(decoded.kept) == 0:
        return run
    invert = setting.invert if invert is None else invert
    trained_light = artifacts.light_background_share(model_dir) > 0.5
    for image in decoded.images:
        if invert == "true" or (invert == "auto" and border_is_lighter(image) != trained_light):
            np.subtract(255, image, out=image)
    probabilities = predict_probabilities(model, decoded.images, progress)
    k = min(TOP_K, len(class_names))
    ranked = np.argsort(-probabilities, axis=1)[:, :k]
    for row, i in enumerate(decoded.kept):
        top = [(class_names[j], float(probabilities[row, j])) for j in ranked[row]]
        run.predictions.append(Prediction(paths[i], top[0][0], top[0][1], top))
    run.csv_path = Path(output) if output else model_dir / artifacts.PREDICTIONS
    write_text(run.csv_path, to_csv(run.predictions))
    return run


def to_csv(predictions: list[Prediction]) -> str:
    """CSV text with columns path, class, confidence, top3."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "class", "confidence", f"top{TOP_K}"])
    for p in predictions:
        writer.writerow([p.path, p.class_name, f"{p.confidence:.6f}", ";".join(f"{n}:{c:.6f}" for n, c in p.top_k)])
    return buffer.getvalue()
