"""A checkpoint is untrusted input: it must never run code, and bad layouts must be refused."""

import io
import os
import pickle
import sys
import types
from collections import OrderedDict

import numpy as np
import pytest

from hv.torch_checkpoint import _MAGIC_NUMBER, _PROTOCOL_VERSION, CheckpointError, load_legacy_state_dict


class _Marker:
    """Unpickling this calls os.mkdir(path): proof that a reader ran code from the file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.fixture
def fake_torch(monkeypatch):
    """Just enough of torch's names for pickle to write a legacy state dict the way torch does."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only written, never called")

    FloatStorage.__module__, _rebuild_tensor_v2.__module__ = "torch", "torch._utils"
    FloatStorage.__qualname__, _rebuild_tensor_v2.__qualname__ = "FloatStorage", "_rebuild_tensor_v2"
    torch.FloatStorage, utils._rebuild_tensor_v2 = FloatStorage, _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch, utils


class _Tensor:
    def __init__(self, utils, key, offset, size, stride):
        self.utils, self.key, self.args = utils, key, (offset, size, stride)

    def __reduce__(self):
        return (self.utils._rebuild_tensor_v2, (_StorageRef(self.key), *self.args, False, OrderedDict()))


class _StorageRef:
    def __init__(self, key):
        self.key = key


def write_checkpoint(path, fake_torch, tensors, storages, *, header=None, state_extra=None):
    """tensors: name -> (key, offset, size, stride); storages: key -> float32 array."""
    torch, utils = fake_torch
    out = io.BytesIO()
    for item in header or (_MAGIC_NUMBER, _PROTOCOL_VERSION, {"little_endian": True}):
        pickle.dump(item, out, protocol=2)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                return ("storage", torch.FloatStorage, obj.key, "cpu", int(storages[obj.key].size))
            return None

    state = OrderedDict((name, _Tensor(utils, *layout)) for name, layout in tensors.items())
    if state_extra is not None:
        state["extra"] = state_extra
    Pickler(out, protocol=2).dump(state)
    pickle.dump(list(storages), out, protocol=2)
    for array in storages.values():
        out.write(np.int64(array.size).tobytes())
        out.write(array.astype("<f4").tobytes())
    path.write_bytes(out.getvalue())
    return path


def test_a_well_formed_checkpoint_loads(tmp_path, fake_torch):
    data = np.arange(12, dtype=np.float32)
    path = write_checkpoint(tmp_path / "ok.pth", fake_torch, {"w": ("0", 0, (3, 4), (4, 1)), "t": ("0", 2, (2,), (3,))},
                            {"0": data})
    state = load_legacy_state_dict(path)
    assert np.array_equal(state["w"], data.reshape(3, 4))
    assert np.array_equal(state["t"], [2, 5])


@pytest.mark.parametrize("where", ["magic", "protocol", "system info", "state dict", "storage keys"])
def test_a_crafted_file_raises_and_runs_nothing(tmp_path, fake_torch, where):
    marker = tmp_path / "code_ran"
    evil = _Marker(marker)
    header = [_MAGIC_NUMBER, _PROTOCOL_VERSION, {"little_endian": True}]
    if where in ("magic", "protocol", "system info"):
        header[["magic", "protocol", "system info"].index(where)] = evil
    path = tmp_path / "evil.pth"
    if where == "storage keys":
        write_checkpoint(path, fake_torch, {"w": ("0", 0, (2,), (1,))}, {"0": np.zeros(2, np.float32)})
        raw = path.read_bytes()
        keys = pickle.dumps(["0"], protocol=2)
        path.write_bytes(raw.replace(keys, pickle.dumps(evil, protocol=2), 1))
    else:
        write_checkpoint(path, fake_torch, {"w": ("0", 0, (2,), (1,))}, {"0": np.zeros(2, np.float32)},
                         header=header, state_extra=evil if where == "state dict" else None)
    with pytest.raises(CheckpointError, match="refused to load posix.mkdir|refused to load os.mkdir"):
        load_legacy_state_dict(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("layout", "message"),
    [(("0", 0, (3, 4), (4, 1)), "reaches element 11 of a storage of 6"),
     (("0", 5, (2,), (1,)), "reaches element 6 of a storage of 6"),
     (("0", 0, (2,), (-1,)), "invalid offset, size or stride"),
     (("0", -1, (2,), (1,)), "invalid offset, size or stride")],
)
def test_sizes_and_strides_are_checked_against_the_storage(tmp_path, fake_torch, layout, message):
    path = write_checkpoint(tmp_path / "bad.pth", fake_torch, {"w": layout}, {"0": np.zeros(6, np.float32)})
    with pytest.raises(CheckpointError, match=message):
        load_legacy_state_dict(path)


def test_truncated_and_garbage_files_are_named(tmp_path, fake_torch):
    path = write_checkpoint(tmp_path / "cut.pth", fake_torch, {"w": ("0", 0, (4,), (1,))},
                            {"0": np.ones(4, np.float32)})
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(CheckpointError, match="cut.pth: truncated storage 0"):
        load_legacy_state_dict(path)
    for name, content in (("empty.pth", b""), ("text.pth", b"hello"), ("zip.pth", b"PK\x03\x04rest")):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=f"{name}: "):
            load_legacy_state_dict(tmp_path / name)
