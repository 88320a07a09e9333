"""SciPy's L-BFGS-B (``scipy.optimize.minimize(method="L-BFGS-B")``) driven through the tracker: the
reference the project is specified with, and the CPU's default. The pixels travel to the host as a
float64 vector for every evaluation (on the GPU: a copy each way).

SciPy reports an iteration with its accepted point but not the loss breakdown there; the point was
evaluated a moment before, so the record takes the breakdown of the recent evaluation at that point.
"""
import numpy as np

from ..backend import to_device, to_host
from .records import STOP_REQUESTED, Stop, bounds_vector, finished


def run_scipy(tracker, x0, device, dtype, iters, bounds, history_size, maxfun):
    """Minimise from x0 inside ``bounds`` (checked (lo, hi) or None); returns (stop, message)."""
    shape = tracker.shape

    def fun(flat):
        x = to_device(flat.reshape(shape).astype(dtype), device)
        f, g, breakdown = tracker.evaluate(x)
        tracker.recent = ([(flat.copy(), f, breakdown)] + tracker.recent)[:4]
        return f, to_host(g).astype(np.float64).ravel()

    def on_iteration(intermediate_result):
        xk = intermediate_result.x
        f, breakdown = float(intermediate_result.fun), {"total": float(intermediate_result.fun)}
        for x_seen, f_seen, b_seen in tracker.recent:  # the accepted point was evaluated recently
            if np.array_equal(x_seen, xk):
                f, breakdown = f_seen, b_seen
                break
        if tracker.record(f, breakdown, lambda: xk.reshape(shape).astype(np.float32)):
            raise Stop(STOP_REQUESTED, "stopped by the callback")

    x_start = to_host(x0).astype(np.float64).ravel()
    options = {"maxiter": iters, "maxcor": history_size, "maxfun": maxfun, "ftol": 0.0, "gtol": 0.0}
    import scipy.optimize  # noqa: PLC0415 -- 0.7 s to import; every CLI start (--help, errors) would pay it

    box = scipy.optimize.Bounds(*bounds_vector(shape, bounds)) if bounds else None
    if bounds:
        x_start = np.clip(x_start, box.lb, box.ub)
    from ..cpu.threads import other_blas_single_threaded  # noqa: PLC0415

    # SciPy's own BLAS on one thread: its worker thread would otherwise poll, after each of the
    # optimizer's small vector operations, on a core the next evaluation needs (cpu/threads.py).
    with other_blas_single_threaded():
        res = scipy.optimize.minimize(fun, x_start, jac=True, method="L-BFGS-B", bounds=box,
                                      callback=on_iteration, options=options)
    return finished(tracker, iters, res.message)
