"""The smoke test bench/gpu_check.py runs in a child process before anything else on the device.

One line ``SMOKE {json}`` per step, printed as soon as the step ends, so a step that crashes the process
(an illegal address kills the CUDA context) still leaves the earlier steps' evidence. The order puts the
riskiest calls last: the kernels alone, convolution through the cupy.matmul GEMM, the direct cuBLAS GEMMs
alone (plain and strided-batched, TF32 too), then convolution through them. The parent picks the GEMM
mode for the run from the results.

    python bench/gpu_smoke.py [--dry-run]
"""
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from nstyle import backend  # noqa: E402
from nstyle.gpu import blas as gpu_blas  # noqa: E402
from nstyle.gpu import conv as conv_gpu
from nstyle.gpu import kernels as gpu_kernels
from nstyle.gpu.conv import conv2d_backward_gpu, conv2d_forward_gpu  # noqa: E402
from nstyle.gpu.pool import (  # noqa: E402
    avg_pool2d_backward_gpu,
    avg_pool2d_forward_gpu,
    max_pool2d_backward_gpu,
    max_pool2d_forward_gpu,
)
from nstyle.gpu.relu import relu_forward_gpu  # noqa: E402
from nstyle.model.gradcheck import rel_error  # noqa: E402
from nstyle.reference import (  # noqa: E402
    avg_pool2d_backward,
    avg_pool2d_forward,
    conv2d_backward,
    conv2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)


def smoke_child(dry):
    """Run every step, printing one SMOKE line each (see the module docstring). A step that raises is
    reported as failed with its exception and the next step still runs. The GPU ops run on CuPy arrays
    (dry: on NumPy arrays, their kernels emulated); the references are the reference ops on NumPy."""
    def report(step, ok, **extra):
        print("SMOKE " + json.dumps({"step": step, "ok": bool(ok), **extra}, default=str), flush=True)

    def step(name, fn):
        try:
            ok, extra = fn()
            report(name, ok, **extra)
        except Exception as exc:
            report(name, False, exception=f"{type(exc).__name__}: {str(exc)[:500]}")

    xp = np if dry else backend.cupy_module()
    rng = np.random.default_rng(1)
    dev = (lambda a: a) if dry else xp.asarray

    def compile_kernels():
        t0 = time.perf_counter()
        if not dry:
            gpu_kernels.compile_all()
        return True, {"seconds": round(time.perf_counter() - t0, 2)}

    def kernels(dtype, tol):
        x = rng.standard_normal((2, 3, 9, 11)).astype(dtype)
        errs = {}
        out, _ = relu_forward_gpu(dev(x))
        errs["relu"] = rel_error(backend.to_host(out), np.maximum(x, 0))
        for name, fwd, bwd, ref_fwd, ref_bwd in (
                ("avg", avg_pool2d_forward_gpu, avg_pool2d_backward_gpu, avg_pool2d_forward, avg_pool2d_backward),
                ("max", max_pool2d_forward_gpu, max_pool2d_backward_gpu, max_pool2d_forward, max_pool2d_backward)):
            out, cache = fwd(dev(x), 2, 2)
            ref, ref_cache = ref_fwd(x, 2, 2)
            ref_dx = ref_bwd(np.ones_like(ref), ref_cache)
            errs[f"{name}_pool"] = max(rel_error(backend.to_host(out), ref),
                                       rel_error(backend.to_host(bwd(dev(np.ones_like(ref)), cache)), ref_dx))
        return all(e < tol for e in errs.values()), {"errors": errs}

    def conv(lowering, gemm_mode, dtype=np.float32, tol=1e-5):
        x = rng.standard_normal((2, 5, 10, 12)).astype(dtype)
        w = rng.standard_normal((7, 5, 3, 3)).astype(dtype)
        b = rng.standard_normal(7).astype(dtype)
        ref, ref_cache = conv2d_forward(*(a.astype(np.float64) for a in (x, w, b)), 1, 1)
        dout = rng.standard_normal(ref.shape)
        refs = conv2d_backward(dout, ref_cache, weight_grads=True)
        before_mode, before_lowering = gpu_blas.set_mode(gemm_mode), conv_gpu.set_lowering(lowering)
        try:
            out, cache = conv2d_forward_gpu(dev(x), dev(w), dev(b), 1, 1)
            grads = conv2d_backward_gpu(dev(dout.astype(dtype)), cache, weight_grads=True)
        finally:
            gpu_blas.set_mode(before_mode)
            conv_gpu.set_lowering(before_lowering)
        err = max([rel_error(backend.to_host(out), ref)] +
                  [rel_error(backend.to_host(g), r) for g, r in zip(grads, refs)])
        return err < tol, {"error": err}

    def gemm_batched_cublas():
        """The strided-batched call (Winograd's products) on the device against float64, TF32 off and on."""
        errs = {}
        before, tf32 = gpu_blas.set_mode("cublas"), backend.set_tf32(False)
        try:
            cases = ((np.float32, False, 1e-5), (np.float64, False, 1e-12), (np.float32, True, 5e-3))
            for dtype, tf32_on, tol in cases:
                backend.set_tf32(tf32_on)
                errs[f"{np.dtype(dtype).name}{'_tf32' if tf32_on else ''}"] = err = _batched_check(dev, rng, dtype)
                if err >= tol:
                    return False, {"errors": errs}
        finally:
            gpu_blas.set_mode(before)
            backend.set_tf32(tf32)
        return True, {"errors": errs}

    def gemm_cublas():
        errs = {}
        before = gpu_blas.set_mode("cublas")
        try:
            for transa in "NT":
                for transb in "NT":
                    for dtype in (np.float32, np.float64):
                        errs[f"{transa}{transb}_{np.dtype(dtype).name}"] = _gemm_check(dev, rng, transa, transb, dtype)
        finally:
            gpu_blas.set_mode(before)
        return all(e < 1e-5 for e in errs.values()), {"errors": errs}

    step("compile", compile_kernels)
    step("kernels_float32", lambda: kernels(np.float32, 1e-5))
    step("kernels_float64", lambda: kernels(np.float64, 1e-12))
    # the GEMM through cupy.matmul first: it relies on CuPy's public API only
    step("conv_matmul", lambda: conv("im2col", "matmul"))
    step("conv_winograd", lambda: conv("winograd", "matmul"))
    # the direct cuBLAS call last: if it brings the process down, the steps above have reported
    step("gemm_cublas", gemm_cublas)
    step("gemm_batched_cublas", gemm_batched_cublas)
    step("conv_cublas", lambda: conv("im2col", "cublas"))
    step("conv_winograd_cublas", lambda: conv("winograd", "cublas"))
    if not dry:
        xp.cuda.Device().synchronize()
    report("done", True)


def _gemm_check(dev, rng, transa, transb, dtype):
    """One product on sub-matrices with padded leading dimensions and offsets, beta = 1, vs the emulation."""
    m, n, k = 37, 29, 23
    lda, ldb, ldc = (m if transa == "N" else k) + 3, (k if transb == "N" else n) + 5, m + 7
    a = rng.standard_normal(lda * max(m, k) + 11).astype(dtype)
    b = rng.standard_normal(ldb * max(n, k) + 13).astype(dtype)
    c = rng.standard_normal(ldc * n + 17).astype(dtype)
    expected = c.copy()
    gpu_blas._emulate_gemm(transa, transb, m, n, k, a[2:], lda, b[4:], ldb, expected[6:], ldc, 1.0)
    got = dev(c.copy())
    gpu_blas.gemm(transa, transb, m, n, k, dev(a)[2:], lda, dev(b)[4:], ldb, got[6:], ldc, beta=1.0)
    return rel_error(backend.to_host(got), expected)


def _batched_check(dev, rng, dtype):
    """Three products in one strided-batched call (padded leading dimensions and strides) vs float64."""
    m, n, k, batch = 37, 29, 23, 3
    lda, ldb, ldc = m + 3, k + 5, m + 7
    sa, sb, sc = lda * k + 11, ldb * n + 13, ldc * n + 17
    a, b = rng.standard_normal(sa * batch), rng.standard_normal(sb * batch)
    expected = np.zeros(sc * batch)
    gpu_blas.gemm_batched("N", "N", m, n, k, a, lda, sa, b, ldb, sb, expected, ldc, sc, batch)  # emulated, float64
    got = dev(np.zeros(sc * batch, dtype))
    gpu_blas.gemm_batched("N", "N", m, n, k, dev(a.astype(dtype)), lda, sa, dev(b.astype(dtype)), ldb, sb, got, ldc,
                          sc, batch)
    return rel_error(backend.to_host(got), expected)


if __name__ == "__main__":
    smoke_child("--dry-run" in sys.argv[1:])
