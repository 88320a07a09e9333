"""Histogram loss (Risser et al. 2017) as exact 1-D optimal transport, channel by channel.

F: (1, N, H, W) read as N channels x M positions. Target: the mixture's quantile function of every
channel (``quantiles.py``), read as M ascending values q_i0 <= ... <= q_i,M-1 for this output's M --
at the plotting positions t_j = (j + 1/2) / M (rule "midpoint", DESIGN.md's), or as the mixture's
mean over each 1/M-quantile bin ("bin_mean"). q is a constant of the loss: it depends on the styles and
M, not on F. pi_i is the permutation that sorts channel i ascending (F_i,pi_i(0) <= F_i,pi_i(1) <= ...):

    E = 1/(N M) * sum_i sum_j (F_i,pi_i(j) - q_ij)^2

Why this is optimal transport: among all ways to pair F_i's M values with the M target values q_i,
the sum of squared differences is smallest when both go in ascending order (swap any crossed pair and
the sum drops), so E is the squared 2-Wasserstein distance between channel i's empirical distribution
and the M-point distribution {q_ij}, averaged over channels (with "bin_mean", up to a constant, the
squared distance to the whole mixture). Risser et al. remap F to its histogram match R(F) and take
||F - R(F)||^2 with R(F) held fixed: the same value and gradient, written here as one function.

Gradient: near any F whose channels have no ties, pi_i does not change under a small enough
perturbation (it is piecewise constant, changing only when two entries cross), so E is locally a plain
sum of squares of fixed entries minus fixed constants:

    dE/dF_i,pi_i(j) = 2/(N M) * (F_i,pi_i(j) - q_ij)

-- the residual in sorted order, scattered back to where each entry came from. This is the exact
derivative everywhere except on the measure-zero set where two entries of a channel tie; there E is
still continuous (swapping tied entries changes nothing), and the formula, with whatever order the
sort gave the tied entries, is the gradient of one of the smooth pieces that meet there. The ties
that do occur in practice are ReLU zeros, whose gradient the ReLU below masks.

One argsort per channel serves both: the sorted values for E, the permutation for the scatter.
"""
import numpy as np

from ...backend import get_xp
from .mixture import feature_matrix, mixture, sum_squares
from .quantiles import quantiles, quantiles_naive, sorted_mixture


def histogram_targets(style_feats, blend=None, rule="midpoint"):
    """The per-channel mixture quantile table (a ``MixtureQuantiles`` with N rows) of the style features.

    style_feats: list of (1, N, h_s, w_s) arrays; blend: weights summing to 1 (None: equal); rule: how
    q is read from the table at an output size (``quantiles.py``: "midpoint" or "bin_mean")."""
    mix = mixture(style_feats, blend)
    return sorted_mixture([S for S, _ in mix.parts], [b for _, b in mix.parts], rule)


def histogram_loss(F, target, q=None):
    """(E, dE/dF) for F (1, N, H, W). target: from :func:`histogram_targets`; q: its quantiles at this
    F's M positions when the caller keeps them (``quantiles(target, M)``; computed here otherwise)."""
    xp = get_xp(F)
    Fm = feature_matrix(F)
    n, m = Fm.shape
    if q is None:
        q = quantiles(target, m)
    if q.shape != (n, m):
        raise ValueError(f"quantiles of shape {q.shape} for features with {n} channels x {m} positions")
    order = xp.argsort(Fm, axis=1)            # pi_i: the one sort per channel
    resid = xp.take_along_axis(Fm, order, axis=1)
    resid -= q                                 # F_i,pi_i(j) - q_ij, in sorted order
    value = sum_squares(resid) / (n * m)
    resid *= resid.dtype.type(2.0 / (n * m))
    grad = xp.empty_like(Fm)
    grad[xp.arange(n)[:, None], order] = resid  # scatter: position pi_i(j) gets the j-th residual
    return value, grad.reshape(F.shape)


def histogram_scratch_bytes(n, m, itemsize=4):
    """Extra bytes one evaluation holds besides F, q and the returned gradient: the sort indices
    (int64) and the sorted residuals. The caller keeps q (``quantiles_bytes(n, m)``), built once per
    stage and size (``quantiles_scratch_bytes(n, T, m)`` while it is built)."""
    return n * m * (8 + itemsize)


def histogram_loss_naive(F, style_feats, blend=None, rule="midpoint"):
    """The same value and gradient from the definition, one channel and one entry at a time (NumPy)."""
    mix = mixture(style_feats, blend)
    Fm = np.asarray(feature_matrix(F), dtype=np.float64)
    n, m = Fm.shape
    q = quantiles_naive([np.asarray(S, dtype=np.float64) for S, _ in mix.parts], [b for _, b in mix.parts], m, rule)
    value, grad = 0.0, np.zeros((n, m))
    for i in range(n):
        order = sorted(range(m), key=lambda j: Fm[i, j])
        for rank, j in enumerate(order):
            d = Fm[i, j] - q[i, rank]
            value += d * d / (n * m)
            grad[i, j] = 2.0 * d / (n * m)
    return value, grad.reshape(F.shape)
