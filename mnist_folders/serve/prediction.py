"""Predict every image file in a folder with a trained model, in batches, into a CSV."""

import csv
import io
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import artifacts, layout, locking
from ..networks import calibration, saved
from ..atomic import write_text
from ..errors import CheckpointError
from ..data.folders import files_to_predict
from ..data.images import invert_where_needed
from ..networks.inference import TOP_K, predict_files, predict_probabilities
from ..names import display, safe_cell
from ..settings import Setting

UNCERTAIN = "uncertain"  # the class column of a prediction under min_confidence


@dataclass
class Prediction:
    """One file's result: the top class name, its softmax probability, and the top-k (best first)."""

    path: str
    class_name: str
    confidence: float
    top_k: list[tuple[str, float]]
    uncertain: bool = False  # the top probability is under min_confidence: class_name is UNCERTAIN


@dataclass
class PredictionRun:
    """All files' predictions, plus the files that were skipped and why."""

    predictions: list[Prediction]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    csv_path: Path | None = None
    predictor: "Predictor | None" = None


def same_file(path: str, other: Path) -> bool:
    """True when ``path`` is the file ``other`` (links followed); only a path of ``other``'s name is stat-ed."""
    try:
        return os.path.basename(path) == other.name and os.path.samefile(path, other)
    except OSError:
        return False


@dataclass
class Predictor:
    """A trained model ready to predict: ``probabilities(uint8 (N, H, W, C)) -> (N, K)`` float32.

    The probabilities are temperature-scaled (``calibration.json``) and the
    ``invert`` setting is applied, whichever ``runtime`` runs the model.
    """

    probabilities: Callable[[np.ndarray], np.ndarray]
    class_names: list[str]
    runtime: str  # keras, onnx, tflite or tflite_int8
    source: str  # what runs: the model directory or the exported file


def load_predictor(setting: Setting, policy: str | None = None) -> Predictor:
    """The model of ``setting.model_path`` on ``setting.runtime`` (``auto``: see :func:`choose_runtime`).

    ``policy`` builds a Keras model under another dtype policy than the
    trained one (``"float32"``: the exports' arithmetic).

    Raises:
        CheckpointError: no trained model; for an exported runtime, no
            current export, one built with another ``invert`` setting, or the
            runtime library missing. The returned ``probabilities`` raise it
            (``UnusableExport`` for an export) when the model's outputs are
            not probabilities (NaN, negative, rows not summing to 1).
    """
    model_dir = setting.model_path
    runtime = choose_runtime(setting)
    if runtime != "keras":
        from .runtime import ExportedModel

        exported = ExportedModel(model_dir, runtime)
        if exported.invert != setting.invert:
            raise CheckpointError(f"{display(exported.path)}: exported with invert={exported.invert}, asked "
                                  f"invert={setting.invert}; export again with --invert {setting.invert}, "
                                  "or predict with --runtime keras")
        exported.load()  # a file the runtime cannot load is said before any image is read
        return Predictor(exported.predict, exported.class_names, runtime, display(exported.path))
    from .runtime import probability_problem

    model, _, class_names = saved.load_trained_model(model_dir, setting, policy)
    trained_light = artifacts.light_background_share(model_dir) > 0.5
    temperature = artifacts.load_temperature(model_dir)

    def probabilities(images: np.ndarray) -> np.ndarray:
        images = invert_where_needed(images, setting.invert, trained_light)
        result = calibration.apply_temperature(predict_probabilities(model, images), temperature)
        problem = probability_problem(result)  # NaN weights answer class 0 at "nan" otherwise
        if problem:
            raise CheckpointError(f"{display(model_dir / layout.BEST_WEIGHTS)}: the model {problem}; "
                                  "its weights are damaged: train again")
        return result

    return Predictor(probabilities, class_names, "keras", display(model_dir))


def choose_runtime(setting: Setting, warn: Callable[[str], None] = lambda line: print(line, file=sys.stderr)) -> str:
    """``setting.runtime``, with ``auto`` resolved: ``onnx`` when ``export/model.onnx`` is current
    (exported from today's ``best.weights.h5`` with the same ``invert``), onnxruntime imports and loads it,
    else ``keras``. A current export that does not load (damaged) is said in one line through ``warn``."""
    if setting.runtime != "auto":
        return setting.runtime
    from .runtime import ExportedModel, UnusableExport

    try:
        exported = ExportedModel(setting.model_path, "onnx")
        if exported.invert == setting.invert:
            exported.load()
            return "onnx"
    except UnusableExport as exc:
        warn(f"{exc.problem}; predicting with Keras (run --mode export again)")
    except (CheckpointError, ImportError, OSError, KeyError, TypeError):
        pass
    return "keras"


def rank(probabilities: np.ndarray, class_names: list[str], paths: list[str],
         min_confidence: float = 0.0) -> list[Prediction]:
    """One :class:`Prediction` per row of ``(N, K)`` probabilities, for ``paths`` (N)."""
    k = min(TOP_K, len(class_names))
    ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(probabilities, ranked, axis=1).tolist()
    predictions = []
    for path, classes, top_scores in zip(paths, ranked.tolist(), scores):
        top = [(class_names[j], p) for j, p in zip(classes, top_scores)]
        uncertain = top[0][1] < min_confidence
        predictions.append(Prediction(path, UNCERTAIN if uncertain else top[0][0], top[0][1], top, uncertain))
    return predictions


def predict(setting: Setting, output: Path | None = None, progress: bool = True) -> PredictionRun:
    """Predict every image under ``setting.predict_path`` with the best checkpoint of ``setting.model_path``.

    Any file Pillow reads is converted to the model's input (size, colour
    mode, bit depth; see :func:`mnist_folders.data.images.load_image`); other
    files are skipped and listed. A background thread decodes the files in
    chunks while the model predicts the chunks already decoded. The model
    runs on ``setting.runtime`` (:func:`load_predictor`); a top probability
    under ``setting.min_confidence`` is written as class ``uncertain``.

    Args:
        setting: a trained model's Setting (:func:`mnist_folders.artifacts.setting_for_model`).
        output: the CSV to write; default ``<model_dir>/predictions.csv``
            (columns: see :func:`to_csv`).
        progress: show a tqdm bar.

    Raises:
        CheckpointError: no trained model in the model directory, or another predict run (a watcher)
            holds the CSV (checked before the model loads).
        DatasetError: the predict folder does not exist.
        OSError: the CSV cannot be written (checked before any work).
    """
    model_dir = setting.model_path
    csv_path = Path(output) if output else model_dir / layout.PREDICTIONS
    paths, skipped = files_to_predict(setting.predict_path)
    # The CSV of an earlier run inside the folder is ours, not an image to list as skipped each time.
    paths = [path for path in paths if not same_file(path, csv_path)]
    artifacts.check_output_csv(csv_path, model_dir)
    artifacts.ensure_writable(csv_path.parent, what="folder for the predictions CSV")
    # A watcher appending to this CSV is said now, and none starts on it until the new CSV is in place.
    with locking.appender_lock(csv_path, create=False):
        run = PredictionRun([], skipped)
        # Decoding starts while the model loads; one thread, not processes: the model needs the cores.
        predictor: Predictor | None = None

        def load() -> None:
            nonlocal predictor
            predictor = run.predictor = load_predictor(setting)

        answers = predict_files(paths, setting, lambda images: predictor.probabilities(images), progress=progress,
                                processes=False, on_start=load)
        run.skipped.extend(answers.failed)
        run.skipped.sort()
        probabilities, kept = answers.probabilities, answers.kept
        if len(kept) == 0:
            return run
        run.predictions = rank(probabilities, predictor.class_names, [paths[i] for i in kept],
                               setting.min_confidence)
        run.csv_path = csv_path
        write_text(csv_path, to_csv(run.predictions))
    return run


def csv_header(k: int = TOP_K) -> list[str]:
    """``path, class, confidence, top2, top2_confidence, ...`` up to ``top<k>``."""
    ranks = [name for r in range(2, k + 1) for name in (f"top{r}", f"top{r}_confidence")]
    return ["path", "class", "confidence", *ranks]


def to_csv(predictions: list[Prediction]) -> str:
    """CSV text (RFC 4180: CRLF line ends, fields with separators or line breaks quoted).

    Columns: ``path`` (undecodable bytes in names as ``\\xNN``), ``class``,
    ``confidence`` (its softmax probability), then ``top2``,
    ``top2_confidence``, ... the next classes by probability. Text cells
    that a spreadsheet would read as a formula get a leading apostrophe.
    """
    k = max((len(p.top_k) for p in predictions), default=TOP_K)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(csv_header(k))
    for p in predictions:
        row = [safe_cell(display(p.path)), safe_cell(display(p.class_name)), f"{p.confidence:.6f}"]
        for name, probability in p.top_k[1:]:
            row += [safe_cell(display(name)), f"{probability:.6f}"]
        writer.writerow(row)
    return buffer.getvalue()
