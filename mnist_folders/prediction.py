"""Predict every image file in a folder with a trained model, in batches."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import artifacts
from .atomic import write_text
from .decoding import decode_chunks
from .errors import DatasetError
from .images import lighter_borders
from .pipeline import scale

PREDICT_BATCH_BYTES = 64 * 2**20  # float32 input per forward pass
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


def batch_size(input_shape: tuple[int, ...]) -> int:
    """Images per forward pass: up to 1,024, fewer for large images (about 64 MB of float32 input)."""
    return max(8, min(1024, PREDICT_BATCH_BYTES // (4 * int(np.prod(input_shape)))))


def predict_probabilities(model, images: np.ndarray, progress: bool = False) -> np.ndarray:
    """Softmax outputs ``(N, classes)`` float32 for ``(N, H, W, C)`` uint8 images, in batches.

    One ``predict_on_batch`` per batch of :func:`batch_size` images: cheaper
    than ``model.predict``, which sets up a data adapter and a step loop per
    call (``bench/predict_speed.py`` measures the two side by side).
    """
    step = batch_size(images.shape[1:])
    outputs = [np.zeros((0, *model.output_shape[1:]), dtype=np.float32)]
    with tqdm(total=len(images), desc="predict", unit="img", disable=not progress) as bar:
        for start in range(0, len(images), step):
            outputs.append(np.asarray(model.predict_on_batch(scale(images[start : start + step]))))
            bar.update(len(outputs[-1]))
    return np.concatenate(outputs)


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
    skipped and listed. A background thread decodes the files in chunks
    while the model predicts the chunks already decoded, in batches of
    :func:`batch_size` images.

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
    setting = artifacts.load_trained_setting(model_dir)
    folder = Path(folder) if folder else setting.predict_path
    paths = list_files(folder)
    invert = setting.invert if invert is None else invert
    trained_light = artifacts.light_background_share(model_dir) > 0.5
    run = PredictionRun([])
    # Decoding starts while the model loads; one thread, not processes: the model needs the cores.
    with decode_chunks(paths, setting, processes=False) as chunks:
        model, _, class_names = artifacts.load_trained_model(model_dir, setting)
        parts, kept = [np.zeros((0, len(class_names)), dtype=np.float32)], [np.zeros(0, dtype=np.int64)]
        with tqdm(total=len(paths), desc="predict", unit="img", disable=not progress) as bar:
            # The decoding thread works on the next chunks while the model works on this one.
            for chunk in chunks:
                images = chunk.images
                if invert == "true":
                    images = 255 - images
                elif invert == "auto":
                    flip = lighter_borders(images) != trained_light
                    images[flip] = 255 - images[flip]
                parts.append(predict_probabilities(model, images))
                kept.append(chunk.kept)
                run.skipped.extend(chunk.failed)
                bar.update(len(images) + len(chunk.failed))
    run.skipped.sort()
    probabilities, kept = np.concatenate(parts), np.concatenate(kept)
    if len(kept) == 0:
        return run
    k = min(TOP_K, len(class_names))
    ranked = np.argsort(-probabilities, axis=1)[:, :k]
    scores = np.take_along_axis(probabilities, ranked, axis=1).tolist()
    for i, classes, top_scores in zip(kept, ranked.tolist(), scores):
        top = [(class_names[j], p) for j, p in zip(classes, top_scores)]
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
