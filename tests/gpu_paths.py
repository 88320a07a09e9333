"""The three ways the tests run the layers' GPU code path, and a context manager that selects one.

  gpu       CuPy arrays on a real device (skipped, with the reason, where CuPy or a device is missing)
  emulated  NumPy arrays; each CUDA kernel replaced by its NumPy transcription (bounds and race checks)
  cxx       NumPy arrays; each CUDA kernel's own source compiled as C++ and run thread by thread
            (skipped where no C++ compiler is installed)

Everything but the kernels themselves -- band sizes, buffers, the cuBLAS call arguments (emulated by
``gpu_blas._emulate_gemm`` off the device), caches -- is the same code in all three.
"""
import contextlib

import pytest

from nstyle.backend import emulate_device_kernels

from . import cuda_on_host
from .conftest import BACKENDS

_cxx_reason = None if cuda_on_host.compiler() else "no C++ compiler (g++ or clang++) to run the CUDA source on the host"

GPU_PATHS = [pytest.param("emulated"),
             pytest.param("cxx", marks=pytest.mark.skipif(_cxx_reason is not None, reason=_cxx_reason or "")),
             BACKENDS[1]]  # "gpu", skipped with its reason where no device answers


def helper_backend(path):
    """The backend name the CPU tests' check_* helpers take: their arrays live on the GPU only for 'gpu'."""
    return "gpu" if path == "gpu" else "cpu"


@contextlib.contextmanager
def gpu_path(path):
    if path == "gpu":
        yield  # CuPy arrays take the GPU path by themselves
    elif path == "emulated":
        with emulate_device_kernels():
            yield
    elif path == "cxx":
        with emulate_device_kernels(), cuda_on_host.kernels_as_cxx():
            yield
    else:
        raise ValueError(path)
