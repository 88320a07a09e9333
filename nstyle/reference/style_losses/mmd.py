"""Maximum mean discrepancy (Li et al., IJCAI 2017: "Demystifying Neural Style Transfer").

The columns f_j of F (N x M) and the mixture's style positions s (weights b_s / M_s) are two samples;
for a kernel k, MMD^2 = mean_{j,j'} k(f_j, f_j') + mean_{s,s'} k(s, s') - 2 mean_{j,s} k(f_j, s). With
a feature map phi, k(x, y) = phi(x).phi(y), this is ||mean_j phi(f_j) - phi*||^2, phi* = the mixture's
mean of phi: the loss only needs the mean embeddings.

- linear, k = x^T y, phi = identity: E = ||mu(F) - mu*||^2 (channel means only);
  dE/df_j = 2/M (mu(F) - mu*), the same for every position.
- polynomial, k = (x^T y)^2, phi(x) = x x^T: mean phi(F) = G / M with G = F F^T, phi* = C = sum_s b_s
  S_s S_s^T / M_s. E = ||G/M - C||^2 = 4 N^2 E_gram with the Gram loss's target A = M C (Li et al.'s
  equivalence; a test holds them to it). With D = G/M - C symmetric, dE = 2 <D, dG>/M and
  <D, dF F^T + F dF^T> = 2 <D F, dF>, so dE/dF = 4/M (G/M - C) F.
- gaussian, k = exp(-||x - y||^2 / (2 h^2)), by D random Fourier features (``fourier.py``):
  phi(x) = sqrt(2/D) cos(W^T x + c), E = ||delta||^2, delta = mean_j phi(f_j) - phi*, and
  dphi_d/df_j = -sqrt(2/D) sin(w_d.f_j + c_d) w_d, so
      dE/df_j = -2/M sqrt(2/D) W (sin(W^T f_j + c) o delta).
  Positions go in blocks: one pass sums the cosines for delta, a second recomputes each block's W^T F
  for the sines -- memory linear in M, never M x M and never D x M at once.

All three are smooth in F: their gradients are exact everywhere. The Gaussian one is exact for the
drawn (W, c) -- the objective is that fixed random-feature kernel, not the Gaussian it estimates.
"""
from dataclasses import dataclass

import numpy as np

from ...backend import get_xp
from .fourier import cos_sum, default_chunk, phase_blocks
from .mixture import feature_matrix, mixture, mixture_mean, mixture_second_moment, sum_squares

KERNELS = ("linear", "polynomial", "gaussian")


@dataclass(frozen=True, eq=False)
class MMDTarget:
    """kernel: one of KERNELS; embedding: the mixture's mean embedding phi* (linear: mu* (N,) float64;
    polynomial: C (N, N) in the features' dtype; gaussian: (D,) float64). Gaussian only: weights W = Z/h
    (N, D) and phases c (D,) on the features' device and dtype, bandwidth h (float)."""

    kernel: str
    embedding: object
    weights: object = None
    phases: object = None
    bandwidth: float = None


def mmd_targets(style_feats, blend=None, kernel="polynomial", features=None, bandwidth=None, chunk=None):
    """The mixture's mean embedding for ``kernel``. Gaussian: ``features`` from
    ``draw_fourier_features(N, D, rng)`` and ``bandwidth`` h (``median_bandwidth(style_feats, blend,
    rng)`` for the median heuristic) are required: the caller owns the randomness."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown MMD kernel {kernel!r}; choose from {KERNELS}")
    mix = mixture(style_feats, blend)
    if kernel == "linear":
        return MMDTarget(kernel, mixture_mean(mix))
    if kernel == "polynomial":
        return MMDTarget(kernel, mixture_second_moment(mix))
    if features is None or bandwidth is None:
        raise ValueError("the gaussian MMD needs features (draw_fourier_features) and a bandwidth")
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0; got {bandwidth}")
    S0 = mix.parts[0][0]
    xp = get_xp(S0)
    if features.normal.shape[0] != mix.channels:
        raise ValueError(f"Fourier features for {features.normal.shape[0]} channels, styles have {mix.channels}")
    W = xp.asarray(features.normal / bandwidth, dtype=S0.dtype)
    c = xp.asarray(features.phases, dtype=S0.dtype)
    d = W.shape[1]
    chunk = default_chunk(d) if chunk is None else chunk
    embedding = sum(b / S.shape[1] * cos_sum(S, W, c, chunk) for S, b in mix.parts) * np.sqrt(2.0 / d)
    return MMDTarget(kernel, embedding, W, c, float(bandwidth))


def mmd_loss(F, target, chunk=None):
    """(E, dE/dF) for F (1, N, H, W) against an :class:`MMDTarget`; chunk: positions per block (gaussian)."""
    xp = get_xp(F)
    Fm = feature_matrix(F)
    n, m = Fm.shape
    if target.kernel == "linear":
        delta = Fm.mean(axis=1, dtype=xp.float64) - target.embedding
        grad = xp.empty_like(Fm)
        grad[...] = (2.0 / m * delta).astype(Fm.dtype)[:, None]
        return float(delta @ delta), grad.reshape(F.shape)
    if target.kernel == "polynomial":
        D = Fm @ Fm.T
        D *= D.dtype.type(1.0 / m)
        D -= target.embedding.astype(D.dtype, copy=False)
        value = sum_squares(D)
        D *= D.dtype.type(4.0 / m)
        return value, (D @ Fm).reshape(F.shape)
    W, c = target.weights.astype(Fm.dtype, copy=False), target.phases.astype(Fm.dtype, copy=False)
    d = W.shape[1]
    chunk = default_chunk(d) if chunk is None else chunk
    delta = cos_sum(Fm, W, c, chunk) * (np.sqrt(2.0 / d) / m) - target.embedding
    coef = (-2.0 / m * np.sqrt(2.0 / d) * delta).astype(Fm.dtype)
    grad = xp.empty_like(Fm)
    for sl, Z in phase_blocks(Fm, W, c, chunk):
        xp.sin(Z, out=Z)
        Z *= coef[:, None]
        grad[:, sl] = W @ Z
    return float(delta @ delta), grad.reshape(F.shape)


def mmd_scratch_bytes(n, m, kernel, n_features=None, chunk=None, itemsize=4):
    """Extra bytes besides F and the returned gradient: the N x N matrix (polynomial), or one D x chunk
    block of W^T F with the N x chunk block of its product (gaussian); a few vectors (linear)."""
    if kernel == "linear":
        return 8 * 4 * n
    if kernel == "polynomial":
        return n * n * itemsize
    chunk = min(m, default_chunk(n_features) if chunk is None else chunk)
    return chunk * (n_features + 2 * n) * itemsize + 8 * 4 * n_features


def _kernel_and_grad(kernel, x, y, features=None, bandwidth=None):
    """k(x, y) and its gradient in x, for the naive twin (gaussian: the random-feature kernel)."""
    if kernel == "linear":
        return x @ y, y
    if kernel == "polynomial":
        return (x @ y) ** 2, 2.0 * (x @ y) * y
    W, c = features.normal / bandwidth, features.phases
    d = W.shape[1]
    phix, phiy = np.sqrt(2.0 / d) * np.cos(W.T @ x + c), np.sqrt(2.0 / d) * np.cos(W.T @ y + c)
    return phix @ phiy, W @ (-np.sqrt(2.0 / d) * np.sin(W.T @ x + c) * phiy)


def mmd_loss_naive(F, style_feats, blend=None, kernel="polynomial", features=None, bandwidth=None):
    """The value and gradient from the kernel definition of MMD^2, pair by pair (NumPy, float64):

    E = 1/M^2 sum_{j,j'} k(f_j, f_j') + sum_{s,s'} w_s w_s' k(s, s') - 2/M sum_{j,s} w_s k(f_j, s)
    dE/df_j = 2/M^2 sum_j' grad_x k(f_j, f_j') - 2/M sum_s w_s grad_x k(f_j, s)   (k symmetric)

    -- no mean embedding, no Gram matrix: an independent route to the same numbers."""
    mix = mixture(style_feats, blend)
    Fm = np.asarray(feature_matrix(F), dtype=np.float64)
    n, m = Fm.shape
    style = [(np.asarray(S, dtype=np.float64)[:, j], b / S.shape[1]) for S, b in mix.parts for j in range(S.shape[1])]
    value, grad = 0.0, np.zeros((n, m))
    for j in range(m):
        for jj in range(m):
            k, g = _kernel_and_grad(kernel, Fm[:, j], Fm[:, jj], features, bandwidth)
            value += k / m ** 2
            grad[:, j] += 2.0 / m ** 2 * g
        for s, w in style:
            k, g = _kernel_and_grad(kernel, Fm[:, j], s, features, bandwidth)
            value -= 2.0 / m * w * k
            grad[:, j] -= 2.0 / m * w * g
    for s, w in style:
        for s2, w2 in style:
            value += w * w2 * _kernel_and_grad(kernel, s, s2, features, bandwidth)[0]
    return value, grad.reshape(F.shape)


def gaussian_mmd_exact(F, style_feats, blend, bandwidth):
    """MMD^2 with the exact Gaussian kernel, from all pairs (NumPy, float64; small inputs only): what
    the random features estimate."""
    mix = mixture(style_feats, blend)
    X = np.asarray(feature_matrix(F), dtype=np.float64)
    Y = np.concatenate([np.asarray(S, dtype=np.float64) for S, _ in mix.parts], axis=1)
    wy = np.concatenate([np.full(S.shape[1], b / S.shape[1]) for S, b in mix.parts])
    wx = np.full(X.shape[1], 1.0 / X.shape[1])

    def mean_k(A, wa, B, wb):
        d2 = ((A[:, :, None] - B[:, None, :]) ** 2).sum(axis=0)
        return wa @ np.exp(-d2 / (2.0 * bandwidth ** 2)) @ wb

    return float(mean_k(X, wx, X, wx) + mean_k(Y, wy, Y, wy) - 2.0 * mean_k(X, wx, Y, wy))
