"""The smoke test bench/gpu_check.py runs in a child process before anything else on the device.

One line ``SMOKE {json}`` per step, printed as soon as the step ends, so a step that crashes the process
(an illegal address kills the CUDA context) still leaves the earlier steps' evidence. The order puts the
riskiest call last: the kernels alone, convolution through the cupy.matmul GEMM, the direct cuBLAS GEMM
alone, then convolution through it. The parent picks the GEMM mode for the run from the results.

    python bench/gpu_smoke.py [--dry-run]
"""
import contextlib
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from nstyle import backend  # noqa: E402
from nstyle.gradcheck import rel_error  # noqa: E402
from nstyle.layers import (avg_pool2d_backward, avg_pool2d_forward, conv2d_backward, conv2d_forward,  # noqa: E402
                           gpu_blas, gpu_kernels, max_pool2d_backward, max_pool2d_forward, relu_forward)


def smoke_child(dry):
    """Run every step, printing one SMOKE line each (see the module docstring)."""
    def report(step, ok, **extra):
        print("SMOKE " + json.dumps({"step": step, "ok": bool(ok), **extra}), flush=True)

    xp = np if dry else backend.cupy_module()
    ctx = backend.emulate_device_kernels() if dry else contextlib.nullcontext()
    rng = np.random.default_rng(1)
    dev = (lambda a: a) if dry else xp.asarray
    t0 = time.perf_counter()
    if not dry:
        gpu_kernels.compile_all()
    report("compile", True, seconds=round(time.perf_counter() - t0, 2))
    with ctx:
        for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
            x = rng.standard_normal((2, 3, 9, 11)).astype(dtype)
            errs = {}
            out, mask = relu_forward(dev(x))
            errs["relu"] = rel_error(backend.to_host(out), np.maximum(x, 0))
            for name, fwd, bwd in (("avg", avg_pool2d_forward, avg_pool2d_backward),
                                   ("max", max_pool2d_forward, max_pool2d_backward)):
                out, cache = fwd(dev(x), 2, 2)
                with backend.emulate_device_kernels(False):
                    ref, ref_cache = fwd(x, 2, 2)
                    ref_dx = bwd(np.ones_like(ref), ref_cache)
                errs[f"{name}_pool"] = max(rel_error(backend.to_host(out), ref),
                                           rel_error(backend.to_host(bwd(dev(np.ones_like(ref)), cache)), ref_dx))
            ok = all(e < tol for e in errs.values())
            report(f"kernels_{np.dtype(dtype).name}", ok, errors=errs)

        def conv_errors(dtype):
            x = rng.standard_normal((2, 5, 10, 12)).astype(dtype)
            w = rng.standard_normal((7, 5, 3, 3)).astype(dtype)
            b = rng.standard_normal(7).astype(dtype)
            with backend.emulate_device_kernels(False):
                ref, ref_cache = conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), 1, 1)
                dout = rng.standard_normal(ref.shape)
                refs = conv2d_backward(dout, ref_cache, weight_grads=True)
            out, cache = conv2d_forward(dev(x), dev(w), dev(b), 1, 1)
            grads = conv2d_backward(dev(dout.astype(dtype)), cache, weight_grads=True)
            return max([rel_error(backend.to_host(out), ref)] +
                       [rel_error(backend.to_host(g), r) for g, r in zip(grads, refs)])

        gpu_blas.set_mode("matmul")
        try:
            err = conv_errors(np.float32)
            report("conv_matmul", err < 1e-5, error=err)
        except Exception as exc:
            report("conv_matmul", False, exception=f"{type(exc).__name__}: {exc}")
        gpu_blas.set_mode("cublas")
        errs = {}
        for transa in "NT":
            for transb in "NT":
                for dtype in (np.float32, np.float64):
                    key = f"{transa}{transb}_{np.dtype(dtype).name}"
                    errs[key] = _gemm_check(dev, rng, transa, transb, dtype)
        report("gemm_cublas", all(e < 1e-5 for e in errs.values()), errors=errs)
        err = conv_errors(np.float32)
        report("conv_cublas", err < 1e-5, error=err)
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


if __name__ == "__main__":
    smoke_child("--dry-run" in sys.argv[1:])
