"""The :class:`Setting` dataclass: every path, the image shape, the class names
and the hyperparameters of a run, with validation and TOML/flag overrides.

Defaults serve MNIST as exported by ``parse_mnist.py`` with no flags. Precedence,
lowest first: the defaults below, a TOML file (flat ``key = value`` lines whose
keys are the field names), then command-line flags. Relative paths are relative
to the current directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SettingError
from .images import RESIZE_METHODS
from .precision import PRECISIONS

COLOR_MODES = {"grayscale": 1, "rgb": 3}
PIPELINES = ("tfdata", "idg")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
DEFAULT_DATA_DIR = "mnist_data"
# Hyperparameters whose default depends on the model (ModelSpec fields of the same names).
MODEL_DEFAULTS = ("epochs", "batch_size", "optimizer", "learning_rate", "lr_decay",
                  "rotation_range", "shift_range", "zoom_range", "precision")


@dataclass
class Setting:
    """One run's configuration. Change values here, in a TOML file or by flags.

    Paths (``None`` means "under ``data_dir``"):
        data_dir: root of the exported tree (``mnist_data``).
        train_dir: class-per-folder training images (``<data_dir>/train``).
        test_dir: class-per-folder test images (``<data_dir>/test``).
        predict_dir: images to predict, any layout (``<data_dir>/tmp``).
        model_dir: where checkpoints, history and reports go.

    Image:
        image_height, image_width: pixels the model sees; images of other
            sizes are resized.
        color_mode: ``grayscale`` (1 channel) or ``rgb`` (3 channels).
        resize_method: ``stretch`` (ignore the aspect ratio), ``pad`` (keep
            it, black margins) or ``crop`` (keep it, centre crop); ``pad`` and
            ``crop`` need the ``tfdata`` pipeline.
        invert: prediction input only. ``auto`` inverts an image whose
            polarity (border lighter than centre: dark strokes on a light
            background) differs from most training images; ``true`` always
            inverts, ``false`` never.

    Classes:
        class_names: the class folder names in index order; ``None`` infers
            them from the train folder's sub-folders, sorted.
        class_weight: ``none``, or ``balanced`` to weight each class's loss by
            ``n_images / (n_classes * n_images_of_class)`` (unbalanced data).

    Training (``None``: the model's own default, from its registry entry):
        model: a name from :data:`mnist_folders.models.MODELS`.
        epochs, batch_size: the usual; an epoch is one pass over the training
            subset.
        validation_split: fraction of each class held out for validation, in
            (0, 1); the first files of each class in sorted order.
        optimizer: ``rmsprop``, ``adam`` or ``sgd``; learning_rate its step size.
        lr_decay: the learning rate is multiplied by this after every epoch.
        rotation_range (degrees), shift_range, zoom_range (fractions of the
            image size): random augmentation of training images; 0 is off.
            Never applied to validation, evaluation or prediction.
        seed: seeds Python, NumPy, TensorFlow and the shuffles.
        pipeline: ``tfdata`` (decode once, cache, shuffle, prefetch) or ``idg``
            (the classic ``ImageDataGenerator.flow_from_directory``).
        precision: ``float32``, ``mixed_bfloat16``, or ``auto`` (bfloat16
            only on CPUs with AVX-512 BF16; see mnist_folders/precision.py).
            The reference model's default is ``auto``, the others' ``float32``.
    """

    data_dir: str = DEFAULT_DATA_DIR
    train_dir: str | None = None
    test_dir: str | None = None
    predict_dir: str | None = None
    model_dir: str = "models/mnist"
    image_height: int = 28
    image_width: int = 28
    color_mode: str = "grayscale"
    resize_method: str = "stretch"
    invert: str = "auto"
    class_names: list[str] | None = None
    class_weight: str = "none"
    model: str = "cnn_64_128_256"
    # None: the model's own default (see MODELS in mnist_folders/models.py).
    epochs: int | None = None
    batch_size: int | None = None
    validation_split: float = 0.2
    optimizer: str | None = None
    learning_rate: float | None = None
    lr_decay: float | None = None
    rotation_range: float | None = None
    shift_range: float | None = None
    zoom_range: float | None = None
    seed: int = 1337
    pipeline: str = "tfdata"
    precision: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.invert, bool):  # TOML `invert = true` reads as a boolean
            self.invert = "true" if self.invert else "false"
        self._fill_model_defaults()
        self.validate()

    def _fill_model_defaults(self) -> None:
        """Replace ``None`` hyperparameters by the chosen model's defaults."""
        from .models import MODELS  # deferred: importing Keras is slow and parse_mnist does not need it

        spec = MODELS.get(self.model) if isinstance(self.model, str) else None
        if spec is None:
            return  # validate() reports the unknown model
        for name in MODEL_DEFAULTS:
            if getattr(self, name) is None:
                setattr(self, name, getattr(spec, name))

    @property
    def augments(self) -> bool:
        """True when any augmentation range is non-zero."""
        return bool(self.rotation_range or self.shift_range or self.zoom_range)

    # ---- derived values -------------------------------------------------
    @property
    def channels(self) -> int:
        return COLOR_MODES[self.color_mode]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of one model input."""
        return (self.image_height, self.image_width, self.channels)

    @property
    def train_path(self) -> Path:
        return Path(self.train_dir or Path(self.data_dir) / "train")

    @property
    def test_path(self) -> Path:
        return Path(self.test_dir or Path(self.data_dir) / "test")

    @property
    def predict_path(self) -> Path:
        return Path(self.predict_dir or Path(self.data_dir) / "tmp")

    @property
    def model_path(self) -> Path:
        return Path(self.model_dir)

    # ---- validation -----------------------------------------------------
    def validate(self) -> None:
        """Check every value; raise :class:`SettingError` naming the first bad one."""
        from .models import MODELS

        _check_type("model", self.model, "str")
        _check_choice("model", self.model, tuple(MODELS))
        for f in dataclasses.fields(self):
            _check_type(f.name, getattr(self, f.name), f.type if f.name not in MODEL_DEFAULTS else f.type.replace(" | None", ""))
        if self.epochs < 1:
            raise SettingError(f"epochs must be at least 1. Received: epochs={self.epochs}")
        if self.batch_size < 1:
            raise SettingError(f"batch_size must be at least 1. Received: batch_size={self.batch_size}")
        if not 0.0 < self.validation_split < 1.0:
            raise SettingError(
                f"validation_split must be in (0, 1). Received: validation_split={self.validation_split}"
            )
        if self.learning_rate <= 0:
            raise SettingError(f"learning_rate must be positive. Received: learning_rate={self.learning_rate}")
        if not 0 < self.lr_decay <= 1:
            raise SettingError(f"lr_decay must be in (0, 1]. Received: lr_decay={self.lr_decay}")
        if not 0 <= self.rotation_range <= 180:
            raise SettingError(f"rotation_range must be in [0, 180] degrees. Received: rotation_range={self.rotation_range}")
        for name in ("shift_range", "zoom_range"):
            if not 0 <= getattr(self, name) < 1:
                raise SettingError(f"{name} must be in [0, 1). Received: {name}={getattr(self, name)}")
        if self.image_height < 1 or self.image_width < 1:
            raise SettingError(
                f"image size must be positive. Received: image_height={self.image_height}, "
                f"image_width={self.image_width}"
            )
        _check_choice("color_mode", self.color_mode, tuple(COLOR_MODES))
        _check_choice("resize_method", self.resize_method, RESIZE_METHODS)
        _check_choice("invert", self.invert, ("auto", "true", "false"))
        _check_choice("class_weight", self.class_weight, ("none", "balanced"))
        if self.pipeline == "idg" and self.resize_method != "stretch":
            raise SettingError(
                f"resize_method={self.resize_method!r} needs pipeline='tfdata' (ImageDataGenerator only stretches)"
            )
        _check_choice("pipeline", self.pipeline, PIPELINES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.class_names is not None:
            if len(self.class_names) < 2:
                raise SettingError(f"class_names needs at least 2 classes. Received: {self.class_names}")
            if len(set(self.class_names)) != len(self.class_names):
                raise SettingError(f"class_names has duplicates. Received: {self.class_names}")

    # ---- construction and persistence -----------------------------------
    @classmethod
    def from_sources(cls, config: str | Path | None = None, overrides: dict[str, Any] | None = None) -> "Setting":
        """Defaults, then the TOML file ``config``, then ``overrides`` (``None`` values ignored)."""
        values: dict[str, Any] = {}
        if config is not None:
            values.update(read_toml(config))
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(values, source=str(config) if config else "settings")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "settings") -> "Setting":
        """Build from a mapping; unknown keys raise :class:`SettingError` naming the closest valid key."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SettingError(f"{source}: unknown setting {key!r}{hint}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    def replace(self, **changes: Any) -> "Setting":
        return dataclasses.replace(self, **changes)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML settings file. Raises :class:`SettingError` if unreadable or invalid."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SettingError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingError(f"{path}: invalid TOML ({exc})") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise SettingError(f"{path}: sections are not used; put {key!r}'s keys at the top level")
    return data


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SettingError(f"{name} must be one of {', '.join(choices)}. Received: {name}={value!r}")


def _check_type(name: str, value: Any, annotation: str) -> None:
    """Check a value against its field's annotation (a string under postponed evaluation)."""
    if value is None:
        if "None" not in annotation:
            raise SettingError(f"{name} must be set. Received: {name}=None")
        return
    if annotation.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation.startswith("float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif annotation.startswith("list"):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:  # str and str | None
        ok = isinstance(value, str)
    if not ok:
        expected = annotation.replace(" | None", "")
        raise SettingError(f"{name} must be of type {expected}. Received: {name}={value!r}")
