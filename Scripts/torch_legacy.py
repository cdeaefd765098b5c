"""Read a legacy (non-zip) PyTorch checkpoint without torch.

The legacy format written by `torch.save(..., _use_new_zipfile_serialization=False)` is a
sequence of pickles: a magic number, the protocol version, system info, then the object itself,
whose tensors refer to storages through `persistent_id`s, then the list of storage keys, then
each storage's raw data (an 8-byte little-endian element count followed by the elements).
This module rebuilds the tensors as numpy arrays, so that the converter needs only numpy.
"""
import collections
import io
import pickle
import struct

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.dtype = _STORAGE_DTYPES[name]


class _StorageRef:
    """A storage referenced by tensors, filled in once the raw data is read."""

    def __init__(self, key, dtype, size):
        self.key, self.dtype, self.size = key, dtype, size
        self.array = None


class _TensorRef:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def materialize(self):
        base = self.storage.array
        itemsize = base.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.shape, strides=tuple(s * itemsize for s in self.stride))
        return np.array(view, copy=True)


def _rebuild_tensor_v2(storage, offset, shape, stride, requires_grad=False, hooks=None, metadata=None):
    return _TensorRef(storage, offset, shape, stride)


def _rebuild_parameter(data, requires_grad, hooks, *rest):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a checkpoint")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, size[, view_metadata])
        kind, storage_type, key, _location, size = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind}")
        if key not in self.storages:
            self.storages[key] = _StorageRef(key, storage_type.dtype, size)
        return self.storages[key]


def load(path):
    """Returns the checkpoint's object with every tensor as a numpy array."""
    with open(path, "rb") as f:
        data = f.read()
    f = io.BytesIO(data)
    if pickle.load(f) != MAGIC:
        raise ValueError(f"{path}: not a legacy PyTorch checkpoint (bad magic number)")
    protocol = pickle.load(f)
    if protocol != 1001:
        raise ValueError(f"{path}: unsupported legacy protocol {protocol}")
    pickle.load(f)  # sys_info
    storages = {}
    obj = _Unpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        ref = storages[key]
        (count,) = struct.unpack("<q", f.read(8))
        raw = f.read(count * np.dtype(ref.dtype).itemsize)
        ref.array = np.frombuffer(raw, dtype=ref.dtype)

    def convert(value):
        if isinstance(value, _TensorRef):
            return value.materialize()
        if isinstance(value, dict):
            return collections.OrderedDict((k, convert(v)) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return type(value)(convert(v) for v in value)
        return value

    return convert(obj)
