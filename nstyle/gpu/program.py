"""The CUDA program of the GPU engine: its source files, its template instances, its compilation.

The kernels live as CUDA source in ``cuda/*.cu`` beside this module (shipped as package data), read at run
time and compiled together as one CuPy ``RawModule`` -- templated on the float type, so float64 gradient
checks run on the device too:

  im2col.cu    im2col_band (a band of output rows' receptive fields -> a column matrix) and col2im_band,
               its adjoint, written as a gather: each input pixel sums the taps that read it
  pool.cu      avg_pool_fwd / avg_pool_bwd, max_pool_fwd / max_pool_bwd   (the backwards are gathers too)
  relu.cu      relu_fwd: rectify and record the mask (1 byte per element) in one pass, in place or not
  winograd.cu  winograd_input_f2 / winograd_output_f2: the tile transforms of Winograd F(2x2, 3x3)

Every kernel is a gather -- one thread per output element, reading whatever it needs -- so no kernel
needs atomics and the results do not depend on thread scheduling. ``kernels.py`` launches them (and
sends NumPy arrays to ``emulation.py`` instead); ``tests/cuda_on_host.py`` compiles this same source as
C++ on the host.
"""
from importlib import resources

import numpy as np

from ..backend import cupy_module

# Compiled in this order, as one translation unit.
SOURCE_FILES = ("im2col.cu", "pool.cu", "relu.cu", "winograd.cu")

# The kernels' template arguments: float type T, and for max pooling the winner's index type I.
FLOATS = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
INDICES = {np.dtype(np.uint8): "unsigned char", np.dtype(np.int32): "int"}

# Positions within a plane or band are CUDA ints: 32 bits.
INT_MAX = 2 ** 31 - 1

_source = None


def source():
    """The whole CUDA source: the files of ``SOURCE_FILES``, read from the package, concatenated."""
    global _source
    if _source is None:
        folder = resources.files(__package__) / "cuda"
        _source = "\n".join((folder / name).read_text(encoding="utf-8") for name in SOURCE_FILES)
    return _source


def name_expressions():
    """Every template instance the engine launches, e.g. ``im2col_band<float>``."""
    names = []
    for t in FLOATS.values():
        names += [f"im2col_band<{t}>", f"col2im_band<{t}>", f"avg_pool_fwd<{t}>", f"avg_pool_bwd<{t}>",
                  f"relu_fwd<{t}>", f"winograd_input_f2<{t}>", f"winograd_output_f2<{t}>"]
        for i in INDICES.values():
            names += [f"max_pool_fwd<{t}, {i}>", f"max_pool_bwd<{t}, {i}>"]
    return tuple(names)


_module = None


def function(name):
    """The compiled kernel ``name`` (a template instance), compiling the module on first use."""
    global _module
    if _module is None:
        # No -std option: the source is plain C++11, and NVRTC's default dialect (C++17) accepts it.
        _module = cupy_module().RawModule(code=source(), name_expressions=name_expressions())
    return _module.get_function(name)


def compile_all():
    """Compile every kernel now (the first call takes a second or two; later processes hit CuPy's cache)."""
    for name in name_expressions():
        function(name)
