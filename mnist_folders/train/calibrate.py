"""The softmax temperature of a trained model, fitted on the validation images training held out.

See :mod:`mnist_folders.networks.calibration` for the fit and the calibration error.
"""

from __future__ import annotations

import numpy as np

from .. import artifacts, layout
from ..data.folders import FolderIndex
from ..networks import calibration, saved
from ..networks.inference import keras_probabilities, predict_files
from ..settings import Setting
from .preparation import split_readable

CALIBRATION_IMAGES = 10_000  # validation images the softmax temperature is fitted on, at most


def calibrate(setting: Setting, index: FolderIndex, failed: list[tuple[str, str]]) -> str:
    """Fit the temperature of the best checkpoint on the validation images; write ``calibration.json``.

    The validation images are those training held out (``setting.val_path``,
    or the same split of the readable files; at most :data:`CALIBRATION_IMAGES`
    of them, a seeded choice); see :mod:`mnist_folders.networks.calibration`.
    Returns the line to log.
    """
    held_out = split_readable(setting, index, failed)[1]
    if len(held_out) > CALIBRATION_IMAGES:  # plenty for one parameter; bounds the time on large datasets
        chosen = np.random.default_rng(setting.seed).choice(len(held_out), CALIBRATION_IMAGES, replace=False)
        held_out = held_out.subset(np.sort(chosen))
    model, _, _ = saved.load_trained_model(setting.model_path, setting)
    answers = predict_files(held_out.paths, setting, keras_probabilities(model), len(index.class_names))
    probabilities, labels = answers.probabilities, held_out.labels[answers.kept]
    if len(labels) == 0:
        return "calibration: no readable validation images; softmax temperature left at 1"
    temperature = calibration.fit_temperature(probabilities, labels)
    calibrated = calibration.apply_temperature(probabilities, temperature)
    report = {
        "temperature": temperature,
        "validation_images": int(len(labels)),
        "ece_before": calibration.expected_calibration_error(probabilities, labels),
        "ece_after": calibration.expected_calibration_error(calibrated, labels),
        "nll_before": calibration.negative_log_likelihood(probabilities, labels),
        "nll_after": calibration.negative_log_likelihood(calibrated, labels),
    }
    artifacts.write_json(setting.model_path / layout.CALIBRATION, report)
    return (f"calibration: softmax temperature {temperature:.3g} fitted on {len(labels)} validation images "
            f"(expected calibration error {report['ece_before']:.4f} -> {report['ece_after']:.4f})")
