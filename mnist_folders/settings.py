"""The :class:`Setting` dataclass: every path, the image shape, the class names
and the hyperparameters of a run, each described once.

Each field carries one :class:`Option` (``field(metadata=...)``): its help
text, group, kind, allowed values or range. From those descriptions come the
command-line flags (:func:`mnist_folders.commands.cli.add_setting_flags`), the
validation (:meth:`Setting.validate`, table-driven), the TOML keys and their
error messages, and the generated tables of ``docs/cli-reference.md``, ``setting.py`` and
``configs/mnist.toml`` (``python -m mnist_folders.commands.settings_docs``). Adding a
setting is one ``option(...)`` line here plus its use.

Defaults serve MNIST as exported by ``parse_mnist.py`` with no flags. Precedence,
lowest first: the defaults below, a TOML file (flat ``key = value`` lines whose
keys are the field names), then command-line flags. Relative paths are relative
to the current directory. This module imports neither TensorFlow nor Keras.
"""

import dataclasses
import difflib
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SettingError
from .option import Option, option

DEFAULT_DATA_DIR = "mnist_data"
MNIST_MODEL_DIR = "models/mnist"  # the default model directory of the MNIST tree parse_mnist.py writes


def default_model_dir(data_dir: str) -> str:
    """The model directory of a data folder when none is given: ``models/<the data folder's name>``, so that
    two datasets never share one; :data:`MNIST_MODEL_DIR` for :data:`DEFAULT_DATA_DIR` (the MNIST demo)."""
    name = Path(data_dir).resolve().name or "data"  # "." names the current folder; "/" has no name
    return MNIST_MODEL_DIR if name == DEFAULT_DATA_DIR else str(Path("models") / name)
GROUPS = ("paths", "image", "classes", "training", "prediction", "serving", "system")
PIPELINES = ("tfdata", "idg")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
INVERT = ("auto", "true", "false")
RUNTIMES = ("auto", "keras", "onnx", "tflite", "tflite_int8")
CACHE_MODES = ("auto", "memory", "disk", "none")  # mnist_folders.data.image_cache
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")  # mnist_folders.train.distribute
CLASS_WEIGHTS = ("auto", "none", "balanced")
SPLIT_ORDERS = ("shuffled", "sorted")
RESIZE_METHODS = ("stretch", "pad", "crop")  # mnist_folders.data.images
CHANNELS = {"grayscale": 1, "rgb": 3}  # color_mode -> channels of the model input
DTYPE_POLICIES = ("auto", "float32", "mixed_bfloat16")  # mnist_folders.networks.dtype_policy
LR_SCHEDULES = ("constant", "cosine", "plateau")
FINE_TUNE = ("auto", "none", "top", "all")  # mnist_folders.train.fine_tuning
# Pixels a side at most: one 2048x2048 RGB input is 48 MiB in float32, beyond what a CPU trains on; a larger
# value (a hand-edited setting.json) would make every batch of predict allocate gigabytes.
MAX_SIDE = 2048


def _model_names() -> tuple[str, ...]:
    from .registry import MODELS

    return ("auto", *MODELS)


@dataclass
class Setting:
    """One run's configuration. Change values here, in a TOML file or by flags.

    Every field is described once, by its ``option(...)`` below: the
    generated table in ``setting.py`` and ``docs/cli-reference.md`` lists them all.
    ``None`` in a path means "under ``data_dir``"; ``None`` in a training
    hyperparameter means the chosen model's own default.
    """

    # ---- paths ----
    data_dir: str = option(DEFAULT_DATA_DIR, "root holding train/, test/, tmp/", "paths")
    train_dir: str | None = option(None, "class-per-folder training images", "paths", "str",
                                   default_text="<data_dir>/train")
    test_dir: str | None = option(None, "class-per-folder test images (evaluate)", "paths", "str",
                                  default_text="<data_dir>/test")
    val_dir: str | None = option(None, "class-per-folder validation images; none: a validation_split of train_dir",
                                 "paths", "str", default_text="none", fixed_on_resume=True)
    predict_dir: str | None = option(None, "images to predict, any layout", "paths", "str",
                                     default_text="<data_dir>/tmp", aliases=("--input",))
    model_dir: str | None = option(None, "checkpoints, history and reports; by default it follows the data folder",
                                   "paths", "str", default_text=f"models/<name of data_dir> ({MNIST_MODEL_DIR} for "
                                                                f"{DEFAULT_DATA_DIR})")
    # ---- image ----
    image_height: int | str = option("auto", "model input height in pixels; auto: from the training images and "
                                     "the model (their own size up to 48 px, so 28 for MNIST; 160-224 for the "
                                     "pretrained model; at most 96 for cnn_fast)", "image", "int", low=1,
                                     high=MAX_SIDE, choices=("auto",), fixed_on_resume=True, defines_model=True)
    image_width: int | str = option("auto", "model input width in pixels; auto: as image_height", "image", "int",
                                    low=1, high=MAX_SIDE, choices=("auto",), fixed_on_resume=True, defines_model=True)
    color_mode: str = option("auto", "channels the model sees: grayscale (1), rgb (3), or auto: rgb when "
                             "more than 5 % of (up to 200) training images have colour", "image",
                             choices=("auto", *CHANNELS), fixed_on_resume=True, defines_model=True)
    resize_method: str = option("stretch", "how other sizes are fitted: stretch, pad (black margins) or crop "
                                "(centre); pad and crop need pipeline=tfdata", "image", choices=RESIZE_METHODS,
                                fixed_on_resume=True)
    invert: str = option("auto", "predict: invert dark-on-light images; auto: when their polarity differs "
                         "from most training images", "image", choices=INVERT)
    # ---- classes ----
    class_names: list[str] | None = option(None, "classes in output order (flag: comma-separated)", "classes",
                                           "names", default_text="train sub-folders, sorted",
                                           fixed_on_resume=True, defines_model=True)
    class_weight: str = option("auto", "balanced: weight each class's loss by n / (classes x n_class); auto: "
                               "balanced when the largest class has 2x the images of the smallest", "classes",
                               choices=CLASS_WEIGHTS)
    # ---- training ----
    model: str = option("auto", "registered model (see the Models table); auto: strong or cnn_64_128_256 for "
                        "images up to 48 px (by their number and size), above: efficientnet_lite0 (ImageNet "
                        "weights) when its weights package is installed, else cnn_fast", "training",
                        choices=_model_names, fixed_on_resume=True, defines_model=True)
    fine_tune: str = option("auto", "pretrained models: after the head is fitted on cached embeddings, none "
                            "(the few-shot path: frozen backbone), top (unfreeze the last blocks) or all; auto: "
                            "none under 5 training images per class, all up to 1,000, else top", "training",
                            choices=FINE_TUNE, fixed_on_resume=True)
    backbone_weights: str | None = option(None, "a local .h5 file of ImageNet weights (no top) for a Keras "
                                          "Applications model", "training", "str", default_text="none (random)",
                                          fixed_on_resume=True)
    init_from: str | None = option(None, "start from these weights: a model directory, a .keras or a "
                                   ".weights.h5 file; a different class count gets a new head", "training",
                                   "str", default_text="none", fixed_on_resume=True)
    epochs: int | str = option("auto", "passes over the training subset; auto: until val_accuracy stops "
                               "improving (patience), within max_epochs and max_minutes", "training", "int",
                               low=1, choices=("auto",))
    patience: int | str = option("auto", "epochs = auto: epochs without a better val_accuracy before stopping; "
                                 "auto: enough for 600 steps, at least 3", "training", "int", low=1,
                                 choices=("auto",))
    max_epochs: int | str = option("auto", "epochs = auto: the most epochs; auto: enough for 8,000 steps, "
                                   "15 to 400", "training", "int", low=1, choices=("auto",))
    max_minutes: float = option(0.0, "epochs = auto: stop after the epoch that passes this wall-clock time "
                                "(0: no limit)", "training", low=0.0)
    batch_size: int | str = option("auto", "images per training step; auto: the model's default (256 for the "
                                   "reference model), halved while an epoch has under 25 steps", "training",
                                   "int", low=1, choices=("auto",), fixed_on_resume=True)
    validation_split: float = option(0.2, "fraction of each class held out for validation", "training",
                                     low=0.0, high=1.0, low_open=True, high_open=True, fixed_on_resume=True)
    split_order: str = option("shuffled", "which files validation_split holds out: shuffled (a seeded random "
                              "choice per class) or sorted (the first of each class, as ImageDataGenerator)",
                              "training", choices=SPLIT_ORDERS, fixed_on_resume=True)
    optimizer: str | None = option(None, "optimizer", "training", "str", choices=OPTIMIZERS, model_default=True)
    learning_rate: float | None = option(None, "the optimizer's step size", "training", "float", low=0.0,
                                         low_open=True, model_default=True)
    lr_schedule: str = option("constant", "constant (times lr_decay per epoch), cosine (decay to 0 over epochs "
                              "or max_epochs) or plateau (halve after patience / 2 epochs without a better "
                              "validation result)", "training", choices=LR_SCHEDULES)
    warmup_epochs: int = option(0, "epochs of linear learning-rate warm-up before the schedule", "training",
                                low=0)
    lr_decay: float | None = option(None, "learning-rate factor applied after every epoch", "training", "float",
                                    low=0.0, high=1.0, low_open=True, model_default=True)
    label_smoothing: float | None = option(None, "share of each target spread over the other classes "
                                           "(0: one-hot targets)", "training", "float", low=0.0, high=1.0,
                                           high_open=True, model_default=True, fixed_on_resume=True)
    rotation_range: float | None = option(None, "augmentation: random rotation, degrees", "training", "float",
                                          low=0.0, high=180.0, model_default=True)
    shift_range: float | None = option(None, "augmentation: random shift, fraction of the size", "training",
                                       "float", low=0.0, high=1.0, high_open=True, model_default=True)
    zoom_range: float | None = option(None, "augmentation: random zoom, fraction", "training", "float",
                                      low=0.0, high=1.0, high_open=True, model_default=True)
    tensorboard: bool = option(False, "train: also write TensorBoard logs (loss, accuracy, learning rate per "
                               "epoch) to <model_dir>/logs/; view with tensorboard --logdir <model_dir>/logs",
                               "training")
    # ---- prediction ----
    runtime: str = option("auto", "predict with keras (TensorFlow), or without TensorFlow from --mode export's "
                          "files: onnx (onnxruntime), tflite or tflite_int8 (LiteRT); auto: onnx when a current "
                          "export is there (training writes model.onnx unless --format says otherwise), else "
                          "keras", "prediction", choices=RUNTIMES)
    min_confidence: float = option(0.0, "predict: a top probability below this is written as class 'uncertain' "
                                   "(0: never)", "prediction", low=0.0, high=1.0)
    # ---- serving (--mode serve; mnist_folders.serve.server) ----
    host: str = option("127.0.0.1", "serve: the address to listen on; 127.0.0.1 answers this machine only, "
                       "0.0.0.0 every network it is on (set MNIST_FOLDERS_TOKEN then)", "serving")
    port: int = option(8000, "serve: the TCP port (0: any free port, printed at start)", "serving", low=0,
                       high=65535)
    serve_batch: int = option(64, "serve: most images per forward pass; concurrent requests are batched "
                              "together up to it", "serving", low=1, high=4096)
    serve_wait_ms: float = option(2.0, "serve: how long the first image of a batch waits for others, "
                                  "milliseconds", "serving", low=0.0, high=1000.0)
    serve_max_files: int = option(64, "serve: most images in one request", "serving", low=1, high=10000)
    serve_max_mb: float = option(32.0, "serve: largest request body, MiB (larger: HTTP 413)", "serving",
                                 low=0.0, high=4096.0, low_open=True)
    # ---- system ----
    seed: int = option(1337, "seeds Python, NumPy, TensorFlow and the shuffles", "system", low=0, high=2**31 - 1,
                       fixed_on_resume=True)
    pipeline: str = option("tfdata", "tfdata (decode once, in memory) or idg (ImageDataGenerator)", "system",
                           choices=PIPELINES, fixed_on_resume=True)
    cache: str = option("auto", "tfdata: where decoded training images stay between epochs: memory, disk (a file "
                        "under <model_dir>/.cache, removed after training), none (decoded again per batch); auto: "
                        "memory up to a quarter of the available memory, else disk", "system", choices=CACHE_MODES)
    strategy: str = option("auto", "tf.distribute strategy: one_device, mirrored (every local GPU; two logical "
                           "CPU devices without GPUs), multi_worker (the processes TF_CONFIG lists); auto: "
                           "multi_worker under such a TF_CONFIG, else mirrored with 2 or more GPUs", "system",
                           choices=STRATEGIES)
    dtype_policy: str | None = option(None, "Keras dtype policy: float32, mixed_bfloat16, or auto (bfloat16 "
                                      "on CPUs with AVX-512 BF16 or AMX)", "system", "str",
                                      choices=DTYPE_POLICIES, model_default=True, fixed_on_resume=True)

    def __post_init__(self) -> None:
        if isinstance(self.invert, bool):  # TOML `invert = true` reads as a boolean
            self.invert = "true" if self.invert else "false"
        if self.model_dir is None and isinstance(self.data_dir, str):
            self.model_dir = default_model_dir(self.data_dir)
        self._fill_model_defaults()
        self.validate()

    def _fill_model_defaults(self) -> None:
        """Replace ``None`` hyperparameters by the chosen model's defaults."""
        from .registry import MODELS

        spec = MODELS.get(self.model) if isinstance(self.model, str) else None
        if spec is None:
            return  # validate() reports the unknown model
        for name, opt in options().items():
            if opt.model_default and getattr(self, name) is None:
                setattr(self, name, getattr(spec, name))

    # ---- derived values -------------------------------------------------
    @property
    def augments(self) -> bool:
        """True when any augmentation range is non-zero."""
        return bool(self.rotation_range or self.shift_range or self.zoom_range)

    @property
    def channels(self) -> int:
        """1 or 3; raises ``KeyError`` while ``color_mode`` is ``auto`` (training resolves it from the images)."""
        return CHANNELS[self.color_mode]

    @property
    def size_is_auto(self) -> bool:
        """True while ``image_height`` or ``image_width`` is ``auto`` (training resolves it from the images)."""
        return "auto" in (self.image_height, self.image_width)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of one model input.

        Raises:
            KeyError: while ``color_mode``, ``image_height`` or ``image_width`` is ``auto``.
        """
        if self.size_is_auto:
            raise KeyError("image size is 'auto' until training resolves it")
        return (self.image_height, self.image_width, self.channels)

    @property
    def train_path(self) -> Path:
        return Path(self.train_dir or Path(self.data_dir) / "train")

    @property
    def test_path(self) -> Path:
        return Path(self.test_dir or Path(self.data_dir) / "test")

    @property
    def val_path(self) -> Path | None:
        return Path(self.val_dir) if self.val_dir else None

    @property
    def predict_path(self) -> Path:
        return Path(self.predict_dir or Path(self.data_dir) / "tmp")

    @property
    def model_path(self) -> Path:
        return Path(self.model_dir)

    # ---- validation -----------------------------------------------------
    def validate(self) -> None:
        """Check every value against its :class:`Option`, then the rules between fields.

        Raises:
            SettingError: naming the first bad value.
        """
        for f in dataclasses.fields(self):
            opt, value = f.metadata["option"], getattr(self, f.name)
            if value is None:
                # model = "auto" picks the model, and its defaults, when training sees the data.
                if f.default is not None or opt.model_default and self.model != "auto":
                    raise SettingError(f"{f.name} must be set. Received: {f.name}=None")
                continue
            opt.check(f.name, value)
        if not self.model_dir.strip():
            raise SettingError("model_dir must name a folder. Received: model_dir=''")
        if not self.host.strip():
            raise SettingError("host must name an address (127.0.0.1: this machine only). Received: host=''")
        from .registry import MODELS, too_small

        spec = MODELS.get(self.model)
        given = [side for side in (self.image_height, self.image_width) if side != "auto"]
        if spec is not None and given and min(given) < spec.min_size:
            # Said before TensorFlow loads (a build would find it too, seconds later).
            raise SettingError(too_small(self.model, self.image_height, self.image_width, spec.min_size))
        if self.pipeline == "idg" and self.resize_method != "stretch":
            raise SettingError(
                f"resize_method={self.resize_method!r} needs pipeline='tfdata' (ImageDataGenerator only stretches)"
            )
        if self.class_names is not None:
            if len(self.class_names) < 2:
                raise SettingError(f"class_names needs at least 2 classes. Received: {self.class_names}")
            if len(set(self.class_names)) != len(self.class_names):
                raise SettingError(f"class_names has duplicates. Received: {self.class_names}")

    # ---- construction and persistence -----------------------------------
    @classmethod
    def from_sources(cls, config: str | Path | None = None, overrides: dict[str, Any] | None = None) -> "Setting":
        """Defaults, then the TOML file ``config``, then ``overrides`` (``None`` values ignored)."""
        return cls.from_dict(chosen_values(config, overrides), source=str(config) if config else "settings")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "settings") -> "Setting":
        """Build from a mapping.

        Raises:
            SettingError: an unknown key (naming the closest valid one) or an invalid value.
        """
        names = list(options())
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise SettingError(f"{source}: unknown setting {key!r}{hint}")
        return cls(**values)

    @classmethod
    def for_model(cls, saved: "Setting", chosen: dict[str, Any]) -> "Setting":
        """The Setting saved with a model, with the values the user chose applied.

        ``chosen`` holds only what the user gave (TOML keys and flags). A
        new ``data_dir`` moves the train, test and predict folders with it
        unless they are given too.

        Raises:
            SettingError: ``chosen`` contradicts the trained model (a value of
                :data:`MODEL_DEFINING` differs from the saved one).
        """
        contradictions = [f"{k}={v!r} (trained with {getattr(saved, k)!r})" for k, v in chosen.items()
                          if k in MODEL_DEFINING and v != getattr(saved, k)]
        if contradictions:
            raise SettingError(f"{saved.model_dir}: the model was trained otherwise; remove "
                               + ", ".join(contradictions) + " or train a new model")
        values = saved.to_dict()
        if "data_dir" in chosen:
            values.update(train_dir=None, test_dir=None, predict_dir=None)
        values.update(chosen)
        return cls.from_dict(values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "Setting":
        return dataclasses.replace(self, **changes)


def options() -> dict[str, Option]:
    """Every setting's :class:`Option`, in field order."""
    return {f.name: f.metadata["option"] for f in dataclasses.fields(Setting)}


# Read from each setting's own description (its Option).
RESUME_FIXED = tuple(name for name, opt in options().items() if opt.fixed_on_resume)
MODEL_DEFINING = tuple(name for name, opt in options().items() if opt.defines_model)


def chosen_values(config: str | Path | None, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """What the user chose: the TOML file's values, then the flags given (``None``: not given)."""
    values: dict[str, Any] = {}
    if config is not None:
        values.update(read_toml(config))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return values


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a flat TOML settings file.

    Raises:
        SettingError: missing, invalid TOML, or with ``[sections]``.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise SettingError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingError(f"{path}: invalid TOML ({str(exc).splitlines()[0][:160]})") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise SettingError(f"{path}: sections are not used; put {key!r}'s keys at the top level")
    return data
