"""Array backends: NumPy on the CPU, CuPy on the GPU.

This is the only module that imports CuPy. Code elsewhere asks ``xp = get_xp(x)`` and writes the same
array expressions for both; it splits CPU and GPU code only where the algorithm itself differs.

It also holds the GPU's knobs and gauges: the TF32 switch for float32 matrix products, the memory pool
(what it holds, freeing it) and a device description for benchmarks. (Which code runs is the engine's
choice, not the arrays': the GPU engine, ``nstyle/gpu``, emulates its kernels when given NumPy arrays.)
"""
import numpy as np

from .errors import DeviceError

_cupy = None
_cupy_problem = None

GPU_INSTALL_HINT = ("install the GPU extra on a machine with an NVIDIA GPU: pip install 'nstyle[gpu]' (CUDA 12) "
                    "or 'nstyle[gpu-cuda13]' (CUDA 13)")


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


def cublas_module():
    """CuPy's cuBLAS bindings (``cupy_backends.cuda.libs.cublas``), for the layers' direct GEMM calls."""
    cupy_module()
    from cupy_backends.cuda.libs import cublas  # noqa: PLC0415 -- loads libcublas on first use
    return cublas


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


def synchronize(xp):
    """Wait for queued device work (no-op on the CPU); call before reading a clock."""
    if xp is not np:
        xp.cuda.Device().synchronize()


# ---------------------------------------------------------------------------------------------------
# GPU settings and gauges (all harmless no-ops or None where no GPU is in use).

_tf32 = False


def set_tf32(enabled):
    """Allow (True) or forbid (False, the default) TensorFloat-32 tensor cores in float32 matrix products
    on the GPU: nstyle's cuBLAS calls (the im2col GEMMs and Winograd's strided-batched products,
    ``gpu/blas.py``, whose NumPy emulation rounds the same way) and CuPy's own matmul (Gram matrices).
    TF32 rounds the inputs of each product to 10 mantissa bits instead of float32's 23 and runs on the
    tensor cores of Ampere and newer GPUs. Float64 is never affected. Returns the previous setting.
    ``stylize(tf32=True)`` / ``--tf32`` allow it for one run."""
    global _tf32
    before, _tf32 = _tf32, bool(enabled)
    cp = _load_cupy()
    if cp is not None:
        from cupy._core import _routines_linalg as linalg  # noqa: PLC0415 -- CuPy's switch for its matmul
        try:
            linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if _tf32 else linalg.COMPUTE_TYPE_DEFAULT)
        except Exception:  # pragma: no cover -- a CuPy without this internal switch: our GEMMs still obey
            pass
    return before


def tf32_enabled():
    return _tf32


def gpu_memory_info():
    """Device memory in bytes: ``{"free", "total"}`` from the driver and ``{"pool_used", "pool_held"}``
    from CuPy's memory pool (held = used + cached free blocks). None without a usable GPU."""
    cp = _load_cupy()
    if cp is None:
        return None
    free, total = cp.cuda.runtime.memGetInfo()
    pool = cp.get_default_memory_pool()
    return {"free": int(free), "total": int(total), "pool_used": int(pool.used_bytes()),
            "pool_held": int(pool.total_bytes())}


def free_gpu_memory():
    """Hand the memory pool's cached free blocks back to the driver (arrays still alive are kept).

    CuPy's pool keeps freed blocks so that the next evaluation reuses them without a cudaMalloc; call
    this between runs of different sizes, or before measuring what a run needs from an empty pool."""
    cp = _load_cupy()
    if cp is not None:
        cp.get_default_memory_pool().free_all_blocks()
        cp.get_default_pinned_memory_pool().free_all_blocks()


def gpu_device_info():
    """A description of the current GPU for benchmark reports, or None without a usable GPU."""
    cp = _load_cupy()
    if cp is None:
        return None
    runtime = cp.cuda.runtime
    dev = cp.cuda.Device()
    props = runtime.getDeviceProperties(dev.id)
    name = props.get("name", b"?")
    return {"name": name.decode(errors="replace") if isinstance(name, bytes) else str(name),
            "compute_capability": str(dev.compute_capability),
            "memory_total": int(props.get("totalGlobalMem", 0)),
            "multiprocessors": int(props.get("multiProcessorCount", 0)),
            "cuda_driver_api": int(runtime.driverGetVersion()),
            "cuda_runtime": int(runtime.runtimeGetVersion()),
            "cupy": cp.__version__}
