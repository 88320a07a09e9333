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

Nothing is read whole: the pickles are capped at ``guard.MAX_PICKLE_BYTES`` and their opcodes walked
before unpickling (an opcode declaring a huge string is refused before anything is allocated), a tensor's bytes are read only when asked for (:class:`TorchFile`),
every read is charged to a byte budget (a pickle naming one storage thousands of times stops there), and
zip members are read only if stored or deflated, unencrypted, with the size the object declares.

``load(path)`` returns the saved object with each tensor as a NumPy array (``nn.Parameter`` too).
"""
import collections
import io
import pickle
import pickletools
import struct
import zipfile

import numpy as np

from ..errors import WeightsError
from . import guard

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
    """One storage: its dtype and element count; ``where`` (set once the pickle is read) says where its
    bytes lie (a zip member, or an offset in the legacy stream). Its bytes are read only on demand."""

    __slots__ = ("type", "numel", "where")

    def __init__(self, storage_type, numel):
        self.type, self.numel, self.where = storage_type, numel, None

    def __setstate__(self, state):
        raise pickle.UnpicklingError("a storage cannot carry state")


class TensorRef:
    """A tensor not read yet: its storage, offset, size (its shape) and stride, all checked."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state):
        raise pickle.UnpicklingError("a tensor cannot carry extra state here")

    @property
    def shape(self):
        return self.size

    @property
    def ndim(self):
        return len(self.size)

    @property
    def dtype(self):
        """The dtype it will be read as (bfloat16 becomes float32)."""
        return np.dtype(np.float32) if self.storage.type.name == _BFLOAT16 else self.storage.type.dtype


_TensorRef = TensorRef  # (the old private name)


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
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    """Our ``torch._utils._rebuild_parameter``: a parameter is just its data here."""
    if not isinstance(data, TensorRef):
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



def _unpickle(buf, storages=None, what="the pickled object", cut=False):
    """The next pickle in the in-memory stream ``buf``. Its opcodes are walked first (pickletools), so a
    declared length longer than what is there -- a BINBYTES8 claiming a terabyte, which the C unpickler
    would allocate before reading -- is refused without allocating. cut: ``buf`` holds only the first
    ``MAX_PICKLE_BYTES`` of the file, so running out means the pickle is too large."""
    start = buf.tell()
    try:
        for _ in pickletools.genops(buf):
            pass
    except ValueError as exc:
        if cut and buf.tell() >= len(buf.getbuffer()) - 16:
            raise WeightsError(f"{what} is larger than {guard.megabytes(guard.MAX_PICKLE_BYTES)}; a VGG-19 "
                               "file's is a few KB") from None
        raise WeightsError(f"{what} is truncated or malformed ({guard.one_line(exc)})") from None
    end = buf.tell()
    buf.seek(start)
    obj = _SafeUnpickler(guard.CappedReader(buf, end - start, what), storages).load()
    buf.seek(end)
    return obj


class TorchFile:
    """A ``torch.save`` file opened for reading: ``obj`` is the saved object with each tensor as a
    :class:`TensorRef`; :meth:`array` reads one tensor's bytes, charging them to ``budget``.

    Only the pickle (at most ``guard.MAX_PICKLE_BYTES``) is read on opening; a tensor's bytes are read
    when asked for, so tensors nobody asks for (a classifier, say) are never read. ``fh`` must stay open
    and seekable while arrays are read.
    """

    def __init__(self, fh, size, budget=None):
        self.fh, self.size = fh, size
        self.budget = budget if budget is not None else guard.Budget()
        self.archive, self.big_endian = None, False
        head = fh.read(4)
        fh.seek(0)
        if head == _ZIP_SIGNATURE:
            self.obj = self._open_zip()
        elif head[:1] == b"\x80":
            self.obj = self._open_legacy()
        else:
            raise WeightsError("not a torch.save file (neither a zip archive nor a pickle)")

    def _open_legacy(self):
        # The five pickles come first; together they must fit in the first MAX_PICKLE_BYTES.
        cut = self.size > guard.MAX_PICKLE_BYTES
        buf = io.BytesIO(self.fh.read(guard.MAX_PICKLE_BYTES))
        if _unpickle(buf, what="the magic number", cut=cut) != LEGACY_MAGIC:
            raise WeightsError("not a torch.save file (wrong magic number)")
        protocol = _unpickle(buf, what="the protocol version", cut=cut)
        if protocol != LEGACY_PROTOCOL:
            raise WeightsError(f"unsupported torch.save protocol {protocol!r}")
        if not isinstance(_unpickle(buf, what="the system-info record", cut=cut), dict):
            raise WeightsError("malformed system-info record")
        # The storages are little-endian whatever the saving machine was (torch swaps on write), and
        # their element counts are int64 even where sys_info says a C long is 4 bytes (Windows).
        storages = {}
        obj = _unpickle(buf, storages, cut=cut)
        keys = _unpickle(buf, what="the storage list", cut=cut)
        if not isinstance(keys, list) or set(keys) != set(storages) or len(keys) != len(storages):
            raise WeightsError("the storage list does not match the storages the object uses")
        pos = buf.tell()
        for key in keys:  # each storage: int64 element count, then its bytes; skipped over, not read
            st = storages[key]
            self.fh.seek(pos)
            (count,) = struct.unpack("<q", guard.read_all(self.fh, 8, f"storage {key}'s header"))
            if count != st.numel:
                raise WeightsError(f"storage {key} holds {count} elements, the object expects {st.numel}")
            nbytes = count * st.type.dtype.itemsize
            if nbytes > self.size - pos - 8:
                raise WeightsError(f"truncated: storage {key} needs {nbytes} bytes, "
                                   f"{max(0, self.size - pos - 8)} left")
            st.where, pos = pos + 8, pos + 8 + nbytes
        return obj

    def _open_zip(self):
        guard.check_zip_directory(self.fh, self.size)
        self.archive = archive = zipfile.ZipFile(self.fh)
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1] or \
            [n for n in names if n == "data.pkl"]
        if len(pickles) != 1:
            raise WeightsError("not a torch.save zip archive (no single */data.pkl)")
        prefix = pickles[0][:-len("data.pkl")]
        if prefix + "byteorder" in names:
            info = guard.zip_member(archive, prefix + "byteorder", 16)
            order = guard.read_member(archive, info).decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise WeightsError(f"unknown byte order {order!r}")
            self.big_endian = order == "big"
        info = guard.zip_member(archive, pickles[0], guard.MAX_PICKLE_BYTES, "the pickled object")
        storages = {}
        obj = _unpickle(io.BytesIO(guard.read_member(archive, info)), storages)
        for key, st in storages.items():
            member = f"{prefix}data/{key}"
            info = guard.zip_member(archive, member, 1 << 62, f"storage {member}")
            nbytes = st.numel * st.type.dtype.itemsize
            if info.file_size != nbytes:
                raise WeightsError(f"storage {member} has {info.file_size} bytes, the object expects {nbytes}")
            st.where = info
        return obj

    def array(self, ref, what="a tensor"):
        """The tensor's values as a new C-ordered NumPy array (native byte order)."""
        st = ref.storage
        if st.where is None:
            raise WeightsError("a tensor's storage is missing from the file")
        itemsize = st.type.dtype.itemsize
        count = int(np.prod(ref.size, dtype=object))
        if count == 0:
            return np.zeros(ref.size, ref.dtype)
        span = 1 + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))  # checked inside the storage
        self.budget.take(max(span, count) * itemsize, what)
        start, nbytes = ref.offset * itemsize, span * itemsize
        if self.archive is not None:
            data = guard.read_member(self.archive, st.where, start, nbytes)
        else:
            self.fh.seek(st.where + start)
            data = guard.read_all(self.fh, nbytes, what)
        dtype = st.type.dtype.newbyteorder(">") if self.big_endian else st.type.dtype
        view = np.lib.stride_tricks.as_strided(np.frombuffer(data, dtype=dtype), shape=ref.size,
                                               strides=tuple(s * itemsize for s in ref.stride), writeable=False)
        out = np.array(view, order="C")  # a copy: the result owns its memory, in C order
        if st.type.name == _BFLOAT16:
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out.astype(out.dtype.newbyteorder("="), copy=False)

    def materialise(self, obj, depth=0):
        """``obj`` with every TensorRef in dicts, lists and tuples replaced by its array."""
        if depth > _MAX_DEPTH:
            raise WeightsError("nested too deeply")
        if isinstance(obj, TensorRef):
            return self.array(obj)
        if isinstance(obj, dict):
            return type(obj)((k, self.materialise(v, depth + 1)) for k, v in obj.items())
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.materialise(v, depth + 1) for v in obj)
        return obj


def load_bytes(data, name="<bytes>"):
    """Like :func:`load`, from the file's bytes (``name`` is used in error messages)."""
    with guard.reading(name, "torch file"):
        tf = TorchFile(io.BytesIO(data), len(data))
        return tf.materialise(tf.obj)


def load(path):
    """The object saved in ``path`` by ``torch.save`` (either layout), tensors as NumPy arrays.

    Raises WeightsError (one line, naming the file) for anything unsafe, truncated, malformed, or asking
    for more than ``guard.MAX_READ_BYTES`` of tensor data in all.
    """
    name = str(path)
    with guard.reading(name, "torch file"):
        fh, size = guard.open_regular(path)
        with fh:
            tf = TorchFile(fh, size)
            return tf.materialise(tf.obj)
