"""nstyle's L-BFGS-B: box-constrained limited-memory BFGS for NumPy or CuPy arrays.

It reproduces L-BFGS-B 3.0 (Byrd, Lu, Nocedal & Zhu 1995; Zhu, Byrd, Lu & Nocedal 1997; Morales &
Nocedal 2011) as ``scipy.optimize.minimize(method="L-BFGS-B")`` runs it -- the same Cauchy point,
subspace step, line search, memory updates, restarts and stopping tests -- so that on the same
problem it follows SciPy's iterates up to rounding. The difference is where the work runs: x, g and
the correction pairs stay on the arrays' device and every n-sized step is a whole-array operation;
only 2k-sized algebra (k <= m pairs) and the scalar line search run on the host.

One iteration, from x with gradient g and the model m(z) = g'z + 1/2 z'Bz, B = theta I - W'MW:
  1. the generalised Cauchy point xcp: first minimiser of m along the projected gradient path
     (``cauchy.py``); the variables it leaves at a bound are held there;
  2. the subspace step: the minimiser of m over the other ("free") variables, projected onto the
     box; if that projection is no longer a descent direction, the longest feasible step from xcp
     toward the minimiser instead (Morales & Nocedal's rule); the result is z;
  3. a Moré-Thuente line search along d = z - x (``linesearch``), trying z itself (step 1) first;
  4. the memory update with s = step * d, y = g_new - g, skipped unless s'y > eps * (-g'd) * step.
"""
from dataclasses import dataclass

import numpy as np

from ..backend import get_xp, to_host
from .cauchy import EPS, box_masks, cauchy_point
from .linesearch import Box, max_step, search_along

_STOPS = {  # reason: (status as SciPy reports it, message)
    "gtol": (0, "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"),
    "ftol": (0, "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"),
    "maxiter": (1, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"),
    "maxfun": (1, "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"),
    "callback": (2, "STOP: CALLBACK REQUESTED HALT"),
    "abnormal": (2, "ABNORMAL: the line search failed with an empty memory"),
}


@dataclass
class LbfgsbResult:
    x: object        # final point (the last accepted iterate), x0's shape and array module
    fun: float       # f(x)
    jac: object      # gradient at x
    nit: int         # iterations completed
    nfev: int        # evaluations of fun_and_grad
    status: int      # 0 converged, 1 iteration or evaluation limit, 2 callback or abnormal (as SciPy)
    reason: str      # "gtol", "ftol", "maxiter", "maxfun", "callback" or "abnormal"
    message: str

    @property
    def success(self):
        return self.status == 0


# ---------------------------------------------------------------- small dense algebra (host)

def _forward(L, b):
    """Solve L x = b, L lower triangular (b a vector or a matrix of columns)."""
    x = np.array(b, dtype=np.float64)
    for i in range(L.shape[0]):
        x[i] = (x[i] - L[i, :i] @ x[:i]) / L[i, i]
    return x


def _backward(U, b):
    """Solve U x = b, U upper triangular."""
    x = np.array(b, dtype=np.float64)
    for i in reversed(range(U.shape[0])):
        x[i] = (x[i] - U[i, i + 1:] @ x[i + 1:]) / U[i, i]
    return x


def _middle_matrix(SY, SS, theta):
    """M of the compact form B = theta I - W'MW with W's rows [Y; theta S] (oldest first), or None.

    M is the inverse of [[-D, L'], [L, theta S'S]] (D = diag S'Y, L = strictly lower S'Y). Like
    L-BFGS-B, invert it through the Cholesky factor J of T = theta S'S + L D^-1 L' (positive definite
    when the pairs are usable):  M [v1; v2] = [(-v1 + L'q) / D; q] with q = T^-1 (v2 + L D^-1 v1).
    Applied to the identity, that gives M explicitly.
    """
    k = SY.shape[0]
    D, L = np.diag(SY).copy(), np.tril(SY, -1)
    T = theta * SS + (L / D) @ L.T
    try:
        J = np.linalg.cholesky(T)
    except np.linalg.LinAlgError:
        return None
    E = np.eye(2 * k)
    q = _backward(J.T, _forward(J, E[k:] + L @ (E[:k] / D[:, None])))
    M = np.vstack([(-E[:k] + L.T @ q) / D[:, None], q])
    M = 0.5 * (M + M.T)
    return M if np.all(np.isfinite(M)) else None


class _Memory:
    """The last m correction pairs (s, y), and the small matrices built from them.

    The pairs live in one (2m, n) device array: slot j holds y_j in row 2j and s_j in row 2j + 1, so the
    rows in use are always the first 2*col (a view, whatever the age order). B = theta I - W'MW does not
    change when W's rows and M are permuted alike, so ``M`` is kept in this slot order; the 2k algebra
    that needs L-BFGS-B's order (oldest to newest, Y block then S block) indexes through ``order()``.
    ``gram`` holds every inner product between stored rows (host), one device pass per new pair.
    """

    def __init__(self, xp, n, m):
        self.xp, self.n, self.m = xp, n, m
        self.rows = None
        self.gram = np.zeros((2 * m, 2 * m))
        self.reset()

    def reset(self):
        """Forget every pair (B = I)."""
        self.col, self.head, self.tail, self.updates, self.theta = 0, 0, 0, 0, 1.0
        self.M = np.zeros((0, 0))

    @property
    def W(self):
        if self.rows is None:
            return self.xp.zeros((0, self.n))
        return self.rows[:2 * self.col]

    def order(self):
        """Row indices of y and of s, oldest pair first."""
        slots = (self.head + np.arange(self.col)) % self.m
        return 2 * slots, 2 * slots + 1

    def push(self, s, y, ss, sy, yy):
        """Store a pair (ss = s's, sy = s'y, yy = y'y as L-BFGS-B computed them). False: reset needed."""
        self.updates += 1
        if self.updates <= self.m:
            self.col = self.updates
            self.tail = (self.head + self.updates - 1) % self.m
        else:                                   # full: overwrite the oldest slot
            self.tail = (self.tail + 1) % self.m
            self.head = (self.head + 1) % self.m
        if self.rows is None:
            self.rows = self.xp.zeros((2 * self.m, self.n))
        t = 2 * self.tail
        self.rows[t], self.rows[t + 1] = y, s
        prods = to_host(self.W @ self.rows[t:t + 2].T)     # every stored row against y and s
        used = 2 * self.col
        self.gram[:used, t:t + 2] = prods
        self.gram[t:t + 2, :used] = prods.T
        self.gram[t + 1, t + 1] = ss
        self.gram[t + 1, t] = self.gram[t, t + 1] = sy
        self.theta = yy / sy
        iy, i_s = self.order()
        M = _middle_matrix(self.gram[np.ix_(i_s, iy)], self.gram[np.ix_(i_s, i_s)], self.theta)
        if M is None:
            return False
        rows = np.concatenate([iy, i_s])        # M in slot order: W = [Y; theta S] -> stored rows
        scale = np.concatenate([np.ones(self.col), np.full(self.col, self.theta)])
        self.M = np.zeros((used, used))
        self.M[np.ix_(rows, rows)] = scale[:, None] * M * scale[None, :]
        return True


# ---------------------------------------------------------------- subspace minimisation

def _subspace_factor(memory, free, n_free):
    """(U, G_free): the factor whose solves give the subspace step, and the Gram of W over the free
    variables (slot order); None when a factorisation fails (reset needed).

    With Z the free variables and A the held ones (S_A = S restricted to A, and so on),
        K = [[-D - Y_Z'Y_Z / theta,  L_A' - R_Z'],
             [L_A - R_Z,             theta S_A'S_A]]
    where L_A = strictly lower part of S_A'Y_A and R_Z = upper part (with diagonal) of S_Z'Y_Z. K = U'EU
    with E = diag(-I, I) and U = [[L1', X], [0, L2']]: L1 L1' = D + Y_Z'Y_Z / theta, X = L1^-1 (R_Z - L_A)',
    L2 L2' = theta S_A'S_A + X'X. The Gram over A or over Z, whichever is smaller, is computed on the
    device (one gather of W's columns); the other is the full Gram minus it.
    """
    xp, W, k = memory.xp, memory.W, memory.col
    G = memory.gram[:2 * k, :2 * k]
    n_held = memory.n - n_free
    if n_held == 0:
        G_held = np.zeros_like(G)
    elif n_held <= n_free:
        part = W[:, xp.nonzero(~free)[0]]
        G_held = to_host(part @ part.T)
    else:
        part = W[:, xp.nonzero(free)[0]]
        G_held = G - to_host(part @ part.T)
    G_free = G - G_held
    iy, i_s = memory.order()
    theta = memory.theta
    D = np.diag(G[np.ix_(i_s, iy)])
    R = np.triu(G_free[np.ix_(i_s, iy)])
    L = np.tril(G_held[np.ix_(i_s, iy)], -1)
    try:
        L1 = np.linalg.cholesky(np.diag(D) + G_free[np.ix_(iy, iy)] / theta)
        X = _forward(L1, (R - L).T)
        L2 = np.linalg.cholesky(theta * G_held[np.ix_(i_s, i_s)] + X.T @ X)
    except np.linalg.LinAlgError:
        return None
    return np.block([[L1.T, X], [np.zeros((k, k)), L2.T]]), G_free


def _subspace_point(x, g, xcp, c, free, box, memory, U, G_free):
    """z: the model's minimiser over the free variables from xcp, kept in the box; None: reset needed."""
    xp, W, k, theta = memory.xp, memory.W, memory.col, memory.theta
    iy, i_s = memory.order()
    # Reduced gradient at xcp on Z: r = -(g + B (xcp - x)) = r0 + W'Mc, r0 = -g - theta (xcp - x),
    # since B (xcp - x) = theta (xcp - x) - W'M W (xcp - x) and W (xcp - x) = c (from the Cauchy step).
    # W_Z r_Z = W_Z r0 + (W_Z W_Z') Mc: the Gram saves a pass over W.
    if box.constrained:
        Mc = memory.M @ c
        r0 = xp.where(free, (x - xcp) * theta - g, 0.0)
        Wr = to_host(W @ r0) + G_free @ Mc
    else:                                        # no bounds: xcp = x, Z = everything
        Mc = np.zeros(2 * k)
        r0 = -g
        Wr = to_host(W @ r0)
    # Newton step on Z (Sherman-Morrison-Woodbury): B_Z^-1 r = r/theta + W_Z' K^-1 W_Z r / theta^2, with
    # W's rows in L-BFGS-B's order [Y; theta S] -- hence the theta scalings around the solve.
    v = _forward(U.T, np.concatenate([Wr[iy], theta * Wr[i_s]]))
    v[:k] = -v[:k]
    v = _backward(U, v)
    if not np.all(np.isfinite(v)):
        return None
    b = np.zeros(2 * k)
    b[iy], b[i_s] = v[:k] / theta, v[k:]
    step = (r0 + W.T @ xp.asarray(Mc + b)) * (1.0 / theta)    # (meaningful on Z only)
    if not box.constrained:
        return xcp + step
    lower, upper = box.lower, box.upper
    trial = xp.where(free, xp.minimum(xp.maximum(xcp + step, lower), upper), xcp)
    if not bool(xp.any(free & ((trial == lower) | (trial == upper)))):
        return trial                             # the minimiser is inside the box
    if float((trial - x) @ g) <= 0.0:
        return trial                             # its projection still points downhill: take it
    # Otherwise back off: the longest step from xcp toward the minimiser that stays in the box.
    step = xp.where(free, step, 0.0)
    alpha, first = max_step(xp, xcp, step, box, limit=1.0)
    z = xcp + alpha * step
    if alpha < 1.0:                              # the variable that blocks lands on its bound exactly
        z[first] = upper[first] if float(step[first]) > 0 else lower[first]
    return xp.minimum(xp.maximum(z, lower), upper)   # rounding must not leave the box


def _search_point(x, g, box, memory):
    """z for this iteration (steps 1-2), resetting the memory and retrying when a factor fails."""
    while True:
        if not box.constrained and memory.col > 0:  # no bounds: no Cauchy point, every variable free
            xcp, c, free, n_free = x, None, None, memory.n
        else:
            xcp, c, free = cauchy_point(x, g, box.lower, box.upper, memory.W, memory.M, memory.theta,
                                        masks=box.masks)
            if memory.col == 0:
                return xcp
            n_free = int(memory.xp.count_nonzero(free))
        if n_free == 0:
            return xcp
        factor = _subspace_factor(memory, free, n_free)
        z = None if factor is None else _subspace_point(x, g, xcp, c, free, box, memory, *factor)
        if z is not None:
            return z
        memory.reset()


# ---------------------------------------------------------------- driver

def _as_bound(xp, bound, shape, missing):
    """A bound as a flat float64 array on x's device: from None, a scalar, or an array of x's shape
    (or of its size)."""
    bound = xp.asarray(missing if bound is None else bound, dtype=xp.float64)
    if bound.ndim and bound.size == int(np.prod(shape)):
        bound = bound.reshape(shape)
    return xp.array(xp.broadcast_to(bound, shape)).reshape(-1)


def minimize_lbfgsb(fun_and_grad, x0, lower=None, upper=None, m=10, ftol=2.220446049250313e-09,
                    gtol=1e-5, maxiter=15000, maxfun=15000, maxls=20, callback=None):
    """Minimise f subject to lower <= x <= upper with L-BFGS-B (options as SciPy's minimize).

    fun_and_grad(x) -> (f, g): x and g arrays of x0's shape and module (float64); f a float.
    lower, upper: scalars, arrays of x0's shape, or None (unbounded); -inf/+inf entries allowed.
    m: pairs kept; ftol: stop when (f_k - f_k+1) / max(|f_k|, |f_k+1|, 1) <= ftol; gtol: stop when the
    projected gradient's largest entry is <= gtol; maxiter, maxfun: limits (maxfun, as in SciPy, is
    checked after each iteration); maxls: evaluations allowed per line search.
    callback(xk): after each iteration, with the new iterate -- always the point fun_and_grad was last
    called with, so its loss is the last value returned; a true result stops the run.
    Exceptions from fun_and_grad (KeyboardInterrupt included) propagate to the caller.
    Every point evaluated lies in the box (x0 is clipped into it first).
    """
    xp = get_xp(x0)
    shape = tuple(x0.shape)
    lower = _as_bound(xp, lower, shape, -np.inf)
    upper = _as_bound(xp, upper, shape, np.inf)
    if bool(xp.any(lower > upper)):
        raise ValueError("a lower bound is greater than its upper bound")
    if m < 1 or maxls < 1:
        raise ValueError("m and maxls must be positive")
    x = xp.minimum(xp.maximum(xp.asarray(x0, dtype=xp.float64).reshape(-1), lower), upper)
    masks = box_masks(lower, upper)
    box = Box(lower, upper, masks, bool(xp.any(masks[0] | masks[1])), bool(xp.all(masks[0] & masks[1])))
    nfev = 0

    def evaluate(point):
        nonlocal nfev
        value, grad = fun_and_grad(point.reshape(shape))
        nfev += 1
        return float(value), xp.array(grad, dtype=xp.float64).reshape(-1)  # a copy: g is kept

    def projected_gradient_norm(x, g):
        # Each g_i clipped to [x_i - u_i, x_i - l_i]: unchanged inside, cut to the room left near a
        # bound (so a variable at its bound, pushed outward, counts 0). NaN propagates.
        return float(xp.max(xp.abs(xp.minimum(xp.maximum(g, x - upper), x - lower))))

    def finish(reason, x, f, g, nit):
        status, message = _STOPS[reason]
        return LbfgsbResult(x.reshape(shape), f, g.reshape(shape), nit, nfev, status, reason, message)

    f, g = evaluate(x)
    if projected_gradient_norm(x, g) <= gtol:
        return finish("gtol", x, f, g, 0)
    memory = _Memory(xp, x.size, m)
    nit = 0
    while True:
        z = _search_point(x, g, box, memory)
        new = search_along(evaluate, x, f, g, z, box, nit == 0, maxls)
        if new is None:
            if memory.col == 0:                  # even steepest descent failed
                return finish("abnormal", x, f, g, nit)
            memory.reset()                       # start again from x with an empty memory
            continue
        f_old, g_old = f, g
        x, f, g = new.x, new.f, new.g
        nit += 1
        # SciPy's order: the callback, then the limits (which win over it), then the convergence tests.
        reason = "callback" if callback is not None and callback(x.reshape(shape)) else None
        if nit >= maxiter:
            reason = "maxiter"
        elif nfev > maxfun:
            reason = "maxfun"
        if reason is None and projected_gradient_norm(x, g) <= gtol:
            reason = "gtol"
        if reason is None and f_old - f <= ftol * max(abs(f_old), abs(f), 1.0):
            reason = "ftol"
        if reason is not None:
            return finish(reason, x, f, g, nit)
        # The new pair: s = step d, y = g_new - g_old; s'y from the slopes the line search measured.
        step = new.step
        scale = 1.0 if step == 1.0 else step     # (L-BFGS-B skips the product when the step is 1)
        sy = (new.slope - new.slope0) * scale
        if sy > EPS * (-new.slope0 * scale):    # curvature safely positive: keep the pair
            y = g - g_old
            s = new.d if step == 1.0 else new.d * step
            ss = new.dd if step == 1.0 else step * step * new.dd
            if not memory.push(s, y, ss, sy, float(xp.linalg.norm(y)) ** 2):
                memory.reset()
