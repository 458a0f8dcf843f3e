"""``report.html``: one self-contained page to browse an evaluation.

Written by ``evaluate`` beside ``evaluation.json``. It opens from disk in any
browser with no network: the CSS, the JavaScript, the figures and the image
thumbnails are inside the file (thumbnails as PNG data URIs, at most
:data:`THUMBNAIL_SIDE` pixels a side). Sections: a summary (with the
Setting), the per-class table (sortable), the confusion matrix as a grid
whose cells show their test images when clicked (most confident first, at
most :data:`CELL_CAP` each, the count said), the most confident mistakes and
the least confident right answers with Grad-CAM heatmaps that can be
toggled (:mod:`mnist_folders.explain.gradcam`), the training curves, the
reliability diagram (with the images per bin), the files that could not be
read, and the dataset audit of ``--mode check`` when it was run.

Every number comes from the :class:`~mnist_folders.serve.evaluation.EvaluationReport`
that ``evaluation.json`` holds (a test compares the two). The page's data is
one JSON object inside the file (``<script id="report-data">``), drawn by
the page's script with text nodes only: a class or file name is never read
as HTML.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .. import artifacts, layout
from ..atomic import write_text
from ..data.images import ImageReadError, load_image
from ..names import display

TEMPLATE = Path(__file__).with_name("report_template.html")
CELL_CAP = 12  # test images shown per confusion-matrix cell (most confident first)
THUMBNAILS_MAX = 3000  # in all the cells together: the cap per cell shrinks to stay under it (100 classes)
THUMBNAIL_SIDE = 64  # pixels, at most
EXTREMES = 24  # most confident mistakes, and least confident right answers, shown with Grad-CAM
HEATMAP_SIDE = 112  # pixels a side of an image shown with its heatmap (small inputs are enlarged)


@dataclass
class Outcome:
    """What the model answered on each readable test image, in the test tree's order.

    Attributes:
        paths: the N files.
        true: ``(N,)`` int64 class indices (the folders).
        probabilities: ``(N, K)`` float32, temperature-scaled (as ``predict`` reports confidences).
    """

    paths: list[str]
    true: np.ndarray
    probabilities: np.ndarray


def data_uri(image: np.ndarray, side: int | None = THUMBNAIL_SIDE) -> str:
    """A PNG data URI of an ``(H, W, C)`` uint8 image (C 1 or 3), shrunk to at most ``side`` pixels."""
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if side is not None:
        picture.thumbnail((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _file_uri(path: Path) -> str | None:
    try:
        return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return None


def cell_cap(counts: np.ndarray, cap: int = CELL_CAP, budget: int = THUMBNAILS_MAX) -> int:
    """Images shown per cell: ``cap``, or less so that ``sum(min(count, cap))`` stays within ``budget``
    (at least 1)."""
    while cap > 1 and np.minimum(counts, cap).sum() > budget:
        cap -= 1
    return cap


def _thumbnails(indices: set[int], outcome: Outcome, setting, side: int | None) -> dict[int, str]:
    """``{index: data URI}`` of the model's input for each test image (a file gone since: no entry)."""
    height, width, _ = setting.input_shape
    found = {}
    for i in sorted(indices):
        try:
            found[i] = data_uri(load_image(outcome.paths[i], height, width, setting.color_mode,
                                           setting.resize_method), side)
        except (ImageReadError, OSError):
            continue
    return found


def _cells(outcome: Outcome, names: list[str], setting, test_root: Path) -> dict[str, Any]:
    """Each non-empty (true, predicted) cell: its count and its most confident images."""
    predicted = outcome.probabilities.argmax(axis=1)
    confidence = outcome.probabilities.max(axis=1)
    k = len(names)
    keys = outcome.true * k + predicted
    counts = np.bincount(keys, minlength=k * k)
    cap = cell_cap(counts[counts > 0])
    order = np.lexsort((np.arange(len(keys)), -confidence, keys))  # by cell, most confident first
    picked: dict[int, list[int]] = {}
    for i in order.tolist():
        chosen = picked.setdefault(int(keys[i]), [])
        if len(chosen) < cap:
            chosen.append(i)
    thumbs = _thumbnails({i for rows in picked.values() for i in rows}, outcome, setting, THUMBNAIL_SIDE)
    cells = {}
    for key, rows in picked.items():
        cells[f"{key // k},{key % k}"] = {
            "count": int(counts[key]),
            "images": [{"src": thumbs.get(i), "file": _relative(outcome.paths[i], test_root),
                        "confidence": round(float(confidence[i]), 6),
                        "p_true": round(float(outcome.probabilities[i, outcome.true[i]]), 6)} for i in rows]}
    return {"cap": cap, "cells": cells}


def _relative(path: str, root: Path) -> str:
    try:
        return display(Path(path).relative_to(root))
    except ValueError:
        return display(path)


def _extremes(model, outcome: Outcome, names: list[str], setting, test_root: Path) -> dict[str, Any]:
    """The most confident mistakes and the least confident right answers, with Grad-CAM overlays of the
    predicted class (or why there are none)."""
    from .gradcam import NoConvolution, explain, overlay

    predicted = outcome.probabilities.argmax(axis=1)
    confidence = outcome.probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != outcome.true)
    right = np.flatnonzero(predicted == outcome.true)
    groups = {"mistakes": wrong[np.argsort(-confidence[wrong], kind="stable")][:EXTREMES],
              "unsure": right[np.argsort(confidence[right], kind="stable")][:EXTREMES]}
    height, width, _ = setting.input_shape
    side = max(HEATMAP_SIDE, min(height, width))
    note, result = None, {}
    for name, rows in groups.items():
        images, kept = [], []
        for i in rows.tolist():
            try:
                images.append(load_image(outcome.paths[i], height, width, setting.color_mode, setting.resize_method))
                kept.append(i)
            except (ImageReadError, OSError):
                continue
        heatmaps = None
        if images and note is None:
            try:
                heatmaps = explain(model, np.stack(images), predicted[kept])[0]
            except NoConvolution as exc:
                note = str(exc)
        entries = []
        for j, i in enumerate(kept):
            top = np.argsort(-outcome.probabilities[i], kind="stable")[:3]
            entry = {"src": data_uri(_enlarged(images[j], side), None), "file": _relative(outcome.paths[i], test_root),
                     "true": names[outcome.true[i]], "predicted": names[predicted[i]],
                     "confidence": round(float(confidence[i]), 6),
                     "top": [[names[c], round(float(outcome.probabilities[i, c]), 6)] for c in top]}
            if heatmaps is not None:
                entry["cam"] = data_uri(_enlarged(overlay(images[j], heatmaps[j]), side), None)
            entries.append(entry)
        result[name] = entries
    return {**result, "gradcam": note or "Grad-CAM of the predicted class (HiResCAM form; see docs/see-the-model.md)"}


def _enlarged(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` scaled so that its shorter side is ``side`` pixels (never shrunk)."""
    h, w = image.shape[:2]
    if min(h, w) >= side:
        return image
    scale = side / min(h, w)
    picture = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    picture = picture.resize((round(w * scale), round(h * scale)), Image.Resampling.NEAREST)
    array = np.asarray(picture)
    return array[..., None] if array.ndim == 2 else array


def _dataset_audit(model_dir: Path, setting) -> dict[str, Any] | None:
    """What ``--mode check`` wrote (``check.json``, ``suspect_labels.csv``), if it ran."""
    from ..layout import CHECK_JSON, SUSPECT_CSV

    found: dict[str, Any] = {}
    try:
        found["check"] = artifacts.read_json(model_dir / CHECK_JSON) if (model_dir / CHECK_JSON).exists() else None
    except Exception:  # noqa: BLE001 - an unreadable audit is left out of the page, not a failed evaluation
        found["check"] = None
    suspects = []
    if (model_dir / SUSPECT_CSV).exists():
        with open(model_dir / SUSPECT_CSV, newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.DictReader(f))[:EXTREMES]
        height, width, _ = setting.input_shape
        for row in rows:
            path = row.get("path", "").lstrip("'")
            try:
                src = data_uri(load_image(path, height, width, setting.color_mode, setting.resize_method))
            except (ImageReadError, OSError):
                src = None
            suspects.append({**row, "src": src})
    found["suspects"] = suspects
    return found if found["check"] is not None or suspects else None


def build(setting, model, report, outcome: Outcome) -> dict[str, Any]:
    """The page's data: everything :func:`write_report` draws, as one JSON-ready dict."""
    model_dir, names = setting.model_path, report.class_names
    test_root = Path(report.test_dir)
    history = artifacts.read_history(model_dir) if (model_dir / layout.HISTORY).exists() else []
    best = artifacts.read_json(model_dir / layout.BEST_INFO) if (model_dir / layout.BEST_INFO).exists() else {}
    f1 = [None if p is None or r is None or p + r == 0 else 2 * p * r / (p + r)
          for p, r in zip(report.precision, report.recall)]
    figures = {name: _file_uri(model_dir / file) for name, file in
               (("training_curves", "training_curves.png"), ("reliability", "reliability_diagram.png"))}
    return {
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        "model_dir": display(model_dir),
        "evaluation": asdict(report),
        "per_class": [{"class": n, "precision": p, "recall": r, "f1": f, "support": s}
                      for n, p, r, f, s in zip(names, report.precision, report.recall, f1, report.support)],
        "training": {"epochs": len(history), "seconds": round(sum(row.get("seconds", 0.0) for row in history), 1),
                     "best_epoch": best.get("epoch"), "train_dir": display(setting.train_path)},
        "setting": {k: v for k, v in setting.to_dict().items()},
        "confusion": _cells(outcome, names, setting, test_root),
        "extremes": _extremes(model, outcome, names, setting, test_root),
        "figures": figures,
        "audit": _dataset_audit(model_dir, setting),
    }


def write_report(setting, model, report, outcome: Outcome) -> Path:
    """Write ``<model_dir>/report.html`` (atomically) and return its path.

    ``setting``: the model's Setting; ``model``: the Keras model evaluated (for
    Grad-CAM); ``report``: the evaluation; ``outcome``: its per-image answers.
    """
    data = build(setting, model, report, outcome)
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    # Inside a <script> element: "</script>" or "<!--" in a name must not end it.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = TEMPLATE.read_text(encoding="utf-8").replace("/*REPORT-DATA*/", text)
    path = setting.model_path / layout.REPORT_HTML
    write_text(path, page)
    return path
