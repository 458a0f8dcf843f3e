"""Read a legacy ``torch.save`` state_dict into numpy arrays, without PyTorch and without running its code.

The format is PyTorch's legacy serialization (``torch/serialization.py``,
``_legacy_save`` and ``_legacy_load``; written by ``torch.save`` before
PyTorch 1.6, or with ``_use_new_zipfile_serialization=False``). The file is,
in order:

1. a pickle of the magic number ``0x1950a86a20f9469cfc6c``;
2. a pickle of the protocol version, ``1001``;
3. a pickle of ``sys_info`` (``{"little_endian": True, "type_sizes": ...}``);
4. the pickle of the object, here a state_dict (an ``OrderedDict`` of name ->
   tensor). Each tensor is ``torch._utils._rebuild_tensor_v2(storage, offset,
   size, stride, requires_grad, backward_hooks[, metadata])``, where
   ``storage`` is a persistent id ``("storage", torch.<Type>Storage, key,
   location, numel[, view_metadata])``; ``view_metadata`` is
   ``(view_key, offset, view_numel)`` for a storage that is a slice of ``key``;
5. a pickle of the list of storage keys;
6. for each key, in that order: an 8-byte little-endian element count, then
   the storage's elements, raw and little-endian.

The pickles are read by an unpickler whose ``find_class`` admits only
``torch._utils._rebuild_tensor_v2``, the ``torch.<Type>Storage`` classes and
``collections.OrderedDict``, which it replaces by harmless stand-ins: any
other global (``os.system``, ``builtins.eval``...) is refused before it is
called, so no code from the file runs. The zip format of PyTorch >= 1.6 is
not read. Neither torch nor TensorFlow is imported.
"""

from __future__ import annotations

import collections
import math
import os
import pickle
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..errors import CheckpointError
from ..names import display

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

# torch.<Type>Storage -> little-endian numpy dtype of its elements (BFloat16 is read as its 16 raw bits).
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for a ``torch.<Type>Storage`` class: only its element type."""

    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(STORAGE_DTYPES[self.name])


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by a persistent id: elements ``[offset, offset + numel)`` of the record ``key``."""

    stype: _StorageType
    key: str
    offset: int
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A tensor not yet materialised: its storage, offset, size and stride in elements."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor_v2`` (``requires_grad``, hooks and metadata are ignored)."""
    ints = (lambda v: isinstance(v, tuple) and all(type(i) is int and i >= 0 for i in v))
    if not (isinstance(storage, _StorageRef) and type(offset) is int and offset >= 0 and ints(size)
            and ints(stride) and len(size) == len(stride)):
        raise ValueError("malformed tensor record")
    return _TensorRef(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Unpickler that admits tensors, storages and ``OrderedDict`` only (see the module docstring)."""

    def __init__(self, file: BinaryIO, path: str) -> None:
        super().__init__(file)
        self.path = path
        self.storages: dict[str, tuple[_StorageType, int]] = {}  # root key -> (type, numel)

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise CheckpointError(f"{self.path}: refused pickle global {module}.{name} (only tensors are read)")

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and type(pid[4]) is int and pid[4] >= 0):
            raise ValueError(f"unexpected persistent id {str(pid)[:80]}")
        stype, key, numel = pid[1], pid[2], pid[4]
        if self.storages.setdefault(key, (stype, numel)) != (stype, numel):
            raise ValueError(f"storage {key} declared twice with different types or sizes")
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return _StorageRef(stype, key, 0, numel)
        if not (isinstance(view, tuple) and len(view) == 3 and all(type(v) is int and v >= 0 for v in view[1:])
                and view[1] + view[2] <= numel):
            raise ValueError(f"malformed storage view of {key}")
        return _StorageRef(stype, key, view[1], view[2])


def _load(f: BinaryIO, path: str) -> tuple[Any, dict[str, tuple[_StorageType, int]]]:
    unpickler = _Unpickler(f, path)
    return unpickler.load(), unpickler.storages


def _read_storages(f: BinaryIO, keys: Any, declared: dict[str, tuple[_StorageType, int]],
                   end: int) -> dict[str, np.ndarray]:
    """The raw storages that follow the pickles: ``key -> 1-D array`` (read-only views of the bytes read)."""
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys) and sorted(keys) == sorted(declared)):
        raise ValueError("the storage key list does not match the storages the tensors use")
    data = {}
    for key in keys:
        stype, numel = declared[key]
        (count,) = struct.unpack("<q", _read_exact(f, 8, end))
        if count != numel:
            raise ValueError(f"storage {key} holds {count} elements, its tensors declare {numel}")
        data[key] = np.frombuffer(_read_exact(f, numel * stype.dtype.itemsize, end), dtype=stype.dtype)
    return data


def _read_exact(f: BinaryIO, n: int, end: int) -> bytes:
    if f.tell() + n > end:
        raise EOFError("the file ends inside the tensor data (truncated?)")
    return f.read(n)


def _materialise(t: _TensorRef, data: dict[str, np.ndarray]) -> np.ndarray:
    """Own contiguous copy of the tensor ``t``; bounds are checked (``as_strided`` itself checks none)."""
    flat = data[t.storage.key][t.storage.offset : t.storage.offset + t.storage.numel]
    count = math.prod(t.size)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if count and last >= flat.size:
        raise ValueError(f"a tensor of size {t.size} reaches past its storage of {flat.size} elements")
    if count > flat.size:  # only stride 0 (an expanded tensor) does that: refused, it could fill the memory
        raise ValueError(f"a tensor of size {t.size} has more elements than its storage ({flat.size})")
    array = np.lib.stride_tricks.as_strided(flat[t.offset :] if count else flat[:0], shape=t.size,
                                            strides=[s * flat.itemsize for s in t.stride], writeable=False)
    array = np.array(array, order="C")  # an own, contiguous copy
    if t.storage.stype.name == "BFloat16Storage":  # bfloat16 = the high 16 bits of a float32
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The tensors of the legacy ``torch.save`` file ``path`` as ``name -> numpy array``, in the file's order.

    Each array has the tensor's shape (a PyTorch conv weight stays ``(out, in,
    kH, kW)``) and dtype (``torch.float32`` -> ``float32``, ``torch.int64`` ->
    ``int64``...; ``bfloat16`` becomes ``float32``), and owns its contiguous memory.

    Raises:
        CheckpointError: in one line naming the file: it is missing, unreadable,
            a zip-format (PyTorch >= 1.6) file, not a legacy ``torch.save`` file,
            truncated or corrupt, holds something other than a dict of tensors, or
            its pickle names a global other than the tensor ones (refused, never called).
    """
    shown = display(path)
    try:
        with open(path, "rb") as f:
            end = os.fstat(f.fileno()).st_size
            if f.read(4) == b"PK\x03\x04":
                raise CheckpointError(f"{shown}: a zip-format torch.save file (PyTorch >= 1.6); "
                                      "only the legacy format is read")
            f.seek(0)
            if _load(f, shown)[0] != MAGIC_NUMBER:
                raise ValueError("bad magic number: not a legacy torch.save file")
            if (version := _load(f, shown)[0]) != PROTOCOL_VERSION:
                raise ValueError(f"protocol version {version!r}, expected {PROTOCOL_VERSION}")
            sys_info = _load(f, shown)[0]
            if not (isinstance(sys_info, dict) and sys_info.get("little_endian") is True):
                raise ValueError("written on a big-endian machine or without sys_info")
            state, declared = _load(f, shown)
            if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, _TensorRef)
                                                    for k, v in state.items())):
                raise ValueError("the pickle is not a state_dict (a dict of name -> tensor)")
            data = _read_storages(f, _load(f, shown)[0], declared, end)
            return {name: _materialise(t, data) for name, t in state.items()}
    except CheckpointError:
        raise
    except OSError as exc:
        raise CheckpointError(f"{shown}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:  # pickle, struct and numpy raise many types on corrupt bytes
        detail = str(exc).splitlines()[0][:160] if str(exc) else "unexpected end of file"
        raise CheckpointError(f"{shown}: corrupt or truncated legacy torch.save file "
                              f"({type(exc).__name__}: {detail})") from None
