"""Mean and standard deviation loss (Li et al., IJCAI 2017: matching batch-norm statistics).

F: (1, N, H, W) read as N channels x M positions. Per channel

    mu_i = 1/M sum_j F_ij,    sigma_i = sqrt(1/M sum_j (F_ij - mu_i)^2 + eps)

(eps = 1e-5: a channel the ReLU switched off everywhere has variance 0, where sqrt has no derivative).
The target is the mixture's: mu*_i = sum_s b_s mu_i(S_s), and its variance by the law of total
variance, var*_i = sum_s b_s (var_i(S_s) + (mu_i(S_s) - mu*_i)^2), sigma*_i = sqrt(var*_i + eps) --
the mixture's first and second moments, without the cancellation of E[x^2] - E[x]^2.

    E = 1/N * sum_i ((mu_i - mu*_i)^2 + (sigma_i - sigma*_i)^2)

Gradient: dmu_i/dF_ij = 1/M. For sigma, d(var_i)/dF_ij = 2/M (F_ij - mu_i) - 2/M sum_k (F_ik - mu_i)
dmu_i/dF_ij, and the sum is 0, so dsigma_i/dF_ij = (F_ij - mu_i) / (M sigma_i). Hence

    dE/dF_ij = 2/N * ((mu_i - mu*_i) / M + (sigma_i - sigma*_i) (F_ij - mu_i) / (M sigma_i))

E is smooth everywhere (eps keeps sigma_i > 0), so the gradient is exact everywhere, not just almost.
The centred copy F - mu is the one N x M buffer; the gradient is written into it.
"""
from dataclasses import dataclass

import numpy as np

from ...backend import get_xp
from .mixture import feature_matrix, mixture, mixture_mean, row_dots

EPS = 1e-5


@dataclass(frozen=True, eq=False)
class MeanStdTarget:
    """mean, std: the mixture's mu* and sigma* (N,), float64; eps: the one sigma was computed with."""

    mean: object
    std: object
    eps: float


def mean_std_targets(style_feats, blend=None, eps=EPS):
    """mu* and sigma* of the style mixture. style_feats: list of (1, N, h_s, w_s); blend sums to 1."""
    mix = mixture(style_feats, blend)
    xp = get_xp(mix.parts[0][0])
    mean = mixture_mean(mix)
    var = xp.zeros_like(mean)
    for S, b in mix.parts:
        mu_s = S.mean(axis=1, dtype=xp.float64)
        centred = S - mu_s.astype(S.dtype)[:, None]
        var += b * (row_dots(centred, centred).astype(xp.float64) / S.shape[1] + (mu_s - mean) ** 2)
    return MeanStdTarget(mean, xp.sqrt(var + eps), float(eps))


def mean_std_loss(F, target):
    """(E, dE/dF) for F (1, N, H, W) against a :class:`MeanStdTarget`."""
    xp = get_xp(F)
    Fm = feature_matrix(F)
    n, m = Fm.shape
    mu = Fm.mean(axis=1, dtype=xp.float64)
    grad = Fm - mu.astype(Fm.dtype)[:, None]      # F - mu, becomes the gradient below
    sigma = xp.sqrt(row_dots(grad, grad).astype(xp.float64) / m + target.eps)
    dmu, dsigma = mu - target.mean, sigma - target.std
    value = float(((dmu * dmu).sum() + (dsigma * dsigma).sum()) / n)
    grad *= (2.0 / (n * m) * dsigma / sigma).astype(Fm.dtype)[:, None]
    grad += (2.0 / (n * m) * dmu).astype(Fm.dtype)[:, None]
    return value, grad.reshape(F.shape)


def mean_std_scratch_bytes(n, m, itemsize=4):
    """Extra bytes besides F and the returned gradient: a few float64 vectors of N (the centred copy
    is the gradient's buffer)."""
    return 8 * 8 * n


def mean_std_loss_naive(F, style_feats, blend=None, eps=EPS):
    """The same value and gradient from the definitions, one channel at a time in float64 loops, with
    the target from the pooled mixture samples (weights b_s / M_s) rather than per-style moments."""
    mix = mixture(style_feats, blend)
    Fm = np.asarray(feature_matrix(F), dtype=np.float64)
    n, m = Fm.shape
    value, grad = 0.0, np.zeros((n, m))
    for i in range(n):
        samples = [(float(S[i, j]), b / S.shape[1]) for S, b in mix.parts for j in range(S.shape[1])]
        mean_t = sum(w * v for v, w in samples)
        std_t = np.sqrt(sum(w * (v - mean_t) ** 2 for v, w in samples) + eps)
        mu = sum(Fm[i]) / m
        sigma = np.sqrt(sum((f - mu) ** 2 for f in Fm[i]) / m + eps)
        value += ((mu - mean_t) ** 2 + (sigma - std_t) ** 2) / n
        for j in range(m):
            grad[i, j] = 2.0 / n * ((mu - mean_t) / m + (sigma - std_t) * (Fm[i, j] - mu) / (m * sigma))
    return value, grad.reshape(F.shape)
