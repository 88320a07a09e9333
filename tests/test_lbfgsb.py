"""nstyle's L-BFGS-B: the parallel Cauchy point against the sequential walk, and the whole solver
against SciPy's L-BFGS-B (same losses iteration by iteration, same iteration and evaluation counts)."""
import numpy as np
import pytest
import scipy.optimize

from nstyle.optim import lbfgsb
from nstyle.optim.cauchy import CauchyPoint, cauchy_point, cauchy_point_sequential
from nstyle.optim.lbfgsb import minimize_lbfgsb
from nstyle.optim.linesearch import FG, MoreThuente

from .conftest import BACKENDS, host, on, xp_of

# ---------------------------------------------------------------- Cauchy point

def _compact(rng, n, k):
    """A random compact L-BFGS matrix from k pairs with y = A s (A positive definite): (W, M, theta)."""
    if k == 0:
        return np.zeros((0, n)), np.zeros((0, 0)), float(rng.uniform(0.5, 2.0))
    A = rng.standard_normal((n, n))
    A = A @ A.T / n + 0.5 * np.eye(n)
    S = rng.standard_normal((k, n))
    Y = S @ A
    theta = float(Y[-1] @ Y[-1] / (S[-1] @ Y[-1]))
    SY = S @ Y.T
    L = np.tril(SY, -1)
    middle_inverse = np.block([[-np.diag(np.diag(SY)), L.T], [L, theta * S @ S.T]])
    return np.vstack([Y, theta * S]), np.linalg.inv(middle_inverse), theta


def _cauchy_instance(rng, n, k):
    """x inside a box with every kind of variable: two-sided, one-sided, unbounded, fixed, at a bound,
    zero gradient, and groups of tied breakpoints."""
    W, M, theta = _compact(rng, n, k)
    lower, upper = rng.uniform(-2.0, -0.1, n), rng.uniform(0.1, 2.0, n)
    kind = rng.integers(0, 7, n)
    lower[kind == 1], upper[kind == 2] = -np.inf, np.inf
    lower[kind == 3], upper[kind == 3] = -np.inf, np.inf
    x = rng.uniform(np.maximum(lower, -2.0), np.minimum(upper, 2.0))
    g = rng.standard_normal(n)
    at_lower = (rng.random(n) < 0.15) & np.isfinite(lower)
    x[at_lower] = lower[at_lower]
    at_upper = (rng.random(n) < 0.1) & np.isfinite(upper) & ~at_lower
    x[at_upper] = upper[at_upper]
    g[rng.random(n) < 0.1] = 0.0
    fixed = kind == 4
    lower[fixed] = upper[fixed] = x[fixed]
    tied = kind >= 5                                   # breakpoint (x - l)/g = 0.25 or 0.5 exactly
    x[tied] = lower[tied] + np.where(kind[tied] == 5, 0.25, 0.5)
    upper[tied] = np.maximum(upper[tied], x[tied] + 0.1)
    g[tied] = 1.0
    return x, g, lower, upper, W, M, theta


def _assert_same_point(a, b, what):
    assert np.max(np.abs(a.xcp - b.xcp) / (1.0 + np.abs(b.xcp)), initial=0.0) <= 1e-10, f"xcp differs: {what}"
    assert np.max(np.abs(a.c - b.c) / (1.0 + np.abs(b.c)), initial=0.0) <= 1e-10, f"c differs: {what}"
    assert np.array_equal(a.free, b.free), f"free sets differ: {what}"


@pytest.mark.parametrize("k", range(0, 11))
def test_parallel_cauchy_point_matches_the_sequential_walk(rng, k):
    for trial in range(25):
        n = int(rng.integers(1, 80))
        instance = _cauchy_instance(rng, n, k)
        walked = cauchy_point_sequential(*instance)
        for chunk in (1, 3, 4096):   # tiny chunks: partial selection, then the sorted remainder
            _assert_same_point(cauchy_point(*instance, chunk=chunk), walked,
                               f"k={k} trial={trial} n={n} chunk={chunk}")


def test_cauchy_point_edge_cases(rng):
    n, k = 12, 3
    W, M, theta = _compact(rng, n, k)
    lower, upper = np.zeros(n), np.ones(n)
    cases = {
        "all breakpoints tied": (np.full(n, 0.5), np.full(n, 1.0), lower, upper),
        "everything at a bound, pushed out": (np.zeros(n), np.ones(n), lower, upper),
        "zero gradient": (np.full(n, 0.5), np.zeros(n), lower, upper),
        "unbounded": (np.zeros(n), rng.standard_normal(n), np.full(n, -np.inf), np.full(n, np.inf)),
        "all fixed": (np.full(n, 0.3), rng.standard_normal(n), np.full(n, 0.3), np.full(n, 0.3)),
        "far box: every breakpoint passed": (np.full(n, 0.5), np.full(n, 1e-3), lower, upper),
        "one-sided": (np.full(n, 0.5), rng.standard_normal(n), lower, np.full(n, np.inf)),
    }
    for name, (x, g, lo, hi) in cases.items():
        walked = cauchy_point_sequential(x, g, lo, hi, W, M, theta)
        for chunk in (2, 4096):
            _assert_same_point(cauchy_point(x, g, lo, hi, W, M, theta, chunk=chunk), walked,
                               f"{name}, chunk={chunk}")
        assert np.all(walked.xcp >= lo) and np.all(walked.xcp <= hi), name
    # B = 2I: the first segment's minimiser is t = 1/2, exactly variable 0's breakpoint. L-BFGS-B's
    # test is strict, so the walk passes the breakpoint: variable 0 ends held, not free.
    x, g = np.array([0.5, 0.0]), np.array([1.0, 1.0])
    lower, upper = np.array([0.0, -np.inf]), np.array([1.0, np.inf])
    W, M = np.zeros((0, 2)), np.zeros((0, 0))
    walked = cauchy_point_sequential(x, g, lower, upper, W, M, 2.0)
    assert np.array_equal(walked.xcp, [0.0, -0.5]) and np.array_equal(walked.free, [False, True])
    _assert_same_point(cauchy_point(x, g, lower, upper, W, M, 2.0), walked, "breakpoint = minimiser")


# ---------------------------------------------------------------- line search

def _more_thuente_functions():
    """The six test functions of Moré & Thuente (1994), with their (ftol, gtol): (name, phi, phi', ftol, gtol)."""
    yield "-a/(a^2+2)", lambda a: -a / (a * a + 2.0), lambda a: (a * a - 2.0) / (a * a + 2.0) ** 2, 1e-3, 0.1
    yield ("(a+b)^5-2(a+b)^4", lambda a: (a + 0.004) ** 5 - 2.0 * (a + 0.004) ** 4,
           lambda a: (a + 0.004) ** 3 * (5.0 * (a + 0.004) - 8.0), 0.1, 0.1)
    beta, wiggles = 0.01, 39.0
    amplitude = 2.0 * (1.0 - beta) / (wiggles * np.pi)

    def phi(a):
        base = 1.0 - a if a <= 1.0 - beta else a - 1.0 if a >= 1.0 + beta else (a - 1.0) ** 2 / (2 * beta) + beta / 2
        return base + amplitude * np.sin(wiggles * np.pi * a / 2.0)

    def dphi(a):
        base = -1.0 if a <= 1.0 - beta else 1.0 if a >= 1.0 + beta else (a - 1.0) / beta
        return base + amplitude * wiggles * np.pi / 2.0 * np.cos(wiggles * np.pi * a / 2.0)
    yield "wiggly", phi, dphi, 0.1, 0.1
    gamma = lambda b: np.sqrt(1.0 + b * b) - b   # functions 4-6: Yanai, Ozawa & Kaneko's
    for b1, b2 in ((0.001, 0.001), (0.01, 0.001), (0.001, 0.01)):
        yield (f"yanai {b1} {b2}",
               lambda a, b1=b1, b2=b2: (gamma(b1) * np.sqrt((1 - a) ** 2 + b2 * b2)
                                        + gamma(b2) * np.sqrt(a * a + b1 * b1)),
               lambda a, b1=b1, b2=b2: (gamma(b1) * (a - 1) / np.sqrt((1 - a) ** 2 + b2 * b2)
                                        + gamma(b2) * a / np.sqrt(a * a + b1 * b1)), 1e-3, 1e-3)


def _wavy_functions(rng, count):
    """Random sums of sines plus a parabola, descending at 0, with random tolerances and step limits."""
    for trial in range(count):
        c, w, p, (q, s) = rng.uniform(0.1, 1, 3), rng.uniform(0.5, 20, 3), rng.uniform(0, 6.3, 3), rng.random(2)
        phi = lambda a, c=c, w=w, p=p, q=q, s=s: float(np.sum(c * np.sin(w * a + p)) + q * a * a - 3 * s * a)
        dphi = lambda a, c=c, w=w, p=p, q=q, s=s: float(np.sum(c * w * np.cos(w * a + p)) + 2 * q * a - 3 * s)
        first = 10.0 ** rng.uniform(-3.0, 2.0)
        ftol, gtol, xtol = rng.choice([1e-4, 1e-3, 0.1]), rng.choice([1e-3, 0.1, 0.9]), rng.choice([0.1, 1e-8])
        if dphi(0.0) < 0.0:
            yield f"wavy {trial}", phi, dphi, ftol, gtol, xtol, first, max(5.0, first) * rng.choice([1.0, 1e9])


def test_line_search_takes_minpack_steps(rng):
    """Trial steps identical, to the last bit, to SciPy's Python port of MINPACK-2's dcsrch."""
    dcsrch = pytest.importorskip("scipy.optimize._dcsrch")
    cases = [(name, phi, dphi, ftol, gtol, xtol, first, 1e10)
             for name, phi, dphi, ftol, gtol in _more_thuente_functions()
             for xtol in (0.1, 1e-8) for first in (1e-3, 1e-1, 1e1, 1e3)]
    for name, phi, dphi, ftol, gtol, xtol, first, step_max in cases + list(_wavy_functions(rng, 300)):
        theirs = []
        reference = dcsrch.DCSRCH(lambda a: (theirs.append(a), phi(a))[1], dphi, ftol, gtol, xtol, 0.0, step_max)
        reference(first, phi0=phi(0.0), derphi0=dphi(0.0))
        ours = []
        search = MoreThuente(phi(0.0), dphi(0.0), first, step_max, ftol=ftol, gtol=gtol, xtol=xtol)
        while search.status == FG and len(ours) < 100:
            ours.append(search.step)
            search.update(phi(search.step), dphi(search.step))
        assert ours == theirs, f"{name}, ftol={ftol} gtol={gtol} xtol={xtol} first step {first}: {ours} vs {theirs}"


# ---------------------------------------------------------------- the solver against SciPy, limits, errors

def _run_both(fun_and_grad, x0, lower, upper, **options):
    """Both solvers on one problem; returns (scipy's result, ours, scipy's losses, ours) per iteration.
    Every evaluated point is checked against the bounds."""
    losses = {"scipy": [], "nstyle": []}
    last = {}

    def checked(who):
        def fun(x):
            if lower is not None:
                assert np.all(x >= lower) and np.all(x <= upper), f"{who} evaluated outside the box"
            last[who] = value = fun_and_grad(x)
            return value
        return fun

    scipy_options = {key: options[ours] for key, ours in (("maxcor", "m"), ("maxiter", "maxiter"),
                     ("maxfun", "maxfun"), ("ftol", "ftol"), ("gtol", "gtol")) if ours in options}
    bounds = None if lower is None else scipy.optimize.Bounds(*np.broadcast_arrays(lower, upper, x0)[:2])
    theirs = scipy.optimize.minimize(checked("scipy"), x0, jac=True, method="L-BFGS-B", bounds=bounds,
                                     options=scipy_options,
                                     callback=lambda xk: losses["scipy"].append(last["scipy"][0]))
    ours = minimize_lbfgsb(checked("nstyle"), x0, lower, upper,
                           callback=lambda xk: losses["nstyle"].append(last["nstyle"][0]), **options)
    return theirs, ours, np.array(losses["scipy"]), np.array(losses["nstyle"])


def _assert_follows_scipy(theirs, ours, their_losses, our_losses, what, iterations=10, rtol=1e-8):
    assert (ours.nit, ours.nfev) == (theirs.nit, theirs.nfev), \
        f"{what}: nit/nfev {ours.nit}/{ours.nfev}, SciPy {theirs.nit}/{theirs.nfev}"
    assert len(our_losses) == ours.nit
    first = min(iterations, len(their_losses))
    gap = np.abs(our_losses[:first] - their_losses[:first]) / np.maximum(np.abs(their_losses[:first]), 1e-300)
    assert np.all(gap <= rtol), f"{what}: relative loss gaps {gap}"


def _quadratic(rng, n, ridge=0.1, wiggle=0.0):
    """1/2 x'Ax - b'x (A positive definite), plus wiggle * sum cos(3x) to make it non-convex."""
    A = rng.standard_normal((n, n))
    A = A @ A.T / n + ridge * np.eye(n)
    b = 3.0 * rng.standard_normal(n)
    return lambda x: (0.5 * x @ A @ x - b @ x + wiggle * np.sum(np.cos(3.0 * x)),
                      A @ x - b - 3.0 * wiggle * np.sin(3.0 * x))


def test_bounded_quadratic_follows_scipy(rng):
    fg = _quadratic(rng, 60)
    theirs, ours, t, o = _run_both(fg, np.full(60, 0.5), 0.0, 1.0)
    _assert_follows_scipy(theirs, ours, t, o, "quadratic in [0, 1]")
    active = np.mean((ours.x == 0.0) | (ours.x == 1.0))
    assert active > 0.2, f"want several active bounds, got {active:.2f}"
    assert ours.reason == "ftol" and ours.success and ours.message == theirs.message
    lower = np.where(np.arange(60) % 3 == 0, -np.inf, -0.5)     # some sides unbounded, per element
    upper = np.where(np.arange(60) % 4 == 0, np.inf, 0.5)
    theirs, ours, t, o = _run_both(fg, np.zeros(60), lower, upper)
    _assert_follows_scipy(theirs, ours, t, o, "quadratic, mixed infinite bounds")


def _deblurring(rng, n=200, weight=0.02, eps=0.01):
    """1-D deblurring with a smoothed total-variation penalty: 1/2 |Kx - b|^2 + weight sum sqrt(dx^2 + eps^2)."""
    i = np.arange(n)
    K = np.exp(-0.5 * ((i[:, None] - i[None, :]) / 3.0) ** 2)
    K /= K.sum(axis=1, keepdims=True)
    truth = np.zeros(n)
    truth[30:80], truth[100:120], truth[150:190] = 1.0, 0.6, 0.9
    blurred = K @ truth + 0.02 * rng.standard_normal(n)

    def fg(x):
        r, dx = K @ x - blurred, np.diff(x)
        s = np.sqrt(dx * dx + eps * eps)
        g = K.T @ r
        g[:-1] -= weight * dx / s
        g[1:] += weight * dx / s
        return 0.5 * r @ r + weight * s.sum(), g
    return fg, np.clip(blurred, 0.0, 1.0)


def test_tv_deblurring_follows_scipy(rng):
    fg, x0 = _deblurring(rng)
    theirs, ours, t, o = _run_both(fg, x0, 0.0, 1.0)          # to convergence (~130 iterations)
    _assert_follows_scipy(theirs, ours, t, o, "TV deblurring in [0, 1]")
    assert abs(ours.fun - theirs.fun) <= 1e-8 * abs(theirs.fun), (ours.fun, theirs.fun)
    # m = 3: the memory wraps around every third update. Rounding differences grow slowly over a long
    # run (~1e-9 relative by iteration 120) and can move the final ftol stop by an iteration: cap it.
    theirs, ours, t, o = _run_both(fg, x0, 0.0, 1.0, m=3, maxiter=60)
    _assert_follows_scipy(theirs, ours, t, o, "TV deblurring in [0, 1], m=3", iterations=60, rtol=1e-9)


def _rosenbrock(x):
    f = np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    g = np.zeros_like(x)
    g[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    g[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return f, g


def test_rosenbrock_bounded_and_not_follows_scipy():
    theirs, ours, t, o = _run_both(_rosenbrock, np.full(10, -1.0), -2.0, 0.8)
    _assert_follows_scipy(theirs, ours, t, o, "Rosenbrock in [-2, 0.8]", iterations=ours.nit, rtol=1e-6)
    assert abs(ours.fun - theirs.fun) <= 1e-8 * theirs.fun
    theirs, ours, t, o = _run_both(_rosenbrock, np.full(8, -1.0), None, None)
    _assert_follows_scipy(theirs, ours, t, o, "unbounded Rosenbrock", iterations=20)
    assert ours.fun < 1e-8


def test_projection_back_off_follows_scipy(monkeypatch):
    """A wavy bounded problem (seed picked so that it happens twice) where the projected subspace
    step is not a descent direction and L-BFGS-B backs off to the longest feasible step."""
    back_offs = []
    max_step = lbfgsb.max_step

    def counting(xp, x, d, box, limit):
        back_offs.append(limit)
        return max_step(xp, x, d, box, limit)
    monkeypatch.setattr(lbfgsb, "max_step", counting)   # the subspace step's use only
    rng = np.random.default_rng(11)
    fg = _quadratic(rng, 30, ridge=1e-3, wiggle=1.0)
    theirs, ours, t, o = _run_both(fg, rng.uniform(-1.0, 1.0, 30), -1.0, 1.0)
    assert back_offs == [1.0, 1.0], f"expected two back-offs, saw {back_offs}"
    _assert_follows_scipy(theirs, ours, t, o, "back-off", iterations=ours.nit)


def test_line_search_failures_restart_then_stop_like_scipy():
    """maxls=1: a line search that needs a second trial fails; with pairs in memory L-BFGS-B forgets
    them and retries from the same point, with none it stops ("abnormal") at the last iterate."""
    for lower, upper in ((None, None), (-2.0, 0.8)):
        bounds = None if lower is None else scipy.optimize.Bounds(np.full(10, lower), np.full(10, upper))
        theirs = scipy.optimize.minimize(_rosenbrock, np.full(10, -1.0), jac=True, method="L-BFGS-B",
                                         bounds=bounds, options={"maxls": 1})
        ours = minimize_lbfgsb(_rosenbrock, np.full(10, -1.0), lower, upper, maxls=1)
        what = f"maxls=1, bounds {lower}, {upper}"
        assert (ours.nit, ours.nfev) == (theirs.nit, theirs.nfev), what
        assert ours.reason == "abnormal" and theirs.message.startswith("ABNORMAL"), what
        assert np.allclose(ours.x, theirs.x, rtol=0, atol=1e-12), what
        # SciPy reports the failed trial's value as fun; ours is f at the returned x.
        assert ours.fun == _rosenbrock(ours.x)[0], what


def _gram_network(rng, pixels=256, c1=16, c2=32):
    """A 16x16x3 image through two random 1x1-conv + ReLU layers; loss: squared Gram differences to
    a random target image's (a miniature style loss: smooth almost everywhere, not convex)."""
    A1, b1 = rng.standard_normal((c1, 3)), 0.3 * rng.standard_normal((c1, 1))
    A2, b2 = rng.standard_normal((c2, c1)) / np.sqrt(c1), 0.3 * rng.standard_normal((c2, 1))

    def layers(X):
        z1 = A1 @ X + b1
        z2 = A2 @ np.maximum(z1, 0.0) + b2
        return z1, np.maximum(z1, 0.0), z2, np.maximum(z2, 0.0)

    _, t1, _, t2 = layers(rng.random((3, pixels)))
    target1, target2 = t1 @ t1.T / pixels, t2 @ t2.T / pixels

    def fg(x):
        z1, h1, z2, h2 = layers(x.reshape(3, pixels))
        e1, e2 = h1 @ h1.T / pixels - target1, h2 @ h2.T / pixels - target2
        dz2 = (4.0 * e2 @ h2 / pixels) * (z2 > 0)
        dz1 = (4.0 * e1 @ h1 / pixels + A2.T @ dz2) * (z1 > 0)
        return float((e1 * e1).sum() + (e2 * e2).sum()), (A1.T @ dz1).ravel()
    return fg, rng.random(3 * pixels)


def test_nonconvex_gram_loss_ends_close_to_scipy(rng):
    fg, x0 = _gram_network(rng)
    theirs, ours, t, o = _run_both(fg, x0, 0.0, 1.0, maxiter=50, ftol=0.0, gtol=0.0)
    assert ours.nit == theirs.nit == 50, (ours.nit, theirs.nit, ours.message, theirs.message)
    assert abs(ours.fun - theirs.fun) <= 0.01 * theirs.fun, f"final loss {ours.fun} vs SciPy {theirs.fun}"
    assert ours.fun < 0.05 * o[0], "the loss should have dropped"


@pytest.mark.parametrize("backend", BACKENDS)
def test_arrays_stay_on_their_device(backend, rng):
    """NumPy or CuPy arrays in, the same module out and at every evaluation; the same run as on the
    host (the GPU case runs where CuPy finds a device)."""
    array_type, (fg_host, x0) = type(xp_of(backend).zeros(1)), _deblurring(rng)
    seen = set()

    def fg(x):
        seen.add(type(x))
        f, g = fg_host(host(x))
        return f, on(backend, g)
    ours = minimize_lbfgsb(fg, on(backend, x0), 0.0, on(backend, np.ones_like(x0)), maxiter=15)
    on_host = minimize_lbfgsb(fg_host, x0, 0.0, 1.0, maxiter=15)
    assert seen == {array_type} and isinstance(ours.x, array_type), seen
    assert (ours.nit, ours.nfev) == (on_host.nit, on_host.nfev)
    assert abs(ours.fun - on_host.fun) <= 1e-8 * abs(on_host.fun)
    instance = _cauchy_instance(rng, 50, 4)            # and the Cauchy point on that device
    moved = cauchy_point(*(on(backend, a) for a in instance[:5]), *instance[5:], chunk=7)
    _assert_same_point(CauchyPoint(host(moved.xcp), moved.c, host(moved.free)),
                       cauchy_point_sequential(*instance), backend)


def test_maxiter_and_maxfun_stop_like_scipy(rng):
    fg, x0 = _deblurring(rng)
    for options, reason in (({"maxiter": 7}, "maxiter"), ({"maxfun": 9}, "maxfun")):
        theirs, ours, t, o = _run_both(fg, x0, 0.0, 1.0, **options)
        _assert_follows_scipy(theirs, ours, t, o, f"limits {options}")
        assert ours.reason == reason and ours.status == theirs.status == 1, (options, ours.reason)


def test_callback_stops_the_run(rng):
    fg, x0 = _deblurring(rng)
    seen = []

    def stop_at_three(xk):
        seen.append(xk.copy())
        return len(seen) == 3
    result = minimize_lbfgsb(fg, x0, 0.0, 1.0, callback=stop_at_three)
    assert (result.nit, result.reason, result.status) == (3, "callback", 2), result
    assert np.array_equal(result.x, seen[-1])
    assert result.fun == fg(result.x)[0] and np.allclose(result.jac, fg(result.x)[1])


def test_shapes_start_outside_the_box_and_gradient_tolerance(rng):
    target = rng.uniform(-0.5, 1.5, (2, 3, 4))
    evaluated = []

    def fg(x):
        evaluated.append(x.copy())
        return 0.5 * float(np.sum((x - target) ** 2)), x - target
    upper = np.where(rng.random(target.shape) < 0.3, np.inf, 1.0)
    result = minimize_lbfgsb(fg, 3.0 * rng.standard_normal(target.shape), 0.0, upper, gtol=1e-8)
    assert np.all(evaluated[0] >= 0.0) and np.all(evaluated[0] <= upper), "x0 is clipped into the box"
    assert all(np.all(x >= 0.0) and np.all(x <= upper) for x in evaluated)
    assert result.reason == "gtol" and result.x.shape == target.shape and result.jac.shape == target.shape
    assert np.allclose(result.x, np.clip(target, 0.0, upper), atol=1e-8)
    start = minimize_lbfgsb(fg, target, gtol=1e-8)
    assert (start.nit, start.nfev, start.reason) == (0, 1, "gtol")   # converged where it started
    with pytest.raises(ValueError):
        minimize_lbfgsb(fg, target, 1.0, 0.0)


def test_exceptions_from_the_objective_propagate():
    calls = []

    def fg(x):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return _rosenbrock(x)
    with pytest.raises(KeyboardInterrupt):
        minimize_lbfgsb(fg, np.zeros(6), -1.0, 1.0)
    assert len(calls) == 4
