"""Grad-CAM (mnist_folders.explain.gradcam): a heatmap finds a cue planted in the images, in float32 and in
mixed bfloat16, through a nested backbone too; a model without convolution is refused; the overlay blends.

The cue test is the one that catches a wrong Grad-CAM. Each break below was made by hand in gradcam.py, and
test_heatmap_points_at_the_planted_cue failed with it (the bfloat16 test too, with the same check):
- the gradient's sign flipped (``alpha = -mean``): the heatmaps are 0 or peak off the cue;
- the heatmap transposed (``tf.transpose(heat, (0, 2, 1))``): the peak moves to the bottom-left;
- the softmax probability differentiated instead of the logit: the model is sure of the cue, p = 1.0 in
  float32, the gradient is 0, and so are the heatmaps (the test asks for a peak of 1 in each).
"""

from __future__ import annotations

import gc
import weakref

import keras
import numpy as np
import pytest

from mnist_folders.data.images import scale
from mnist_folders.explain import gradcam as gc_module
from mnist_folders.explain.gradcam import GradCam, NoConvolution, explain, gradcam, last_conv_layer, overlay
from mnist_folders.serve.prediction import predict_probabilities
from mnist_folders.train.models import build_model

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


@pytest.fixture(scope="module")
def trained():
    """cnn_fast trained (as the registry builds it, on ``scale``d inputs) to tell cue from no cue; and test
    images with the cue.

    cnn_fast ends in global average pooling, the head Grad-CAM's channel weights assume. The models with a
    Flatten head (cnn_small, cnn_32_64_64, cnn_64_32) learn the cue as well (100 %), but their logit
    gradients, averaged over the whole map, are negative for nearly every channel: their Grad-CAM maps are all
    0 on this task (measured for 92-100 % of the images; the keras-io recipe gives the same maps).
    """
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images, labels = _data(300, rng)
    model = build_model("cnn_fast", (SIDE, SIDE, 1), 2, optimizer="adam")
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
    # The last ReLU: global pooling, dropout and the softmax Dense follow.
    assert gc_module._CACHE[model].path == last_conv_layer(model) == [model.layers[-4].name]
    with pytest.raises(ValueError, match="uint8"):
        gradcam(model, scale(cued))
    with pytest.raises(ValueError, match="indices"):
        gradcam(model, cued, classes=np.full(len(cued), 2))


def test_same_under_mixed_bfloat16(trained):
    """The same weights in a model built under mixed_bfloat16: bfloat16 feature maps, float32 heatmaps."""
    model, cued = trained
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        half = build_model("cnn_fast", (SIDE, SIDE, 1), 2)
        half.set_weights(model.get_weights())
        explainer = GradCam(half)
        assert explainer.tap.outputs[0].dtype == "bfloat16"
        heatmaps, probabilities = explainer(cued, np.ones(len(cued), int))
    finally:
        keras.config.set_dtype_policy("float32")
    assert _on_cue(heatmaps) >= 0.8
    np.testing.assert_allclose(probabilities, predict_probabilities(model, cued), atol=0.02)


def test_a_model_without_convolution_is_refused():
    model = build_model("mlp", (8, 8, 1), 3)
    with pytest.raises(NoConvolution, match="^mlp has no convolutional layer: Grad-CAM needs one$"):
        gradcam(model, np.zeros((1, 8, 8, 1), np.uint8))
    assert issubclass(NoConvolution, ValueError)


def test_nested_backbone_efficientnet_lite0():
    """Random weights (build_model converts the ImageNet ones only with ``pretrained=True``): the feature maps
    are inside the nested backbone, 2x2 at 64 px."""
    model = build_model("efficientnet_lite0", (64, 64, 1), 3)
    assert last_conv_layer(model) == ["backbone", "head_activation"]
    images = np.random.default_rng(1).integers(0, 256, size=(3, 64, 64, 1), dtype=np.uint8)
    heatmaps, probabilities = explain(model, images, classes=[0, 1, 2], batch=2)
    assert heatmaps.shape == (3, 64, 64) and heatmaps.dtype == np.float32
    assert np.isfinite(heatmaps).all() and heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    assert heatmaps.max() == 1.0  # some class has evidence somewhere
    np.testing.assert_allclose(probabilities, predict_probabilities(model, images), atol=1e-5)


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
