"""The three ways the tests run the GPU engine and its ops, and a context manager that selects one.

  emulated  NumPy arrays: each CUDA kernel runs as its NumPy transcription (``nstyle/gpu/emulation.py``,
            bounds and race checks), which the GPU ops do by themselves for NumPy arrays
  cxx       NumPy arrays; each CUDA kernel's own source compiled as C++ and run thread by thread
            (``cuda_on_host.kernels_as_cxx``; skipped where no C++ compiler is installed)
  gpu       CuPy arrays on a real device (skipped, with the reason, where CuPy or a device is missing)

Everything but the kernels themselves -- band sizes, buffers, the cuBLAS call arguments (emulated by
``nstyle.gpu.blas._emulate_gemm`` off the device), caches -- is the same code in all three. Which ops
run is chosen by calling the GPU ops (``nstyle.gpu.conv.conv2d_forward_gpu``, ...) or the GPU engine
(``VGG19(..., engine="gpu")``); the path only says where their kernels run.
"""
import contextlib

import pytest

from . import cuda_on_host
from .conftest import BACKENDS

_cxx_reason = None if cuda_on_host.compiler() else "no C++ compiler (g++ or clang++) to run the CUDA source on the host"

GPU_PATHS = [pytest.param("emulated"),
             pytest.param("cxx", marks=pytest.mark.skipif(_cxx_reason is not None, reason=_cxx_reason or "")),
             BACKENDS[1]]  # "gpu", skipped with its reason where no device answers


def helper_backend(path):
    """Where a path's arrays live ("gpu" or "cpu"), as conftest.on/xp_of take it."""
    return "gpu" if path == "gpu" else "cpu"


@contextlib.contextmanager
def gpu_path(path):
    """The block's GPU kernels run on ``path``: nothing to do for "gpu" (CuPy arrays) and "emulated"
    (NumPy arrays); the kernels compiled as C++ for "cxx"."""
    if path in ("gpu", "emulated"):
        yield
    elif path == "cxx":
        with cuda_on_host.kernels_as_cxx():
            yield
    else:
        raise ValueError(path)
