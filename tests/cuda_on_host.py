"""Run the GPU kernels' own CUDA source on the CPU, compiled as plain C++.

The kernels in ``nstyle/gpu/cuda/*.cu`` -- read through ``nstyle.gpu.program.source()``, the very text
the device compiles -- use no shared memory, no synchronisation and no atomics, so running their threads
one after another is one valid schedule. A small shim gives C++ the CUDA built-ins they use
(``blockIdx``, ``threadIdx``, ``blockDim``, ``gridDim`` as unsigned ints, ``min``, ``__global__``,
``__device__``); for every template instance an ``extern "C"`` launcher loops over the grid and calls the
kernel once per thread. The launchers' parameter lists are parsed from the kernel source, so a
wrapper that passes arguments in the wrong order or of the wrong kind fails here too.

This complements the NumPy emulations (which check bounds and races): here the exact source that NVRTC
compiles for the GPU -- C integer semantics included -- computes the numbers the tests compare.
"""
import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

from nstyle.gpu import kernels as gpu_kernels
from nstyle.gpu import program

SHIM = r"""
#include <algorithm>
struct nstyle_uint3 { unsigned int x, y, z; };
static nstyle_uint3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
using std::min;
"""

_CTYPES = {"int": ctypes.c_int, "long long": ctypes.c_longlong, "float": ctypes.c_float,
           "double": ctypes.c_double}


def compiler():
    return shutil.which("g++") or shutil.which("clang++")


def _kernel_params():
    """{kernel name: (template parameter names, [(type, name), ...])} parsed from the CUDA source."""
    found = {}
    pattern = re.compile(r"template<([^>]*)>\s*__global__\s+void\s+(\w+)\s*\(([^)]*)\)", re.S)
    for tparams, name, params in pattern.findall(program.source()):
        tnames = [t.split()[-1] for t in tparams.split(",")]
        plist = []
        for p in params.split(","):
            p = " ".join(p.split())
            ptype, pname = p.rsplit(" ", 1)
            plist.append((ptype, pname))
        found[name] = (tnames, plist)
    return found


def _split_instance(expr):
    name, targs = expr.split("<", 1)
    return name, [t.strip() for t in targs.rstrip(">").split(",")]


def _c_identifier(expr):
    return "launch_" + re.sub(r"\W+", "_", expr).strip("_")


def _substitute(ptype, mapping):
    for t, actual in mapping.items():
        ptype = re.sub(rf"\b{t}\b", actual, ptype)
    return ptype


def _build_source():
    params = _kernel_params()
    lines = [SHIM, program.source()]
    signatures = {}
    for expr in program.name_expressions():
        name, targs = _split_instance(expr)
        tnames, plist = params[name]
        mapping = dict(zip(tnames, targs))
        typed = [(_substitute(t, mapping), n) for t, n in plist]
        decl = ", ".join(f"{t} {n}" for t, n in typed)
        call = ", ".join(n for _, n in typed)
        lines.append(f"""
extern "C" void {_c_identifier(expr)}(unsigned gx, unsigned gy, unsigned bx{', ' if decl else ''}{decl}) {{
    gridDim = {{gx, gy, 1}}; blockDim = {{bx, 1, 1}};
    for (unsigned by = 0; by < gy; ++by)
        for (unsigned b = 0; b < gx; ++b)
            for (unsigned t = 0; t < bx; ++t) {{
                blockIdx = {{b, by, 0}}; threadIdx = {{t, 0, 0}};
                {expr}({call});
            }}
}}""")
        signatures[expr] = [t for t, _ in typed]
    return "\n".join(lines), signatures


_library = None


def _load():
    global _library
    if _library is None:
        source, signatures = _build_source()
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        folder = os.path.join(tempfile.gettempdir(), f"nstyle-cuda-on-host-{digest}")
        lib_path = os.path.join(folder, "kernels.so")
        if not os.path.exists(lib_path):
            os.makedirs(folder, exist_ok=True)
            src_path = os.path.join(folder, "kernels.cpp")
            with open(src_path, "w") as fh:
                fh.write(source)
            tmp = lib_path + f".{os.getpid()}.tmp"
            subprocess.run([compiler(), "-O1", "-std=c++14", "-shared", "-fPIC", "-Wall", "-Werror",
                            "-Wno-unused-variable", "-o", tmp, src_path], check=True, capture_output=True, text=True)
            os.replace(tmp, lib_path)
        lib = ctypes.CDLL(lib_path)
        for expr, types in signatures.items():
            fn = getattr(lib, _c_identifier(expr))
            fn.argtypes = [ctypes.c_uint] * 3 + [ctypes.c_void_p if "*" in t else _CTYPES[t] for t in types]
            fn.restype = None
        _library = (lib, signatures)
    return _library


def run(expr, grid, block, args):
    """The host runner (``kernels.set_host_runner``): call the compiled launcher for kernel instance ``expr``."""
    lib, signatures = _load()
    types = signatures[expr]
    if len(types) != len(args):
        raise TypeError(f"{expr} takes {len(types)} arguments, the wrapper passed {len(args)}")
    call = []
    for t, a in zip(types, args):
        if "*" in t:
            if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
                raise TypeError(f"{expr}: a pointer argument needs a contiguous array, got {type(a).__name__}")
            call.append(a.ctypes.data)
        elif t in ("int", "long long"):
            # kernels._launch passes Python ints as int and np.int64 as long long; hold the wrappers
            # to that here, where a mix-up would otherwise go unnoticed (ctypes converts either way).
            wants_long = t == "long long"
            if not isinstance(a, (int, np.integer)) or isinstance(a, np.int64) != wants_long:
                raise TypeError(f"{expr}: a {t} argument got {type(a).__name__} {a!r}")
            call.append(int(a))
        else:
            if not isinstance(a, np.floating) or np.dtype(type(a)).name != {"float": "float32", "double": "float64"}[t]:
                raise TypeError(f"{expr}: a {t} argument got {type(a).__name__}")
            call.append(float(a))
    getattr(lib, _c_identifier(expr))(grid[0], grid[1], block[0], *call)


@contextlib.contextmanager
def kernels_as_cxx():
    """Within this block, NumPy arrays given to the kernel wrappers run the C++-compiled CUDA source."""
    before = gpu_kernels.set_host_runner(run)
    try:
        yield
    finally:
        gpu_kernels.set_host_runner(before)
