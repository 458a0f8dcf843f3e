"""Evaluate a trained model on a whole labelled test tree: loss, accuracy,
per-class precision/recall and the confusion matrix."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np
import tensorflow as tf

from . import artifacts, calibration, plots
from .decoding import decode_images
from .folders import index_tree
from .prediction import predict_probabilities
from .settings import Setting


@dataclass
class EvaluationReport:
    """Results over every readable image of the test tree.

    ``confusion[i][j]`` counts images of true class ``i`` predicted as ``j``
    (rows and columns in ``class_names`` order). Precision of class ``j`` is
    ``confusion[j][j] / sum(column j)``; recall of class ``i`` is
    ``confusion[i][i] / sum(row i)``; both are ``None`` when undefined (0/0).
    ``balanced_accuracy`` is the mean recall of the classes that have test
    images: on unbalanced data, always answering the largest class scores
    ``1 / classes`` there, not that class's share.
    """

    test_dir: str
    images: int
    loss: float
    accuracy: float
    balanced_accuracy: float  # mean recall over the classes with test images
    class_names: list[str]
    support: list[int]
    precision: list[float | None]
    recall: list[float | None]
    confusion: list[list[int]]
    skipped: list[list[str]]
    missing_classes: list[str]
    figures: list[str]
    temperature: float = 1.0  # the softmax temperature saved with the model (calibration.json)
    ece: float | None = None  # expected calibration error of the raw softmax
    ece_calibrated: float | None = None  # ... after the temperature, as predict reports confidences


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> list[float | None]:
    return [float(n / d) if d else None for n, d in zip(numerator, denominator)]


def evaluate(setting: Setting, progress: bool = True) -> EvaluationReport:
    """Evaluate the best checkpoint of ``setting.model_path`` on every image of ``setting.test_path``.

    Args:
        setting: a trained model's Setting (:func:`mnist_folders.artifacts.setting_for_model`).
        progress: show tqdm bars.

    Returns:
        The :class:`EvaluationReport`, also written to ``evaluation.json``.

    Raises:
        CheckpointError: no trained model in ``model_dir``.
        DatasetError: the test tree is missing, empty, or has class folders the
            model does not know (a subset of the classes is allowed).
    """
    model_dir, root = setting.model_path, setting.test_path
    artifacts.ensure_writable(model_dir)
    model, setting, class_names = artifacts.load_trained_model(model_dir, setting)
    index = index_tree(root, class_names, require_all=False)
    decoded = decode_images(index.paths, setting, progress, "test images")
    true = index.labels[decoded.kept]
    probabilities = predict_probabilities(model, decoded.images, progress)
    predicted = probabilities.argmax(axis=1)
    num_classes = len(class_names)
    loss = float(np.mean(keras.losses.categorical_crossentropy(np.eye(num_classes)[true], probabilities)))
    confusion = tf.math.confusion_matrix(true, predicted, num_classes=num_classes).numpy()
    diagonal = np.diag(confusion)
    counts = index.class_counts()
    recall = _ratio(diagonal, confusion.sum(axis=1))
    report = EvaluationReport(
        test_dir=str(root),
        images=int(len(true)),
        loss=loss,
        accuracy=float(np.mean(predicted == true)),
        balanced_accuracy=float(np.mean([r for r in recall if r is not None])),
        class_names=class_names,
        support=[int(n) for n in confusion.sum(axis=1)],
        precision=_ratio(diagonal, confusion.sum(axis=0)),
        recall=recall,
        confusion=confusion.tolist(),
        skipped=[list(item) for item in decoded.failed],
        missing_classes=[name for name in class_names if counts.get(name, 0) == 0],
        figures=[],
    )
    report.temperature = artifacts.load_temperature(model_dir)
    calibrated = calibration.apply_temperature(probabilities, report.temperature)
    curves = {}
    if len(true):
        report.ece = calibration.expected_calibration_error(probabilities, true)
        report.ece_calibrated = calibration.expected_calibration_error(calibrated, true)
        curves = {"softmax": (*calibration.reliability(probabilities, true), report.ece),
                  f"temperature {report.temperature:.3g}": (*calibration.reliability(calibrated, true),
                                                            report.ece_calibrated)}
    wrong = np.flatnonzero(predicted != true)
    wrong = wrong[np.argsort(-probabilities[wrong].max(axis=1), kind="stable")]  # most confident mistakes first
    report.figures = [
        str(plots.confusion_matrix(report.confusion, class_names, model_dir / plots.CONFUSION_MATRIX)),
        str(plots.misclassified(decoded.images[wrong], [class_names[i] for i in true[wrong]],
                                [class_names[i] for i in predicted[wrong]], probabilities[wrong].max(axis=1),
                                model_dir / plots.MISCLASSIFIED)),
    ]
    if curves:
        report.figures.append(str(plots.reliability_diagram(curves, model_dir / plots.RELIABILITY)))
    artifacts.write_json(model_dir / artifacts.EVALUATION, asdict(report))
    return report


def format_report(report: EvaluationReport) -> str:
    """The report as text: totals, a per-class table and the confusion matrix."""
    names = report.class_names
    width = max(7, *(len(n) for n in names))
    fmt = lambda v: "   -  " if v is None else f"{v:6.4f}"  # noqa: E731
    lines = [
        f"test images: {report.images} (from {report.test_dir})",
        f"test loss: {report.loss:.4f}",
        f"test accuracy: {report.accuracy:.4f} ({report.accuracy * 100:.2f} %)",
        f"balanced accuracy (mean recall): {report.balanced_accuracy:.4f}",
    ]
    if report.ece is not None:
        lines.append(f"expected calibration error: {report.ece:.4f} (softmax), {report.ece_calibrated:.4f} "
                     f"(temperature {report.temperature:.3g}, as predict reports confidences)")
    lines += [
        "",
        f"{'class':>{width}}  precision  recall  support",
    ]
    for name, p, r, n in zip(names, report.precision, report.recall, report.support):
        lines.append(f"{name:>{width}}     {fmt(p)}  {fmt(r)}  {n:7d}")
    cell = max(5, len(str(max(max(row) for row in report.confusion))) + 1)
    lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
              " " * width + "".join(f"{n[:cell - 1]:>{cell}}" for n in names)]
    for name, row in zip(names, report.confusion):
        lines.append(f"{name:>{width}}" + "".join(f"{v:>{cell}d}" for v in row))
    if report.missing_classes:
        lines.append(f"\nclasses with no test images (evaluated on a subset): {report.missing_classes}")
    for path, reason in report.skipped:
        lines.append(f"skipped {path}: {reason}")
    lines += [f"figure: {path}" for path in report.figures]
    return "\n".join(lines)
