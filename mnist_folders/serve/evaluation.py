"""Evaluate a trained model on a whole labelled test tree: loss, accuracy,
per-class precision/recall and the confusion matrix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import artifacts, layout, plots
from ..networks import calibration, saved
from ..data.folders import index_tree
from ..errors import CheckpointError
from ..locking import files_lock
from ..names import display
from ..networks.inference import keras_probabilities, predict_files
from ..settings import Setting


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
    weights_sha256: str = ""  # SHA-256 of the best.weights.h5 evaluated


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> list[float | None]:
    return [float(n / d) if d else None for n, d in zip(numerator, denominator)]


MATRIX_PRINTED_UP_TO = 30  # classes; above, the text report lists the top confusions instead of the matrix
TOP_CONFUSIONS = 20
KERAS_EPSILON = 1e-7  # keras.config.epsilon(): how far Keras' cross-entropy clips probabilities from 0 and 1


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """``(K, K)`` int64 counts: row = true class, column = predicted class, for ``(N,)`` int labels."""
    return np.bincount(true * num_classes + predicted, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def cross_entropy(probabilities: np.ndarray, true: np.ndarray) -> float:
    """Mean categorical cross-entropy (nats), as ``keras.losses.categorical_crossentropy`` computes it on
    ``(N, K)`` softmax outputs: rows renormalised, clipped to ``[1e-7, 1 - 1e-7]``; 0.0 for no images."""
    if len(true) == 0:
        return 0.0
    p = np.asarray(probabilities, dtype=np.float64)
    p = np.clip(p / p.sum(axis=1, keepdims=True), KERAS_EPSILON, 1 - KERAS_EPSILON)
    return float(-np.log(p[np.arange(len(true)), true]).mean())


@dataclass
class Mistakes:
    """The most confident wrong predictions so far (at most ``limit``), most confident first."""

    images: np.ndarray  # (M, H, W, C) uint8
    true: np.ndarray  # (M,) int labels
    predicted: np.ndarray
    confidence: np.ndarray  # (M,) top probability
    order: np.ndarray  # (M,) position in the test tree: ties keep the tree's order

    def add(self, images, true, probabilities, order, limit: int) -> "Mistakes":
        """These plus the wrong ones among ``images``, cut to the ``limit`` most confident."""
        predicted = probabilities.argmax(axis=1)
        wrong = predicted != true
        merged = [np.concatenate([mine, theirs[wrong]]) for mine, theirs in
                  zip((self.images, self.true, self.predicted, self.confidence, self.order),
                      (images, true, predicted, probabilities.max(axis=1), order))]
        best = np.lexsort((merged[4], -merged[3]))[:limit]
        return Mistakes(*(m[best] for m in merged))


def _predict_tree(model, index, setting: Setting, progress: bool):
    """Probabilities of every readable file of ``index``, chunk by chunk: ``(probabilities, kept, failed,
    mistakes)``. Only the images of the most confident mistakes are kept, so memory stays bounded."""
    h, w, c = setting.input_shape
    mistakes = Mistakes(np.zeros((0, h, w, c), np.uint8), *(np.zeros(0, t) for t in (np.int64, np.int64,
                                                                                     np.float32, np.int64)))

    def keep_mistakes(chunk, probabilities: np.ndarray) -> None:
        nonlocal mistakes
        mistakes = mistakes.add(chunk.images, index.labels[chunk.kept], probabilities, chunk.kept,
                                plots.MISCLASSIFIED_SHOWN)

    answers = predict_files(index.paths, setting, keras_probabilities(model), len(index.class_names), progress,
                            "test images", on_chunk=keep_mistakes)
    return answers.probabilities, answers.kept, answers.failed, mistakes


def evaluate(setting: Setting, progress: bool = True, chosen: dict | None = None,
             then: Callable[..., None] | None = None) -> EvaluationReport:
    """Evaluate the best checkpoint of ``setting.model_path`` on every image of ``setting.test_path``.

    The model's settings, class names, weights and softmax temperature are
    read as one snapshot, under the readers' lock that a training run takes
    to replace the model; the report is written under it too, after
    checking that ``best.weights.h5`` is still the file evaluated (its
    SHA-256 is recorded as ``weights_sha256``).

    Args:
        setting: a trained model's Setting (:func:`mnist_folders.artifacts.setting_for_model`).
        progress: show tqdm bars.
        chosen: the values the user gave (as for :func:`~mnist_folders.artifacts.setting_for_model`):
            when given, the Setting is made again from the snapshot's ``setting.json``, so that a
            new model replacing the old one meanwhile is evaluated with its own settings.

        then: called under the same lock once ``evaluation.json`` is
            written, as ``then(setting, model, report, paths, true,
            calibrated)``: the images evaluated, their ``(N,)`` int64 labels
            and ``(N, K)`` temperature-scaled probabilities. The command
            layer draws ``report.html`` there (:mod:`mnist_folders.explain.report`).

    Returns:
        The :class:`EvaluationReport`, also written to ``evaluation.json``.

    Raises:
        CheckpointError: no trained model in ``model_dir``, the model directory is inside the test
            folder, or a training run replaced the model during the evaluation (nothing is written).
        DatasetError: the test tree is missing, empty, or has class folders the
            model does not know (a subset of the classes is allowed).
    """
    from .deploy import weights_digest

    model_dir, root = setting.model_path, setting.test_path
    artifacts.check_outside_data(model_dir, {"test": root})
    artifacts.ensure_writable(model_dir)
    with files_lock(model_dir, exclusive=False):  # one snapshot: a promotion cannot fall between these reads
        digest = weights_digest(model_dir)  # checked again before writing: a new best epoch may replace the file
        if chosen is not None:
            setting = artifacts.setting_for_model({**chosen, "model_dir": str(model_dir)})
        model, setting, class_names = saved.load_trained_model(model_dir, setting)
        temperature = artifacts.load_temperature(model_dir)
    index = index_tree(root, class_names, require_all=False)
    probabilities, kept, failed, mistakes = _predict_tree(model, index, setting, progress)
    true = index.labels[kept]
    predicted = probabilities.argmax(axis=1)
    confusion = confusion_matrix(true, predicted, len(class_names))
    counts = index.class_counts()
    recall = _ratio(np.diag(confusion), confusion.sum(axis=1))
    report = EvaluationReport(
        test_dir=str(root),
        images=int(len(true)),
        loss=cross_entropy(probabilities, true),
        accuracy=float(np.mean(predicted == true)),
        balanced_accuracy=float(np.mean([r for r in recall if r is not None])),
        class_names=class_names,
        support=[int(n) for n in confusion.sum(axis=1)],
        precision=_ratio(np.diag(confusion), confusion.sum(axis=0)),
        recall=recall,
        confusion=confusion.tolist(),
        skipped=[list(item) for item in failed],
        missing_classes=[name for name in class_names if counts.get(name, 0) == 0],
        figures=[],
    )
    report.weights_sha256 = digest
    report.temperature = temperature
    calibrated = calibration.apply_temperature(probabilities, report.temperature)
    curves = {}
    if len(true):
        report.ece = calibration.expected_calibration_error(probabilities, true)
        report.ece_calibrated = calibration.expected_calibration_error(calibrated, true)
        curves = {"softmax": (*calibration.reliability(probabilities, true), report.ece),
                  f"temperature {report.temperature:.3g}": (*calibration.reliability(calibrated, true),
                                                            report.ece_calibrated)}
    wrong_count = int(np.sum(predicted != true))
    # The readers' lock while the report is written: a promotion (which removes the reports of the model it
    # replaces) waits, so no report is left beside a model it does not describe.
    with files_lock(model_dir, exclusive=False):
        _check_unchanged(model_dir, digest)
        report.figures = [
            str(plots.confusion_matrix(report.confusion, class_names, model_dir / layout.CONFUSION_MATRIX)),
            str(plots.misclassified(mistakes.images, [class_names[i] for i in mistakes.true],
                                    [class_names[i] for i in mistakes.predicted], mistakes.confidence,
                                    model_dir / layout.MISCLASSIFIED, total=wrong_count)),
        ]
        if curves:
            report.figures.append(str(plots.reliability_diagram(curves, model_dir / layout.RELIABILITY)))
        artifacts.write_json(model_dir / layout.EVALUATION, asdict(report))
        if then is not None:
            then(setting, model, report, [index.paths[i] for i in kept.tolist()], true, calibrated)
    return report


def _check_unchanged(model_dir: Path, digest: str) -> None:
    """Raise CheckpointError when ``best.weights.h5`` is no longer the file of SHA-256 ``digest``."""
    from .deploy import weights_digest

    if weights_digest(model_dir) != digest:
        raise CheckpointError(f"{display(model_dir)}: the model was replaced by a new training run while it was "
                              "evaluated; nothing written; run evaluate again")


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
    if len(names) <= MATRIX_PRINTED_UP_TO:
        cell = max(5, len(str(max(max(row) for row in report.confusion))) + 1)
        lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
                  " " * width + "".join(f"{n[:cell - 1]:>{cell}}" for n in names)]
        for name, row in zip(names, report.confusion):
            lines.append(f"{name:>{width}}" + "".join(f"{v:>{cell}d}" for v in row))
    else:  # 1,001 classes printed 5 MB: the most frequent confusions instead, the matrix in the JSON report
        matrix = np.array(report.confusion)
        np.fill_diagonal(matrix, 0)
        cells = np.argsort(-matrix, axis=None, kind="stable")[:TOP_CONFUSIONS]
        pairs = [(int(c) // len(names), int(c) % len(names)) for c in cells if matrix.flat[c] > 0]
        lines += ["", f"most frequent confusions (true -> predicted; the {len(names)} x {len(names)} confusion "
                      "matrix is in evaluation.json)"]
        lines += [f"  {names[t]} -> {names[p]}: {matrix[t, p]}" for t, p in pairs] or ["  none"]
    if report.missing_classes:
        lines.append(f"\nclasses with no test images (evaluated on a subset): {report.missing_classes}")
    for path, reason in report.skipped:
        lines.append(f"skipped {path}: {reason}")
    lines += [f"figure: {path}" for path in report.figures]
    return "\n".join(lines)
