"""The one inference loop: decode image files chunk by chunk, predict each chunk, collect the answers.

Evaluation, calibration, the suspect-label audit and batch prediction all go
through :func:`predict_files`; what they predict with is a function of
``(N, H, W, C)`` uint8 images, so a Keras model (:func:`keras_probabilities`)
and an exported runtime (:class:`mnist_folders.serve.prediction.Predictor`)
share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from ..data.decoding import DecodedImages, decode_chunks
from ..data.images import scale
from ..settings import Setting

INFERENCE_BATCH_BYTES = 64 * 2**20  # float32 input per forward pass
TOP_K = 3  # answers per image in the predictions CSV, the server's replies and the explain pictures

Probabilities = Callable[[np.ndarray], np.ndarray]  # (N, H, W, C) uint8 -> (N, K) float32


def inference_batch_size(input_shape: tuple[int, ...]) -> int:
    """Images per forward pass: up to 1,024, fewer for large images (about 64 MB of float32 input)."""
    return max(8, min(1024, INFERENCE_BATCH_BYTES // (4 * int(np.prod(input_shape)))))


def predict_probabilities(model, images: np.ndarray, progress: bool = False) -> np.ndarray:
    """Softmax outputs ``(N, classes)`` float32 of a Keras model for ``(N, H, W, C)`` uint8 images, in batches.

    One ``predict_on_batch`` per batch of :func:`inference_batch_size`
    images: cheaper than ``model.predict``, which sets up a data adapter and
    a step loop per call (``bench/predict_speed.py`` measures the two).
    """
    step = inference_batch_size(images.shape[1:])
    outputs = [np.zeros((0, *model.output_shape[1:]), dtype=np.float32)]
    with tqdm(total=len(images), desc="predict", unit="img", disable=not progress) as bar:
        for start in range(0, len(images), step):
            outputs.append(np.asarray(model.predict_on_batch(scale(images[start : start + step]))))
            bar.update(len(outputs[-1]))
    return np.concatenate(outputs)


def keras_probabilities(model) -> Probabilities:
    """:func:`predict_probabilities` of ``model``, as the function :func:`predict_files` takes."""
    return lambda images: predict_probabilities(model, images)


@dataclass
class Predicted:
    """What :func:`predict_files` returns.

    Attributes:
        probabilities: ``(N, K)`` float32, one row per readable file.
        kept: ``(N,)`` int64 indices into the paths given, of those files.
        failed: ``(path, reason)`` for each file that could not be read, sorted.
    """

    probabilities: np.ndarray
    kept: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)


def predict_files(paths: list[str], setting: Setting, probabilities: Probabilities, classes: int | None = None,
                  progress: bool = False, description: str = "predict", processes: bool = True,
                  on_chunk: Callable[[DecodedImages, np.ndarray], None] | None = None,
                  on_start: Callable[[], None] | None = None) -> Predicted:
    """Predict every file of ``paths`` at ``setting``'s input size and colour mode, chunk by chunk.

    Memory stays bounded: only one decoded chunk is held at a time, while
    the next is decoded in the background (worker processes, or one thread
    with ``processes=False`` when the model needs the cores).

    Args:
        paths: image files; unreadable ones are listed in ``failed``, not raised.
        setting: gives the input size, colour mode, resize method and workers.
        probabilities: ``(N, H, W, C)`` uint8 -> ``(N, classes)`` float32.
        classes: ``K``, the width of the result when no file is readable (``None``: 0).
        progress: a tqdm bar named ``description``.
        on_chunk: called with each decoded chunk and its probabilities (e.g.
            to keep the images of the most confident mistakes).
        on_start: called once decoding has started, before the first chunk
            is predicted (e.g. to load a model meanwhile).
    """
    parts, kept, failed = [np.zeros((0, classes or 0), np.float32)], [np.zeros(0, np.int64)], []
    with decode_chunks(paths, setting, processes=processes) as chunks:
        if on_start is not None:  # before the bar: an error there is said alone, in one line
            on_start()
        with tqdm(total=len(paths), desc=description, unit="img", disable=not progress) as bar:
            for chunk in chunks:
                answer = probabilities(chunk.images)
                if on_chunk is not None:
                    on_chunk(chunk, answer)
                parts.append(answer)
                kept.append(chunk.kept)
                failed.extend(chunk.failed)
                bar.update(len(chunk.images) + len(chunk.failed))
    return Predicted(np.concatenate(parts[1:] or parts), np.concatenate(kept), sorted(failed))
