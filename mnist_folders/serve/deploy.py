"""Export a trained model for serving: SavedModel, TFLite (float32 and int8) and ONNX.

Every exported graph takes what a program has after reading an image file:
raw ``(N, H, W, C)`` uint8 pixels at the model's size and colour mode. The
rest of the preprocessing is inside the graph, so it cannot differ from
training: the scaling to [0, 1], the inversion rule of the ``invert``
setting and the softmax temperature of ``calibration.json``. Outputs:
``probabilities`` ``(N, K)`` float32 and ``class_index`` ``(N,)`` int64, in
the order of ``labels.txt``. ``preprocessing.json`` says the rest (size,
colour mode, resize method) for programs that read the files themselves.

A model trained under ``mixed_bfloat16`` is rebuilt in float32 with the same
weights first: the ONNX and TFLite converters do not take bfloat16.

Formats (the GUIDE's "Beyond MNIST" notes measured the routes):

* ``savedmodel``: ``keras.export.ExportArchive``; signature ``serve`` (uint8
  pixels) and ``serve_bytes`` (encoded PNG/JPEG/GIF/BMP bytes, decoded in
  the graph with Pillow's arithmetic: transparency onto black, 601-2 luma,
  the stretch/pad/crop geometry of :func:`mnist_folders.data.images.resize`;
  pixels within 1 grey level of Pillow's, 2 for JPEG; EXIF orientation is
  not applied).
* ``tflite`` and ``tflite_int8``: ``tf.lite.TFLiteConverter`` on the
  ``serve`` signature; int8 is full-integer quantisation calibrated on
  :data:`REPRESENTATIVE_IMAGES` training images, with float32 outputs.
* ``onnx``: Keras' own ``model.export(format="onnx")`` (tf2onnx inside).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import artifacts, layout
from ..networks import saved
from ..atomic import atomic_path, remove_stale_temporaries, write_bytes
from ..errors import CheckpointError, DatasetError
from ..locking import export_lock
from ..data.images import SCALE
from ..names import display
from ..settings import Setting

FORMATS = ("savedmodel", "tflite", "tflite_int8", "onnx")
FILES = {"savedmodel": "saved_model", "tflite": "model.tflite", "tflite_int8": "model_int8.tflite",
         "onnx": "model.onnx"}
LABELS = "labels.txt"
PREPROCESSING = "preprocessing.json"
ARTIFACTS = "artifacts_sha256"  # preprocessing.json's record of each served file's digest
REPRESENTATIVE_IMAGES = 300  # int8 calibration sample, spread over the classes
OPSET = 17  # ONNX opset: onnxruntime 1.16 and later run it
SAVEDMODEL_STAGING = ".saved_model.tmp"  # the SavedModel is written here, then renamed into place


@dataclass
class ExportResult:
    """What ``export`` wrote: ``{format: path}``, the folder, and seconds per format."""

    folder: Path
    files: dict[str, Path]
    seconds: dict[str, float]


def file_digest(path: Path) -> str:
    """SHA-256 of a file (hex), read 1 MiB at a time. Raises OSError when it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_digest(path: Path) -> str:
    """SHA-256 (hex) of a file, or of a folder (a SavedModel): of each file's relative path and digest, in
    sorted order. Raises OSError when it cannot be read."""
    if not path.is_dir():
        return file_digest(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(os.fsencode(file.relative_to(path)) + b"\0" + file_digest(file).encode() + b"\n")
    return digest.hexdigest()


def weights_digest(model_dir: Path) -> str:
    """SHA-256 of ``best.weights.h5`` (hex): an export records it to tell when it is out of date.

    Raises:
        CheckpointError: the file is missing or unreadable.
    """
    path = model_dir / layout.BEST_WEIGHTS
    try:
        return file_digest(path)
    except OSError as exc:
        raise CheckpointError(f"{display(path)}: no trained weights to export or check against "
                              f"({exc.strerror or exc})") from None


def invert_masks(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(border, centre)`` float32 ``(H, W)`` masks of :func:`mnist_folders.data.images.lighter_borders`."""
    bh, bw = max(1, height // 8), max(1, width // 8)
    border = np.ones((height, width), dtype=np.float32)
    border[bh : height - bh, bw : width - bw] = 0
    centre = np.zeros((height, width), dtype=np.float32)
    centre[height // 4 : height - height // 4, width // 4 : width - width // 4] = 1
    return border, centre


def preprocessing_description(setting: Setting, trained_light: bool, temperature: float, digest: str) -> dict:
    """The contents of ``preprocessing.json``: what a program does before and after the exported graph."""
    h, w, c = setting.input_shape
    return {
        "input": {"name": "images", "shape": [None, h, w, c], "dtype": "uint8", "layout": "NHWC",
                  "pixels": "0-255, as read from the file; the graph scales by 1/255"},
        "color_mode": setting.color_mode,
        "color_conversion": "Pillow convert('L') for grayscale (ITU-R 601-2 luma) or convert('RGB'); "
                            "transparency flattened onto black; EXIF orientation applied",
        "resize": {"method": setting.resize_method, "interpolation": "bilinear (Pillow)",
                   "meaning": {"stretch": "to width x height, aspect ratio ignored",
                               "pad": "keep aspect ratio, black margins (PIL.ImageOps.pad)",
                               "crop": "keep aspect ratio, centre cut (PIL.ImageOps.fit)"}[setting.resize_method]},
        "invert": {"setting": setting.invert, "trained_on_light_background": trained_light,
                   "rule": "inside the graph: 'true' inverts every image; 'auto' inverts an image whose border "
                           "(outer eighth) is lighter than its centre (middle half) when training images were "
                           "dark-background, and the reverse"},
        "outputs": {"probabilities": "(N, K) float32 softmax, temperature-scaled, in labels.txt order",
                    "class_index": "(N,) int64 argmax"},
        "temperature": temperature,
        "labels": LABELS,
        "source_weights_sha256": digest,
    }


def serving_model(model, setting: Setting, trained_light: bool, temperature: float):
    """A Keras model from uint8 pixels to ``{"probabilities", "class_index"}`` around float32 ``model``."""
    import keras
    from keras import ops

    _TopClass = _top_class_layer()
    h, w, _ = setting.input_shape
    images = keras.Input(setting.input_shape, dtype="uint8", name="images")
    x = ops.cast(images, "float32") * SCALE
    if setting.invert == "true":
        x = 1.0 - x
    elif setting.invert == "auto":
        border, centre = invert_masks(h, w)
        gray = ops.mean(x, axis=-1)
        border_mean = ops.sum(gray * border, axis=(1, 2)) / float(border.sum())
        centre_mean = ops.sum(gray * centre, axis=(1, 2)) / float(centre.sum())
        lighter = border_mean > centre_mean
        flip = ops.logical_not(lighter) if trained_light else lighter
        x = ops.where(ops.reshape(flip, (-1, 1, 1, 1)), 1.0 - x, x)
    logits = _logits(model, x) if temperature != 1.0 else None
    if logits is not None:
        probabilities = ops.softmax(logits / temperature, axis=-1)
    else:
        probabilities = model(x)
        if temperature != 1.0:  # no softmax Dense layer to read logits from: the log-probabilities instead
            probabilities = ops.softmax(ops.log(ops.maximum(probabilities, 1e-30)) / temperature, axis=-1)
    return keras.Model(images, {"probabilities": probabilities, "class_index": _TopClass()(probabilities)},
                       name="serving")


def _logits(model, x):
    """The logits of ``model`` on ``x`` (its final softmax ``Dense`` layer, without the softmax), or None
    when the model does not end in one.

    The temperature divides these, not the logarithm of the softmax output: an int8 graph quantises that
    output in steps of 1/256, so every probability under 0.004 became 0 and the temperature lost its effect
    (0.996 printed for a calibrated 0.903).
    """
    import keras

    head = model.layers[-1]
    if not (isinstance(head, keras.layers.Dense) and head.activation is keras.activations.softmax):
        return None
    linear = keras.layers.Dense(head.units, dtype="float32", name="logits")
    linear.build(head.input.shape)
    linear.set_weights(head.get_weights())
    return linear(keras.Model(model.inputs, head.input, name="features")(x))


def _top_class_layer():
    import keras
    import tensorflow as tf

    class TopClass(keras.layers.Layer):
        """``tf.argmax`` over the classes: ``keras.ops.argmax`` adds a NaN test with a bitwise op TFLite lacks."""

        def call(self, probabilities):
            return tf.argmax(probabilities, axis=-1)

    return TopClass


def _bytes_endpoint(serving, setting: Setting):
    """The ``serve_bytes`` function: ``(N,)`` encoded image strings -> the ``serve`` outputs."""
    import tensorflow as tf

    h, w, c = setting.input_shape

    target = tf.constant([h, w], tf.float32)

    def fitted_size(size, keep_inside: bool):
        """Pillow's ``ImageOps.contain`` (inside) / ``fit`` (covering) size arithmetic, rounded half to even."""
        ratio = size[1] / size[0]  # width / height of the image
        wider = ratio > w / h
        if keep_inside:
            return tf.where(wider, tf.stack([tf.round(w / ratio), float(w)]), tf.stack([float(h), tf.round(h * ratio)]))
        return tf.where(wider, tf.stack([size[0], w / h * size[0]]), tf.stack([size[1] / (w / h), size[1]]))

    def decode_one(data):
        image = tf.cast(tf.io.decode_image(data, dtype=tf.uint8, expand_animations=False), tf.float32)
        image = tf.cond(tf.shape(image)[-1] % 2 == 0,  # LA or RGBA: flatten onto black, as images.convert_mode
                        lambda: image[..., :-1] * (image[..., -1:] / 255.0), lambda: image)
        if c == 1:  # Pillow's convert("L"): ITU-R 601-2 luma
            image = tf.cond(tf.shape(image)[-1] == 1, lambda: image,
                            lambda: tf.reduce_sum(image * [0.299, 0.587, 0.114], axis=-1, keepdims=True))
        else:
            image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image)
        image = tf.ensure_shape(image, [None, None, c])
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        if setting.resize_method == "pad":  # as PIL.ImageOps.pad: contain, then centre on black
            inside = fitted_size(size, keep_inside=True)
            image = tf.image.resize(image, tf.cast(inside, tf.int32), antialias=True)
            offset = tf.cast(tf.round((target - inside) * 0.5), tf.int32)
            image = tf.image.pad_to_bounding_box(image, offset[0], offset[1], h, w)
        elif setting.resize_method == "crop":  # as PIL.ImageOps.fit: the centred box of the target's ratio
            box = fitted_size(size, keep_inside=False)
            scale = target / box  # resample the fractional box, as Pillow's resize(box=...) does
            batch = tf.cast(image[tf.newaxis], tf.float32)
            image = tf.raw_ops.ScaleAndTranslate(images=batch, size=[h, w], scale=scale,
                                                 translation=-(size - box) * 0.5 * scale,
                                                 kernel_type="triangle", antialias=True)[0]
        else:
            image = tf.image.resize(image, (h, w), antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="encoded")])
    def serve_bytes(encoded):
        images = tf.map_fn(decode_one, encoded, fn_output_signature=tf.TensorSpec((h, w, c), tf.uint8))
        return serving(images, training=False)

    return serve_bytes


def _representative(setting: Setting, count: int):
    """A generator of ``count`` training images, one ``[(1, H, W, C) uint8]`` list at a time, classes interleaved.

    With ``invert = auto`` every other image is given inverted: the graph's inversion branch and its
    border/centre comparison are calibrated on images that take them (calibrated on training images only,
    int8 never inverted a dark-on-light digit: 6 of 40 right against 39 of 40 in float32).
    """
    from ..data.folders import index_tree
    from ..data.images import ImageReadError, load_image

    index = index_tree(setting.train_path, setting.class_names or artifacts.load_class_names(setting.model_path))
    rng = np.random.default_rng(setting.seed)
    order = rng.permutation(len(index))[: count * 2]  # spare files for unreadable ones
    h, w, _ = setting.input_shape

    def generate():
        given = 0
        for i in order:
            try:
                image = load_image(index.paths[i], h, w, setting.color_mode, setting.resize_method)
            except ImageReadError:
                continue
            yield [(255 - image if setting.invert == "auto" and given % 2 else image)[np.newaxis]]
            given += 1
            if given == count:
                return

    return generate


def remove_stale_formats(folder: Path, description: dict, keep: tuple[str, ...]) -> dict[str, str]:
    """Delete the formats not in ``keep`` unless the export in ``folder`` was made with the same
    ``description`` (weights, settings, temperature): the new ``preprocessing.json`` must not vouch for
    files of other weights or another inversion rule. Returns ``{file name: SHA-256}`` of the formats kept,
    as the previous ``preprocessing.json`` recorded them (a kept file without a record, or not the file recorded,
    is deleted too)."""
    try:
        previous = json.loads((folder / PREPROCESSING).read_text(encoding="utf-8"))
        recorded = dict(previous.pop(ARTIFACTS))
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        previous, recorded = None, {}
    same = previous == description
    kept = {}
    for name, file in FILES.items():
        path = folder / file
        if name in keep or not path.exists():
            continue
        if same and file in recorded and artifact_digest(path) == recorded[file]:
            kept[file] = recorded[file]
        elif path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return kept


def export(setting: Setting, formats: tuple[str, ...] = FORMATS, log=print) -> ExportResult:
    """Write ``<model_dir>/export/``: the chosen ``formats``, ``labels.txt`` and ``preprocessing.json``.

    Each artifact is built in a temporary folder and renamed into place, and
    ``preprocessing.json``, written last, records the SHA-256 of each: after
    a failed or interrupted export the runtimes serve no file it does not
    vouch for. ``tflite_int8`` reads :data:`REPRESENTATIVE_IMAGES` images of
    ``setting.train_path``.

    Raises:
        CheckpointError: no trained model in ``setting.model_path``, or another export of it running.
        DatasetError: ``tflite_int8`` without a readable train tree.
        OSError: the disk filled up (``ENOSPC``, said as such) or another system error.
        ValueError: an unknown format name.
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown export format {unknown[0]!r} (choose from {', '.join(FORMATS)})")
    artifacts.ensure_writable(setting.model_path)
    weights_digest(setting.model_path)  # no trained model: said before the lock file is made in the folder
    with export_lock(setting.model_path):  # a second export would remove this one's temporaries mid-write
        return _export_locked(setting, formats, log)


def _export_locked(setting: Setting, formats: tuple[str, ...], log) -> ExportResult:
    """:func:`export`, holding the model directory's export lock."""
    import keras
    import tensorflow as tf

    model_dir = setting.model_path
    digest = weights_digest(model_dir)
    # Loaded (class names checked) before anything is written: a model that cannot be exported leaves no file.
    model, setting, class_names = saved.load_trained_model(model_dir, setting, policy="float32")
    folder = model_dir / layout.EXPORT
    folder.mkdir(exist_ok=True)
    # What an export killed mid-write left: its SavedModel staging folder, and the temporaries
    # of its own files only (a folder someone keeps there is not ours to delete).
    shutil.rmtree(folder / SAVEDMODEL_STAGING, ignore_errors=True)
    remove_stale_temporaries(folder, (LABELS, PREPROCESSING, *FILES.values()))
    trained_light = artifacts.light_background_share(model_dir) > 0.5
    temperature = artifacts.load_temperature(model_dir)
    serving = serving_model(model, setting, trained_light, temperature)
    h, w, c = setting.input_shape
    signature = [tf.TensorSpec([None, h, w, c], tf.uint8, name="images")]
    files, seconds = {}, {}

    description = preprocessing_description(setting, trained_light, temperature, digest)
    recorded = remove_stale_formats(folder, description, keep=formats)

    # The SavedModel comes first: the TFLite converters read it.
    started = time.perf_counter()
    staging = folder / SAVEDMODEL_STAGING
    try:
        if {"savedmodel", "tflite", "tflite_int8"} & set(formats):
            archive = keras.export.ExportArchive()
            archive.track(serving)
            archive.add_endpoint("serve", lambda images: serving(images, training=False), input_signature=signature)
            archive.add_endpoint("serve_bytes", _bytes_endpoint(serving, setting))
            archive.write_out(str(staging), verbose=False)
            seconds["savedmodel"] = time.perf_counter() - started
        for name in formats:
            if name == "savedmodel":
                continue
            started = time.perf_counter()
            target = folder / FILES[name]
            if name == "onnx":
                with atomic_path(target, suffix=".onnx") as tmp:
                    serving.export(str(tmp), format="onnx", input_signature=signature, opset_version=OPSET,
                                   verbose=False)
            else:
                converter = tf.lite.TFLiteConverter.from_saved_model(str(staging), signature_keys=["serve"])
                if name == "tflite_int8":
                    if not setting.train_path.is_dir():
                        raise DatasetError(f"{display(setting.train_path)}: tflite_int8 needs training images "
                                           "to calibrate the quantisation (--train-dir)")
                    converter.optimizations = [tf.lite.Optimize.DEFAULT]
                    converter.representative_dataset = _representative(setting, REPRESENTATIVE_IMAGES)
                    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                write_bytes(target, converter.convert())
            files[name], seconds[name] = target, time.perf_counter() - started
            log(f"{name}: {display(target)} ({target.stat().st_size / 2**20:.1f} MiB, {seconds[name]:.1f} s)")
        if "savedmodel" in formats:
            final = folder / FILES["savedmodel"]
            shutil.rmtree(final, ignore_errors=True)
            staging.rename(final)
            files["savedmodel"] = final
            log(f"savedmodel: {display(final)} (signatures serve, serve_bytes; {seconds['savedmodel']:.1f} s)")
        # A class folder whose name is not UTF-8 keeps its bytes (surrogateescape), as runtime.py reads them back.
        write_bytes(folder / LABELS, "".join(f"{name}\n" for name in class_names).encode("utf-8", "surrogateescape"))
        # preprocessing.json last: it commits the export. It records every served file's digest, so a file
        # another export (killed before this point) or a person put there is not served under it.
        recorded.update({path.name: artifact_digest(path) for path in files.values()})
        recorded[LABELS] = file_digest(folder / LABELS)
        artifacts.write_json(folder / PREPROCESSING, {**description, ARTIFACTS: recorded})
    except Exception as exc:
        # TensorFlow reports a full disk as ResourceExhaustedError, which reads as "out of memory".
        if getattr(exc, "errno", None) == errno.ENOSPC or "No space left on device" in str(exc):
            raise OSError(errno.ENOSPC, "disk full while exporting; free space and export again",
                          str(folder)) from None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(folder, files, seconds)
