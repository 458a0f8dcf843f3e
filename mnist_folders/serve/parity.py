"""Prove that the exported artifacts predict what the Keras model predicts.

Every artifact of ``<model_dir>/export/`` runs on the same labelled test
images, each through its own input path, and is compared with the Keras
model as ``--mode predict --runtime keras`` runs it (its dtype policy, the
inversion rule and the temperature):

* ``onnx``, ``tflite``, ``tflite_int8``: the files decoded by Pillow
  (:func:`mnist_folders.data.images.load_image`), pixels fed to the artifact;
* ``savedmodel``: the ``serve`` signature on the same pixels;
* ``savedmodel_bytes``: the ``serve_bytes`` signature on the files' bytes
  (decoding and resizing by TensorFlow inside the graph).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import artifacts, layout
from ..data.decoding import decode_images
from ..data.folders import index_tree
from .prediction import load_predictor
from .runtime import ExportedModel, vouched_export
from ..settings import Setting

LATENCY_BATCH = 256
LATENCY_SINGLES = 50  # batch-1 calls timed (median)


@dataclass
class ParityRow:
    """One format against Keras on ``images`` test images.

    ``agreement``: share of images with the same top class; ``max_abs_diff``:
    largest difference of any probability; ``accuracy``: against the labels;
    ``size_bytes``: the artifact on disk; latencies in milliseconds per image
    (batch 1: median of single-image calls; batch 256: one full batch / 256).
    """

    format: str
    images: int
    agreement: float
    disagreements: int
    max_abs_diff: float
    accuracy: float
    size_bytes: int
    latency_ms_batch1: float | None = None
    latency_ms_batch256: float | None = None


def _latency(run, images: np.ndarray) -> tuple[float, float]:
    run(images[:1])  # warm-up: first calls allocate
    singles = []
    for i in range(min(LATENCY_SINGLES, len(images))):
        started = time.perf_counter()
        run(images[i : i + 1])
        singles.append(time.perf_counter() - started)
    batch = images[:LATENCY_BATCH]
    run(batch)
    started = time.perf_counter()
    run(batch)
    return float(np.median(singles) * 1e3), (time.perf_counter() - started) / len(batch) * 1e3


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def compare(setting: Setting, formats: tuple[str, ...], limit: int | None = None,
            latency: bool = False, reference_policy: str | None = None) -> list[ParityRow]:
    """Rows for Keras (the reference) and each of ``formats`` on ``setting.test_path``.

    ``formats`` are among ``onnx``, ``tflite``, ``tflite_int8``,
    ``savedmodel``, ``savedmodel_bytes``; ``limit`` takes the first
    ``limit`` test images of a seeded shuffle (all classes represented);
    ``reference_policy`` (e.g. ``"float32"``) runs the Keras reference under
    another dtype policy than the trained one.

    Raises:
        CheckpointError: no model, or no current export of a format (UnusableExport: a file of it is
            not the one its ``preprocessing.json`` records).
        DatasetError: no test tree.
    """
    from .deploy import FILES

    model_dir = setting.model_path
    class_names = artifacts.load_class_names(model_dir)
    index = index_tree(setting.test_path, class_names, require_all=False)
    if limit is not None and limit < len(index):
        index = index.subset(np.sort(np.random.default_rng(setting.seed).permutation(len(index))[:limit]))
    decoded = decode_images(index.paths, setting)
    images, labels = decoded.images, index.labels[decoded.kept]
    paths = [index.paths[i] for i in decoded.kept]
    keras_predictor = load_predictor(setting.replace(runtime="keras"), reference_policy)
    reference = keras_predictor.probabilities(images.copy())  # the keras path inverts in place
    runs = {"keras": (keras_predictor.probabilities, model_dir / layout.BEST_WEIGHTS)}
    for name in formats:
        if name in ("savedmodel", "savedmodel_bytes"):
            import tensorflow as tf

            folder = model_dir / layout.EXPORT / FILES["savedmodel"]
            vouched_export(model_dir, folder)  # the SavedModel of the current export, not one cut short
            loaded = tf.saved_model.load(str(folder))
            if name == "savedmodel":
                serve = loaded.signatures["serve"]
                runs[name] = (lambda x, serve=serve: serve(images=tf.constant(x))["probabilities"].numpy(), folder)
            else:
                serve = loaded.signatures["serve_bytes"]
                blobs = np.array([Path(p).read_bytes() for p in paths], dtype=object)
                # The first len(x) files are the first len(x) images: the graph decodes them itself.
                runs[name] = (lambda x, serve=serve: serve(encoded=tf.constant(blobs[: len(x)]))["probabilities"]
                              .numpy(), folder)
        else:
            exported = ExportedModel(model_dir, name)
            runs[name] = (exported.predict, exported.path)
    rows = []
    for name, (run, path) in runs.items():
        probabilities = reference if name == "keras" else run(images)
        same = probabilities.argmax(axis=1) == reference.argmax(axis=1)
        row = ParityRow(name, len(labels), float(same.mean()), int((~same).sum()),
                        float(np.abs(probabilities - reference).max()),
                        float((probabilities.argmax(axis=1) == labels).mean()), _size(path))
        if latency and name != "savedmodel_bytes":
            row.latency_ms_batch1, row.latency_ms_batch256 = _latency(run, images)
        rows.append(row)
    return rows


def table(rows: list[ParityRow]) -> str:
    """The rows as a Markdown table."""
    lines = ["| format | images | top-1 agreement with Keras | max prob. diff | test accuracy | size (MiB) "
             "| ms/image, batch 1 | ms/image, batch 256 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ms = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {r.format} | {r.images} | {r.agreement * 100:.2f} % ({r.disagreements} differ) "
                     f"| {r.max_abs_diff:.2e} | {r.accuracy * 100:.2f} % | {r.size_bytes / 2**20:.2f} "
                     f"| {ms(r.latency_ms_batch1)} | {ms(r.latency_ms_batch256)} |")
    return "\n".join(lines)
