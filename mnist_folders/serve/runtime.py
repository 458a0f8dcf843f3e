"""Run an exported model without TensorFlow: ``model.onnx`` on onnxruntime, ``*.tflite`` on LiteRT.

A process that only predicts starts in a fraction of a second this way
(TensorFlow's import alone takes about 2 s; see bench/README.md). The graph
holds the scaling, the inversion rule and the temperature (see
:mod:`mnist_folders.serve.deploy`); this module reads the files with Pillow at the
size and colour mode of ``preprocessing.json`` and feeds the pixels.

Imports NumPy, the chosen runtime and this package's light modules only.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from .. import layout
from ..errors import CheckpointError
from ..names import class_name_problem, display

RUNTIMES = {"onnx": "model.onnx", "tflite": "model.tflite", "tflite_int8": "model_int8.tflite"}
BATCH = 256  # images per call: larger batches gain nothing on CPU (bench/export_parity.py)


class UnusableExport(CheckpointError):
    """An export that is current (its digest matches) but that the runtime cannot load or run;
    ``problem``: the file and what is wrong, without the advice."""

    def __init__(self, problem: str):
        super().__init__(f"{problem}; run --mode export again, or predict with --runtime keras")
        self.problem = problem


def _manifest(path: Path) -> dict:
    """``preprocessing.json`` at ``path``, checked to hold what a runtime reads from it.

    Raises:
        UnusableExport: missing beside an artifact (the first export was cut short), unreadable, not JSON,
            or without the input shape, the inversion rule or the artifacts' digests.
    """
    from .deploy import ARTIFACTS

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnusableExport(f"{display(path)}: missing (an export was cut short)") from None
    except (OSError, ValueError) as exc:
        raise UnusableExport(f"{display(path)}: unreadable ({getattr(exc, 'strerror', None) or exc})") from None
    objects = isinstance(data, dict) and isinstance(data.get("input"), dict) and isinstance(data.get("invert"), dict)
    shape = data["input"].get("shape") if objects else None
    if not (objects and isinstance(shape, list) and len(shape) == 4 and shape[0] is None
            and all(type(side) is int and side > 0 for side in shape[1:])
            and isinstance(data["invert"].get("setting"), str) and isinstance(data.get(ARTIFACTS), dict)
            and type(data.get("temperature", 1.0)) in (int, float)):
        raise UnusableExport(f"{display(path)}: not an export description (the input shape, the invert rule, "
                             f"the temperature or {ARTIFACTS} missing or of the wrong type)")
    return data


def vouched_export(model_dir: Path, artifact: Path) -> tuple[dict, list[str]]:
    """``(preprocessing.json, labels.txt's class names)`` of the export holding ``artifact`` (a file, or the
    ``saved_model`` folder), once the export is known current and ``artifact`` and ``labels.txt`` are the
    files ``preprocessing.json`` records the SHA-256 of (an export is committed by its ``preprocessing.json``,
    written last: a file of an export cut short, or swapped in from another model, is not served).

    Raises:
        CheckpointError: no ``artifact``, or an export of other weights than the model's ``best.weights.h5``
            (exported before a new training).
        UnusableExport: ``preprocessing.json`` or ``labels.txt`` missing or damaged, a class name that
            could not be a folder name, or a file that is not the one recorded.
    """
    from .deploy import ARTIFACTS, LABELS, PREPROCESSING, artifact_digest, weights_digest

    folder = artifact.parent
    if not artifact.exists():
        raise CheckpointError(f"{display(artifact)}: no such file; run --mode export first "
                              f"(or predict with --runtime keras)")
    preprocessing = _manifest(folder / PREPROCESSING)
    if preprocessing.get("source_weights_sha256") != weights_digest(model_dir):
        raise CheckpointError(f"{display(folder)}: exported from an earlier training run of this model "
                              "directory; run --mode export again")
    try:
        class_names = (folder / LABELS).read_bytes().decode("utf-8", "surrogateescape").splitlines()
    except OSError as exc:
        raise UnusableExport(f"{display(folder / LABELS)}: unreadable ({exc.strerror or exc})") from None
    # Names that could not be folders are refused first (--sort-into would write outside its folder).
    problem = next(filter(None, map(class_name_problem, class_names)), None)
    if problem:
        raise UnusableExport(f"{display(folder / LABELS)}: {problem}")
    for path in (artifact, folder / LABELS):
        if preprocessing[ARTIFACTS].get(path.name) != artifact_digest(path):
            raise UnusableExport(f"{display(path)}: not the file preprocessing.json vouches for (another "
                                 "export was cut short, or it was replaced)")
    return preprocessing, class_names


def probability_problem(probabilities: np.ndarray) -> str | None:
    """Why ``(N, K)`` model outputs are not probabilities, or None: a softmax gives finite, non-negative rows
    summing to 1 (within 0.05: an int8 graph's outputs are steps of 1/256 each)."""
    if not np.isfinite(probabilities).all():
        why = "NaN or infinite values"
    elif (probabilities < 0).any():
        why = "negative values"
    elif not np.allclose(probabilities.sum(axis=1), 1.0, atol=0.05):
        why = "rows not summing to 1"
    else:
        return None
    return f"gives outputs that are not probabilities ({why})"


class ExportedModel:
    """An exported artifact of a model directory, ready to predict.

    Attributes:
        runtime: ``onnx``, ``tflite`` or ``tflite_int8``.
        path: the artifact.
        class_names: ``labels.txt``, in output order.
        preprocessing: ``preprocessing.json``.

    Raises (from the constructor):
        CheckpointError: no export, an export of other weights than the
            model's ``best.weights.h5`` (exported before a new training), or
            a runtime that is not installed. The runtime's session itself is
            made on the first :meth:`predict` (or by :meth:`load`).
        UnusableExport: ``preprocessing.json`` or ``labels.txt`` missing or
            damaged, or the artifact or ``labels.txt`` is not the file whose
            SHA-256 ``preprocessing.json`` records (an export cut short, a
            file replaced).
    """

    def __init__(self, model_dir: Path, runtime: str = "onnx"):
        self.runtime, self.path = runtime, Path(model_dir) / layout.EXPORT / RUNTIMES[runtime]
        self.preprocessing, self.class_names = vouched_export(Path(model_dir), self.path)
        library = "onnxruntime" if runtime == "onnx" else "ai_edge_litert"
        if importlib.util.find_spec(library) is None:
            raise CheckpointError(f"{library} is not installed (pip install -r requirements.txt), "
                                  "or predict with --runtime keras")
        self._run = None  # the session, made on the first predict: choosing a runtime needs only the checks

    def _session(self):
        if self._run is None:
            self._run = self._onnx() if self.runtime == "onnx" else self._tflite()
        return self._run

    def load(self) -> "ExportedModel":
        """Make the runtime's session now (it is otherwise made on the first :meth:`predict`) and try it on
        one black image; return self.

        Raises:
            UnusableExport: the file is not a model the runtime loads (garbage, truncated, empty), its
                input or output does not match ``preprocessing.json`` and ``labels.txt``, or its outputs
                are not probabilities.
        """
        shape = [1, *self.preprocessing["input"]["shape"][1:]]
        self.predict(np.zeros(shape, dtype=np.uint8))
        return self

    def _unusable(self, why: str) -> UnusableExport:
        return UnusableExport(f"{display(self.path)}: {why}")

    def _check_signature(self, input_shape: list, output_classes) -> None:
        expected = self.preprocessing.get("input", {}).get("shape", [None])[1:]
        if list(input_shape[1:]) != expected or output_classes != len(self.class_names):
            raise self._unusable(f"takes {list(input_shape[1:])} and gives {output_classes} classes, where "
                                 f"preprocessing.json says {expected} and labels.txt {len(self.class_names)}")

    def _onnx(self):
        import onnxruntime

        try:
            options = onnxruntime.SessionOptions()
            # No busy-waiting between runs: a server running one small batch every few milliseconds spent a
            # core spinning (96 % CPU against 12 %, for 0.68 against 0.78 ms a run; bench/serve_load.py),
            # taking it from the decoding of the next uploads.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no base class but Exception
            raise self._unusable(f"not a model onnxruntime loads ({type(exc).__name__})") from None
        inputs = {i.name: i.shape for i in session.get_inputs()}
        outputs = {o.name: o.shape for o in session.get_outputs()}
        if "images" not in inputs or "probabilities" not in outputs:
            raise self._unusable(f"inputs {sorted(inputs)} and outputs {sorted(outputs)}, not images and "
                                 "probabilities")
        self._check_signature(inputs["images"], outputs["probabilities"][-1])
        return lambda images: session.run(["probabilities"], {"images": images})[0]

    def _tflite(self):
        from ai_edge_litert.interpreter import Interpreter

        try:
            runner = Interpreter(model_path=str(self.path)).get_signature_runner("serve")
            details = runner.get_input_details()["images"], runner.get_output_details()["probabilities"]
        except Exception as exc:  # noqa: BLE001 - LiteRT raises ValueError, RuntimeError or KeyError
            raise self._unusable(f"not a model LiteRT loads ({type(exc).__name__})") from None
        self._check_signature([None, *details[0]["shape_signature"][1:]], int(details[1]["shape"][-1]))
        return lambda images: runner(images=images)["probabilities"]

    @property
    def invert(self) -> str:
        """The ``invert`` setting built into the graph."""
        return self.preprocessing["invert"]["setting"]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """``(N, K)`` float32 probabilities for ``(N, H, W, C)`` uint8 images, :data:`BATCH` at a time.

        Raises:
            UnusableExport: the outputs are not probabilities (not finite, negative, rows not summing to 1).
        """
        run, parts = self._session(), [np.zeros((0, len(self.class_names)), dtype=np.float32)]
        for start in range(0, len(images), BATCH):
            parts.append(np.asarray(run(np.ascontiguousarray(images[start : start + BATCH])), dtype=np.float32))
        probabilities = np.concatenate(parts)
        problem = probability_problem(probabilities)  # not served
        if problem:
            raise self._unusable(problem)
        return probabilities
