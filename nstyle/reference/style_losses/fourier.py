"""Random Fourier features for the Gaussian-kernel MMD, and the median heuristic for its bandwidth.

Bochner's theorem: a shift-invariant kernel is the Fourier transform of a probability measure. For the
Gaussian k(x, y) = exp(-||x - y||^2 / (2 h^2)) that measure is N(0, I / h^2), so with w ~ N(0, I/h^2)
and c ~ U(0, 2 pi), E[2 cos(w.x + c) cos(w.y + c)] = E[cos(w.(x - y))] = k(x, y). D independent
draws, stacked as W (N x D) and c (D,), give phi(x) = sqrt(2/D) cos(W^T x + c) with
E[phi(x).phi(y)] = k(x, y) and an error of order 1/sqrt(D) per kernel value (Rahimi & Recht 2007).

The draw is made without the bandwidth -- Z ~ N(0, I), W = Z / h -- so that one seed gives the same
features whatever the style; h comes from the style features by the median heuristic: the median
distance between two positions drawn from the style mixture.
"""
from dataclasses import dataclass

import numpy as np

from ...backend import get_xp, to_host
from .mixture import mixture, positions_chunks

DEFAULT_FEATURES = 1024
MEDIAN_POINTS = 1024
CHUNK_ELEMENTS = 1 << 20   # D x chunk entries per block of positions (4 MiB in float32)


@dataclass(frozen=True, eq=False)
class FourierDraw:
    """normal: Z (N, D) standard normal; phases: c (D,) uniform on [0, 2 pi). Host float64."""

    normal: np.ndarray
    phases: np.ndarray


def draw_fourier_features(n_channels, n_features=DEFAULT_FEATURES, rng=0):
    """One draw of D random Fourier features for N channels; rng: a numpy Generator or a seed."""
    if n_features < 1:
        raise ValueError(f"need at least one Fourier feature; got {n_features}")
    gen = np.random.default_rng(rng)
    normal = gen.standard_normal((n_channels, n_features))
    return FourierDraw(normal, gen.uniform(0.0, 2.0 * np.pi, n_features))


def mixture_sample(style_feats, blend=None, n_points=MEDIAN_POINTS, rng=0):
    """n_points positions drawn with replacement from the mixture (position of style s: b_s / M_s).

    Returns (points, ids): points (N, n_points) float64 on the host, ids the drawn positions' global
    numbers (style by style), so a caller can tell two draws of one position apart from two positions."""
    mix = mixture(style_feats, blend)
    gen = np.random.default_rng(rng)
    w = np.concatenate([np.full(S.shape[1], b / S.shape[1]) for S, b in mix.parts])
    ids = gen.choice(w.size, size=int(n_points), p=w / w.sum())
    points, start = np.empty((mix.channels, ids.size)), 0
    for S, _ in mix.parts:
        mine = (ids >= start) & (ids < start + S.shape[1])
        if mine.any():
            cols = get_xp(S).asarray(ids[mine] - start)
            points[:, mine] = to_host(S[:, cols]).astype(np.float64)
        start += S.shape[1]
    return points, ids


def median_distance(points, ids=None):
    """The median of ||x_a - x_b|| over pairs a < b of columns of ``points`` (N, P) that are different
    positions (ids differ). If over half of those pairs are equal vectors (dead ReLU positions), the
    median of the non-zero distances; 1.0 if every distance is zero."""
    sq = (points * points).sum(axis=0)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (points.T @ points)
    a, b = np.triu_indices(points.shape[1], 1)
    keep = np.ones(a.size, dtype=bool) if ids is None else ids[a] != ids[b]
    d2 = d2[a[keep], b[keep]]
    d2[d2 <= 1e-12 * (sq[a[keep]] + sq[b[keep]])] = 0.0   # the Gram form's rounding, for equal vectors
    dist = np.sqrt(d2)
    if dist.size == 0:
        return 1.0
    h = float(np.median(dist))
    if h == 0.0:
        nonzero = dist[dist > 0]
        h = float(np.median(nonzero)) if nonzero.size else 1.0
    return h


def median_bandwidth(style_feats, blend=None, rng=0, max_points=MEDIAN_POINTS):
    """h by the median heuristic on max_points draws from the style mixture (rng fixes the draw)."""
    return median_distance(*mixture_sample(style_feats, blend, max_points, rng))


def default_chunk(n_features):
    """Positions per block so that one D x chunk block has about CHUNK_ELEMENTS entries."""
    return max(1, CHUNK_ELEMENTS // int(n_features))


def phase_blocks(X, W, c, chunk):
    """Yield (sl, Z) with Z = W^T X[:, sl] + c for consecutive blocks sl of X's columns (N x M).

    Every block is written into one D x chunk buffer, so the caller must finish with Z before asking
    for the next: memory stays one block whatever M is."""
    xp = get_xp(X)
    d, m = W.shape[1], X.shape[1]
    chunk = max(1, min(int(chunk), m))
    buf = xp.empty(d * chunk, dtype=X.dtype)
    for sl in positions_chunks(m, chunk):
        Z = buf[:d * (sl.stop - sl.start)].reshape(d, sl.stop - sl.start)
        xp.matmul(W.T, X[:, sl], out=Z)
        Z += c[:, None]
        yield sl, Z


def cos_sum(X, W, c, chunk):
    """sum_j cos(W^T x_j + c) over the columns of X (N x M), block by block, accumulated in float64
    in a fixed order."""
    xp = get_xp(X)
    total = xp.zeros(W.shape[1], dtype=xp.float64)
    for _, Z in phase_blocks(X, W, c, chunk):
        xp.cos(Z, out=Z)
        total += Z.sum(axis=1, dtype=xp.float64)
    return total
