"""Grad-CAM (mnist_folders.explain.gradcam): a heatmap finds a cue planted in the images, in float32 and in
mixed bfloat16, through a nested backbone too; a model without convolution is refused; the overlay blends.

Breaks made by hand in gradcam.py, each with the whole file run (then undone):
- the gradient's sign flipped (``alpha = -mean``): the cue, bfloat16 and nested tests failed (peaks off the
  cue or all-0 maps; maps unlike the keras-io recipe's);
- the heatmap transposed: the same three failed (the cue sits top-right, so the peak moved bottom-left);
- the first convolution instead of the last: the cue test failed (peaks near the cue, but the heat is not
  concentrated there), and the bfloat16, nested and cache tests (heatmaps, path);
- the class argument ignored (always the predicted class): the cue and nested tests failed;
- the softmax probability differentiated instead of the logit: only the nested test failed (its recipe uses
  the logit); the cue still wins (p is not 1.0 in float32, so the gradient keeps its direction).
- the gradient averaged over the map before weighting it (Grad-CAM's alpha_k instead of the HiResCAM form):
  the cnn_small cue and bfloat16 tests failed (all-0 maps after its Flatten head).
Not caught, and not wrong here: the float32 casts left out under mixed_bfloat16 (the heatmaps then differ
from the float32 ones by 0.006 at most, against 0.005 with the casts).
"""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from mnist_folders.data.images import scale
from mnist_folders.explain import gradcam as gc_module
from mnist_folders.explain.gradcam import GradCam, NoConvolution, explain, gradcam, last_conv_layer, overlay
from mnist_folders.networks.inference import predict_probabilities
from mnist_folders.registry import MODELS
from mnist_folders.networks.build import build_model

SIDE = 32
CUE = (slice(2, 8), slice(SIDE - 8, SIDE - 2))  # a 6x6 square in the top-right corner: a transposed or flipped
TOP_RIGHT = (slice(0, SIDE // 2), slice(SIDE // 2, SIDE))  # heatmap would point elsewhere; its quadrant


def _images(count: int, cue: bool, rng: np.random.Generator) -> np.ndarray:
    """``(count, 32, 32, 1)`` uint8: noise and 4 random strokes (anywhere, as bright as the cue), plus the cue."""
    images = rng.integers(0, 60, size=(count, SIDE, SIDE), dtype=np.uint8)
    for image in images:
        for _ in range(4):
            row, col, length = rng.integers(0, SIDE - 1), rng.integers(0, SIDE - 1), rng.integers(6, 20)
            if rng.random() < 0.5:
                image[row : row + 2, col : col + length] = rng.integers(150, 256)
            else:
                image[row : row + length, col : col + 2] = rng.integers(150, 256)
        if cue:
            image[CUE] = 255
    return images[..., None]


def _data(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    images = np.concatenate([_images(per_class, False, rng), _images(per_class, True, rng)])
    return images, np.repeat([0, 1], per_class)


@pytest.fixture(scope="module", params=["cnn_fast", "cnn_small"])
def trained(request):
    """A model trained (as the registry builds it, on ``scale``d inputs) to tell cue from no cue; and test
    images with the cue.

    cnn_fast ends in global average pooling; cnn_small in Flatten and Dense, where Grad-CAM's averaged
    gradients were negative for nearly every channel and its maps all 0 on this task (measured for 92-100 %
    of the images, with the keras-io recipe too): the HiResCAM form computed here must point at the cue for
    both kinds of head.
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images, labels = _data(300, rng)
    model = build_model(request.param, (SIDE, SIDE, 1), 2, optimizer="adam")
    model.fit(scale(images), keras.utils.to_categorical(labels, 2), epochs=4, batch_size=32, shuffle=True, verbose=0)
    test, test_labels = _data(50, rng)
    accuracy = (predict_probabilities(model, test).argmax(1) == test_labels).mean()
    assert accuracy >= 0.98, accuracy
    return model, test[test_labels == 1]


def _on_cue(heatmaps: np.ndarray) -> float:
    """The fraction of heatmaps whose peak lies in the cue's quadrant (each must have a peak of 1)."""
    assert heatmaps.dtype == np.float32 and np.isfinite(heatmaps).all()
    assert heatmaps.min() >= 0.0 and np.allclose(heatmaps.max(axis=(1, 2)), 1.0)
    rows, cols = np.unravel_index(heatmaps.reshape(len(heatmaps), -1).argmax(1), heatmaps.shape[1:])
    return float(((rows < SIDE // 2) & (cols >= SIDE // 2)).mean())


def test_heatmap_points_at_the_planted_cue(trained):
    model, cued = trained
    heatmaps, probabilities = explain(model, cued, classes=np.ones(len(cued), int), batch=16)
    assert heatmaps.shape == (len(cued), SIDE, SIDE)
    assert _on_cue(heatmaps) >= 0.8
    assert heatmaps[:, TOP_RIGHT[0], TOP_RIGHT[1]].mean() > 2 * heatmaps.mean()
    # The probabilities are those prediction gives; the default class is the predicted one (1 here).
    np.testing.assert_allclose(probabilities, predict_probabilities(model, cued), atol=1e-5)
    np.testing.assert_allclose(gradcam(model, cued), heatmaps, atol=1e-5)
    other = gradcam(model, cued, classes=np.zeros(len(cued), int))  # the evidence for "no cue" is elsewhere
    assert np.abs(other - heatmaps).mean() > 0.1
    assert gc_module._CACHE[model].path == last_conv_layer(model)
    if model.name == "cnn_fast":  # the last ReLU: global pooling, dropout and the softmax Dense follow
        assert last_conv_layer(model) == [model.layers[-4].name]
    with pytest.raises(ValueError, match="uint8"):
        gradcam(model, scale(cued))
    with pytest.raises(ValueError, match="indices"):
        gradcam(model, cued, classes=np.full(len(cued), 2))


def test_same_under_mixed_bfloat16(trained):
    """The same weights in a model built under mixed_bfloat16: bfloat16 feature maps, float32 heatmaps."""
    model, cued = trained
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        half = build_model(model.name, (SIDE, SIDE, 1), 2)
        half.set_weights(model.get_weights())
        explainer = GradCam(half)
        assert explainer.tap.outputs[0].dtype == "bfloat16"
        heatmaps, probabilities = explainer(cued, np.ones(len(cued), int))
    finally:
        keras.config.set_dtype_policy("float32")
    assert _on_cue(heatmaps) >= 0.8
    float32_heatmaps, float32_probabilities = explain(model, cued, classes=np.ones(len(cued), int))
    np.testing.assert_allclose(probabilities, float32_probabilities, atol=0.02)  # measured: 0.001-0.005
    np.testing.assert_allclose(heatmaps, float32_heatmaps, atol=0.03)  # measured: 0.005-0.007


def test_a_model_without_convolution_is_refused():
    model = build_model("mlp", (8, 8, 1), 3)
    with pytest.raises(NoConvolution, match="^mlp has no convolutional layer: Grad-CAM needs one$"):
        gradcam(model, np.zeros((1, 8, 8, 1), np.uint8))
    assert issubclass(NoConvolution, ValueError)


def test_nested_backbone_efficientnet_lite0():
    """Random weights (build_model converts the ImageNet ones only with ``pretrained=True``): the feature maps
    are inside the nested backbone, 2x2 at 64 px."""
    keras.utils.set_random_seed(0)
    model = build_model("efficientnet_lite0", (64, 64, 1), 3)
    assert last_conv_layer(model) == ["backbone", "head_activation"]
    images = np.random.default_rng(1).integers(0, 256, size=(3, 64, 64, 1), dtype=np.uint8)
    heatmaps, probabilities = explain(model, images, classes=[0, 1, 2], batch=2)
    assert heatmaps.shape == (3, 64, 64) and heatmaps.dtype == np.float32
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0.0
    np.testing.assert_allclose(heatmaps.max(axis=(1, 2)), 1.0)  # with seed 0; other seeds give all-0 maps too
    np.testing.assert_allclose(probabilities, predict_probabilities(model, images), atol=1e-5)
    # The same maps from the keras-io recipe for a nested model: the backbone up to its feature maps, then
    # the layers after them called one by one on the watched maps.
    backbone = model.get_layer("backbone")
    maps = keras.Model(backbone.inputs[0], backbone.get_layer("head_activation").output)(scale(images))
    with tf.GradientTape() as tape:
        tape.watch(maps)
        features = backbone.get_layer("avg_pool")(maps)
        logits = features @ model.get_layer("predictions").kernel + model.get_layer("predictions").bias
        score = tf.reduce_sum(tf.linalg.diag_part(logits))  # class i for image i
    alpha = tf.reduce_mean(tape.gradient(score, maps), axis=(1, 2))
    expected = tf.image.resize(tf.nn.relu(tf.einsum("bhwk,bk->bhw", maps, alpha))[..., None], (64, 64))[..., 0]
    expected = expected / tf.reduce_max(expected, axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(heatmaps, expected.numpy(), atol=1e-5)


def test_cache_lets_a_dropped_model_go():
    model = build_model("cnn_32_64_64", (8, 8, 1), 2)
    gradcam(model, np.zeros((2, 8, 8, 1), np.uint8))
    explainer = gc_module._CACHE[model]
    gradcam(model, np.zeros((1, 8, 8, 1), np.uint8))
    assert gc_module._CACHE[model] is explainer
    assert explainer.path == [model.layers[4].name]  # the third conv: nothing but Flatten and Dense after it
    dropped = weakref.ref(model)
    del model, explainer
    gc.collect()
    assert dropped() is None


@pytest.mark.parametrize("channels", [1, 3])
def test_overlay(channels):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, size=(5, 7, channels), dtype=np.uint8)
    heatmap = rng.random((5, 7)).astype(np.float32)
    picture = overlay(image, heatmap)
    assert picture.shape == (5, 7, 3) and picture.dtype == np.uint8
    np.testing.assert_array_equal(overlay(image, heatmap, alpha=0.0), np.broadcast_to(image, (5, 7, 3)))
    assert not np.array_equal(picture, overlay(image, heatmap, alpha=0.0))
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, heatmap, alpha=1.5)
    with pytest.raises(ValueError, match="heatmap"):
        overlay(image, heatmap.T)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_is_explained_or_said_to_have_no_convolution(name):
    """Each registered model, at its smallest input (at least 32 px), untrained: a heatmap per image in
    [0, 1] and the probabilities prediction gives, or NoConvolution (mlp)."""
    side = max(MODELS[name].min_size, 32)
    keras.utils.set_random_seed(0)
    model = build_model(name, (side, side, 3), 4)
    images = np.random.default_rng(2).integers(0, 256, size=(2, side, side, 3), dtype=np.uint8)
    if name == "mlp":
        with pytest.raises(NoConvolution):
            explain(model, images)
        return
    heatmaps, probabilities = explain(model, images)
    assert heatmaps.shape == (2, side, side) and np.isfinite(heatmaps).all()
    assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    np.testing.assert_allclose(probabilities, predict_probabilities(model, images), atol=1e-4)
