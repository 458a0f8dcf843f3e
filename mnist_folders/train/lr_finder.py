"""The learning-rate finder (``--mode lr_find``): a short sweep of the
learning rate that shows which rates the model can train with.

Leslie Smith's range test ("Cyclical Learning Rates for Training Neural
Networks", 2017), as fastai popularised it: train a fresh model for
``steps`` batches while the learning rate grows geometrically from
``start`` to ``end``; record each batch's loss; stop once the loss exceeds
4x its best. The suggestion is the rate at the lowest smoothed loss divided
by 10: a rate where the loss still falls fast, safely below the point of
divergence. Nothing in the model directory but ``lr_find.json`` and
``lr_find.png`` is written.
"""

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..networks import dtype_policy
from .. import artifacts, plots
from ..layout import LR_FIND_JSON, LR_FIND_PNG
from ..networks.build import build_model
from ..settings import Setting



@dataclass
class LRSweep:
    """The sweep: ``learning_rates[i]`` was used for the batch whose loss is ``losses[i]``."""

    learning_rates: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    figure: str = ""


def suggest(learning_rates: list[float], losses: list[float], beta: float = 0.9) -> tuple[list[float], float]:
    """Smooth ``losses`` (bias-corrected exponential moving average) and suggest a rate: the minimum's / 10."""
    smoothed, average = [], 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        smoothed.append(average / (1 - beta ** (i + 1)))
    finite = [i for i, v in enumerate(smoothed) if math.isfinite(v)]
    best = min(finite, key=lambda i: smoothed[i])
    return smoothed, learning_rates[best] / 10.0


def find_learning_rate(setting: Setting, data, num_classes: int, steps: int = 200, start: float = 1e-6,
                       end: float = 1.0, log=print) -> LRSweep:
    """Run the sweep on ``data.train`` (a :class:`~mnist_folders.data.pipeline.TrainingData`) and write the results.

    Args:
        setting: resolved training settings (model, optimizer, batch size).
        data: the training data; its batches are cycled through.
        num_classes: outputs of the model.
        steps: batches in the sweep (fewer if the loss diverges first).
        start, end: the first and last learning rate.

    Returns:
        The :class:`LRSweep`, also written to ``lr_find.json`` and ``lr_find.png``.
    """
    dtype_policy.apply(setting.dtype_policy)
    model = build_model(setting.model, setting.input_shape, num_classes, setting.optimizer, start,
                        setting.backbone_weights, setting.label_smoothing)
    factor = (end / start) ** (1.0 / max(1, steps - 1))
    rates, losses, epoch = [], [], 0
    while len(losses) < steps:
        if data.set_epoch is not None:
            data.set_epoch(epoch)
        for i, (x, y) in enumerate(data.train):
            if len(losses) >= steps or (setting.pipeline == "idg" and i >= len(data.train)):
                break
            rate = start * factor ** len(losses)
            model.optimizer.learning_rate.assign(rate)
            loss = float(model.train_on_batch(x, y, return_dict=True)["loss"])
            rates.append(rate)
            losses.append(loss)
            if not math.isfinite(loss) or loss > 4 * min(losses):
                steps = len(losses)  # diverged: the sweep is over
        epoch += 1
    smoothed, suggestion = suggest(rates, losses)
    sweep = LRSweep(rates, losses, smoothed, suggestion)
    model_dir = setting.model_path
    sweep.figure = str(plots.lr_sweep(rates, smoothed, suggestion, model_dir / LR_FIND_PNG))
    artifacts.write_json(model_dir / LR_FIND_JSON, {k: (v if not isinstance(v, list) else
                                                        [float(x) for x in np.nan_to_num(v, nan=-1.0)])
                                                    for k, v in asdict(sweep).items()})
    log(f"learning-rate sweep over {len(losses)} batches: lowest smoothed loss {min(smoothed):.4f} at "
        f"{rates[int(np.nanargmin(smoothed))]:.2g}")
    return sweep
