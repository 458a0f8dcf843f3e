"""Training budgets that adapt to the dataset: the batch size, the epoch cap,
the patience of early stopping, the stop rule and the learning-rate schedule.

Every rule here is a function of the Setting, the number of training images
and the history of completed epochs, never of hidden callback state, so a run
resumed after a kill continues the same schedule and the same patience count.

The rules (constants below; figures behind them in ``bench/README.md``):

- ``batch_size = "auto"``: the model's default batch (256 for the reference
  model), halved while an epoch would have fewer than
  :data:`MIN_STEPS_PER_EPOCH` steps, down to 16. A smaller batch than the
  model's default scales the learning rate by ``sqrt(batch / default)``.
- ``epochs = "auto"``: train until the validation result (``val_accuracy``,
  ties broken by ``val_loss``: :func:`best_epoch`) has not improved for
  ``patience`` epochs, within ``max_epochs`` and ``max_minutes``; the best
  epoch's weights are what evaluate and predict use (``best.weights.h5``).
- ``patience = "auto"``: enough epochs for :data:`PATIENCE_STEPS` weight
  updates, at least :data:`MIN_PATIENCE`.
- ``max_epochs = "auto"``: enough epochs for :data:`CAP_STEPS` weight
  updates, between :data:`MIN_CAP` and :data:`MAX_CAP`.
"""

import math
import time
from typing import Any

MIN_STEPS_PER_EPOCH = 25
MIN_BATCH = 16
PATIENCE_STEPS = 600
MIN_PATIENCE = 3
CAP_STEPS = 8000
MIN_CAP, MAX_CAP = 15, 400


def auto_batch_size(default: int, train_images: int) -> int:
    """The model's ``default`` batch, halved while an epoch would be shorter than MIN_STEPS_PER_EPOCH steps."""
    batch = default
    while batch > MIN_BATCH and train_images / batch < MIN_STEPS_PER_EPOCH:
        batch //= 2
    return batch


def resolve_budget(setting: Any, train_images: int, default_batch: int, default_learning_rate: float) -> Any:
    """``setting`` with its ``auto`` batch size, patience and epoch cap made numbers for ``train_images``.

    ``default_batch`` and ``default_learning_rate`` are the model's own
    (:data:`mnist_folders.registry.MODELS`); the learning rate is scaled only
    when an automatic batch is smaller than the default and the learning
    rate is the model's default.
    """
    changes: dict[str, Any] = {}
    batch = setting.batch_size
    if batch == "auto":
        batch = auto_batch_size(default_batch, train_images)
        changes["batch_size"] = batch
        if batch < default_batch and setting.learning_rate == default_learning_rate:
            changes["learning_rate"] = default_learning_rate * math.sqrt(batch / default_batch)
    steps = max(1, math.ceil(train_images / batch))
    if setting.patience == "auto":
        changes["patience"] = max(MIN_PATIENCE, math.ceil(PATIENCE_STEPS / steps))
    if setting.max_epochs == "auto":
        changes["max_epochs"] = min(MAX_CAP, max(MIN_CAP, math.ceil(CAP_STEPS / steps)))
    return setting.replace(**changes) if changes else setting


def epoch_limit(setting: Any) -> int:
    """The most epochs the run may train: ``epochs``, or ``max_epochs`` under ``epochs = "auto"``."""
    return setting.max_epochs if setting.epochs == "auto" else setting.epochs


def best_epoch(history: list[dict[str, float]]) -> int | None:
    """The 1-based epoch of ``history`` with the best validation result, or ``None``.

    Best: the highest ``val_accuracy``; among equal ones (frequent on small
    validation sets, where accuracy moves in steps of 1/n), the lowest
    ``val_loss``; among equal both, the earliest.
    """
    scored = [(row["val_accuracy"], -row.get("val_loss", 0.0), -row["epoch"]) for row in history
              if "val_accuracy" in row]
    return -max(scored)[2] if scored else None


def should_stop(setting: Any, history: list[dict[str, float]]) -> str | None:
    """Why training should stop after ``history`` (one row per completed epoch), or ``None``.

    Only under ``epochs = "auto"``: ``patience`` epochs without a new best
    ``val_accuracy``. The epoch cap is :func:`epoch_limit`'s business.
    """
    best = best_epoch(history)
    if setting.epochs != "auto" or best is None:
        return None
    if history[-1]["epoch"] - best >= setting.patience:
        accuracy = next(row["val_accuracy"] for row in history if row["epoch"] == best)
        return (f"no better validation result for {setting.patience} epochs "
                f"(best: epoch {best}, val_accuracy {accuracy:.4f})")
    return None


def plateaus(history: list[dict[str, float]], wait: int) -> int:
    """How many times ``history`` went ``wait`` epochs without a better validation result (counting restarts)."""
    events, since, best = 0, 0, None
    for row in history:
        score = (row.get("val_accuracy", float("-inf")), -row.get("val_loss", 0.0))
        if best is None or score > best:
            best, since = score, 0
        else:
            since += 1
            if since >= wait:
                events, since = events + 1, 0
    return events


def learning_rate_at(setting: Any, epoch: int, history: list[dict[str, float]] | None = None) -> float:
    """The learning rate of 0-based ``epoch``: warm-up, then the ``lr_schedule``.

    ``constant``: times ``lr_decay`` per epoch; ``cosine``: down to 0 over the
    epoch limit; ``plateau``: halved each time the validation result has not
    improved for half the patience (Keras' ReduceLROnPlateau, counted from
    ``history``, the completed epochs, so that a resumed run halves at the
    same epochs).
    """
    base = setting.learning_rate
    if epoch < setting.warmup_epochs:
        return base * (epoch + 1) / (setting.warmup_epochs + 1)
    if setting.lr_schedule == "plateau":
        return base * 0.5 ** plateaus((history or [])[:epoch], max(1, setting.patience // 2))
    if setting.lr_schedule == "cosine":
        span = max(1, epoch_limit(setting) - setting.warmup_epochs)
        progress = min(1.0, (epoch - setting.warmup_epochs) / span)
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    return base * setting.lr_decay ** (epoch - setting.warmup_epochs)


class Deadline:
    """The wall-clock cap ``max_minutes`` (0: none), counted from this process's start of training."""

    def __init__(self, max_minutes: float):
        self.limit = max_minutes * 60.0
        self.started = time.monotonic()

    def passed(self) -> bool:
        return self.limit > 0 and time.monotonic() - self.started >= self.limit
