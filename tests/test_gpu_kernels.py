"""The pieces under the GPU ops: the cuBLAS call's emulation, the kernels' emulation and its safety
checks, the CUDA source itself (its files, compiled by NVRTC where CuPy and NVRTC are installed), and
the host runner."""
import os

import numpy as np
import pytest

from nstyle.gpu import blas as gpu_blas
from nstyle.gpu import emulation, program
from nstyle.gpu import kernels as gpu_kernels

from . import cuda_on_host
from .conftest import BACKENDS, host, on


def _strided_view(flat, offset, ld, rows, cols):
    """The column-major (rows x cols) matrix with leading dimension ld starting at flat[offset], as NumPy sees it."""
    return np.lib.stride_tricks.as_strided(flat[offset:], shape=(rows, cols),
                                           strides=(flat.itemsize, ld * flat.itemsize))


def check_gemm(backend_name, rng, transa, transb, beta):
    m, n, k = 5, 4, 3
    lda = (m if transa == "N" else k) + 2
    ldb = (k if transb == "N" else n) + 1
    ldc = m + 3
    a = rng.standard_normal(lda * (k if transa == "N" else m) + 7)
    b = rng.standard_normal(ldb * (n if transb == "N" else k) + 2)
    c = rng.standard_normal(ldc * n + 9)
    stored_a = _strided_view(a, 3, lda, *((m, k) if transa == "N" else (k, m)))
    stored_b = _strided_view(b, 1, ldb, *((k, n) if transb == "N" else (n, k)))
    op_a = stored_a if transa == "N" else stored_a.T
    op_b = stored_b if transb == "N" else stored_b.T
    expected = c.copy()
    _strided_view(expected, 5, ldc, m, n)[...] = op_a @ op_b + beta * _strided_view(c, 5, ldc, m, n)
    ca = on(backend_name, c)
    gpu_blas.gemm(transa, transb, m, n, k, on(backend_name, a)[3:], lda, on(backend_name, b)[1:], ldb,
                  ca[5:], ldc, beta=beta)
    np.testing.assert_allclose(host(ca), expected, rtol=1e-12, atol=1e-12,
                               err_msg=f"transa={transa} transb={transb} beta={beta}")


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("transa", ["N", "T"])
@pytest.mark.parametrize("transb", ["N", "T"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gemm_follows_blas_column_major_semantics(backend_name, rng, transa, transb, beta):
    """Elements outside the (m x n) block of C, between its columns and around it, stay untouched."""
    check_gemm(backend_name, rng, transa, transb, beta)


@pytest.mark.parametrize("transa", ["N", "T"])
@pytest.mark.parametrize("transb", ["N", "T"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_matmul_fallback_gemm_agrees_with_the_emulation(rng, transa, transb, beta):
    """The "matmul" mode (strided views + matmul) is written for any xp: check its arguments on NumPy."""
    m, n, k = 4, 6, 5
    lda, ldb, ldc = 9, 8, 7
    a, b = rng.standard_normal(60), rng.standard_normal(60)
    c1 = rng.standard_normal(60)
    c2 = c1.copy()
    gpu_blas._emulate_gemm(transa, transb, m, n, k, a[2:], lda, b[1:], ldb, c1[3:], ldc, beta)
    gpu_blas.strided_gemm(np, transa, transb, m, n, k, a[2:], lda, b[1:], ldb, c2[3:], ldc, beta)
    np.testing.assert_allclose(c2, c1, rtol=1e-12, atol=1e-12)


def test_gemm_mode_switch():
    before = gpu_blas.set_mode("matmul")
    try:
        assert gpu_blas.MODE == "matmul"
        with pytest.raises(ValueError):
            gpu_blas.set_mode("magic")
    finally:
        gpu_blas.set_mode(before)


def test_emulated_gemm_refuses_to_reach_past_a_view(rng):
    c = np.zeros(10)
    with pytest.raises(AssertionError, match="C reaches"):
        gpu_blas.gemm("N", "N", 3, 3, 2, np.ones(6), 3, np.ones(6), 2, c, 4)
    with pytest.raises(ValueError, match="ld"):
        gpu_blas.gemm("N", "N", 3, 3, 2, np.ones(6), 2, np.ones(6), 2, np.zeros(9), 3)


def test_emulated_kernels_catch_out_of_bounds_and_races():
    x = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    cols = np.zeros(9 * 2 * 4, dtype=np.float32)
    grid, block = gpu_kernels.launch_grid(8, 9)
    with pytest.raises(AssertionError, match="outside"):   # a buffer one band too small
        emulation.im2col_band(grid, block, x, cols[:-4], 1, 3, 4, 3, 3, 1, 1, 0, 2, 4)
    mem = emulation.Memory(np.zeros(4))
    mem.store(np.array([0, 1]), 1.0)
    mem.store(np.array([1]), 2.0)
    with pytest.raises(AssertionError, match="same address"):
        mem.check_no_race()


def test_kernel_int_arguments_are_checked():
    with pytest.raises(ValueError, match="32-bit"):
        gpu_kernels.launch_grid(2 ** 31, 1)


def test_every_kernel_instance_has_a_host_launcher_and_an_emulation():
    params = cuda_on_host._kernel_params()
    names = {expr.split("<")[0] for expr in program.name_expressions()}
    assert names == set(params), "a kernel in the source without instances, or the other way round"
    assert all(callable(getattr(emulation, name, None)) for name in names), "a kernel without its emulation"


def test_cuda_source_is_the_package_files():
    """The source compiled (on the device, and by cuda_on_host) is the .cu files, in their stated order."""
    folder = os.path.join(os.path.dirname(program.__file__), "cuda")
    assert sorted(program.SOURCE_FILES) == sorted(f for f in os.listdir(folder) if f.endswith(".cu"))
    texts = []
    for name in program.SOURCE_FILES:
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            texts.append(fh.read())
    assert program.source() == "\n".join(texts)


def _nvrtc_program():
    try:
        import cupy  # noqa: F401 -- NVRTC is reached through CuPy
        from cupy.cuda import compiler
        from cupy_backends.cuda.libs import nvrtc
        nvrtc.getVersion()
    except Exception as exc:  # no CuPy, or no NVRTC library
        pytest.skip(f"NVRTC unavailable: {type(exc).__name__}: {str(exc)[:100]}")
    return compiler


def test_cuda_source_compiles_with_nvrtc_for_hopper():
    """The exact module the device compiles, for sm_90 (H100/H200): catches CUDA-only syntax errors."""
    compiler = _nvrtc_program()
    nvrtc_program = compiler._NVRTCProgram(program.source(), "nstyle_kernels.cu",
                                           name_expressions=program.name_expressions())
    ptx, mapping = nvrtc_program.compile(("-arch=compute_90", "-ftz=true"))  # the options CuPy adds itself
    assert set(mapping) == set(program.name_expressions())
    assert all(mapping.values()) and len(ptx) > 1000


def test_supported_dtypes():
    assert gpu_kernels.supported_dtype(np.float32) and gpu_kernels.supported_dtype(np.float64)
    assert not gpu_kernels.supported_dtype(np.float16)


def test_host_runner_switch_restores_itself_after_errors():
    """kernels_as_cxx sets the host runner for its block only, even when the block raises; NumPy launches
    outside it run the emulation."""
    before = gpu_kernels.set_host_runner(None)
    try:
        with pytest.raises(RuntimeError):
            with cuda_on_host.kernels_as_cxx():
                assert gpu_kernels.set_host_runner(cuda_on_host.run) is cuda_on_host.run
                raise RuntimeError("boom")
        assert gpu_kernels.set_host_runner(None) is None
    finally:
        gpu_kernels.set_host_runner(before)
