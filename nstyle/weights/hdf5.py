"""nstyle's HDF5 weights file, and reading any HDF5 weights file (nstyle's or Keras's) defensively.

The file holds one group per convolution (``conv1_1`` ... ``conv5_4``) with ``weight`` (float32,
O x I x 3 x 3, BGR input order) and ``bias`` (float32, O); file attributes record the source, the
source file's SHA-256 and the input convention (Caffe: BGR, 0..255, minus the ImageNet mean).

Reading an untrusted file, nstyle follows no soft or external links (a link loop, or a link to a FIFO,
is refused by name), reads no dataset with external or virtual storage, checks every dataset's declared
shape and type against VGG-19's before reading it (``guard.py``), and decompresses deflated chunks
itself with a cap, since HDF5's own deflate filter keeps growing its buffer for as long as a chunk inflates.
"""
import os
import zlib
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import WeightsError
from ..model.arch import CONV_LAYERS
from . import guard

INPUT_CONVENTION = "caffe: BGR, 0..255, minus mean [103.939, 116.779, 123.68]"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MAX_CHUNKS = 1 << 16  # per dataset; VGG-19's largest layer in chunks of 144 bytes


def write_hdf5(params, path, attrs=None, extra=None):
    """Write ``{"conv1_1": (W, b), ...}`` to ``path`` atomically (temporary file beside it, then rename).

    extra: optional ``{"conv1_1": {"dataset name": array}}`` stored beside weight and bias.
    A failure or Ctrl-C part-way leaves whatever was at ``path`` untouched and no temporary file; an
    OSError (disk full, read-only folder) names ``path``, not the temporary file.
    """
    import h5py  # noqa: PLC0415

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            if "input_convention" not in f.attrs:
                f.attrs["input_convention"] = INPUT_CONVENTION
            for name in CONV_LAYERS:
                if name not in params:
                    continue
                w, b = params[name]
                g = f.create_group(name)
                g.create_dataset("weight", data=np.asarray(w, dtype=np.float32))
                g.create_dataset("bias", data=np.asarray(b, dtype=np.float32))
                for key, value in ((extra or {}).get(name) or {}).items():
                    g.create_dataset(key, data=value)
    except (OSError, RuntimeError) as exc:  # (h5py raises RuntimeError when closing a file it could not extend)
        raise _write_error(exc, path) from None
    return path


def _write_error(exc, path):
    """The same failure as an OSError naming the real target, not the temporary file; h5py folds the
    errno into its text (``errno = 28``)."""
    code = getattr(exc, "errno", None)
    if code is None:
        text = str(exc)
        marker = "errno = "
        if marker in text:
            digits = text.split(marker, 1)[1].split(",")[0].strip()
            code = int(digits) if digits.isdigit() else None
    reason = os.strerror(code) if code else guard.one_line(exc)
    return OSError(code, f"cannot write {path}: {reason}")


def _open(fh):
    import h5py  # noqa: PLC0415
    return h5py.File(fh, "r")


def child(group, key, name):
    """``group[key]`` if it is reached through a hard link; None if absent; soft/external: WeightsError."""
    import h5py  # noqa: PLC0415

    link = group.get(key, getlink=True)
    if link is None:
        return None
    if not isinstance(link, h5py.HardLink):
        kind = "an external link" if isinstance(link, h5py.ExternalLink) else "a soft link"
        raise WeightsError(f"{name}: {group.name.rstrip('/')}/{key} is {kind}; nstyle follows no links "
                           "in a weights file")
    return group[key]


def hard_items(group, name, limit=64):
    """(key, object) for the members of ``group`` reached through hard links (at most ``limit``)."""
    keys = list(group.keys())
    if len(keys) > limit:
        raise WeightsError(f"{name}: {group.name} has {len(keys)} members; expected a handful")
    return [(key, child(group, key, name)) for key in keys]


def read_dataset(ds, want, name, budget, exact=True, dtype=np.float32):
    """A dataset's values as ``dtype``, after checking its type, declared shape and storage."""
    import h5py  # noqa: PLC0415

    where = ds.name
    if not isinstance(ds, h5py.Dataset):
        raise WeightsError(f"{name}: {where} is not a dataset")
    if ds.dtype.kind != "f" or ds.dtype.itemsize not in (2, 4, 8):
        raise WeightsError(f"{name}: {where} holds {ds.dtype}; expected float16/32/64 numbers")
    guard.check_shape(ds.shape, want, name, where, exact)
    plist = ds.id.get_create_plist()
    layout = plist.get_layout()
    if plist.get_external_count() or layout not in (h5py.h5d.COMPACT, h5py.h5d.CONTIGUOUS, h5py.h5d.CHUNKED):
        raise WeightsError(f"{name}: {where} keeps its data outside the file; nstyle reads only data inside it")
    budget.take(ds.size * ds.dtype.itemsize, where)
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    if layout == h5py.h5d.CHUNKED:
        grid = int(np.prod([-(-n // c) for n, c in zip(ds.shape, ds.chunks)], dtype=object))
        if grid > _MAX_CHUNKS:
            raise WeightsError(f"{name}: {where} is split into {grid} chunks; at most {_MAX_CHUNKS} allowed")
    unknown = set(filters) - {h5py.h5z.FILTER_DEFLATE, h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32}
    if unknown:
        raise WeightsError(f"{name}: {where} uses HDF5 filter(s) {sorted(unknown)}; nstyle reads only "
                           "uncompressed, shuffled or deflate-compressed data")
    if h5py.h5z.FILTER_DEFLATE in filters:
        values = _read_deflated(ds, filters, name, where)
    else:  # no filter can grow the data: HDF5 reads at most the declared size
        values = np.empty(ds.shape, ds.dtype)
        if ds.size:
            ds.read_direct(values)
    return values.astype(dtype, copy=False)


def _read_deflated(ds, filters, name, where):
    """Decode each chunk here with a capped inflate (shuffle undone, Fletcher-32 trailer dropped)."""
    import h5py  # noqa: PLC0415

    itemsize, chunks = ds.dtype.itemsize, ds.chunks
    chunk_bytes = int(np.prod(chunks)) * itemsize
    out = np.full(ds.shape, ds.fillvalue, ds.dtype)
    infos = []
    if hasattr(ds.id, "chunk_iter"):
        ds.id.chunk_iter(infos.append)
    else:
        infos = [ds.id.get_chunk_info(i) for i in range(ds.id.get_num_chunks())]
    for info in infos:
        if info.size > chunk_bytes + chunk_bytes // 64 + 1024:
            raise WeightsError(f"{name}: {where} stores a chunk of {info.size} bytes for {chunk_bytes} of data")
        mask, data = ds.id.read_direct_chunk(info.chunk_offset)
        for i in reversed(range(len(filters))):
            if mask & (1 << i):
                continue  # this filter was skipped for this chunk
            if filters[i] == h5py.h5z.FILTER_FLETCHER32:
                data = data[:-4]
            elif filters[i] == h5py.h5z.FILTER_DEFLATE:
                inflate = zlib.decompressobj()
                data = inflate.decompress(data, chunk_bytes + 1)
                if len(data) > chunk_bytes or inflate.unconsumed_tail or not inflate.eof:
                    raise WeightsError(f"{name}: {where} has a chunk that does not inflate to its "
                                       f"{chunk_bytes} bytes")
            else:  # shuffle: byte k of every element was stored together
                data = np.frombuffer(data, np.uint8).reshape(itemsize, -1).T.tobytes()
        if len(data) != chunk_bytes:
            raise WeightsError(f"{name}: {where} has a chunk of {len(data)} bytes; expected {chunk_bytes}")
        block = np.frombuffer(data, ds.dtype).reshape(chunks)
        start = info.chunk_offset
        if any(s % c or s >= n for s, c, n in zip(start, chunks, ds.shape)):
            raise WeightsError(f"{name}: {where} has a chunk at {start}, outside the dataset")
        region = tuple(slice(s, min(s + c, n)) for s, c, n in zip(start, chunks, ds.shape))
        out[region] = block[tuple(slice(0, r.stop - r.start) for r in region)]
    return out


def read_attrs(obj, name):
    """The attributes of ``obj`` as a dict (bytes decoded), refusing more than ``MAX_ATTR_BYTES`` in all."""
    attrs, total = {}, 0
    for key in list(obj.attrs.keys())[:256]:
        aid = obj.attrs.get_id(key)
        declared = int(np.prod(aid.shape or (), dtype=object)) * max(aid.dtype.itemsize, 1)
        total += max(aid.get_storage_size(), declared)
        if total > guard.MAX_ATTR_BYTES:
            raise WeightsError(f"{name}: its attributes exceed {guard.megabytes(guard.MAX_ATTR_BYTES)}")
        value = obj.attrs[key]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        attrs[key] = value
    return attrs


def is_nstyle_hdf5(path):
    """True if ``path`` is an HDF5 file in nstyle's layout (a ``conv1_1`` group at the top); never raises
    for a damaged or hostile file (reading it then says what is wrong)."""
    try:
        fh, _size = guard.open_regular(path)
        with fh:
            if fh.read(8) != HDF5_SIGNATURE:
                return False
            fh.seek(0)
            with _open(fh) as f:
                link = f.get("conv1_1", getlink=True)
                return link is not None
    except (WeightsError, *guard.LIBRARY_ERRORS, MemoryError):
        return False


def read_hdf5(path, require_all=True, exact=True):
    """Read nstyle's HDF5 weights file; returns (params, attrs). Wrong names or shapes -> WeightsError.

    require_all: all 16 layers must be present (else a prefix is returned). exact: with require_all,
    the shapes must be VGG-19's (tests use narrower networks with exact=False). Every problem, however
    the file is damaged, is one WeightsError naming it.
    """
    path = Path(path)
    name = str(path)
    with guard.reading(name, "HDF5 weights file"):
        fh, _size = guard.open_regular(path)
        with fh:
            if fh.read(8) != HDF5_SIGNATURE:
                raise WeightsError(f"{name}: not an HDF5 file")
            fh.seek(0)
            with _open(fh) as f:
                return read_nstyle_layout(f, name, require_all, exact)


def read_nstyle_layout(f, name, require_all=True, exact=True):
    """(params, attrs) from an open h5py.File in nstyle's layout (see :func:`read_hdf5`)."""
    attrs = read_attrs(f, name)
    budget, params = guard.Budget(), {}
    exact = exact and require_all
    for conv in CONV_LAYERS:
        group = child(f, conv, name)
        if group is None:
            if require_all:
                raise WeightsError(f"{name}: layer {conv} is missing")
            break
        if not hasattr(group, "keys"):
            raise WeightsError(f"{name}: {conv} is not a group")
        parts = []
        for part in ("weight", "bias"):
            ds = child(group, part, name)
            if ds is None:
                raise WeightsError(f"{name}: {conv}/{part} is missing")
            parts.append(read_dataset(ds, guard.expected_shape(conv, part), name, budget, exact))
        params[conv] = tuple(parts)
    if require_all:
        params = guard.check_params(params, name, exact)
    return params, attrs


def read_normalization(path):
    """A normalised file's per-filter scales ``{conv: (O,) float64}`` (``<conv>/normalization_scale``,
    written by ``nstyle weights normalize``), or None for a file without them -- a plain nstyle file, or
    another format. Read as defensively as the weights; a damaged file is one WeightsError naming it."""
    name = str(path)
    with guard.reading(name, "HDF5 weights file"):
        fh, _size = guard.open_regular(path)
        with fh:
            if fh.read(8) != HDF5_SIGNATURE:
                return None
            fh.seek(0)
            with _open(fh) as f:
                budget, scales = guard.Budget(), {}
                for conv in CONV_LAYERS:
                    group = child(f, conv, name)
                    ds = child(group, "normalization_scale", name) if hasattr(group, "keys") else None
                    if ds is not None:
                        scales[conv] = read_dataset(ds, guard.expected_shape(conv, "bias"), name, budget,
                                                    exact=False, dtype=np.float64)
    return scales or None
