"""Style-loss targets: the mixture (size invariance, blends), the quantile table, the random draws,
and the identities that tie the MMD kernels to the mean and to the Gram loss."""
import numpy as np
import pytest

from nstyle.reference import style_losses as sl
from nstyle.reference.losses import gram_matrix, scaled_blended_gram, style_layer_loss
from nstyle.reference.style_losses.fourier import median_distance
from nstyle.reference.style_losses.quantiles import quantiles_naive

from .conftest import BACKENDS, host, on
from .style_loss_cases import LOSS_NAMES, setup_loss, styles


def tile2x2(S):
    return np.tile(S, (1, 1, 2, 2))


def exact_shapes(name):
    """Output shapes at which a 6 x 8 style (M_s = 48) and any blend of equal distributions give the same
    loss: every M for the distribution-only statistics, only M dividing M_s for the midpoint rule."""
    divisors = [(1, 4, 6, 8), (1, 4, 4, 6), (1, 4, 3, 4)]
    midpoint = name in ("histogram", "sliced_wasserstein")
    return divisors if midpoint else divisors + [(1, 4, 5, 7), (1, 4, 9, 11)]


def check_tiled_style_gives_the_same_loss(backend, rng, name):
    """A style image tiled 2 x 2 is the same distribution: the same loss, value and gradient (for the
    midpoint rule only where the output's M divides the style's M_s: ``quantiles.py``)."""
    S = rng.standard_normal((1, 4, 6, 8))
    for shape in exact_shapes(name):
        F = on(backend, rng.standard_normal(shape))
        # the gaussian bandwidth comes from a random sample of positions, which tiling renumbers: fix it
        kw = {"n_features": 32}
        _, plain, _, params = setup_loss(name, [on(backend, S)], None, seed=6, **kw)
        _, tiled, _, _ = setup_loss(name, [on(backend, tile2x2(S))], None, seed=6, **kw)
        if name == "mmd_gaussian":
            t = sl.mmd_targets([on(backend, tile2x2(S))], None, "gaussian", **params)
            tiled = lambda z, t=t: sl.mmd_loss(z, t)  # noqa: E731
        (v, g), (vt, gt) = plain(F), tiled(F)
        msg = f"{name} on {backend}: F {shape}, style (6, 8) tiled to (12, 16)"
        assert vt == pytest.approx(v, rel=1e-11, abs=1e-14), msg
        np.testing.assert_allclose(host(gt), host(g), rtol=1e-10, atol=1e-14, err_msg=msg)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", LOSS_NAMES)
def test_tiled_style_gives_the_same_loss(backend, rng, name):
    check_tiled_style_gives_the_same_loss(backend, rng, name)


def test_tiled_quantiles_at_other_sizes(rng):
    """At an M that does not divide M_s the midpoint interpolants of a style and its tiled self differ,
    by less than the largest gap between neighbouring sorted samples; the bin means agree exactly."""
    S = rng.standard_normal((1, 3, 5, 7))
    gaps = np.diff(np.sort(S.reshape(3, -1), axis=1), axis=1).max(axis=1)
    for m in (13, 50, 97):
        plain, tiled = sl.histogram_targets([S]), sl.histogram_targets([tile2x2(S)])
        diff = np.abs(sl.quantiles(plain, m) - sl.quantiles(tiled, m)).max(axis=1)
        assert np.all(diff <= gaps + 1e-12), f"M = {m}: differences {diff} vs largest gaps {gaps}"
        assert diff.max() > 1e-3, "the sizes were meant to show the (bounded) difference"
        plain, tiled = sl.histogram_targets([S], rule="bin_mean"), sl.histogram_targets([tile2x2(S)], rule="bin_mean")
        np.testing.assert_allclose(sl.quantiles(tiled, m), sl.quantiles(plain, m), rtol=1e-12, atol=1e-13,
                                   err_msg=f"bin_mean, M = {m}")


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("b", [0.2, 0.5])
def test_blend_of_a_style_with_its_tiled_self_is_that_style(rng, name, b):
    """Mixing two equal distributions, in any proportion, gives that distribution -- even when the two
    images differ in size (so samples weigh b/48 and (1-b)/192: the unequal-weight path). The midpoint
    rule only at M = M_s: elsewhere its points depend on how tied samples of unequal weight fall."""
    S = rng.standard_normal((1, 3, 6, 8))
    _, alone, _, params = setup_loss(name, [S], None, seed=8, n_features=32)
    _, mixed, _, _ = setup_loss(name, [S, tile2x2(S)], [b, 1 - b], seed=8, n_features=32)
    if name == "mmd_gaussian":
        t = sl.mmd_targets([S, tile2x2(S)], [b, 1 - b], "gaussian", **params)
        mixed = lambda z: sl.mmd_loss(z, t)  # noqa: E731
    midpoint = name in ("histogram", "sliced_wasserstein")
    shapes = [(1, 3, 6, 8)] if midpoint else [(1, 3, 6, 8), (1, 3, 4, 6), (1, 3, 5, 7)]
    for shape in shapes:
        F = rng.standard_normal(shape)
        (v, g), (vm, gm) = alone(F), mixed(F)
        msg = f"{name}: blend [{b}, {1 - b}], F {shape}"
        assert vm == pytest.approx(v, rel=1e-11), msg
        np.testing.assert_allclose(gm, g, rtol=1e-10, atol=1e-14, err_msg=msg)


def test_two_style_mixture_moments(rng):
    """mean_std and the linear/polynomial MMD targets of a blend are the blend of per-position moments:
    pooled samples with weights b_s / M_s."""
    A, B = styles(rng, 3, [(4, 5), (3, 2)])
    b = [0.3, 0.7]
    pooled = np.concatenate([A.reshape(3, -1), B.reshape(3, -1)], axis=1)
    w = np.r_[np.full(20, 0.3 / 20), np.full(6, 0.7 / 6)]
    mean = pooled @ w
    std = np.sqrt(((pooled - mean[:, None]) ** 2) @ w + 1e-5)
    t = sl.mean_std_targets([A, B], b)
    np.testing.assert_allclose(t.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(t.std, std, rtol=1e-12)
    np.testing.assert_allclose(sl.mmd_targets([A, B], b, "linear").embedding, mean, rtol=1e-12)
    np.testing.assert_allclose(sl.mmd_targets([A, B], b, "polynomial").embedding, (pooled * w) @ pooled.T, rtol=1e-12)


def check_quantiles_match_naive(backend, rng, sizes, blend, m, rule):
    rows = [rng.standard_normal((4, h * w)) for h, w in sizes]
    rows[0][:, :3] = 0.0  # ties across styles: ReLU zeros
    if len(rows) > 1:
        rows[1][:, :2] = 0.0
    feats = [on(backend, r.reshape(1, 4, h, w)) for r, (h, w) in zip(rows, sizes)]
    t = sl.histogram_targets(feats, blend, rule)
    weights = blend or [1.0 / len(rows)] * len(rows)
    got = host(sl.quantiles(t, m))
    want = quantiles_naive([r for r, b in zip(rows, weights) if b > 0], [b for b in weights if b > 0], m, rule)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-13, err_msg=f"{backend} {rule} {sizes} {blend} M={m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sizes,blend", [([(3, 5)], None), ([(3, 5), (2, 2)], [0.6, 0.4]),
                                         ([(2, 3), (3, 3)], [0.5, 0.5])])
@pytest.mark.parametrize("m", [1, 7, 15, 40])
@pytest.mark.parametrize("rule", ["midpoint", "bin_mean"])
def test_quantiles_match_naive(backend, rng, sizes, blend, m, rule):
    check_quantiles_match_naive(backend, rng, sizes, blend, m, rule)


@pytest.mark.parametrize("rule", ["midpoint", "bin_mean"])
def test_quantiles_of_one_style_at_its_own_size_are_its_sorted_samples(rng, rule):
    S = rng.standard_normal((1, 5, 4, 6))
    np.testing.assert_allclose(sl.quantiles(sl.histogram_targets([S], rule=rule), 24),
                               np.sort(S.reshape(5, 24), axis=1), rtol=1e-13, atol=1e-14, err_msg=rule)


def test_bin_means_keep_the_mixture_mean(rng):
    """The bins partition [0, 1), so the mean of q over the bins is the mixture's mean, at every M."""
    A, B = styles(rng, 3, [(4, 4), (2, 3)])
    t = sl.histogram_targets([A, B], [0.25, 0.75], rule="bin_mean")
    mean = 0.25 * A.reshape(3, -1).mean(axis=1) + 0.75 * B.reshape(3, -1).mean(axis=1)
    for m in (1, 5, 22, 100):
        np.testing.assert_allclose(sl.quantiles(t, m).mean(axis=1), mean, rtol=1e-12, err_msg=f"M = {m}")


def test_quantile_edges_are_the_cumulative_weights(rng):
    A, B = styles(rng, 3, [(4, 4), (2, 3)])
    t = sl.histogram_targets([A, B], [0.25, 0.75])
    assert t.edges.shape == (3, 22)
    assert np.all(np.diff(t.edges, axis=1) > 0) and np.all(t.edges[:, -1] == 1.0)
    steps = np.diff(t.edges, axis=1, prepend=0.0)
    np.testing.assert_allclose(np.sort(steps, axis=1), [[0.25 / 16] * 16 + [0.75 / 6] * 6] * 3, rtol=1e-12)
    assert sl.histogram_targets([A]).edges.shape == (16,)  # one style: one set of edges for every row
    with pytest.raises(ValueError, match="unknown quantile rule"):
        sl.histogram_targets([A], rule="nearest")


def test_polynomial_mmd_is_the_gram_loss_times_4_n_squared(rng):
    """Li et al.: the Gram loss is MMD^2 with k(x, y) = (x^T y)^2, with the size rule A = M C."""
    A, B = styles(rng, 5, [(6, 4), (3, 7)])
    blend = [0.35, 0.65]
    for shape in [(1, 5, 4, 5), (1, 5, 8, 3)]:
        F = rng.standard_normal(shape)
        n, m = shape[1], shape[2] * shape[3]
        target = scaled_blended_gram([gram_matrix(A), gram_matrix(B)], [24, 21], blend, m)
        e_gram, g_gram = style_layer_loss(F, target)
        e_mmd, g_mmd = sl.mmd_loss(F, sl.mmd_targets([A, B], blend, "polynomial"))
        assert e_mmd == pytest.approx(4 * n ** 2 * e_gram, rel=1e-12), shape
        np.testing.assert_allclose(g_mmd, 4 * n ** 2 * g_gram, rtol=1e-11, err_msg=str(shape))


def test_linear_mmd_is_the_squared_mean_difference(rng):
    A, B = styles(rng, 4, [(3, 3), (2, 5)])
    F = rng.standard_normal((1, 4, 3, 4))
    mean = 0.4 * A.reshape(4, -1).mean(axis=1) + 0.6 * B.reshape(4, -1).mean(axis=1)
    value, grad = sl.mmd_loss(F, sl.mmd_targets([A, B], [0.4, 0.6], "linear"))
    diff = F.reshape(4, -1).mean(axis=1) - mean
    assert value == pytest.approx(diff @ diff, rel=1e-12)
    np.testing.assert_allclose(grad, np.broadcast_to(2 * diff[None, :, None, None] / 12, F.shape), rtol=1e-12)


@pytest.mark.parametrize("d,tol", [(64, 0.08), (1024, 0.02), (16384, 0.005)])
def test_gaussian_random_features_approximate_the_exact_kernel(rng, d, tol):
    """The random-feature estimate of MMD^2 approaches the exact Gaussian MMD^2 as D grows, at the
    1/sqrt(D) rate: tol = 0.6/sqrt(D) (about 7%, 2% and 0.6% of the exact value here), where the
    largest error measured over 20 seeds on three such data sets was 0.38/sqrt(D)."""
    A, B = styles(rng, 4, [(4, 5), (3, 3)], shift=0.8)
    F = rng.standard_normal((1, 4, 4, 4)) * 0.7
    h = sl.median_bandwidth([A, B], [0.5, 0.5], rng=1)
    exact = sl.gaussian_mmd_exact(F, [A, B], [0.5, 0.5], h)
    assert exact > 0.05, f"the case should have a clear MMD ({exact:.3g})"
    errors = []
    for seed in range(3):
        t = sl.mmd_targets([A, B], [0.5, 0.5], "gaussian", features=sl.draw_fourier_features(4, d, seed), bandwidth=h)
        errors.append(abs(sl.mmd_loss(F, t)[0] - exact))
    assert max(errors) < tol, f"D = {d}: |RFF - exact| = {errors} (exact {exact:.4f}, h {h:.3f})"


def test_draws_are_fixed_by_their_seed():
    V = sl.draw_directions(6, 9, 42)
    assert V.shape == (6, 9)
    np.testing.assert_allclose(np.linalg.norm(V, axis=0), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(V, sl.draw_directions(6, 9, np.random.default_rng(42)))
    assert not np.allclose(V, sl.draw_directions(6, 9, 43))
    assert sl.draw_directions(5, rng=0).shape == (5, 5)
    f1, f2 = sl.draw_fourier_features(3, 16, 7), sl.draw_fourier_features(3, 16, 7)
    np.testing.assert_array_equal(f1.normal, f2.normal)
    np.testing.assert_array_equal(f1.phases, f2.phases)
    assert np.all((f1.phases >= 0) & (f1.phases < 2 * np.pi))


def test_median_bandwidth_is_the_median_pairwise_distance(rng):
    A, B = styles(rng, 3, [(5, 5), (2, 4)])
    points, ids = sl.mixture_sample([A, B], [0.3, 0.7], 200, rng=5)
    pairs = [np.linalg.norm(points[:, a] - points[:, b]) for a in range(200) for b in range(a + 1, 200)
             if ids[a] != ids[b]]
    assert median_distance(points, ids) == pytest.approx(float(np.median(pairs)), rel=1e-10)
    assert sl.median_bandwidth([A, B], [0.3, 0.7], rng=5, max_points=200) == median_distance(points, ids)
    # the draws follow the blend: about 30% from A (binomial, 4 standard deviations)
    from_a = (ids < 25).mean()
    assert abs(from_a - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 200), from_a


def test_median_distance_skips_dead_positions():
    """Over half the pairs are two dead positions (distance 0): the median of the others is used."""
    points = np.zeros((2, 23))
    points[:, 20:] = [[1.0, 2.0, 4.0], [0.0, 0.0, 0.0]]   # 20 equal (dead) positions, 3 live ones
    # non-zero distances: 1, 2, 4 twenty times each (dead to live) and 1, 2, 3 (live to live): median 2
    assert median_distance(points, np.arange(23)) == pytest.approx(2.0)
    points[0, :20] = np.arange(20) ** 1.5                  # all positions distinct: the plain median
    assert median_distance(points, np.arange(23)) == pytest.approx(float(np.median(
        [np.linalg.norm(points[:, a] - points[:, b]) for a in range(23) for b in range(a + 1, 23)])))
    assert median_distance(np.zeros((2, 4)), np.arange(4)) == 1.0
