"""Array backends: NumPy on the CPU, CuPy on the GPU.

This is the only module that imports CuPy. Code elsewhere asks ``xp = get_xp(x)`` and writes the same
array expressions for both; it splits CPU and GPU code only where the algorithm itself differs.
"""
import numpy as np

from .errors import DeviceError

_cupy = None
_cupy_problem = None

GPU_INSTALL_HINT = "install the GPU extra: pip install 'nstyle[gpu]' (CuPy for CUDA 12/13), on a machine with an NVIDIA GPU"


def _load_cupy():
    """Import CuPy once and check that a device answers; remember why not otherwise."""
    global _cupy, _cupy_problem
    if _cupy is not None or _cupy_problem is not None:
        return _cupy
    try:
        import cupy  # noqa: PLC0415 -- optional dependency, imported on first use only
    except Exception as exc:  # ImportError, or a broken CUDA install raising something else
        _cupy_problem = f"CuPy is not installed ({type(exc).__name__}: {exc})"
        return None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        _cupy_problem = f"CuPy is installed but no CUDA device answers ({exc})"
        return None
    if count < 1:
        _cupy_problem = "CuPy is installed but no CUDA device is present"
        return None
    _cupy = cupy
    return cupy


def gpu_available():
    """True when CuPy imports and at least one CUDA device answers."""
    return _load_cupy() is not None


def gpu_problem():
    """Why the GPU cannot be used (a sentence), or None when it can."""
    _load_cupy()
    return _cupy_problem


def cupy_module():
    """The CuPy module; raises DeviceError with the reason when it cannot be used."""
    cp = _load_cupy()
    if cp is None:
        raise DeviceError(f"GPU requested but {_cupy_problem}", hint=GPU_INSTALL_HINT)
    return cp


def is_gpu_array(a):
    # Checking the type's module avoids importing CuPy just to look at a NumPy array.
    return type(a).__module__.split(".")[0] == "cupy"


def get_xp(*arrays):
    """The array module (numpy or cupy) that owns the given arrays."""
    for a in arrays:
        if is_gpu_array(a):
            return cupy_module()
    return np


def resolve_device(device, announce=None):
    """Turn 'auto', 'cpu' or 'gpu' into 'cpu' or 'gpu'.

    'gpu' without CuPy or a device raises DeviceError; 'auto' falls back to the CPU and, when
    ``announce`` is given, calls it once with a sentence saying so.
    """
    if device in (None, "cpu"):
        return "cpu"
    if device in ("gpu", "cuda"):
        cupy_module()
        return "gpu"
    if device == "auto":
        if gpu_available():
            return "gpu"
        if announce is not None:
            announce(f"no usable GPU ({_cupy_problem}); running on the CPU")
        return "cpu"
    raise DeviceError(f"unknown device {device!r}; choose auto, cpu or gpu")


def to_device(a, device):
    """Copy (or pass through) an array to 'cpu' or 'gpu'."""
    if device == "gpu":
        cp = cupy_module()
        return cp.asarray(a)
    return to_host(a)


def to_host(a):
    """A NumPy array holding the same values (a no-op for NumPy input)."""
    if is_gpu_array(a):
        return a.get()
    return np.asarray(a)


def device_of(a):
    return "gpu" if is_gpu_array(a) else "cpu"


def synchronize(xp):
    """Wait for queued device work (no-op on the CPU); call before reading a clock."""
    if xp is not np:
        xp.cuda.Device().synchronize()
