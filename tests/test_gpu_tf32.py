"""The strided-batched cuBLAS call of Winograd's products (``blas.gemm_batched``) and TF32: its emulation
follows BLAS's column-major semantics batch by batch, the "matmul" mode agrees with it, and with TF32
allowed (``backend.set_tf32``, off by default) every float32 product -- emulated as cuBLAS's
CUBLAS_COMPUTE_32F_FAST_TF32, inputs rounded to 10 mantissa bits -- moves by about 1e-3 relative, float64
never."""
import numpy as np
import pytest

from nstyle import backend
from nstyle.gpu import blas as gpu_blas
from nstyle.gpu import conv as conv_gpu
from nstyle.gpu.conv import conv2d_forward_gpu
from nstyle.model.gradcheck import random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19

from .conftest import BACKENDS, host, on


@pytest.fixture
def tf32():
    """TF32 allowed inside the test, restored after."""
    before = backend.set_tf32(True)
    yield
    backend.set_tf32(before)


def _batched_case(rng, transa, transb, dtype=np.float64):
    m, n, k, batch = 5, 4, 3, 3
    lda = (m if transa == "N" else k) + 2
    ldb = (k if transb == "N" else n) + 1
    ldc = m + 1
    sa = lda * (k if transa == "N" else m) + 4
    sb = ldb * (n if transb == "N" else k) + 3
    sc = ldc * n + 2
    a, b, c = (rng.standard_normal(s * batch).astype(dtype) for s in (sa, sb, sc))
    return (m, n, k, batch, lda, ldb, ldc, sa, sb, sc), a, b, c


@pytest.mark.parametrize("backend_name", BACKENDS)
@pytest.mark.parametrize("transa", ["N", "T"])
@pytest.mark.parametrize("transb", ["N", "T"])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_batched_gemm_is_gemm_per_batch_entry(backend_name, rng, transa, transb, beta):
    (m, n, k, batch, lda, ldb, ldc, sa, sb, sc), a, b, c = _batched_case(rng, transa, transb)
    expected = c.copy()
    for i in range(batch):
        gpu_blas._emulate_gemm(transa, transb, m, n, k, a[i * sa:], lda, b[i * sb:], ldb, expected[i * sc:], ldc, beta)
    got = on(backend_name, c)
    gpu_blas.gemm_batched(transa, transb, m, n, k, on(backend_name, a), lda, sa, on(backend_name, b), ldb, sb,
                          got, ldc, sc, batch, beta=beta)
    np.testing.assert_allclose(host(got), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("transa", ["N", "T"])
@pytest.mark.parametrize("transb", ["N", "T"])
def test_batched_matmul_mode_agrees_with_the_emulation(rng, transa, transb):
    """The "matmul" mode's batched views are written for any xp: check their arguments on NumPy."""
    (m, n, k, batch, lda, ldb, ldc, sa, sb, sc), a, b, c = _batched_case(rng, transa, transb)
    c1, c2 = c.copy(), c.copy()
    gpu_blas.gemm_batched(transa, transb, m, n, k, a, lda, sa, b, ldb, sb, c1, ldc, sc, batch, beta=1.0)
    gpu_blas.strided_gemm(np, transa, transb, m, n, k, a, lda, b, ldb, c2, ldc, 1.0, batch=(sa, sb, sc, batch))
    np.testing.assert_allclose(c2, c1, rtol=1e-12, atol=1e-12)


def test_batched_gemm_refuses_overlapping_results_and_reaching_past_the_arrays():
    with pytest.raises(ValueError, match="overlap"):
        gpu_blas.gemm_batched("N", "N", 3, 2, 2, np.ones(12), 3, 6, np.ones(8), 2, 4, np.zeros(20), 3, 5, 2)
    with pytest.raises(AssertionError, match="reaches element"):
        gpu_blas.gemm_batched("N", "N", 3, 2, 2, np.ones(10), 3, 6, np.ones(8), 2, 4, np.zeros(12), 3, 6, 2)


def test_tf32_rounding_keeps_ten_mantissa_bits():
    x = np.array([1.0, 1 + 2.0 ** -10, 1 + 2.0 ** -11, 1 + 2.0 ** -12, -(1 + 3 * 2.0 ** -11), 3.0e38,
                  np.inf, -np.inf, np.nan, 0.0, 1e-40], dtype=np.float32)
    r = gpu_blas.round_to_tf32(x)
    assert r.dtype == np.float32
    np.testing.assert_array_equal(r[:5], np.float32([1.0, 1 + 2.0 ** -10, 1 + 2.0 ** -10, 1.0, -(1 + 2 * 2.0 ** -10)]))
    assert np.isinf(r[6]) and r[6] > 0 and np.isinf(r[7]) and r[7] < 0 and np.isnan(r[8]) and r[9] == 0
    assert (r.view(np.uint32)[:6] & 0x1FFF == 0).all()
    rng = np.random.default_rng(0)
    y = rng.standard_normal(10000).astype(np.float32)
    rel = np.abs(gpu_blas.round_to_tf32(y) - y) / np.abs(y)
    assert rel.max() <= 2.0 ** -11 * (1 + 1e-6)


def test_tf32_is_off_by_default_and_exact_products_stay_exact(rng):
    assert not backend.tf32_enabled()
    (m, n, k, batch, lda, ldb, ldc, sa, sb, sc), a, b, c = _batched_case(rng, "N", "N", np.float32)
    c1 = c.copy()
    gpu_blas.gemm_batched("N", "N", m, n, k, a, lda, sa, b, ldb, sb, c1, ldc, sc, batch)
    ref = c.copy()
    gpu_blas.strided_gemm(np, "N", "N", m, n, k, a, lda, b, ldb, ref, ldc, 0.0, batch=(sa, sb, sc, batch))
    np.testing.assert_allclose(c1, ref, rtol=1e-6, atol=1e-6)


def _product_error(rng, size=256):
    """Relative error of an emulated float32 gemm (and gemm_batched) against float64."""
    a = rng.standard_normal(size * size)
    b = rng.standard_normal(size * size)
    want = (a.reshape(size, size).T @ b.reshape(size, size).T).T.reshape(-1)  # column-major A @ B
    errs = []
    for batched in (False, True):
        c = np.zeros(size * size, np.float32)
        args = (a.astype(np.float32), size, b.astype(np.float32), size)
        if batched:
            gpu_blas.gemm_batched("N", "N", size, size, size, args[0], size, 0, args[2], size, 0, c, size,
                                  size * size, 1)
        else:
            gpu_blas.gemm("N", "N", size, size, size, *args, c, size)
        errs.append(rel_error(c.astype(np.float64), want))
    return errs


def test_tf32_changes_float32_products_by_about_1e3(rng, tf32):
    for err in _product_error(rng):
        assert 5e-5 < err < 3e-3, err  # ~2^-11 per input, averaged over the sums
    backend.set_tf32(False)
    for err in _product_error(rng):
        assert err < 1e-6


def test_tf32_never_touches_float64(rng, tf32):
    a, b = rng.standard_normal(64), rng.standard_normal(64)
    c = np.zeros(64)
    gpu_blas.gemm("N", "N", 8, 8, 8, a, 8, b, 8, c, 8)
    np.testing.assert_allclose(c.reshape(8, 8).T, a.reshape(8, 8).T @ b.reshape(8, 8).T, rtol=1e-13)


@pytest.mark.parametrize("lowering", conv_gpu.LOWERINGS)
def test_tf32_moves_a_convolution_by_about_1e3(rng, lowering):
    x = rng.standard_normal((1, 16, 12, 10)).astype(np.float32)
    w = (rng.standard_normal((8, 16, 3, 3)) / 12).astype(np.float32)
    before = conv_gpu.set_lowering(lowering)
    try:
        exact, _ = conv2d_forward_gpu(x.astype(np.float64), w.astype(np.float64), None, 1, 1)
        plain, _ = conv2d_forward_gpu(x, w, None, 1, 1)
        with_tf32 = backend.set_tf32(True)
        try:
            fast, _ = conv2d_forward_gpu(x, w, None, 1, 1)
        finally:
            backend.set_tf32(with_tf32)
    finally:
        conv_gpu.set_lowering(before)
    assert rel_error(plain, exact) < 1e-6
    assert 5e-5 < rel_error(fast, exact) < 3e-3


def test_tf32_objective_on_the_gpu_engine_moves_by_what_the_device_measured(rng):
    """The whole objective (GPU engine, emulated) under TF32: the loss moves by < 1e-2 relative, the gradient
    by a few percent -- the Gram differences G - A cancel, which magnifies the inputs' rounding (on an H200,
    real widths: 1e-4 and 5-6%, bench/results/gpu_check_h200.md)."""
    params = random_vgg_params(rng)
    content, style, x = (random_image(rng, 24, 28) for _ in range(3))
    obj = StyleObjective(VGG19(params, engine="gpu"), content=content, styles=[style])
    f, g = obj.value_and_grad(x)
    before = backend.set_tf32(True)
    try:
        f_tf32, g_tf32 = obj.value_and_grad(x)
    finally:
        backend.set_tf32(before)
    assert 0 < abs(f_tf32 - f) / f < 1e-2 and 0 < rel_error(g_tf32, g) < 0.15
