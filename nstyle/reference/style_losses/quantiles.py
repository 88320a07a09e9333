"""The mixture's quantile function, row by row: the target of the histogram and sliced Wasserstein losses.

R rows of samples (channels, or projections on directions) come from the style mixture: style s
gives M_s samples of each row, each of weight w = b_s / M_s. Sort each row; sample k (value v_k) then
covers the interval [E_{k-1}, E_k) of cumulative weight, E_k = w_0 + ... + w_k, E_{T-1} = 1. An output
with M positions is compared, row by row, with M target values q_0 <= ... <= q_{M-1}, read from the
table by one of two rules:

``midpoint`` (DESIGN.md's definition): Q interpolates linearly between the points (c_k, v_k), c_k the
middle of sample k's interval, flat beyond the first and last; q_j = Q(t_j) at t_j = (j + 1/2) / M,
the output's own plotting positions -- so with one style image of M_s = M positions q is its sorted
samples. A style image tiled 2 x 2 gives the same q whenever M divides M_s. Otherwise -- and in
blends where equal values come from styles of unequal sample weight -- the points depend on how the
samples fall, not only on the distribution, and q can differ from the untiled (unblended) style's by
up to the gap between neighbouring sample values. Ties keep a stable sort's order (style by style,
position by position), so q is the same on every device.

``bin_mean``: q_j = M * integral of the step quantile function over [j/M, (j+1)/M) -- the average of
the mixture over the j-th M-quantile bin. It reads only the mixture *distribution*, so a tiled
style, a blend of equal distributions and tie order change nothing at any M; with M_s = M it is the
sorted samples too. And it is the exact W2 projection: for any sorted x,
sum_j (x_j - q_j)^2 / M = W2^2(x, mixture) - (a term without x), so the losses built on it have the
gradient of the true squared Wasserstein distance to the whole mixture. Computed as differences of
the cumulative integral I(t) = int_0^t Q, which is piecewise linear between (E_k, v_0 w_0 + ... + v_k w_k).

The table is built once per stage and serves any M: every tile and coarse-to-fine stage reads its
own q. With one style image (or weights b_s / M_s all equal) the edges are the same for every row
and stored once.
"""
from dataclasses import dataclass

import numpy as np

from ...backend import get_xp

RULES = ("midpoint", "bin_mean")
DEFAULT_RULE = RULES[0]  # DESIGN.md's: linear interpolation at t_j = (j + 1/2) / M


@dataclass(frozen=True, eq=False)
class MixtureQuantiles:
    """values: (R, T) each row sorted ascending, in the features' dtype; edges: float64 cumulative
    weights E_k, (T,) when shared by all rows or (R, T), increasing to exactly 1; rule: see RULES."""

    values: object
    edges: object
    rule: str = "midpoint"

    @property
    def nbytes(self):
        return int(self.values.nbytes + self.edges.nbytes)


def sorted_mixture(rows, weights, rule="midpoint"):
    """Build the table from ``rows`` [(R, M_s) arrays] with mixture weights ``weights`` [b_s > 0]."""
    if rule not in RULES:
        raise ValueError(f"unknown quantile rule {rule!r}; choose from {RULES}")
    xp = get_xp(*rows)
    values = xp.concatenate(rows, axis=1) if len(rows) > 1 else rows[0].copy()
    per_sample = [b / r.shape[1] for r, b in zip(rows, weights)]
    total = values.shape[1]
    if max(per_sample) - min(per_sample) <= 1e-12 * max(per_sample):
        values.sort(axis=1)
        return MixtureQuantiles(values, xp.arange(1, total + 1, dtype=xp.float64) / total, rule)
    w = xp.concatenate([xp.full(r.shape[1], p, dtype=xp.float64) for r, p in zip(rows, per_sample)])
    order = xp.argsort(values, axis=1, kind="stable")
    values = xp.take_along_axis(values, order, axis=1)
    edges = xp.cumsum(w[order], axis=1)
    edges /= edges[:, -1:]       # the weights sum to 1 up to rounding: make the last edge exactly 1
    return MixtureQuantiles(values, edges, rule)


def quantiles(target, m):
    """q (R, m) for an output of m positions, by ``target.rule``, in the values' dtype. ``target``:
    a :class:`MixtureQuantiles` or anything with the same ``values``, ``edges`` and ``rule``."""
    values, edges = target.values, target.edges
    xp = get_xp(values)
    weights = xp.diff(edges, axis=-1, prepend=0.0)
    if target.rule == "midpoint":
        weights *= -0.5
        weights += edges                      # the middles c_k = E_k - w_k / 2
        return _interp_rows((xp.arange(m, dtype=xp.float64) + 0.5) / m, weights, values)
    # bin_mean: I(t) at the bin edges j/m, then q_j = m (I((j+1)/m) - I(j/m)).
    knots_y = xp.zeros((values.shape[0], values.shape[1] + 1))
    weights = xp.multiply(weights, values, out=weights if weights.ndim == 2 else None)
    knots_y[:, 1:] = xp.cumsum(weights, axis=1)
    del weights
    knots_x = xp.concatenate([xp.zeros_like(edges[..., :1]), edges], axis=-1)
    at_edges = _interp_rows(xp.arange(m + 1, dtype=xp.float64) / m, knots_x, knots_y)
    q = at_edges[:, 1:] - at_edges[:, :-1]
    q *= m
    return q.astype(values.dtype, copy=False)


def _interp_rows(t, xs, ys):
    """Row r: piecewise-linear interpolation of the points (xs[r], ys[r]) at every t (m,), flat beyond
    the ends. xs: (K,) shared by the rows or (R, K), increasing; ys: (R, K). Result in ys' dtype.
    Rows with their own xs go one at a time (this runs once per stage and output size, and the
    per-row temporaries stay small)."""
    xp = get_xp(ys)
    if xs.ndim == 2:
        out = xp.empty((ys.shape[0], t.size), dtype=ys.dtype)
        for r in range(ys.shape[0]):
            out[r] = _interp_rows(t, xs[r], ys[r:r + 1])[0]
        return out
    k = xs.size
    hi = xp.clip(xp.searchsorted(xs, t, side="right"), 0, k - 1)     # first x > t (or the last)
    lo = xp.clip(hi - 1, 0, k - 1)
    gap = xs[hi] - xs[lo]
    frac = xp.clip(xp.where(gap > 0, (t - xs[lo]) / xp.where(gap > 0, gap, 1.0), 0.0), 0.0, 1.0)
    below, above = ys[:, lo], ys[:, hi]
    above -= below                 # below + frac (above - below), in place: two R x m buffers at most
    above *= frac.astype(above.dtype, copy=False)
    above += below
    return above


def mixture_bytes(rows, total, itemsize=4, shared=True):
    """Bytes of a :class:`MixtureQuantiles` with ``rows`` rows of ``total`` samples (shared edges when
    there is one style image or the weights b_s / M_s are equal)."""
    return rows * total * itemsize + (total if shared else rows * total) * 8


def quantiles_bytes(rows, m, itemsize=4):
    """Bytes of one q table (rows x m), which a caller keeps per output size."""
    return rows * m * itemsize


def quantiles_scratch_bytes(rows, total, m):
    """An upper bound on the temporaries of one :func:`quantiles` call (besides the q it returns) for a
    table of ``rows`` x ``total`` samples: three float64 arrays the size of the table (the weights, the
    cumulative integral and its knots; the middles for ``midpoint``) and as many the size of the output
    (the interpolation's rows x m pair and the difference)."""
    return 24 * rows * (total + m + 2)


def quantiles_naive(rows, weights, m, rule="midpoint"):
    """The same q from the definitions, one row and one t (or bin) at a time: rows [(R, M_s) arrays]."""
    q = np.empty((rows[0].shape[0], m))
    for i in range(q.shape[0]):
        samples = [(float(r[i, j]), b / r.shape[1]) for r, b in zip(rows, weights) for j in range(r.shape[1])]
        samples.sort(key=lambda s: s[0])  # stable: ties keep style-then-position order
        total = sum(w for _, w in samples)
        intervals, below = [], 0.0       # (start, end, value): the step quantile function
        for v, w in samples:
            intervals.append((below / total, (below + w) / total, v))
            below += w
        for j in range(m):
            if rule == "bin_mean":       # the step function's mean over [j/m, (j+1)/m)
                a, b = j / m, (j + 1) / m
                q[i, j] = m * sum(v * max(0.0, min(b, e) - max(a, s)) for s, e, v in intervals)
                continue
            t = (j + 0.5) / m
            points = [((s + e) / 2, v) for s, e, v in intervals]
            if t <= points[0][0]:
                q[i, j] = points[0][1]
            elif t >= points[-1][0]:
                q[i, j] = points[-1][1]
            else:
                k = 0
                while points[k + 1][0] <= t:
                    k += 1
                (c0, v0), (c1, v1) = points[k], points[k + 1]
                q[i, j] = v0 + (t - c0) / (c1 - c0) * (v1 - v0)
    return q
