"""The style losses under test, set up the same way for every test file: one entry per loss (and per
MMD kernel), each giving target, loss and naive twin from style features, blend weights and a seed."""
import numpy as np

from nstyle.reference import style_losses as sl

LOSS_NAMES = ("mean_std", "histogram", "histogram_bin_mean", "sliced_wasserstein", "sliced_wasserstein_bin_mean",
              "mmd_linear", "mmd_polynomial", "mmd_gaussian")


def setup_loss(name, feats, blend, seed=0, n_directions=None, n_features=64, chunk=None):
    """(target, loss(F) -> (value, grad), naive(F) -> (value, grad), params) for the loss ``name``.

    feats may live on any backend; the naive twin gets host float64 copies. params: the random draws
    (directions, Fourier features, bandwidth) so an oracle can rebuild the same function."""
    host = [np.asarray(_to_host(S), dtype=np.float64) for S in feats]
    n = feats[0].shape[1]
    params = {}
    if name == "mean_std":
        t = sl.mean_std_targets(feats, blend)
        return t, lambda F: sl.mean_std_loss(F, t), lambda F: sl.mean_std_loss_naive(F, host, blend), params
    rule = "bin_mean" if name.endswith("_bin_mean") else "midpoint"
    if name.startswith("histogram"):
        t = sl.histogram_targets(feats, blend, rule)
        return t, lambda F: sl.histogram_loss(F, t), lambda F: sl.histogram_loss_naive(F, host, blend, rule), params
    if name.startswith("sliced_wasserstein"):
        V = sl.draw_directions(n, n_directions, seed)
        params["directions"] = V
        t = sl.sliced_wasserstein_targets(feats, blend, V, rule)
        return (t, lambda F: sl.sliced_wasserstein_loss(F, t),
                lambda F: sl.sliced_wasserstein_loss_naive(F, host, blend, V, rule), params)
    kernel = name[len("mmd_"):]
    if kernel == "gaussian":
        rng = np.random.default_rng(seed)
        params["features"] = sl.draw_fourier_features(n, n_features, rng)
        params["bandwidth"] = sl.median_bandwidth(feats, blend, rng)
    t = sl.mmd_targets(feats, blend, kernel, chunk=chunk, **params)
    return (t, lambda F: sl.mmd_loss(F, t, chunk=chunk),
            lambda F: sl.mmd_loss_naive(F, host, blend, kernel, **params), params)


def _to_host(a):
    from nstyle.backend import to_host
    return to_host(a)


def styles(rng, n, sizes, shift=0.3):
    """Style feature maps (1, n, h, w) for each (h, w), each style with its own offset and scale, so
    that a blend differs from either style."""
    return [rng.standard_normal((1, n, h, w)) * (1.0 + 0.5 * s) + shift * s for s, (h, w) in enumerate(sizes)]
