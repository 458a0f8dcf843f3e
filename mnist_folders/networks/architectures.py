"""The model architectures: builders ``(input_shape, num_classes) -> keras.Model``.

Inputs are float32 images scaled to [0, 1] by the input pipeline, shape
``(H, W, C)``; outputs are ``(N, num_classes)`` float32 softmax probabilities.
Every softmax layer is float32 (``dtype="float32"``), so that under the
``mixed_bfloat16`` policy (see :mod:`mnist_folders.networks.dtype_policy`) the loss is
still computed in float32; under the default float32 policy it changes nothing.
Registered, with their training defaults, in :data:`mnist_folders.registry.MODELS`.
"""

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
    statistics lag behind in short runs and validation accuracy swings
    (measured in ``bench/README.md``).
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


def _separable_block(filters: int, strides: int) -> list[layers.Layer]:
    """Depthwise 3x3 conv then pointwise 1x1 conv, each batch-normalised (MobileNet's block)."""
    return [
        layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
        layers.Conv2D(filters, 1, use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
    ]


def cnn_fast(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """A CNN for larger images on a CPU: a strided stem, then depthwise-separable blocks.

    The stem (3x3 conv, stride 2) halves the image at once; each stage
    doubles the channels (64, 128, 256, 256) and halves the size again until
    it is 8 pixels or less, so the cost grows with the pixels of the input
    but the depth adapts to it: 2 halvings at 28x28, 4 at 96x96, 5 at 224x224.
    Global average pooling makes the head independent of the size.
    """
    blocks: list[layers.Layer] = [
        keras.Input(shape=input_shape),
        layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
    ]
    size, filters = -(-min(input_shape[:2]) // 2), 64
    while size > 8:
        blocks += _separable_block(filters, 2) + _separable_block(filters, 1)
        size, filters = -(-size // 2), min(256, filters * 2)
    blocks += _separable_block(filters, 1)
    blocks += [
        layers.GlobalAveragePooling2D(),
        layers.Dropout(0.3),
        layers.Dense(num_classes, activation="softmax", dtype="float32"),
    ]
    return keras.Sequential(blocks, name="cnn_fast")


def _backbone(application: str, input_shape: tuple[int, int, int], num_classes: int,
              weights: str | None) -> keras.Model:
    """A Keras Applications backbone (no top) with a new softmax head.

    The inputs (in [0, 1]) are scaled back to [0, 255], the range these
    backbones' own preprocessing layers expect; grayscale is repeated to 3
    channels so that ImageNet weights fit. ``weights`` is a local ``.h5``
    file of the backbone without its top, or ``None`` (random initialisation):
    nothing is downloaded.
    """
    builder = getattr(keras.applications, application)
    inputs = keras.Input(shape=input_shape)
    x = layers.Rescaling(255.0)(inputs)
    if input_shape[-1] == 1:
        x = layers.Concatenate()([x, x, x])
    base = builder(include_top=False, weights=weights, input_shape=(*input_shape[:2], 3), pooling="avg")
    x = base(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=application.lower())


def mobilenet_v3_small(input_shape: tuple[int, int, int], num_classes: int, weights: str | None = None) -> keras.Model:
    """Keras' MobileNetV3Small (at least 32x32 pixels), with a new head."""
    return _backbone("MobileNetV3Small", input_shape, num_classes, weights)


def efficientnet_b0(input_shape: tuple[int, int, int], num_classes: int, weights: str | None = None) -> keras.Model:
    """Keras' EfficientNetB0 (at least 32x32 pixels), with a new head."""
    return _backbone("EfficientNetB0", input_shape, num_classes, weights)


def efficientnet_lite0(input_shape: tuple[int, int, int], num_classes: int) -> keras.Model:
    """EfficientNet-Lite0 (at least 32x32 pixels) with a new softmax head: the ImageNet-pretrained model.

    The backbone (a nested model, :func:`backbone_of`) holds its own
    preprocessing (grey repeated to 3 channels, the scaling its weights
    expect), so every export keeps it; it ends in global average pooling
    (1,280 features). Built with random weights: training loads the
    ImageNet ones (:func:`mnist_folders.networks.build.build_model`), inference
    a checkpoint.
    """
    from .efficientnet_lite import backbone

    inputs = keras.Input(shape=input_shape)
    features = backbone(input_shape)(inputs)
    x = layers.Dropout(0.2, name="head_dropout")(features)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested backbone model of a pretrained model (its first layer that is a model)."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))
