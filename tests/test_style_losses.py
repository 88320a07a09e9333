"""The style losses beyond the Gram matrix: naive twins, float64 gradients, ties, memory, float32."""
import tracemalloc

import numpy as np
import pytest

from nstyle.model.gradcheck import directional_check, numerical_gradient, rel_error
from nstyle.reference import style_losses as sl

from .conftest import BACKENDS, host, on
from .style_loss_cases import LOSS_NAMES, setup_loss, styles


def check_matches_naive(backend, rng, name, shape, sizes, blend):
    feats = [on(backend, S) for S in styles(rng, shape[1], sizes)]
    F = rng.standard_normal(shape)
    _, loss, naive, _ = setup_loss(name, feats, blend, seed=3)
    value, grad = loss(on(backend, F))
    want_value, want_grad = naive(F)
    msg = f"{name} on {backend}: F {shape}, styles {sizes}, blend {blend}"
    assert value == pytest.approx(want_value, rel=1e-10, abs=1e-13), msg
    assert host(grad).shape == shape and host(grad).dtype == np.float64, msg
    assert rel_error(host(grad), want_grad) < 1e-10, msg


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("shape,sizes,blend", [
    ((1, 3, 4, 5), [(3, 4)], None),                    # one style, a different size from F
    ((1, 4, 3, 3), [(2, 5), (4, 3)], [0.25, 0.75]),    # two styles of different sizes, unequal weights
    ((1, 2, 1, 7), [(3, 3), (1, 2), (2, 2)], [0.5, 0.0, 0.5]),  # a style blended with weight 0
])
def test_fast_matches_naive_twin(backend, rng, name, shape, sizes, blend):
    check_matches_naive(backend, rng, name, shape, sizes, blend)


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("shape", [(1, 3, 4, 5), (1, 1, 3, 3), (1, 5, 2, 1)])
def test_gradient_by_central_differences(rng, name, shape):
    """Every entry, float64. F is continuous random, so no two entries (or projections) tie and the
    sorting permutations stay put within the 1e-5 steps."""
    feats = styles(rng, shape[1], [(3, 4), (2, 3)])
    _, loss, _, _ = setup_loss(name, feats, [0.4, 0.6], seed=11)
    F = rng.standard_normal(shape)
    err = rel_error(loss(F)[1], numerical_gradient(lambda z: loss(z)[0], F))
    assert err < 1e-7, f"{name}: F {shape}, relative error {err:.2e}"


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_directional_derivative_at_a_larger_size(rng, name):
    shape = (1, 16, 24, 20)
    feats = styles(rng, 16, [(20, 22), (13, 30)])
    _, loss, _, _ = setup_loss(name, feats, [0.7, 0.3], seed=5, n_features=256)
    F = rng.standard_normal(shape) + 0.2
    err = directional_check(lambda z: loss(z)[0], loss(F)[1], F, rng, eps=1e-5, directions=3)
    assert err < 1e-6, f"{name}: F {shape}, directional relative error {err:.2e}"


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_ties_and_relu_zeros(rng, name):
    """ReLU features: many entries exactly 0 (ties in every channel), whole positions 0 (ties along
    every direction) and a dead channel. The gradient stays finite, and along every direction the ReLU
    lets through -- perturbing only the positive entries, as the ReLU's mask does -- it is the exact
    derivative: moving positive entries never un-ties the zeros, and swapping tied zeros changes nothing."""
    feats = [np.maximum(S, 0.0) for S in styles(rng, 5, [(4, 6), (5, 5)])]
    F = np.maximum(rng.standard_normal((1, 5, 4, 6)), 0.0)
    F[:, :, 1, 2:5] = 0.0          # three positions dead in every channel
    F[:, 3] = 0.0                  # a dead channel
    _, loss, _, _ = setup_loss(name, feats, [0.5, 0.5], seed=2)
    value, grad = loss(F)
    assert np.isfinite(value) and np.all(np.isfinite(grad)), name
    live = F > 0
    assert live.sum() > 40
    idx = np.flatnonzero(live)

    def on_live(z):
        full = F.copy()
        full.reshape(-1)[idx] = z
        return loss(full)[0]

    err = rel_error(grad.reshape(-1)[idx], numerical_gradient(on_live, F.reshape(-1)[idx], eps=1e-6))
    assert err < 1e-7, f"{name}: relative error {err:.2e} on the {idx.size} positive entries"


def test_the_sort_permutation_decides_the_histogram_gradient(rng):
    """The gradient is the residual in sorted order scattered back: if F is sorted already, the
    gradient is 2/(N M) (F - q) entry by entry -- and a permuted F gets the permuted gradient."""
    feats = styles(rng, 2, [(3, 5)])
    t = sl.histogram_targets(feats)
    F = np.sort(rng.standard_normal((1, 2, 1, 15)), axis=3)
    q = sl.quantiles(t, 15)
    value, grad = sl.histogram_loss(F, t, q=q)
    np.testing.assert_allclose(grad[0, :, 0], 2.0 / 30 * (F[0, :, 0] - q), rtol=1e-12)
    assert value == pytest.approx(((F[0, :, 0] - q) ** 2).sum() / 30, rel=1e-12)
    perm = rng.permutation(15)
    value2, grad2 = sl.histogram_loss(F[..., perm], t, q=q)
    assert value2 == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(grad2, grad[..., perm], rtol=1e-12)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_float32_follows_float64(rng, name):
    feats = styles(rng, 8, [(9, 10)])
    F = rng.standard_normal((1, 8, 10, 9))
    _, loss64, _, _ = setup_loss(name, feats, None, seed=4)
    _, loss32, _, _ = setup_loss(name, [S.astype(np.float32) for S in feats], None, seed=4)
    v64, g64 = loss64(F)
    v32, g32 = loss32(F.astype(np.float32))
    assert g32.dtype == np.float32 and g32.shape == F.shape, name
    assert v32 == pytest.approx(v64, rel=1e-4), name
    assert rel_error(g32, g64) < 1e-4, name
    assert loss64(F.astype(np.float32))[1].dtype == np.float32, f"{name}: float64 target, float32 F"


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_gaussian_mmd_chunks_do_not_change_the_result(rng, chunk):
    feats = styles(rng, 6, [(7, 9)])
    F = rng.standard_normal((1, 6, 8, 8))
    _, loss, _, _ = setup_loss("mmd_gaussian", feats, None, seed=9, chunk=chunk)
    _, whole, _, _ = setup_loss("mmd_gaussian", feats, None, seed=9, chunk=10 ** 6)
    (v, g), (vw, gw) = loss(F), whole(F)
    assert v == pytest.approx(vw, rel=1e-12, abs=1e-15), chunk
    assert rel_error(g, gw) < 1e-12, chunk


def _measured_peak(fn, *args):
    """Peak bytes NumPy allocates during fn(*args) beyond what it returns (tracemalloc sees NumPy)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    out = fn(*args)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak - out[1].nbytes


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_scratch_estimate_covers_what_an_evaluation_allocates(rng, name):
    """The estimate bounds the measured extra bytes, up to NumPy's fixed-size iteration and casting
    buffers (tens of KiB whatever the size: ``slack``), and is not a loose bound either."""
    n, h, w = 64, 64, 64
    m = h * w
    feats = [S.astype(np.float32) for S in styles(rng, n, [(40, 44)])]
    F = rng.standard_normal((1, n, h, w)).astype(np.float32)
    target, loss, _, params = setup_loss(name, feats, None, seed=1, n_features=512, chunk=256)
    kind = name[len("mmd_"):] if name.startswith("mmd") else None
    if name == "mean_std":
        estimate = sl.mean_std_scratch_bytes(n, m)
    elif name.startswith("histogram"):
        estimate = sl.histogram_scratch_bytes(n, m)
    elif name.startswith("sliced_wasserstein"):
        estimate = sl.sliced_wasserstein_scratch_bytes(n, m)
    else:
        estimate = sl.mmd_scratch_bytes(n, m, kind, n_features=512, chunk=256)
    if name.startswith(("histogram", "sliced")):  # the caller keeps q per size: the hot path
        q = sl.quantiles(target, m)
        fn = sl.histogram_loss if name.startswith("histogram") else sl.sliced_wasserstein_loss
        loss = lambda z: fn(z, target, q=q)  # noqa: E731
    measured, slack = _measured_peak(loss, F), 128 << 10
    assert measured <= estimate + slack, f"{name}: measured {measured} > estimate {estimate} + {slack}"
    if estimate > 4 * slack:  # the big buffers: the estimate must be near what is measured
        assert measured >= 0.8 * estimate, f"{name}: estimate {estimate} far above measured {measured}"


@pytest.mark.parametrize("rule", ["midpoint", "bin_mean"])
@pytest.mark.parametrize("sizes,blend", [([(40, 44)], None), ([(40, 44), (30, 20)], [0.3, 0.7])])
@pytest.mark.parametrize("m", [300, 4096])
def test_quantile_build_stays_within_its_estimate(rng, rule, sizes, blend, m):
    feats = [rng.standard_normal((1, 64, h, w)).astype(np.float32) for h, w in sizes]
    total = sum(h * w for h, w in sizes)
    target = sl.histogram_targets(feats, blend, rule)
    measured = _measured_peak(lambda t: (None, sl.quantiles(t, m)), target)
    estimate = sl.quantiles_scratch_bytes(64, total, m)
    assert measured <= estimate + (128 << 10), f"{rule} {sizes} M={m}: measured {measured} > {estimate}"


def test_errors_say_what_is_wrong(rng):
    feats = styles(rng, 3, [(2, 2), (3, 3)])
    F = rng.standard_normal((1, 3, 2, 2))
    with pytest.raises(ValueError, match="blend weights"):
        sl.histogram_targets(feats, [1.0])
    with pytest.raises(ValueError, match="sum to 1"):
        sl.mean_std_targets(feats, [0.5, 0.6])
    with pytest.raises(ValueError, match="channels"):
        sl.mmd_targets([feats[0], rng.standard_normal((1, 4, 2, 2))], [0.5, 0.5], "linear")
    with pytest.raises(ValueError, match="unknown MMD kernel"):
        sl.mmd_targets(feats, None, "cubic")
    with pytest.raises(ValueError, match="needs features"):
        sl.mmd_targets(feats, None, "gaussian")
    with pytest.raises(ValueError, match="needs directions"):
        sl.sliced_wasserstein_targets(feats, None)
    t = sl.histogram_targets(feats)
    with pytest.raises(ValueError, match="quantiles of shape"):
        sl.histogram_loss(F, t, q=sl.quantiles(t, 5))
    with pytest.raises(ValueError, match=r"\(1, N, H, W\)"):
        sl.mean_std_loss(F[0], sl.mean_std_targets(feats))
