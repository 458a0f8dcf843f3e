"""``--mode explain``: where the model looks, one picture per image file.

Each readable image under the input (a file or a folder, as ``predict``
reads it) gets ``<output>/<relative path>.gradcam.png``: the model's input
beside its Grad-CAM overlay for the top class (:mod:`mnist_folders.explain.gradcam`),
titled with the top classes and their (temperature-scaled) probabilities,
as ``predict`` reports them. The input goes through ``predict``'s decoding
and inversion rule first, so the heatmap is of what the model saw.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import artifacts, plots
from ..data.decoding import decode_images
from ..data.folders import files_to_predict
from ..data.images import invert_where_needed
from ..errors import SettingError
from ..names import display
from ..networks import calibration, saved
from ..networks.inference import TOP_K
from ..settings import Setting

BATCH = 32  # images per Grad-CAM pass


@dataclass
class Explained:
    """The pictures written, ``(source file, picture, top class, its probability)`` each; the files
    skipped with why; the seconds taken (model load excluded)."""

    pictures: list[tuple[str, Path, str, float]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


def picture_name(path: str, root: Path) -> str:
    """``a/b.png`` under ``root`` -> ``a__b.png.gradcam.png``: one flat folder, no two sources alike."""
    try:
        relative = Path(path).relative_to(root)
    except ValueError:
        relative = Path(Path(path).name)
    return "__".join(relative.parts) + ".gradcam.png"


def explain_files(setting: Setting, output: Path) -> Explained:
    """Write one Grad-CAM picture per image under ``setting.predict_path`` into ``output``.

    Raises:
        CheckpointError: no trained model; ``output`` cannot be made.
        NoConvolution: the model has no convolutional layer (one line).
        DatasetError: the input does not exist.
        SettingError: ``output`` is inside the input folder (a second run would explain its pictures).
    """
    from .gradcam import GradCam, overlay

    source = setting.predict_path
    if source.is_dir() and Path(output).resolve().is_relative_to(source.resolve()):
        raise SettingError(f"--output {display(output)} is inside the input folder {display(source)}; choose "
                           "a folder outside it")
    artifacts.check_creatable(output, what="--output folder")
    paths, skipped = files_to_predict(source)
    model, setting, class_names = saved.load_trained_model(setting.model_path, setting)
    cam = GradCam(model)  # NoConvolution here, before any file is read
    trained_light = artifacts.light_background_share(setting.model_path) > 0.5
    temperature = artifacts.load_temperature(setting.model_path)
    result = Explained(skipped=list(skipped))
    started = time.perf_counter()
    root = source if source.is_dir() else source.parent
    output.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(paths), BATCH):
        chunk = paths[start : start + BATCH]
        decoded = decode_images(chunk, setting)
        result.skipped += decoded.failed
        if not len(decoded.kept):
            continue
        seen = invert_where_needed(decoded.images, setting.invert, trained_light)
        heatmaps, probabilities = cam(seen)
        probabilities = calibration.apply_temperature(probabilities, temperature)
        for j, i in enumerate(decoded.kept.tolist()):
            top = np.argsort(-probabilities[j], kind="stable")[: min(TOP_K, len(class_names))]
            title = ", ".join(f"{display(class_names[c])} {probabilities[j, c]:.1%}" for c in top)
            picture = output / picture_name(chunk[i], root)
            plots.explanation(seen[j], overlay(seen[j], heatmaps[j]), title, picture)
            result.pictures.append((chunk[i], picture, class_names[top[0]], float(probabilities[j, top[0]])))
    result.seconds = time.perf_counter() - started
    result.skipped.sort()
    return result
