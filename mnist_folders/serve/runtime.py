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

from .. import artifacts
from ..errors import CheckpointError
from ..names import display

RUNTIMES = {"onnx": "model.onnx", "tflite": "model.tflite", "tflite_int8": "model_int8.tflite"}
BATCH = 256  # images per call: larger batches gain nothing on CPU (bench/export_parity.py)


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
            made on the first :meth:`predict`.
    """

    def __init__(self, model_dir: Path, runtime: str = "onnx"):
        from .deploy import LABELS, PREPROCESSING, weights_digest

        folder = Path(model_dir) / artifacts.EXPORT
        self.runtime, self.path = runtime, folder / RUNTIMES[runtime]
        if not self.path.exists():
            raise CheckpointError(f"{display(self.path)}: no such file; run --mode export first "
                                  f"(or predict with --runtime keras)")
        try:
            self.preprocessing = json.loads((folder / PREPROCESSING).read_text(encoding="utf-8"))
            self.class_names = (folder / LABELS).read_text(encoding="utf-8").splitlines()
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{display(folder)}: incomplete export ({exc}); run --mode export again") from None
        artifacts.check_class_names(self.class_names, folder / LABELS)
        if self.preprocessing.get("source_weights_sha256") != weights_digest(Path(model_dir)):
            raise CheckpointError(f"{display(folder)}: exported from an earlier training run of this model "
                                  "directory; run --mode export again")
        library = "onnxruntime" if runtime == "onnx" else "ai_edge_litert"
        if importlib.util.find_spec(library) is None:
            raise CheckpointError(f"{library} is not installed (pip install -r requirements.txt), "
                                  "or predict with --runtime keras")
        self._run = None  # the session, made on the first predict: choosing a runtime needs only the checks

    def _session(self):
        if self._run is None:
            self._run = self._onnx() if self.runtime == "onnx" else self._tflite()
        return self._run

    def _onnx(self):
        import onnxruntime

        session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        return lambda images: session.run(["probabilities"], {"images": images})[0]

    def _tflite(self):
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_path=str(self.path)).get_signature_runner("serve")
        return lambda images: runner(images=images)["probabilities"]

    @property
    def invert(self) -> str:
        """The ``invert`` setting built into the graph."""
        return self.preprocessing["invert"]["setting"]

    def predict(self, images: np.ndarray) -> np.ndarray:
        """``(N, K)`` float32 probabilities for ``(N, H, W, C)`` uint8 images, :data:`BATCH` at a time."""
        run, parts = self._session(), [np.zeros((0, len(self.class_names)), dtype=np.float32)]
        for start in range(0, len(images), BATCH):
            parts.append(np.asarray(run(np.ascontiguousarray(images[start : start + BATCH])), dtype=np.float32))
        return np.concatenate(parts)
