"""nstyle's own L-BFGS-B (``lbfgsb.py``) driven through the tracker: the same algorithm as SciPy's, with
x, g and the correction pairs on the objective's device, so a GPU run copies no pixels to the host.
"""
import numpy as np

from ..backend import get_xp, to_device, to_host
from .records import STOP_REQUESTED, finished


def run_nstyle(tracker, x0, device, dtype, iters, bounds, history_size, maxfun):
    """Minimise from x0 inside ``bounds`` (checked (lo, hi) or None); returns (stop, message)."""
    from ..cpu.threads import blas_thread_control  # noqa: PLC0415
    from .lbfgsb import minimize_lbfgsb  # noqa: PLC0415

    shape = tracker.shape
    # The optimizer's own work on the CPU is a few passes over n-vectors per iteration: with a second
    # BLAS thread it ran 10x slower here (thread start-up on every small call, a busy second core), so
    # it runs single-threaded, and the evaluations get the usual thread count back.
    set_threads = blas_thread_control() if device == "cpu" else None
    usual = set_threads(1) if set_threads else None
    last = {}

    def fun_and_grad(x):
        if set_threads:
            set_threads(usual)
        try:
            f, g, breakdown = tracker.evaluate(x.astype(dtype))
        finally:
            if set_threads:
                set_threads(1)
        last["f"], last["breakdown"] = f, breakdown
        return f, g

    def on_iteration(xk):  # xk is the point evaluated last (lbfgsb.py's contract)
        return tracker.record(last["f"], last["breakdown"], lambda: to_host(xk).astype(np.float32))

    x_start = to_device(to_host(x0), device).astype(np.float64)
    lower = upper = None
    if bounds:
        xp = get_xp(x_start)
        lo, hi = (xp.asarray(b).reshape(1, -1, 1, 1) for b in bounds)
        lower, upper = xp.broadcast_to(lo, shape), xp.broadcast_to(hi, shape)
    try:
        res = minimize_lbfgsb(fun_and_grad, x_start, lower, upper, m=history_size, ftol=0.0, gtol=0.0,
                              maxiter=iters, maxfun=maxfun, callback=on_iteration)
    finally:
        if set_threads:
            set_threads(usual)
    if res.reason == "callback":
        return STOP_REQUESTED, "stopped by the callback"
    return finished(tracker, iters, res.message)
