"""The GPU ops agree with the naive references, on every GPU path of ``gpu_paths.py``: a real device where
one answers, and everywhere the NumPy transcriptions of the kernels and the kernels' CUDA source compiled
as C++. The ops are called directly (``nstyle.gpu.conv``, ``.pool``, ``.relu``); whole networks go through
``VGG19(engine="gpu")`` (and ``test_engines.py`` holds that engine to the reference engine).
"""
import contextlib

import numpy as np
import pytest

from nstyle.gpu import conv as conv_gpu
from nstyle.gpu.conv import conv2d_backward_gpu, conv2d_forward_gpu
from nstyle.gpu.engine import GpuEngine
from nstyle.gpu.pool import (
    avg_pool2d_backward_gpu,
    avg_pool2d_forward_gpu,
    max_pool2d_backward_gpu,
    max_pool2d_forward_gpu,
)
from nstyle.gpu.relu import relu_backward_gpu, relu_forward_gpu
from nstyle.model.gradcheck import numerical_vjp, random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19
from nstyle.reference import (
    avg_pool2d_backward_naive,
    avg_pool2d_forward_naive,
    conv2d_backward_naive,
    conv2d_forward_naive,
    max_pool2d_backward_naive,
    max_pool2d_forward_naive,
    relu_backward_naive,
    relu_forward_naive,
)

from .conftest import host, on
from .gpu_paths import GPU_PATHS, gpu_path, helper_backend
from .test_layers import CONV_CASES, POOL_CASES

POOLS = {"avg": (avg_pool2d_forward_gpu, avg_pool2d_backward_gpu, avg_pool2d_forward_naive, avg_pool2d_backward_naive),
         "max": (max_pool2d_forward_gpu, max_pool2d_backward_gpu, max_pool2d_forward_naive, max_pool2d_backward_naive)}

# 3x3 stride-1 cases, the ones Winograd takes: partial tiles (odd sizes), padding 0, 1 and 2, tiny maps
WINOGRAD_CASES = [(1, 3, 7, 9, 4, 3, 1, 1), (2, 2, 8, 5, 3, 3, 1, 0), (1, 3, 6, 6, 2, 3, 1, 2),
                  (1, 5, 5, 4, 6, 3, 1, 1), (1, 2, 3, 3, 2, 3, 1, 1), (1, 1, 1, 2, 2, 3, 1, 1)]

# Rows per band: the budget's (one band at these sizes), one row (every band loop at its longest), two
# rows (an odd height ends in a shorter band).
BANDS = [pytest.param(None, id="budget bands"), pytest.param(1, id="one-row bands"),
         pytest.param(2, id="two-row bands")]


@contextlib.contextmanager
def conv_settings(lowering, band_rows=None):
    """The GPU convolutions of the block use ``lowering`` and bands of at most ``band_rows`` rows."""
    before = conv_gpu.set_lowering(lowering), conv_gpu.set_band_rows(band_rows)
    try:
        yield
    finally:
        conv_gpu.set_lowering(before[0])
        conv_gpu.set_band_rows(before[1])


@pytest.fixture(params=conv_gpu.LOWERINGS)
def lowering(request):
    with conv_settings(request.param):
        yield request.param


def check_conv(path, rng, case, lowering, band_rows):
    """Forward, dx, dW and db of the GPU convolution in float32 against the float64 naive loops."""
    dev = helper_backend(path)
    n, c, h, w, o, k, s, p = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    ref, ref_cache = conv2d_forward_naive(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), s, p)
    dout = rng.standard_normal(ref.shape)
    with gpu_path(path), conv_settings(lowering, band_rows):
        out, cache = conv2d_forward_gpu(on(dev, x), on(dev, wt), on(dev, b), s, p)
        grads = conv2d_backward_gpu(on(dev, dout.astype(np.float32)), cache, weight_grads=True)
    takes_winograd = lowering == "winograd" and k == 3 and s == 1
    assert cache["lowering"] == ("winograd" if takes_winograd else "im2col"), case
    assert out.shape == ref.shape, f"case {case}"
    assert rel_error(host(out), ref) < 1e-5, f"forward, case {case}"
    for name, got, want in zip(("dx", "dw", "db"), grads, conv2d_backward_naive(dout, ref_cache)):
        assert got.shape == want.shape, f"{name} shape, case {case}"
        assert rel_error(host(got), want) < 1e-5, f"{name}, case {case}"


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("band_rows", BANDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_im2col_matches_naive(path, rng, case, band_rows):
    check_conv(path, rng, case, "im2col", band_rows)


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("band_rows", BANDS)
@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=str)
def test_conv_winograd_matches_naive(path, rng, case, band_rows):
    check_conv(path, rng, case, "winograd", band_rows)


def test_winograd_weights_are_the_shared_reference_transform(rng):
    """One weight transform for both engines (reference/winograd.py): U = G g G^T, computed in float64
    and rounded once; and the algebra it rests on reproduces a 3x3 correlation."""
    from nstyle.cpu import winograd as cpu_winograd
    from nstyle.reference import winograd

    assert conv_gpu.winograd_weights is winograd.winograd_weights is cpu_winograd.winograd_weights
    w = rng.standard_normal((2, 3, 3, 3))
    u = winograd.winograd_weights(w)
    for o in range(2):
        for c in range(3):
            np.testing.assert_allclose(u[:, o, c].reshape(4, 4), winograd.G @ w[o, c] @ winograd.G.T,
                                       rtol=1e-12, atol=1e-12)
    w32 = w.astype(np.float32)
    u32 = winograd.winograd_weights(w32)
    assert u32.dtype == np.float32
    np.testing.assert_array_equal(u32, winograd.winograd_weights(w32.astype(np.float64)).astype(np.float32))
    d, g = rng.standard_normal((4, 4)), w[0, 0]
    direct = [[(g * d[a:a + 3, b:b + 3]).sum() for b in range(2)] for a in range(2)]
    np.testing.assert_allclose(winograd.tile_output(d, g), direct, rtol=1e-12, atol=1e-12)


def test_lowering_and_band_switches_refuse_bad_values():
    with pytest.raises(ValueError, match="lowering"):
        conv_gpu.set_lowering("fft")
    with pytest.raises(ValueError, match="rows per band"):
        conv_gpu.set_band_rows(0)


def test_band_rows_follow_the_budget():
    assert conv_gpu.gpu_band_rows(576, 1024, 1024, 64 * 1024 * 1024) == (1 << 25) // (576 * 1024)
    assert conv_gpu.gpu_band_rows(576, 2048, 2048, 64 * 2048 * 2048) == (1 << 26) // (576 * 2048), "the cap"
    assert conv_gpu.gpu_band_rows(27, 8, 8, 64 * 64) == 8, "a small layer is a single band"
    assert conv_gpu.gpu_band_rows(10 ** 9, 5, 5, 1) == 1, "at least one row per band"


@pytest.mark.parametrize("path", GPU_PATHS)
def test_relu_gpu(path, rng):
    dev = helper_backend(path)
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    x[0, 0, 0, :3] = 0.0  # exact zeros: the gradient there is 0 by convention
    x_nan = np.array([[-1.0, 0.0, np.nan, 2.0]], dtype=np.float32)
    out_ref, mask_ref = relu_forward_naive(x)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    with gpu_path(path):
        out, mask = relu_forward_gpu(on(dev, x))
        dx = relu_backward_gpu(on(dev, dout), mask)
        xin = on(dev, x.copy())
        out_inplace, _ = relu_forward_gpu(xin, inplace=True)
        out_nan, mask_nan = relu_forward_gpu(on(dev, x_nan))
    np.testing.assert_array_equal(host(out), out_ref)
    np.testing.assert_array_equal(host(mask), mask_ref)
    np.testing.assert_array_equal(host(dx), relu_backward_naive(dout, mask_ref))
    assert out_inplace is xin
    np.testing.assert_array_equal(host(xin), out_ref)
    # NaN passes, like NumPy's maximum, so that a NaN still reaches the loss
    np.testing.assert_array_equal(host(out_nan), np.maximum(x_nan, 0))
    np.testing.assert_array_equal(host(mask_nan), x_nan > 0)


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_gpu_matches_naive(path, rng, kind, case):
    fwd, bwd, fwd_naive, bwd_naive = POOLS[kind]
    dev = helper_backend(path)
    k, s, shape = case
    x = rng.standard_normal(shape).astype(np.float32)
    ref, ref_cache = fwd_naive(x, k, s)
    dout = rng.standard_normal(ref.shape).astype(np.float32)
    with gpu_path(path):
        out, cache = fwd(on(dev, x), k, s)
        dx = bwd(on(dev, dout), cache)
    assert out.shape == ref.shape == (shape[0], shape[1], (shape[2] - k) // s + 1, (shape[3] - k) // s + 1)
    assert rel_error(host(out), ref) < 1e-6, (kind, case)
    assert rel_error(host(dx), bwd_naive(dout, ref_cache)) < 1e-6, (kind, case)


@pytest.mark.parametrize("path", GPU_PATHS)
def test_max_pool_gpu_ties_go_to_the_first_element(path):
    """Plateaus: every window ties; the first element (row-major) must win, as in the reference."""
    dev = helper_backend(path)
    x = np.zeros((1, 2, 4, 6), dtype=np.float32)
    x[0, 1, :2, :2] = 5.0
    with gpu_path(path):
        out, cache = max_pool2d_forward_gpu(on(dev, x), 2, 2)
        dx = host(max_pool2d_backward_gpu(on(dev, np.ones(out.shape, dtype=np.float32)), cache))
    expected = np.zeros_like(x)
    expected[0, :, ::2, ::2] = 1.0
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("path", GPU_PATHS)
def test_network_runs_the_gpu_ops(path, rng):
    """VGG19(engine="gpu") is the GPU engine, and every convolution of its forward is a GPU one (the
    caches say so; test_engines.py compares the engine's values with the reference engine's)."""
    dev = helper_backend(path)
    params = random_vgg_params(rng)
    assert VGG19(params).engine_name == "cpu", "NumPy arrays alone never choose the GPU engine"
    with gpu_path(path):
        vgg = VGG19(params, device=dev, engine="gpu")
        _, trace = vgg.forward(on(dev, random_image(rng, 16, 16).astype(np.float32)), ["relu5_1"])
    assert vgg.engine_name == "gpu" and isinstance(vgg.engine, GpuEngine)
    convs = [cache for name, cache in trace if name.startswith("conv")]
    assert len(convs) == 13 and all(cache.get("gpu") and cache["lowering"] == conv_gpu.LOWERING
                                    for cache in convs)


@pytest.mark.parametrize("path", GPU_PATHS)
def test_objective_im2col_float32_matches_float64(path, rng):
    """The whole objective on the GPU engine with the im2col lowering, in float32, against the float64
    reference engine (test_engines.py does the same with the default lowering, Winograd)."""
    dev = helper_backend(path)
    params = random_vgg_params(np.random.default_rng(7))
    srng = np.random.default_rng(8)
    content, styles = random_image(srng, 40, 52), [random_image(srng, 36, 44), random_image(srng, 44, 30)]
    kwargs = dict(style_blend=[0.3, 0.7], content_weight=1.0, style_weight=1e3, tv_weight=1e-2)
    x = random_image(rng, 40, 52)
    f64, g64 = StyleObjective(VGG19(params, dtype=np.float64, engine="reference"), content, styles,
                              **kwargs).value_and_grad(x)
    with gpu_path(path), conv_settings("im2col"):
        vgg = VGG19(params, device=dev, dtype=np.float32, engine="gpu")
        f32, g32 = StyleObjective(vgg, content, styles, **kwargs).value_and_grad(on(dev, x.astype(np.float32)))
    assert f32 == pytest.approx(f64, rel=1e-4)
    assert g32.dtype == np.float32 and rel_error(host(g32), g64) < 1e-4


# Float64 gradient checks of the GPU ops themselves (the device run repeats these on the device).
@pytest.mark.parametrize("path", GPU_PATHS)
def test_gpu_ops_gradients_numerically(path, rng, lowering):
    dev = helper_backend(path)

    def run(fn, *args):
        with gpu_path(path):
            return host(fn(*[on(dev, a) if isinstance(a, np.ndarray) else a for a in args]))

    n, c, h, w, o, k, s, p = (1, 2, 6, 7, 3, 3, 2, 1) if lowering == "im2col" else (1, 2, 5, 7, 3, 3, 1, 1)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, k, k))
    b = rng.standard_normal(o)
    with gpu_path(path):
        out, cache = conv2d_forward_gpu(on(dev, x), on(dev, wt), on(dev, b), s, p)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = (host(g) for g in conv2d_backward_gpu(on(dev, dout), cache, weight_grads=True))
    assert cache["lowering"] == lowering
    conv = lambda *a: conv2d_forward_gpu(*a)[0]  # noqa: E731
    checks = {
        "conv dx": (dx, numerical_vjp(lambda z: run(conv, z, wt, b, s, p), x, dout)),
        "conv dw": (dw, numerical_vjp(lambda z: run(conv, x, z, b, s, p), wt, dout)),
        "conv db": (db, numerical_vjp(lambda z: run(conv, x, wt, z, s, p), b, dout)),
    }
    xr = rng.standard_normal((1, 2, 4, 5))
    xr[np.abs(xr) < 1e-3] = 0.5
    xp_ = rng.permutation(2 * 7 * 9).reshape(1, 2, 7, 9) * 0.01  # distinct values: no max-pool ties
    for name, fwd, bwd, xin, args in [("relu", relu_forward_gpu, relu_backward_gpu, xr, ()),
                                      ("avg pool", avg_pool2d_forward_gpu, avg_pool2d_backward_gpu, xp_, (3, 2)),
                                      ("max pool", max_pool2d_forward_gpu, max_pool2d_backward_gpu, xp_, (3, 2))]:
        with gpu_path(path):
            out, cache = fwd(on(dev, xin), *args)
            d = rng.standard_normal(out.shape)
            got = host(bwd(on(dev, d), cache))
        want = numerical_vjp(lambda z, fwd=fwd, args=args: run(lambda a: fwd(a, *args)[0], z), xin, d)
        checks[name] = (got, want)
    for name, (got, want) in checks.items():
        assert rel_error(got, want) < 1e-7, f"{name} on the {path} path: rel. error {rel_error(got, want):.2e}"
