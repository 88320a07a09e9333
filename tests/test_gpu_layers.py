"""The layers' GPU path agrees with the naive CPU references, reusing the CPU tests' check_* helpers.

Each test runs on every GPU path of ``gpu_paths.py``: a real device where one answers, and everywhere the
NumPy transcriptions of the kernels and the kernels' CUDA source compiled as C++.
"""
import numpy as np
import pytest

from nstyle.model.gradcheck import numerical_vjp, rel_error
from nstyle.reference import (avg_pool2d_backward, avg_pool2d_forward, conv2d_backward, conv2d_forward, max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward)
from nstyle.gpu import conv as conv_gpu

from .conftest import host, on
from .gpu_paths import GPU_PATHS, gpu_path, helper_backend
from .test_layers import CONV_CASES, POOL_CASES, check_conv_matches_naive, check_pool_matches_naive, check_relu
from .test_objective import check_objective_float32_matches_float64


@pytest.fixture
def tiny_bands(monkeypatch):
    """Force one output row (one tile row for Winograd) per band, so every multi-band branch runs."""
    for name in ("BAND_MIN_ELEMS", "BAND_MAX_ELEMS", "WINOGRAD_BAND_MIN_ELEMS", "WINOGRAD_BAND_MAX_ELEMS"):
        monkeypatch.setattr(conv_gpu, name, 1)


@pytest.fixture(params=conv_gpu.LOWERINGS)
def lowering(request):
    before = conv_gpu.set_lowering(request.param)
    yield request.param
    conv_gpu.set_lowering(before)


# 3x3 stride-1 cases, the ones Winograd takes: partial tiles (odd sizes), padding 0, 1 and 2, tiny maps
WINOGRAD_CASES = [(1, 3, 7, 9, 4, 3, 1, 1), (2, 2, 8, 5, 3, 3, 1, 0), (1, 3, 6, 6, 2, 3, 1, 2),
                  (1, 5, 5, 4, 6, 3, 1, 1), (1, 2, 3, 3, 2, 3, 1, 1), (1, 1, 1, 2, 2, 3, 1, 1)]


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_gpu_path_matches_naive(path, rng, case):
    with gpu_path(path):
        check_conv_matches_naive(helper_backend(path), rng, case)


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_gpu_path_in_bands_matches_naive(path, rng, case, tiny_bands):
    with gpu_path(path):
        check_conv_matches_naive(helper_backend(path), rng, case)


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_gpu_path_in_two_row_bands_matches_naive(path, rng, case, monkeypatch):
    """Bands of two output rows: an odd output height ends in a shorter band."""
    monkeypatch.setattr(conv_gpu, "gpu_band_rows", lambda *args: 2)
    with gpu_path(path):
        check_conv_matches_naive(helper_backend(path), rng, case)


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("bands", ["one band", "tiny bands"])
@pytest.mark.parametrize("case", WINOGRAD_CASES, ids=str)
def test_conv_winograd_matches_naive(path, rng, case, bands, monkeypatch):
    monkeypatch.setattr(conv_gpu, "LOWERING", "winograd")
    if bands == "tiny bands":
        monkeypatch.setattr(conv_gpu, "WINOGRAD_BAND_MIN_ELEMS", 1)
        monkeypatch.setattr(conv_gpu, "WINOGRAD_BAND_MAX_ELEMS", 1)
    calls = []
    real = conv_gpu.kernels.winograd_input
    monkeypatch.setattr(conv_gpu.kernels, "winograd_input", lambda *a: calls.append(1) or real(*a))
    with gpu_path(path):
        check_conv_matches_naive(helper_backend(path), rng, case)
    assert calls, "the Winograd path was not taken"


def test_winograd_weight_transform_is_g_g_gt(rng):
    w = rng.standard_normal((2, 3, 3, 3))
    u = conv_gpu.winograd_weights(w)
    G = conv_gpu._G
    for o in range(2):
        for c in range(3):
            np.testing.assert_allclose(u[:, o, c].reshape(4, 4), G @ w[o, c] @ G.T, rtol=1e-12, atol=1e-12)


def test_lowering_switch_refuses_unknown_names():
    with pytest.raises(ValueError, match="lowering"):
        conv_gpu.set_lowering("fft")


def test_band_rows_follow_the_budget():
    assert conv_gpu.gpu_band_rows(576, 1024, 1024, 64 * 1024 * 1024) == (1 << 25) // (576 * 1024)
    assert conv_gpu.gpu_band_rows(576, 2048, 2048, 64 * 2048 * 2048) == (1 << 26) // (576 * 2048), "the cap"
    assert conv_gpu.gpu_band_rows(27, 8, 8, 64 * 64) == 8, "a small layer is a single band"
    assert conv_gpu.gpu_band_rows(10 ** 9, 5, 5, 1) == 1, "at least one row per band"


@pytest.mark.parametrize("path", GPU_PATHS)
def test_relu_gpu_path(path, rng):
    with gpu_path(path):
        check_relu(helper_backend(path), rng)


@pytest.mark.parametrize("path", GPU_PATHS)
def test_relu_gpu_path_passes_nan_like_numpy(path):
    x = np.array([[-1.0, 0.0, np.nan, 2.0]], dtype=np.float32)
    with gpu_path(path):
        out, mask = relu_forward(on(helper_backend(path), x))
    np.testing.assert_array_equal(host(out), np.maximum(x, 0))
    np.testing.assert_array_equal(host(mask), x > 0)


@pytest.mark.parametrize("path", GPU_PATHS)
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_gpu_path_matches_naive(path, rng, kind, case):
    with gpu_path(path):
        check_pool_matches_naive(helper_backend(path), rng, kind, case)


@pytest.mark.parametrize("path", GPU_PATHS)
def test_max_pool_gpu_path_ties_go_to_the_first_element(path):
    """Plateaus: every window ties; the first element (row-major) must win, as on the CPU path."""
    x = np.zeros((1, 2, 4, 6), dtype=np.float32)
    x[0, 1, :2, :2] = 5.0
    with gpu_path(path):
        out, cache = max_pool2d_forward(on(helper_backend(path), x), 2, 2)
        dx = host(max_pool2d_backward(on(helper_backend(path), np.ones(out.shape, dtype=np.float32)), cache))
    expected = np.zeros_like(x)
    expected[0, :, ::2, ::2] = 1.0
    np.testing.assert_array_equal(dx, expected)


@pytest.mark.parametrize("path", GPU_PATHS)
def test_objective_gpu_path_float32_matches_float64(path, rng, lowering):
    with gpu_path(path):
        check_objective_float32_matches_float64(helper_backend(path), rng)


@pytest.mark.parametrize("path", GPU_PATHS)
def test_gpu_path_is_taken_only_where_asked(path, rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    with gpu_path(path):
        _, cache = conv2d_forward(on(helper_backend(path), x), on(helper_backend(path), w), None, 1, 1)
    assert cache.get("gpu") is True
    if path != "gpu":
        _, cache = conv2d_forward(x, w, None, 1, 1)
        assert not cache.get("gpu"), "outside the context, NumPy arrays must take the CPU path"


# Float64 gradient checks of the GPU path itself (the device run repeats these on the device).
@pytest.mark.parametrize("path", GPU_PATHS)
def test_gpu_path_gradients_numerically(path, rng, lowering):
    b_name = helper_backend(path)

    def run(fn, *args):
        with gpu_path(path):
            return host(fn(*[on(b_name, a) if isinstance(a, np.ndarray) else a for a in args]))

    n, c, h, w, o, k, s, p = (1, 2, 6, 7, 3, 3, 2, 1) if lowering == "im2col" else (1, 2, 5, 7, 3, 3, 1, 1)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, k, k))
    b = rng.standard_normal(o)
    with gpu_path(path):
        out, cache = conv2d_forward(on(b_name, x), on(b_name, wt), on(b_name, b), s, p)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = (host(g) for g in conv2d_backward(on(b_name, dout), cache, weight_grads=True))
    checks = {
        "conv dx": (dx, numerical_vjp(lambda z: run(lambda *a: conv2d_forward(*a)[0], z, wt, b, s, p), x, dout)),
        "conv dw": (dw, numerical_vjp(lambda z: run(lambda *a: conv2d_forward(*a)[0], x, z, b, s, p), wt, dout)),
        "conv db": (db, numerical_vjp(lambda z: run(lambda *a: conv2d_forward(*a)[0], x, wt, z, s, p), b, dout)),
    }
    xr = rng.standard_normal((1, 2, 4, 5))
    xr[np.abs(xr) < 1e-3] = 0.5
    xp_ = rng.permutation(2 * 7 * 9).reshape(1, 2, 7, 9) * 0.01  # distinct values: no max-pool ties
    for name, fwd, bwd, xin, args in [("relu", relu_forward, relu_backward, xr, ()),
                                      ("avg pool", avg_pool2d_forward, avg_pool2d_backward, xp_, (3, 2)),
                                      ("max pool", max_pool2d_forward, max_pool2d_backward, xp_, (3, 2))]:
        with gpu_path(path):
            out, cache = fwd(on(b_name, xin), *args)
            d = rng.standard_normal(out.shape)
            got = host(bwd(on(b_name, d), cache))
        want = numerical_vjp(lambda z, fwd=fwd, args=args: run(lambda a: fwd(a, *args)[0], z), xin, d)
        checks[name] = (got, want)
    for name, (got, want) in checks.items():
        assert rel_error(got, want) < 1e-7, f"{name} on the {path} path: rel. error {rel_error(got, want):.2e}"


@pytest.mark.parametrize("path", [p for p in GPU_PATHS if p.values[0] != "gpu"])
def test_network_takes_the_gpu_path_when_emulating(path, rng, monkeypatch):
    """Under emulation, VGG19's forward and backward must reach the layers' GPU path (a CPU-only fast path
    in vgg.py must leave arrays alone while backend.uses_device_kernels says they belong to the device)."""
    from nstyle.model.objective import StyleObjective
    from nstyle.model.gradcheck import random_image, random_vgg_params
    from nstyle.model.vgg import VGG19

    calls = []
    for name in ("conv2d_forward_gpu", "conv2d_backward_gpu"):
        real = getattr(conv_gpu, name)
        monkeypatch.setattr(conv_gpu, name,
                            lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    with gpu_path(path):
        obj = StyleObjective(VGG19(random_vgg_params(rng)), content=random_image(rng, 16, 16),
                             styles=[random_image(rng, 16, 16)])
        calls.clear()
        obj.value_and_grad(random_image(rng, 16, 16).astype(np.float32))
    assert calls.count("conv2d_forward_gpu") == 13 and calls.count("conv2d_backward_gpu") == 13, calls
