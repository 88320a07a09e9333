"""Read files written by PyTorch's ``torch.save`` -- without torch, and without running any code.

Two layouts exist:

* legacy (torch < 1.6, or ``_use_new_zipfile_serialization=False``): one stream holding five pickles and
  then the raw storages -- a magic number, a protocol version (1001), a system-info dict
  (byte order, C type sizes), the object itself, and the sorted list of storage keys; after those, each
  storage in that order as an int64 little-endian element count followed by its bytes (little-endian);
* zip (torch >= 1.6): an archive ``<name>/data.pkl`` (the object) with one ``<name>/data/<key>`` entry
  of raw bytes per storage, and ``<name>/byteorder`` ("little" or "big"; little when absent).

In both, the object pickle refers to storages by persistent id
``("storage", <torch.XStorage>, key, location, numel[, view])`` and rebuilds each tensor with
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``.

Unpickling a file normally imports and calls whatever it names, so a "weights" file could run any
command. :class:`_SafeUnpickler` maps the handful of names a tensor rebuild needs to small functions of
ours that build NumPy arrays, and refuses every other name before anything is called. Storage reads are
bounds-checked against the file, and every strided view against its storage.

``load(path)`` returns the saved object with each tensor as a NumPy array (``nn.Parameter`` too).
"""
import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..errors import WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_ZIP_SIGNATURE = b"PK\x03\x04"
_MAX_DEPTH = 16  # nesting allowed in the saved object (a state dict is 1 or 2 levels deep)


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends: just the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        self.name, self.dtype = name, np.dtype(dtype)

    def __setstate__(self, state):  # pickle's BUILD would otherwise be able to set our attributes
        raise pickle.UnpicklingError("a storage type cannot carry state")

    def __call__(self, *args):
        raise pickle.UnpicklingError(f"torch.{self.name} may only appear in a persistent id")


# bfloat16 has no NumPy dtype: read its 16 bits as uint16 and widen to float32 afterwards (exact).
_BFLOAT16 = "BFloat16Storage"
STORAGE_TYPES = {name: _StorageType(name, dtype) for name, dtype in {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", _BFLOAT16: "<u2",
    "ByteStorage": "u1", "CharStorage": "i1", "ShortStorage": "<i2", "IntStorage": "<i4",
    "LongStorage": "<i8", "BoolStorage": "?",
}.items()}


class _Storage:
    """One storage: its dtype, element count and (once read) its bytes as a 1-D array."""

    __slots__ = ("type", "numel", "array")

    def __init__(self, storage_type, numel):
        self.type, self.numel, self.array = storage_type, numel, None

    def __setstate__(self, state):
        raise pickle.UnpicklingError("a storage cannot carry state")


class _TensorRef:
    """A tensor waiting for its storage's bytes (the legacy layout stores them after the pickle)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state):
        raise pickle.UnpicklingError("a tensor cannot carry extra state here")


def _int_tuple(value, what):
    if not isinstance(value, tuple) or not all(type(v) is int and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"tensor {what} must be a tuple of non-negative ints, got {value!r}")
    return value


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    """Our ``torch._utils._rebuild_tensor[_v2]``: checks the arguments, defers reading the bytes.

    Ignored extras: requires_grad, backward hooks (an empty OrderedDict) and metadata.
    """
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor must be rebuilt from a storage")
    if type(offset) is not int or offset < 0:
        raise pickle.UnpicklingError(f"tensor offset must be a non-negative int, got {offset!r}")
    size, stride = _int_tuple(size, "size"), _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"tensor size {size} and stride {stride} differ in length")
    count = 1
    for n in size:
        count *= n
    if count > max(storage.numel, 1):  # (torch never saves broadcast views; this caps the copy's size)
        raise pickle.UnpicklingError(f"tensor of size {size} has more elements than its storage "
                                     f"({storage.numel})")
    if count:  # a non-empty tensor: its last element must lie inside the storage
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise pickle.UnpicklingError(f"tensor (offset {offset}, size {size}, stride {stride}) "
                                         f"reaches past its storage of {storage.numel} elements")
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """Our ``torch._utils._rebuild_parameter``: a parameter is just its data here."""
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError("a parameter must wrap a tensor")
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): st for name, st in STORAGE_TYPES.items()},
}


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that knows only the names in ``_ALLOWED``: anything else is refused, not imported."""

    def __init__(self, file, storages=None):
        super().__init__(file)
        self.storages = {} if storages is None else storages

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except (KeyError, TypeError):
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a weights file may hold only "
                                         "tensors, numbers, strings and dicts") from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        storage_type, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType) or type(key) is not str or type(numel) is not int \
                or numel < 0:
            raise pickle.UnpicklingError(f"malformed storage id {pid!r:.80}")
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(storage_type, numel)
        elif storage.type is not storage_type or storage.numel != numel:
            raise pickle.UnpicklingError(f"storage {key} is declared twice, differently")
        if view is not None:  # a slice of another storage: only files from torch < 0.4 have these
            raise pickle.UnpicklingError("storage views (files from torch < 0.4) are not supported")
        return storage


def _unpickle(stream, storages=None):
    return _SafeUnpickler(stream, storages).load()


def _materialise(obj, depth=0):
    """Replace every tensor reference in dicts, lists and tuples by a NumPy array copy of its data."""
    if depth > _MAX_DEPTH:
        raise WeightsError("nested too deeply")
    if isinstance(obj, _TensorRef):
        st = obj.storage
        if st.array is None:
            raise WeightsError("a tensor's storage is missing from the file")
        itemsize = st.array.itemsize
        view = np.lib.stride_tricks.as_strided(
            st.array[obj.offset:] if all(obj.size) else st.array[:0],
            shape=obj.size, strides=tuple(s * itemsize for s in obj.stride), writeable=False)
        out = np.array(view, order="C")  # a copy: the result owns its memory, in C order
        if st.type.name == _BFLOAT16:
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out.astype(out.dtype.newbyteorder("="), copy=False)
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v, depth + 1)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, depth + 1) for v in obj)
    return obj


def _load_legacy(stream, size):
    if _unpickle(stream) != LEGACY_MAGIC:
        raise WeightsError("not a torch.save file (wrong magic number)")
    protocol = _unpickle(stream)
    if protocol != LEGACY_PROTOCOL:
        raise WeightsError(f"unsupported torch.save protocol {protocol!r}")
    sys_info = _unpickle(stream)
    if not isinstance(sys_info, dict):
        raise WeightsError("malformed system-info record")
    # The storages are little-endian whatever the saving machine was (torch swaps on write), and
    # their element counts are int64 even where sys_info says a C long is 4 bytes (Windows).
    storages = {}
    obj = _unpickle(stream, storages)
    keys = _unpickle(stream)
    if not isinstance(keys, list) or set(keys) != set(storages) or len(keys) != len(storages):
        raise WeightsError("the storage list does not match the storages the object uses")
    for key in keys:
        st = storages[key]
        head = stream.read(8)
        if len(head) < 8:
            raise WeightsError(f"truncated: storage {key} is missing")
        (count,) = struct.unpack("<q", head)
        if count != st.numel:
            raise WeightsError(f"storage {key} holds {count} elements, the object expects {st.numel}")
        nbytes = count * st.type.dtype.itemsize
        if nbytes > size - stream.tell():
            raise WeightsError(f"truncated: storage {key} needs {nbytes} bytes, "
                               f"{max(0, size - stream.tell())} left")
        st.array = np.frombuffer(stream.read(nbytes), dtype=st.type.dtype)
    return obj


def _load_zip(archive):
    names = archive.namelist()
    pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1] or \
        [n for n in names if n == "data.pkl"]
    if len(pickles) != 1:
        raise WeightsError("not a torch.save zip archive (no single */data.pkl)")
    prefix = pickles[0][:-len("data.pkl")]
    order = "little"
    if prefix + "byteorder" in names:
        order = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        if order not in ("little", "big"):
            raise WeightsError(f"unknown byte order {order!r}")
    storages = {}
    obj = _unpickle(io.BytesIO(archive.read(pickles[0])), storages)
    for key, st in storages.items():
        member = f"{prefix}data/{key}"
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise WeightsError(f"storage {member} is missing from the archive") from None
        nbytes = st.numel * st.type.dtype.itemsize
        if info.file_size != nbytes:
            raise WeightsError(f"storage {member} has {info.file_size} bytes, the object expects {nbytes}")
        dtype = st.type.dtype.newbyteorder(">") if order == "big" else st.type.dtype
        st.array = np.frombuffer(archive.read(member), dtype=dtype)
    return obj


def load_bytes(data, name="<bytes>"):
    """Like :func:`load`, from the file's bytes (``name`` is used in error messages)."""
    try:
        if data[:4] == _ZIP_SIGNATURE:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                obj = _load_zip(archive)
        elif data[:1] == b"\x80":
            obj = _load_legacy(io.BytesIO(data), len(data))
        else:
            raise WeightsError("not a torch.save file (neither a zip archive nor a pickle)")
        return _materialise(obj)
    except WeightsError as exc:
        raise WeightsError(f"{name}: {exc.message}", exc.hint) from None
    except (pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise WeightsError(f"{name}: unsafe or corrupt torch file: {exc}") from None
    except (EOFError, struct.error):
        raise WeightsError(f"{name}: truncated torch file") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError,
            RecursionError, UnicodeDecodeError, OverflowError) as exc:
        raise WeightsError(f"{name}: corrupt torch file ({type(exc).__name__}: {exc})") from None


def load(path):
    """The object saved in ``path`` by ``torch.save`` (either layout), tensors as NumPy arrays.

    Raises WeightsError (one line, naming the file) for anything unsafe, truncated or malformed.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return load_bytes(data, str(path))
