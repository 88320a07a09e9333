"""Sliced Wasserstein loss (Heitz et al., CVPR 2021): 1-D optimal transport along random directions.

F: (1, N, H, W) read as N x M. V: N x K unit columns (K = N by default), drawn once per stage from a
seed (:func:`draw_directions`). The projections P = V^T F (K x M) are K one-dimensional samples of the
feature distribution; the target is the mixture's quantile function of each projection, Q_k, built
from V^T S_s for every style image s (``quantiles.py``), read as M ascending values q_kj (rule
"midpoint": q_kj = Q_k((j + 1/2) / M); "bin_mean": bin averages). With pi_k the permutation that sorts
P_k ascending:

    E = 1/(K M) * sum_k sum_j (P_k,pi_k(j) - q_kj)^2

-- the histogram loss of the projected features: each term is a squared 1-D Wasserstein distance, and
their average over K random directions estimates the sliced Wasserstein distance (the average over all
directions), which -- unlike any finite set of moments, the Gram matrix included -- is zero only when
the whole distributions agree.

Gradient: as for the histogram loss, pi_k is locally constant wherever P_k has no ties, so there
dE/dP_k,pi_k(j) = 2/(K M) (P_k,pi_k(j) - q_kj), i.e. dE/dP = 2/(K M) (P - q o rank) with rank the
inverse permutation; and P = V^T F is linear, so

    dE/dF = V dE/dP

exact almost everywhere: ties along a random direction have probability 0 unless two positions have
equal feature vectors -- dead ReLU positions, whose gradient is masked, or the exactly flat regions of
a starting image, where the formula gives the gradient of one of the pieces that meet (and the first
step breaks the tie).

One argsort per direction serves value and gradient; the projection buffer is reused for dE/dP.
"""
from dataclasses import dataclass

import numpy as np

from ...backend import get_xp
from .mixture import feature_matrix, mixture, sum_squares
from .quantiles import quantiles, quantiles_naive, sorted_mixture


def draw_directions(n_channels, n_directions=None, rng=0):
    """V: (N, K) float64 NumPy array of unit columns, uniform on the sphere (normalised Gaussians).

    rng: a numpy Generator or a seed -- the caller fixes it per stage, so that the loss stays one
    function of the pixels for a whole L-BFGS-B run. K defaults to N."""
    k = n_channels if n_directions is None else int(n_directions)
    if k < 1:
        raise ValueError(f"need at least one direction; got {k}")
    V = np.random.default_rng(rng).standard_normal((n_channels, k))
    V /= np.linalg.norm(V, axis=0, keepdims=True)
    return V


@dataclass(frozen=True, eq=False)
class SlicedWassersteinTarget:
    """directions: V (N, K) on the features' device and dtype; values, edges, rule: the quantile table
    of the K projections (as ``MixtureQuantiles``), so ``quantiles(target, M)`` reads q (K, M)."""

    directions: object
    values: object
    edges: object
    rule: str = "midpoint"

    @property
    def nbytes(self):
        return int(self.directions.nbytes + self.values.nbytes + self.edges.nbytes)


def sliced_wasserstein_targets(style_feats, blend=None, directions=None, rule="midpoint"):
    """The projections' quantile table for directions V (from :func:`draw_directions`; required);
    rule as for the histogram loss (``quantiles.py``)."""
    if directions is None:
        raise ValueError("sliced_wasserstein_targets needs directions: draw_directions(N, K, rng)")
    mix = mixture(style_feats, blend)
    xp = get_xp(mix.parts[0][0])
    dtype = mix.parts[0][0].dtype
    V = xp.asarray(directions, dtype=dtype)
    if V.ndim != 2 or V.shape[0] != mix.channels:
        raise ValueError(f"directions of shape {V.shape} for {mix.channels} channels")
    table = sorted_mixture([V.T @ S for S, _ in mix.parts], [b for _, b in mix.parts], rule)
    return SlicedWassersteinTarget(V, table.values, table.edges, rule)


def sliced_wasserstein_loss(F, target, q=None):
    """(E, dE/dF) for F (1, N, H, W). q: ``quantiles(target, M)`` when the caller keeps it."""
    xp = get_xp(F)
    Fm = feature_matrix(F)
    V = target.directions.astype(Fm.dtype, copy=False)   # the gradient keeps F's dtype
    n, m = Fm.shape
    k = V.shape[1]
    if q is None:
        q = quantiles(target, m)
    if q.shape != (k, m) or V.shape[0] != n:
        raise ValueError(f"target for {V.shape[0]} channels, q {q.shape}; features {n} x {m}, {k} directions")
    P = V.T @ Fm                                   # (K, M) projections
    order = xp.argsort(P, axis=1)                  # pi_k: the one sort per direction
    resid = xp.take_along_axis(P, order, axis=1)
    resid -= q
    value = sum_squares(resid) / (k * m)
    resid *= resid.dtype.type(2.0 / (k * m))
    P[xp.arange(k)[:, None], order] = resid        # P's buffer now holds dE/dP
    return value, (V @ P).reshape(F.shape)


def sliced_wasserstein_scratch_bytes(n, m, k=None, itemsize=4):
    """Extra bytes besides F, q and the returned gradient: projections (reused for dE/dP), sort indices
    (int64), sorted residuals. The caller keeps q (``quantiles_bytes(K, m)``), as for the histogram."""
    k = n if k is None else k
    return k * m * (2 * itemsize + 8)


def sliced_wasserstein_loss_naive(F, style_feats, blend, directions, rule="midpoint"):
    """The same value and gradient from the definition with loops (NumPy, float64): project each
    position on each direction by an explicit sum, transport each direction, map back through V."""
    mix = mixture(style_feats, blend)
    V = np.asarray(directions, dtype=np.float64)
    Fm = np.asarray(feature_matrix(F), dtype=np.float64)
    n, m = Fm.shape
    k = V.shape[1]

    def project(X):
        return np.array([[sum(V[i, d] * X[i, j] for i in range(n)) for j in range(X.shape[1])]
                         for d in range(k)])

    q = quantiles_naive([project(np.asarray(S, dtype=np.float64)) for S, _ in mix.parts],
                        [b for _, b in mix.parts], m, rule)
    P = project(Fm)
    value, dP = 0.0, np.zeros((k, m))
    for d in range(k):
        for rank, j in enumerate(sorted(range(m), key=lambda j: P[d, j])):
            value += (P[d, j] - q[d, rank]) ** 2 / (k * m)
            dP[d, j] = 2.0 * (P[d, j] - q[d, rank]) / (k * m)
    grad = np.array([[sum(V[i, d] * dP[d, j] for d in range(k)) for j in range(m)] for i in range(n)])
    return value, grad.reshape(F.shape)
