"""The optimizer's own cost, as bench/bench_lbfgs.py and asv's optimizer benchmarks measure it.

A cheap separable bounded quadratic over an image's worth of variables (curvatures spread over four
decades, about a quarter of the minimisers outside the box 0..255), so that nearly all the time is the
optimizer's; the objective keeps its own clock so that callers can subtract it. Both optimizers run
m = 10, ftol = gtol = 0 and a fixed iteration count.

nstyle's L-BFGS-B is imported through :func:`nstyle_lbfgsb`, which finds it where it lives now or
where it moves (nstyle.optim). No side effects on import (asv imports this module).
"""
import time

import numpy as np


def nstyle_lbfgsb():
    """nstyle's ``minimize_lbfgsb``: from nstyle.optim where the package has it, else nstyle.app."""
    try:
        from nstyle.optim.lbfgsb import minimize_lbfgsb
    except ImportError:
        from nstyle.app.lbfgsb import minimize_lbfgsb
    return minimize_lbfgsb


def problem(n, seed=0):
    """(fun_and_grad, clock): f(x) = 1/2 sum c_i (x_i - m_i)^2; clock[0] accumulates its own time."""
    rng = np.random.default_rng(seed)
    curv = 10.0 ** rng.uniform(-2, 2, n)
    centre = rng.uniform(-60, 320, n)
    clock = [0.0]

    def fun_and_grad(x):
        start = time.perf_counter()
        d = x - centre
        f, g = 0.5 * float(np.dot(curv * d, d)), curv * d
        clock[0] += time.perf_counter() - start
        return f, g
    return fun_and_grad, clock


def run_scipy(n, iters):
    """(seconds without the objective's, iterations, final value) of SciPy's L-BFGS-B."""
    import scipy.optimize
    fun, clock = problem(n)
    x0 = np.full(n, 128.0)
    t0 = time.perf_counter()
    res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=scipy.optimize.Bounds(
        np.zeros(n), np.full(n, 255.0)), options={"maxiter": iters, "maxcor": 10, "ftol": 0.0, "gtol": 0.0,
                                                  "maxfun": 2 * iters + 20})
    return time.perf_counter() - t0 - clock[0], int(res.nit), float(res.fun)


def run_nstyle(n, iters):
    """The same for nstyle's, as nstyle runs it on the CPU: its own BLAS work on one thread."""
    from nstyle.cpu.threads import blas_thread_control
    minimize_lbfgsb = nstyle_lbfgsb()
    fun, clock = problem(n)
    x0 = np.full(n, 128.0)
    set_threads = blas_thread_control()
    usual = set_threads(1) if set_threads else None
    t0 = time.perf_counter()
    try:
        res = minimize_lbfgsb(fun, x0, 0.0, 255.0, m=10, ftol=0.0, gtol=0.0, maxiter=iters, maxfun=2 * iters + 20)
    finally:
        if set_threads:
            set_threads(usual)
    return time.perf_counter() - t0 - clock[0], int(res.nit), float(res.fun)
