"""Transfer learning for a pretrained model: the head fitted on embeddings, then optional fine-tuning.

The two stages of Keras' transfer-learning guide and fastai's ``fine_tune``:

1. **Head** (the few-shot path of Create ML, Teachable Machine, Lobe): the
   backbone is frozen, each image's embedding is computed once
   (:mod:`mnist_folders.train.embedding_cache`), and the softmax head is
   fitted on the embeddings alone, in seconds. This is training's epoch 1.
2. **Fine-tuning** (``fine_tune = "top"`` or ``"all"``): the last blocks, or
   every layer, are unfrozen and trained from the images with the model's
   lower learning rate, augmentation and the adaptive epochs of the stop
   rule. Batch normalisation stays frozen, in inference mode (its moving
   statistics are ImageNet's; small batches would spoil them).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from ..data.folders import FolderIndex
from ..settings import Setting

HEAD_EPOCHS = 300  # at most; early stopping on the validation loss ends the head fit long before
HEAD_PATIENCE = 10  # head epochs without a lower validation loss
HEAD_LEARNING_RATE = 0.003  # Adam, on the embeddings
FEW_SHOT_PER_CLASS = 5  # training images per class below which fine_tune = auto keeps the backbone frozen
FINE_TUNE_ALL_IMAGES = 1_000  # training images up to which fine_tune = auto trains every layer (cheap epochs)
# patience / max_epochs = auto: counted in steps as the stop rule's are (600 and 8,000), but fewer: fine-tuning
# starts from a good model and overfits small sets soon. Clamped to these epochs.
FINE_TUNE_PATIENCE_STEPS, FINE_TUNE_PATIENCE = 100, (2, 10)
FINE_TUNE_CAP_STEPS, FINE_TUNE_MAX_EPOCHS = 800, (8, 40)
TOP_BLOCKS = 5  # fine_tune = top: the last two stages (blocks 6a-6d, 7a) and the 1x1 head conv


def resolve_fine_tune(choice: str, train_images: int, num_classes: int) -> str:
    """``choice``, or for ``auto``: ``none`` under :data:`FEW_SHOT_PER_CLASS` training images per class (the
    validation images, one or two per class, could not tell a better epoch from luck), ``all`` up to
    :data:`FINE_TUNE_ALL_IMAGES` (bench/transfer.py: on 10 upscaled digits per class at 160 px, 74.9 % against
    70.4 % for ``top`` and 68.7 % for the head alone), else ``top`` (the last blocks: a fraction of the cost of
    a backward pass)."""
    if choice != "auto":
        return choice
    if train_images < FEW_SHOT_PER_CLASS * num_classes:
        return "none"
    return "all" if train_images <= FINE_TUNE_ALL_IMAGES else "top"


def budget(setting: Any, train_images: int, batch: int) -> dict[str, int]:
    """The ``patience`` and ``max_epochs`` of fine-tuning at ``batch`` images a step where they are ``auto``
    (see the constants above)."""
    steps = max(1, math.ceil(train_images / batch))
    changes = {}
    if setting.patience == "auto":
        low, high = FINE_TUNE_PATIENCE
        changes["patience"] = max(low, min(high, math.ceil(FINE_TUNE_PATIENCE_STEPS / steps)))
    if setting.max_epochs == "auto":
        low, high = FINE_TUNE_MAX_EPOCHS
        changes["max_epochs"] = max(low, min(high, math.ceil(FINE_TUNE_CAP_STEPS / steps)))
    return changes


def fit_head(model: keras.Model, train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray],
             num_classes: int, class_weight: dict[int, float] | None, label_smoothing: float) -> dict[str, float]:
    """Fit the head of pretrained ``model`` (its ``head_dropout`` and ``predictions`` layers) on embeddings.

    ``train`` and ``validation`` are ``(vectors (N, F) float32, labels (N,) int)``.
    Adam at :data:`HEAD_LEARNING_RATE`, full batches of up to 256, stopped
    when the validation loss has not improved for :data:`HEAD_PATIENCE`
    epochs (the best weights restored). The layers are shared: ``model``'s
    head holds the fitted weights afterwards.

    Returns the epoch's logs as training writes them: ``loss``, ``accuracy``
    (on the training embeddings, dropout off), ``val_loss``, ``val_accuracy``
    and ``head_epochs``.
    """
    features = keras.Input((train[0].shape[1],))
    head = keras.Model(features, model.get_layer("predictions")(model.get_layer("head_dropout")(features)))
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing)
    batch = min(256, len(train[0]))
    head.compile(optimizer=keras.optimizers.Adam(HEAD_LEARNING_RATE), loss=loss, metrics=["accuracy"],
                 steps_per_execution=-(-len(train[0]) // batch))
    one_hot = np.eye(num_classes, dtype=np.float32)
    x_val, y_val = validation[0], one_hot[validation[1]]
    stop = keras.callbacks.EarlyStopping("val_loss", patience=HEAD_PATIENCE, restore_best_weights=True)
    fitted = head.fit(train[0], one_hot[train[1]], batch_size=batch, epochs=HEAD_EPOCHS,
                      validation_data=(x_val, y_val), class_weight=class_weight, callbacks=[stop], verbose=0,
                      shuffle=True)
    train_loss, train_accuracy = head.evaluate(train[0], one_hot[train[1]], batch_size=1024, verbose=0)
    val_loss, val_accuracy = head.evaluate(x_val, y_val, batch_size=1024, verbose=0)
    return {"loss": train_loss, "accuracy": train_accuracy, "val_loss": val_loss, "val_accuracy": val_accuracy,
            "head_epochs": len(fitted.history["loss"])}


def unfreeze(model: keras.Model, fine_tune: str) -> int:
    """Make the layers ``fine_tune`` names trainable (``top``: :data:`TOP_BLOCKS`; ``all``: every one); return
    the number of trainable weights. Batch normalisation layers stay frozen (inference mode) in both."""
    from ..networks.architectures import backbone_of
    from ..networks.efficientnet_lite import top_layers

    backbone = backbone_of(model)
    backbone.trainable = True  # first: a frozen parent hides its layers' own flags
    top = {id(layer) for layer in top_layers(backbone, TOP_BLOCKS)}
    for layer in backbone.layers:
        chosen = fine_tune == "all" or id(layer) in top
        layer.trainable = chosen and not isinstance(layer, keras.layers.BatchNormalization)
    return len(model.trainable_weights)


def freeze_backbone(model: keras.Model) -> None:
    """Freeze the whole backbone (the head alone trains)."""
    from ..networks.architectures import backbone_of

    backbone_of(model).trainable = False


def summary(fine_tune: str, logs: dict[str, Any], train_count: int, embedded: int, cached: int,
            seconds: float) -> str:
    """One line on the head stage."""
    return (f"head fitted on the embeddings of {train_count} training images in {int(logs['head_epochs'])} "
            f"epochs (val_accuracy {logs['val_accuracy']:.4f}); embeddings: {embedded} computed, {cached} from "
            f"the cache, {seconds:.1f} s; fine_tune={fine_tune}")


def pretrained_head(setting: Setting, model: keras.Model, index: FolderIndex, failed: list[tuple[str, str]],
                    class_weight: dict[int, float] | None, policy: str, progress: bool) -> tuple[str, dict]:
    """Fit a pretrained model's head on its backbone's (cached) embeddings of the training and validation
    images, then set up the fine-tuning the Setting chose (unfrozen layers, compiled). Returns the line to log
    and the logs of this epoch 1 (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``)."""
    from ..networks.architectures import backbone_of
    from ..networks.build import make_optimizer
    from .embedding_cache import EmbeddingCache, embed_files
    from .preparation import split_readable

    train_index, val_index = split_readable(setting, index, failed)
    cache = EmbeddingCache.for_setting(setting, policy)
    backbone = backbone_of(model)
    freeze_backbone(model)
    embedded = [embed_files(backbone, part.paths, setting, cache, progress, f"embed {name}")
                for part, name in ((train_index, "train"), (val_index, "validation"))]
    (train, val) = [(e.vectors, part.labels[e.kept]) for e, part in zip(embedded, (train_index, val_index))]
    logs = fit_head(model, train, val, len(index.class_names), class_weight, setting.label_smoothing)
    if setting.fine_tune != "none":
        unfreeze(model, setting.fine_tune)
    model.compile(optimizer=make_optimizer(setting.optimizer, setting.learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=setting.label_smoothing),
                  metrics=["accuracy"])
    line = summary(setting.fine_tune, logs, len(train[0]), sum(len(e.kept) - e.cached for e in embedded),
                               sum(e.cached for e in embedded), sum(e.seconds for e in embedded))
    return line, {k: v for k, v in logs.items() if k != "head_epochs"}
