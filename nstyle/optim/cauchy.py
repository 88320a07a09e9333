"""The generalised Cauchy point of L-BFGS-B, two ways: in parallel (for NumPy or CuPy arrays), and as
a plain sequential transcription of the textbook algorithm, which the tests hold the parallel one to.

The problem. At an iterate x with gradient g, inside the box l <= x <= u, L-BFGS-B models f by

    m(z) = g'z + 1/2 z'Bz,    z = step from x,    B = theta I - W'MW

(the compact limited-memory matrix; here W is stored as a (2k, n) array whose rows are the 2k
correction vectors, and M is the 2k x 2k middle matrix). The generalised Cauchy point is the first
local minimiser of m along the projected steepest-descent path

    x(t) = P(x - t g),    t >= 0,    P = projection onto the box.

The path is piecewise linear. Variable i moves with slope d_i = -g_i until it reaches its bound at the
breakpoint t_i = (x_i - l_i)/g_i (g_i > 0) or (u_i - x_i)/(-g_i) (g_i < 0), then stays there;
variables without a bound in their direction never stop (t_i = inf); variables that are fixed
(l_i = u_i) or sit at a bound with -g_i pointing outward do not move at all.

Sort the breakpoints: t_(1) <= t_(2) <= ... (ties in index order). On segment j, between
T_j = t_(j) (T_0 = 0) and t_(j+1), the first j sorted variables are at their bounds and the others
still move, so with

    d_j = d with the first j sorted components zeroed          (direction on segment j)
    z_j = x(T_j) - x = sum_{i<=j} t_(i) d_(i) e_(i) + T_j d_j  (step at the segment's start)
    G_j = d_j'd_j,   p_j = W d_j,   c_j = W z_j

the model along the segment, m(z_j + s d_j) for 0 <= s <= t_(j+1) - T_j, is a parabola in s with

    slope     f1_j = g'd_j + d_j'B z_j = -G_j + theta T_j G_j - p_j'M c_j
    curvature f2_j = d_j'B d_j       = theta G_j - p_j'M p_j

(using g'd_j = -G_j, because d = -g where it moves, and d_j'z_j = T_j G_j, because the variables still
moving have moved T_j d). Its minimiser lies at s* = -f1_j / f2_j; the Cauchy point is on the first
segment with s* < t_(j+1) - T_j, at x + (T_j + max(s*, 0)) d_j with the passed variables at their
bounds. The sequential algorithm (Byrd, Lu, Nocedal & Zhu 1995, algorithm CP; SciPy's ``cauchy``)
walks the segments one by one, updating f1, f2, p and c from segment to segment. But every quantity
above is a prefix sum over the sorted breakpoints:

    G_j = G_0 - sum_{i<=j} d_(i)^2
    p_j = p_0 - sum_{i<=j} d_(i) w_(i)                     (w_i = column i of W, a 2k-vector)
    c_j = sum_{i<=j} t_(i) d_(i) w_(i) + T_j p_j

so one sort (argsort) and a few cumulative sums (cumsum) give f1_j and f2_j for all segments at
once, and the answer is the first j where the test holds. The scan goes in chunks of sorted
breakpoints, so the scratch memory is (chunk x 2k) whatever n is; the first chunk is picked by a
partial selection (partition), and since the Cauchy point usually lies among the first few
breakpoints, the full sort is rarely needed. Like L-BFGS-B, the curvature is floored at
eps * theta * G_0 past the first segment (rounding could otherwise make it vanish or turn negative),
and when every moving variable has a breakpoint and all are passed, the path ends at the last one.

The returned c = W (xcp - x) lets the subspace minimisation form B (xcp - x) without another pass.

Rounding: the walk and the prefix sums add the same terms in different orders, so the two agree to
about 1e-14 relative -- except where f1 or f2 nearly cancel, which neither computes accurately.
"""
import contextlib
from typing import NamedTuple

import numpy as np

from ..backend import get_xp, to_host

EPS = float(np.finfo(np.float64).eps)


class CauchyPoint(NamedTuple):
    xcp: object    # the generalised Cauchy point, same array module and shape as x
    c: np.ndarray  # W (xcp - x), a host 2k-vector
    free: object   # boolean mask: the variables not held at a bound at xcp (the subspace's variables)


def quiet(xp):
    """Silence NumPy's divide-by-zero warnings where the results are masked out (CuPy never warns)."""
    return np.errstate(divide="ignore", invalid="ignore") if xp is np else contextlib.nullcontext()


def box_masks(lower, upper):
    """(has_lower, has_upper, fixed) masks of a box; a solver computes them once and passes them on."""
    xp = get_xp(lower)
    has_lower, has_upper = xp.isfinite(lower), xp.isfinite(upper)
    return has_lower, has_upper, has_lower & has_upper & (upper - lower <= 0)


def _classify(xp, x, g, lower, upper, masks):
    """How each variable starts along the path, by L-BFGS-B's rules.

    Returns (d, t, free, bounded_path): d = -g for the variables that move, 0 for the others; t their
    breakpoints (inf when they never stop); free = False for the variables held at a bound from the
    start (l = u, or at a bound with the gradient pushing outward); bounded_path = True when every
    moving variable has a breakpoint, so that the path ends.
    (A missing bound is -inf/+inf, so "room to the bound" is inf there and no test below needs a mask.
    A variable with g = 0 does not move; whether L-BFGS-B calls it free-and-still or moving with
    d = 0 changes nothing.)
    """
    room_below, room_above = x - lower, upper - x
    at_lower = room_below <= 0
    at_upper = (room_above <= 0) & ~at_lower
    held = masks[2] | (at_lower & (g >= 0)) | (at_upper & (g <= 0))
    moving = ~held & (g != 0)
    d = xp.where(moving, -g, 0.0)
    with quiet(xp):   # g = 0 divides below, but only for variables that do not move
        t = xp.where(g > 0, room_below, room_above) / xp.abs(g)
    t = xp.where(moving, t, xp.inf)
    bounded_path = not bool(xp.any(moving & (t == xp.inf)))
    return d, t, ~held, bounded_path


def _stable_argsort(xp, a):
    # CuPy's sort is always stable and takes no ``kind``; NumPy's default quicksort is not.
    return xp.argsort(a, kind="stable") if xp is np else xp.argsort(a)


def _sorted_chunks(xp, breaks, t_breaks, chunk):
    """Yield the breakpoint indices in increasing t (ties in index order), a chunk at a time."""
    if breaks.size > chunk:
        # Partial selection: everything strictly below the chunk-th smallest breakpoint is a prefix of
        # the sorted order (ties at the threshold wait for the full sort, which keeps their order).
        threshold = xp.partition(t_breaks, chunk - 1)[chunk - 1]
        early = t_breaks < threshold
        if bool(early.any()):
            first = breaks[early]
            yield first[_stable_argsort(xp, t_breaks[early])]
            breaks, t_breaks = breaks[~early], t_breaks[~early]
    order = breaks[_stable_argsort(xp, t_breaks)]
    start, size = 0, chunk
    while start < order.size:
        yield order[start:start + size]
        start, size = start + size, min(2 * size, 16 * chunk)


def _exclusive_cumsum(xp, a):
    """Sums of the entries before each one, along the last axis: [0, a0, a0 + a1, ...]."""
    total = xp.cumsum(a, axis=-1)
    return xp.concatenate([xp.zeros_like(total[..., :1]), total[..., :-1]], axis=-1)


class _Path:
    """Where the scan stands: at step T, with G, p = W d and sum over passed t_i d_i w_i."""

    def __init__(self, xp, G, p):
        self.T, self.G, self.p = 0.0, G, p
        self.c_passed = xp.zeros_like(p)
        self.first = True  # still on the path's first segment (its curvature is not floored)


def _scan_chunk(xp, path, order, t, d, W, M, theta, floor):
    """Test every segment that ends at a breakpoint of this chunk, all at once (see the module doc).

    Returns (j, tsum, c) for the first segment holding the Cauchy point (j = breakpoints of the chunk
    passed before it), or None after moving ``path`` past the whole chunk.
    """
    tc, dc = t[order], d[order]
    wd = W[:, order] * dc                                     # d_i w_i, (2k, chunk)
    twd = wd * tc                                             # t_i d_i w_i
    p = path.p[:, None] - _exclusive_cumsum(xp, wd)           # p_j
    G = path.G - _exclusive_cumsum(xp, dc * dc)               # G_j
    T = xp.concatenate([xp.asarray([path.T]), tc[:-1]])       # T_j, each segment's start
    c = (path.c_passed[:, None] + _exclusive_cumsum(xp, twd)) + T * p
    Mp = M @ p
    f1 = -G + theta * T * G - (c * Mp).sum(axis=0)
    f2 = theta * G - (p * Mp).sum(axis=0)
    if path.first:  # the path's first segment keeps its curvature as computed
        f2 = xp.concatenate([f2[:1], xp.maximum(f2[1:], floor)])
    else:
        f2 = xp.maximum(f2, floor)
    dtm = -f1 / f2
    stops = dtm < (tc - T)
    if bool(stops.any()):
        j = int(xp.argmax(stops))
        s = max(float(dtm[j]), 0.0)
        return j, float(T[j]) + s, c[:, j] + s * p[:, j]
    path.T = float(tc[-1])
    path.G = path.G - float((dc * dc).sum())
    path.p = path.p - wd.sum(axis=1)
    path.c_passed = path.c_passed + twd.sum(axis=1)
    path.first = False
    return None


def cauchy_point(x, g, lower, upper, W, M, theta, chunk=4096, masks=None):
    """The generalised Cauchy point from x (see the module docstring for the derivation).

    x, g, lower, upper: (n,) float64 arrays of one module (NumPy or CuPy); missing bounds are -inf/+inf,
    and x must lie in the box. W: (2k, n) array of the correction rows; M: (2k, 2k) middle matrix
    (host or device); B = theta I - W'MW. k may be 0 (then B = theta I).
    masks: ``box_masks(lower, upper)`` when already at hand. chunk: breakpoints scanned at a time.
    Returns CauchyPoint(xcp, c = W (xcp - x) on the host, free mask).
    """
    xp = get_xp(x)
    M = xp.asarray(M, dtype=xp.float64)
    masks = box_masks(lower, upper) if masks is None else masks
    d, t, free, bounded_path = _classify(xp, x, g, lower, upper, masks)
    breaks = xp.nonzero(t < xp.inf)[0]
    p = W @ d
    G = float(d @ d)
    if breaks.size == 0 and G == 0.0:          # nothing moves: x is its own Cauchy point
        return CauchyPoint(x.copy(), np.zeros(W.shape[0]), free)
    floor = EPS * theta * G
    path = _Path(xp, G, p)
    passed = []
    hit = None
    if breaks.size:
        for order in _sorted_chunks(xp, breaks, t[breaks], chunk):
            hit = _scan_chunk(xp, path, order, t, d, W, M, theta, floor)
            passed.append(order if hit is None else order[:hit[0]])
            if hit is not None:
                break
    if hit is not None:
        tsum, c = hit[1], hit[2]
    elif breaks.size and bounded_path:        # every mover reached its bound: the path ends there
        tsum, c = path.T, path.c_passed + path.T * path.p
    else:                                     # the last segment runs to infinity
        c_T = path.c_passed + path.T * path.p
        Mp = M @ path.p
        f1 = -path.G + theta * path.T * path.G - float(c_T @ Mp)
        f2 = theta * path.G - float(path.p @ Mp)
        if not path.first:
            f2 = max(f2, floor)
        s = max(-f1 / f2, 0.0)
        tsum, c = path.T + s, c_T + s * path.p
    xcp = x + tsum * d
    if passed:
        done = xp.concatenate(passed)
        xcp[done] = xp.where(d[done] > 0, upper[done], lower[done])
        free[done] = False
    return CauchyPoint(xcp, to_host(c), free)


def cauchy_point_sequential(x, g, lower, upper, W, M, theta):
    """The same point by the textbook sequential walk (algorithm CP), one breakpoint at a time.

    A plain reference for the tests: host NumPy and Python loops, same arguments and result as
    :func:`cauchy_point`. It follows L-BFGS-B's rules for which variables move, floors the curvature
    the same way, and takes tied breakpoints in index order.
    """
    x, g, lower, upper, W = (to_host(a).astype(np.float64) for a in (x, g, lower, upper, W))
    M = to_host(M).astype(np.float64)
    n = x.size
    d = np.zeros(n)
    free = np.ones(n, dtype=bool)
    breakpoints = []          # (t_i, i)
    bounded_path = True
    for i in range(n):
        has_lower, has_upper = np.isfinite(lower[i]), np.isfinite(upper[i])
        if has_lower or has_upper:
            if has_lower and has_upper and upper[i] - lower[i] <= 0:
                free[i] = False                      # fixed variable
                continue
            if has_lower and x[i] - lower[i] <= 0:
                if g[i] >= 0:
                    free[i] = False                  # at its lower bound, pushed down
                    continue
            elif has_upper and upper[i] - x[i] <= 0:
                if g[i] <= 0:
                    free[i] = False                  # at its upper bound, pushed up
                    continue
            elif g[i] == 0:
                continue                             # inside, flat: stays, but free
        d[i] = -g[i]
        if has_lower and g[i] > 0:
            breakpoints.append(((x[i] - lower[i]) / g[i], i))
        elif has_upper and g[i] < 0:
            breakpoints.append(((upper[i] - x[i]) / (-g[i]), i))
        elif g[i] != 0:
            bounded_path = False                     # moves forever
    xcp = x.copy()
    c = np.zeros(W.shape[0])
    if not breakpoints and not d.any():
        return CauchyPoint(xcp, c, free)

    p = W @ d                                        # W d
    f1 = -(d @ d)                                    # slope at t = 0: g'd
    f2_start = -theta * f1
    f2 = f2_start - p @ M @ p                        # curvature d'Bd
    dtm = -f1 / f2                                   # minimiser's distance into the segment
    t_old = 0.0
    passed_all = True
    for t_b, b in sorted(breakpoints):
        if dtm < t_b - t_old:                        # the minimiser lies inside this segment
            passed_all = False
            break
        dt = t_b - t_old
        d_b = d[b]
        xcp[b] = upper[b] if d_b > 0 else lower[b]   # variable b stops at its bound
        free[b] = False
        z_b = xcp[b] - x[b]
        c = c + dt * p                               # c = W (x(t_b) - x)
        w_b = W[:, b]
        Mw = M @ w_b
        # Remove b from the direction: new slope and curvature at t_b.
        f1 = f1 + dt * f2 + d_b * d_b - theta * d_b * z_b + d_b * (Mw @ c)
        f2 = f2 - theta * d_b * d_b + 2.0 * d_b * (Mw @ p) - d_b * d_b * (Mw @ w_b)
        p = p - d_b * w_b
        d[b] = 0.0
        f2 = max(EPS * f2_start, f2)
        dtm = -f1 / f2
        t_old = t_b
    if passed_all and breakpoints and bounded_path:
        dtm = 0.0                                    # everything stopped: the path ends here
    dtm = max(dtm, 0.0)
    moving = d != 0
    xcp[moving] = x[moving] + (t_old + dtm) * d[moving]
    return CauchyPoint(xcp, c + dtm * p, free)
