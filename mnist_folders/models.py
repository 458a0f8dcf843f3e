"""The model registry: a name -> a builder ``(input_shape, num_classes) -> keras.Model``
and that model's training defaults.

Inputs are float32 images scaled to [0, 1] by the input pipeline, shape
``(H, W, C)``; outputs are ``(N, num_classes)`` float32 softmax probabilities.
Every softmax layer is float32 (``dtype="float32"``), so that under the
``mixed_bfloat16`` policy (see :mod:`mnist_folders.precision`) the loss is
still computed in float32; under the default float32 policy it changes nothing.
:func:`build_model` adds the optimizer and the loss (categorical
cross-entropy). The "published" figures are the MNIST test accuracies the
tutorials these models come from report, quoted by ``bench/models.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
from keras import layers

Builder = Callable[[tuple[int, int, int], int], keras.Model]


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
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="cnn_64_128_256",
    )


def mlp(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Baseline multilayer perceptron: one hidden layer as wide as the input (784 for MNIST)."""
    pixels = input_shape[0] * input_shape[1] * input_shape[2]
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Flatten(),
            layers.Dense(pixels, activation="relu", kernel_initializer="random_normal"),
            layers.Dense(num_classes, activation="softmax", kernel_initializer="random_normal", dtype="float32"),
        ],
        name="mlp",
    )


def cnn_small(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Simple CNN: one 5x5 conv layer of 32 filters."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, (5, 5), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Dropout(0.2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="cnn_small",
    )


def cnn_large(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Larger CNN: 30 5x5 and 15 3x3 filters, then dense 128 and 50."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(30, (5, 5), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(15, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Dropout(0.2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(50, activation="relu"),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="cnn_large",
    )


def cnn_64_32(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Two unpooled 3x3 conv layers (64, 32) straight into the softmax."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(64, (3, 3), activation="relu"),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.Flatten(),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="cnn_64_32",
    )


def cnn_32_64_64(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Three same-padded 3x3 conv layers (32, 64, 64), pooled after the first two."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            layers.Conv2D(32, (3, 3), activation="relu", padding="same"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu", padding="same"),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(64, (3, 3), activation="relu", padding="same"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="cnn_32_64_64",
    )


def _conv_bn(filters: int, kernel: int, strides: int = 1) -> list[layers.Layer]:
    """Conv (no bias: batch normalisation's shift replaces it), batch normalisation, relu.

    Momentum 0.9 (PyTorch's default; Keras' is 0.99): with 0.99 the moving
    statistics lag so far behind in short runs that 2 epochs on 4,000 images
    gave a validation accuracy anywhere from 0.30 to 0.89; with 0.9, 0.93-0.96.
    """
    return [
        layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
    ]


def strong(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """Batch-normalised CNN: two blocks of three convs (the last strided instead of pooling).

    Trained with augmentation (small rotations, shifts, zoom) and a learning
    rate that decays every epoch; see its :data:`MODELS` entry.
    """
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            *_conv_bn(32, 3),
            *_conv_bn(32, 3),
            *_conv_bn(32, 5, strides=2),
            layers.Dropout(0.4),
            *_conv_bn(64, 3),
            *_conv_bn(64, 3),
            *_conv_bn(64, 5, strides=2),
            layers.Dropout(0.4),
            layers.Flatten(),
            layers.Dense(128, use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
            layers.Dropout(0.4),
            layers.Dense(num_classes, activation="softmax", dtype="float32"),
        ],
        name="strong",
    )


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder, its training defaults, its published accuracy.

    ``lr_decay`` multiplies the learning rate after every epoch (1.0: constant).
    ``rotation_range`` is in degrees; ``shift_range`` and ``zoom_range`` are
    fractions of the image size; all 0 means no augmentation. ``precision``
    is a :data:`mnist_folders.precision.PRECISIONS` value.
    """

    build: Builder
    optimizer: str
    epochs: int
    batch_size: int
    learning_rate: float = 0.001
    lr_decay: float = 1.0
    rotation_range: float = 0.0
    shift_range: float = 0.0
    zoom_range: float = 0.0
    precision: str = "float32"
    published: str = ""


MODELS: dict[str, ModelSpec] = {
    # Batch 256 with twice the tutorial's learning rate (0.001 at batch 32), and
    # bfloat16 where the CPU has it: the fastest settings measured that keep the
    # tutorial settings' test accuracy (bench/default_candidates.py, bench/README.md).
    "cnn_64_128_256": ModelSpec(cnn_64_128_256, "rmsprop", 8, 256, learning_rate=0.002, precision="auto",
                                published="98.95 %"),
    "mlp": ModelSpec(mlp, "adam", 10, 200, published="98.09-98.17 %"),
    "cnn_small": ModelSpec(cnn_small, "adam", 10, 200, published="98.97-99.05 %"),
    "cnn_large": ModelSpec(cnn_large, "adam", 10, 200, published="99.18 %"),
    "cnn_64_32": ModelSpec(cnn_64_32, "adam", 3, 32, published="97.68 %"),
    "cnn_32_64_64": ModelSpec(cnn_32_64_64, "rmsprop", 10, 200, published="99.27 %"),
    "strong": ModelSpec(strong, "adam", 30, 64, learning_rate=0.002, lr_decay=0.9, rotation_range=10.0,
                        shift_range=0.1, zoom_range=0.1, published=">= 99.6 % (target)"),
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
    name: str, input_shape: tuple[int, int, int], num_classes: int, optimizer: str | None = None,
    learning_rate: float = 0.001,
) -> keras.Model:
    """Build a registered model; compile it for training unless ``optimizer`` is ``None``.

    An uncompiled model (for inference) carries no optimizer state to load.

    Raises:
        KeyError: ``name`` is not registered (``Setting`` validates it first).
    """
    model = MODELS[name].build(input_shape, num_classes)
    if optimizer is None:
        return model
    model.compile(
        optimizer=make_optimizer(optimizer, learning_rate),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
