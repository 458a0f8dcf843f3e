"""Likely label errors: the train tree's images ranked by the probability a trained model gives their label."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_text
from ..names import display, safe_cell
from ..settings import Setting
from ..data.decoding import decode_images
from ..data.folders import FolderIndex, index_tree
from ..layout import SUSPECT_CSV, SUSPECT_FIGURE
from ..networks.inference import keras_probabilities, predict_files

SUSPECT_ROWS, SUSPECT_SHOWN = 500, 40  # rows of suspect_labels.csv, images in suspect_labels.png


@dataclass
class SuspectLabel:
    """A training image whose given label the model finds unlikely.

    Attributes:
        path: the file.
        given: its class folder.
        predicted: the model's top class.
        given_probability: the softmax probability of ``given``.
        split: ``validation`` (the model never trained on it: out of sample)
            or ``train`` (in sample: the model may have memorised the label,
            so a wrong label scores higher than it would out of sample).
    """

    path: str
    given: str
    predicted: str
    given_probability: float
    split: str


def _validation_mask(index: FolderIndex, setting: Setting) -> np.ndarray:
    """``(N,)`` bool: the files training held out for validation (the one place the split is asked for).

    None when the Setting names a separate validation folder (``val_dir``):
    training then fits on every train image.
    """
    mask = np.zeros(len(index), dtype=bool)
    if setting.val_path is None:
        mask[index.split(setting.validation_split, setting.split_order, setting.seed)[1]] = True
    return mask


def suspects_csv(suspects: list[SuspectLabel]) -> str:
    """CSV text: path, given_class, predicted_class, given_probability, split."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(["path", "given_class", "predicted_class", "given_probability", "split"])
    for s in suspects:
        writer.writerow([safe_cell(display(s.path)), safe_cell(s.given), safe_cell(s.predicted),
                         f"{s.given_probability:.6f}", s.split])
    return buffer.getvalue()


def find_suspect_labels(setting: Setting, model: Any, class_names: list[str], *, progress: bool = True,
                        limit: int | None = SUSPECT_ROWS) -> list[SuspectLabel]:
    """The train tree's images ranked by the probability ``model`` gives their label, lowest first.

    Writes ``<model_dir>/suspect_labels.csv`` (the ranked rows) and
    ``suspect_labels.png`` (the first :data:`SUSPECT_SHOWN` images, titled
    ``given -> predicted``). Only the validation split's probabilities
    are out of sample; see :class:`SuspectLabel`.

    Args:
        setting: the model's Setting (input size, color mode, validation
            split) with the train folder to rank.
        model: a Keras model mapping ``(N, H, W, C)`` float32 in [0, 1] to
            softmax probabilities over ``class_names``.
        class_names: the model's classes in output order.
        progress: tqdm bars while decoding and predicting.
        limit: rows kept (``None``: every image).

    Raises:
        DatasetError: the train tree is missing, or names other classes.
    """
    from ..plots import image_grid  # matplotlib: only here

    index = index_tree(setting.train_path, class_names)
    out_of_sample = _validation_mask(index, setting)
    answers = predict_files(index.paths, setting, keras_probabilities(model), len(class_names), progress, "rank labels")
    probabilities = answers.probabilities
    labels = index.labels[answers.kept]
    given = probabilities[np.arange(len(labels)), labels]
    predicted = probabilities.argmax(axis=1)
    order = np.argsort(given, kind="stable")[:limit]
    suspects = [SuspectLabel(index.paths[k], class_names[labels[o]], class_names[predicted[o]], float(given[o]),
                             "validation" if out_of_sample[k] else "train")
                for o, k in zip(order.tolist(), answers.kept[order].tolist())]
    write_text(setting.model_path / SUSPECT_CSV, suspects_csv(suspects))
    shown = decode_images([s.path for s in suspects[:SUSPECT_SHOWN]], setting).images  # only these held at once
    titles = [f"{s.given} -> {s.predicted} p={s.given_probability:.1g}\n{Path(s.path).name[:16]}"
              for s in suspects[:SUSPECT_SHOWN]]
    image_grid(shown, titles, setting.model_path / SUSPECT_FIGURE,
               title="likely label errors: given -> predicted class, p = probability of the given class")
    return suspects
