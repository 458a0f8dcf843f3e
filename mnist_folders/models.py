"""The model registry: ``name -> build(input_shape, num_classes) -> keras.Model``.

Inputs are float32 images scaled to [0, 1] by the input pipeline, shape
``(H, W, C)``; outputs are ``(N, num_classes)`` softmax probabilities.
:func:`build_model` adds the optimizer and loss (categorical cross-entropy).
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers


def cnn_64_128_256(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """The reference model: three 3x3 conv layers (64, 128, 256), two dropout-guarded dense layers."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(128, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(256, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(256, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="cnn_64_128_256",
    )


MODELS: dict[str, Callable[[tuple[int, int, int], int], keras.Model]] = {
    "cnn_64_128_256": cnn_64_128_256,
}

_OPTIMIZERS = {
    "rmsprop": keras.optimizers.RMSprop,
    "adam": keras.optimizers.Adam,
    "sgd": keras.optimizers.SGD,
}


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """A Keras optimizer by name (``rmsprop``, ``adam``, ``sgd``)."""
    return _OPTIMIZERS[name](learning_rate=learning_rate)


def build_model(
    name: str, input_shape: tuple[int, int, int], num_classes: int, optimizer: str | None, learning_rate: float
) -> keras.Model:
    """Build a registered model; compile it for training unless ``optimizer`` is ``None``.

    An uncompiled model (for inference) carries no optimizer state to load.

    Raises:
        KeyError: ``name`` is not registered (``Setting`` validates it first).
    """
    model = MODELS[name](input_shape, num_classes)
    if optimizer is None:
        return model
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
