"""Grad-CAM heatmaps: which pixels a model's evidence for a class comes from.

Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep
Networks via Gradient-based Localization"; the keras-io example "Grad-CAM
class activation visualization") weights the feature maps ``A`` ``(B, h, w, k)``
of the last convolutional layer by the gradient of the class score and keeps
the positive evidence, upsampled (bilinear) to the input size and normalised
to [0, 1] per image.

Computed here as HiResCAM (Draelos and Carin 2020, "Use HiResCAM instead of
Grad-CAM for faithful explanations of convolutional neural networks"):
``ReLU(sum_k dS/dA_k * A_k)``, the gradient times the map at each position,
where Grad-CAM first averages the gradient over the map (``alpha_k``). For a
model that ends in global average pooling (``cnn_fast``, the pretrained
backbones) the gradient is the same at every position and the two are the
same heatmap. After a Flatten head every position has its own weights, and
Grad-CAM's averaged weights can be negative for every channel: ``cnn_small``
and ``cnn_32_64_64`` learnt a planted 6x6 cue perfectly yet gave all-0
Grad-CAM maps for 92-100 % of the images, where these maps point at the cue
(``tests/test_gradcam.py`` checks both kinds of head).

The score is the class's logit, ``features @ kernel + bias`` of the final
softmax Dense layer computed here in float32 from its input: the softmax
probability saturates (its gradient carries a factor ``p_c (1 - p_c)``, 0
once ``p_c`` rounds to 1.0 in float32) and mixes in the other classes';
the paper differentiates the pre-softmax score for that reason. A model
whose last layer is not a softmax Dense falls back to ``log(p_c)``, the
logit up to a term shared by all classes.

Under the ``mixed_bfloat16`` policy the feature maps, and their gradients
through the layers after them, are bfloat16: both are cast to float32 before
they are combined, as is the logit's input.
"""

from __future__ import annotations

import weakref

import keras
import numpy as np
import tensorflow as tf

from ..data.images import scale
from ..errors import PipelineError

CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D)


class NoConvolution(PipelineError, ValueError):
    """The model has no convolutional layer (e.g. ``mlp``): Grad-CAM has no feature maps to weigh."""


def _layers(model: keras.Model, prefix: tuple[str, ...] = ()) -> list[tuple[list[str], keras.layers.Layer]]:
    """``(path, layer)`` of every layer but the inputs, in model order, nested models' layers in their place."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        found.append(([*prefix, layer.name], layer))
        if isinstance(layer, keras.Model):
            found += _layers(layer, (*prefix, layer.name))
    return found


def last_conv_layer(model: keras.Model) -> list[str]:
    """The path of layer names to the feature maps Grad-CAM weighs: ``["conv2d"]``, or
    ``["backbone", "head_activation"]`` inside a nested model (EfficientNet-Lite0).

    That is the last layer, after the first convolution (Conv2D, DepthwiseConv2D,
    SeparableConv2D), whose output is a 4-D ``(B, h, w, k)`` feature map:
    the one before the global pooling or flatten, e.g. a pooling or dropout
    layer that follows the last convolution.

    Raises:
        NoConvolution: the model has no convolutional layer (a ``ValueError``
            and a :class:`~mnist_folders.errors.PipelineError`).
    """
    layers = _layers(model)
    first = next((i for i, (_, layer) in enumerate(layers) if isinstance(layer, CONVOLUTIONS)), None)
    if first is None:
        raise NoConvolution(f"{model.name} has no convolutional layer: Grad-CAM needs one")
    return next(path for path, layer in reversed(layers[first:]) if len(layer.output.shape) == 4)


def _tap(model: keras.Model, path: list[str], head: keras.layers.Layer | None) -> keras.Model:
    """A model sharing ``model``'s layers: its inputs -> ``[feature maps at path, head's input or model output]``.

    A nested model's feature maps are not tensors of the outer graph: the
    outer layers are called again (:func:`keras.models.clone_model` with the
    same layers) around a tap of the nested model.
    """
    if len(path) == 1:
        return keras.Model(model.inputs, [model.get_layer(path[0]).output, head.input if head else model.outputs[0]])
    inner = _tap(model.get_layer(path[0]), path[1:], None)
    seen: dict[str, object] = {}

    def call(layer, *args, **kwargs):
        if layer is head:
            seen["head_input"] = args[0]
        if layer.name != path[0]:
            return layer(*args, **kwargs)
        seen["maps"], out = inner(*args, **kwargs)
        return out

    if isinstance(model, keras.Sequential):  # clone_model takes no call_function for these
        inputs = outputs = keras.Input(shape=model.input_shape[1:])
        for layer in model.layers:
            outputs = call(layer, outputs)
    else:
        clone = keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
        inputs, outputs = clone.inputs, clone.outputs[0]
    return keras.Model(inputs, [seen["maps"], seen.get("head_input", outputs)])


class GradCam:
    """Grad-CAM of one model; the gradient model is built once, here.

    Holds the model's layers but not the model itself (so that the cache of
    :func:`explain` lets a dropped model go).

    Raises:
        NoConvolution: as :func:`last_conv_layer`.
    """

    def __init__(self, model: keras.Model):
        self.path = last_conv_layer(model)
        last = model.layers[-1]
        softmax = isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax
        self.head = last if softmax else None  # None: differentiate log p_c
        self.input_shape = tuple(model.input_shape[1:])
        self.tap = _tap(model, self.path, self.head)

    def _batch(self, images: np.ndarray, classes: np.ndarray | None) -> tuple[tf.Tensor, tf.Tensor]:
        x = tf.convert_to_tensor(scale(images))
        with tf.GradientTape() as tape:
            tape.watch(x)  # records the whole graph, frozen (non-trainable) layers included
            maps, top = self.tap(x, training=False)
            if self.head is None:  # the output probabilities: log p_c
                probabilities = tf.cast(top, tf.float32)
                scores = tf.math.log(probabilities + 1e-30)
            else:
                kernel, bias = (tf.cast(w, tf.float32) for w in (self.head.kernel, self.head.bias))
                scores = tf.matmul(tf.cast(top, tf.float32), kernel) + bias
                probabilities = tf.nn.softmax(scores)
            picked = tf.argmax(probabilities, axis=1, output_type=tf.int32) if classes is None else classes
            score = tf.reduce_sum(tf.gather(scores, picked, batch_dims=1))
        gradients = tf.cast(tape.gradient(score, maps), tf.float32)
        heat = tf.nn.relu(tf.reduce_sum(gradients * tf.cast(maps, tf.float32), axis=-1))  # HiResCAM: (B, h, w)
        heat = tf.image.resize(heat[..., None], self.input_shape[:2], method="bilinear")[..., 0]
        peak = tf.reduce_max(heat, axis=(1, 2), keepdims=True)
        return tf.math.divide_no_nan(heat, peak), probabilities

    def __call__(self, images: np.ndarray, classes=None, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps ``(N, H, W)`` float32 in [0, 1] (1 at each image's peak; all 0 where no feature map
        counts for the class) and the softmax probabilities ``(N, classes)`` float32 of the same pass.

        ``images``: ``(N, H, W, C)`` uint8 pixels as the model takes them
        (scaled to [0, 1] here, as prediction does); ``classes``: ``(N,)``
        class indices to explain, or ``None`` for each image's predicted
        class; ``batch``: images per gradient pass.

        Raises:
            ValueError: ``images`` is not uint8 of the model's input shape,
                ``classes`` has another length or an index out of range, or
                ``batch`` < 1.
        """
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(f"Grad-CAM takes (N, {', '.join(map(str, self.input_shape))}) uint8 images, "
                             f"not {images.shape} {images.dtype}")
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        count = self.tap.outputs[1].shape[-1] if self.head is None else self.head.units
        if classes is not None:
            classes = np.asarray(classes, dtype=np.int64)
            if classes.shape != (len(images),) or ((classes < 0) | (classes >= count)).any():
                raise ValueError(f"classes must be {len(images)} indices in [0, {count}), "
                                 f"not shape {classes.shape} from {classes.min(initial=0)} to {classes.max(initial=0)}")
        heatmaps, probabilities = [np.zeros((0, *self.input_shape[:2]), np.float32)], [np.zeros((0, count), np.float32)]
        for start in range(0, len(images), batch):
            picked = None if classes is None else tf.constant(classes[start : start + batch], tf.int32)
            heat, probs = self._batch(images[start : start + batch], picked)
            heatmaps.append(heat.numpy())
            probabilities.append(probs.numpy())
        return np.concatenate(heatmaps), np.concatenate(probabilities)


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its GradCam


def explain(model: keras.Model, images: np.ndarray, classes=None, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(heatmaps, probabilities)`` of :meth:`GradCam.__call__`, with one :class:`GradCam` per model (cached).

    Raises:
        NoConvolution: the model has no convolutional layer.
        ValueError: as :meth:`GradCam.__call__`.
    """
    if model not in _CACHE:
        _CACHE[model] = GradCam(model)
    return _CACHE[model](images, classes, batch)


def gradcam(model: keras.Model, images: np.ndarray, classes=None, batch: int = 64) -> np.ndarray:
    """The ``(N, H, W)`` float32 heatmaps in [0, 1] of :func:`explain`, without the probabilities."""
    return explain(model, images, classes, batch)[0]


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB picture: ``heatmap`` coloured by matplotlib's ``colormap`` over ``image``.

    ``image``: ``(H, W, C)`` uint8, ``C`` 1 (shown grey) or 3; ``heatmap``:
    ``(H, W)`` in [0, 1] (clipped; NaN counts as 0); ``alpha`` in [0, 1] is
    the heatmap's weight (0: the image alone, 1: the heatmap alone).

    Raises:
        ValueError: the shapes or ``alpha`` do not fit.
    """
    from matplotlib import colormaps

    image, heatmap = np.asarray(image), np.asarray(heatmap, dtype=np.float32)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3) or heatmap.shape != image.shape[:2]:
        raise ValueError(f"overlay takes an (H, W, 1 or 3) uint8 image and an (H, W) heatmap, "
                         f"not {image.shape} {image.dtype} and {heatmap.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], not {alpha}")
    colour = colormaps[colormap](np.clip(np.nan_to_num(heatmap), 0.0, 1.0))[..., :3] * 255.0
    base = np.broadcast_to(image, (*image.shape[:2], 3)).astype(np.float32)
    return np.clip(np.rint((1.0 - alpha) * base + alpha * colour), 0, 255).astype(np.uint8)
