"""Optimisers that move the pixels: SciPy's L-BFGS-B (the paper's choice) and a handwritten Adam.

Both take an objective with ``value_and_grad(x)``, report every iteration to a callback, keep the best
image seen, and stop cleanly -- returning that best image -- on Ctrl-C or when the loss stops being a
finite number.
"""
import time
from dataclasses import dataclass, field

import numpy as np

from ..backend import get_xp, synchronize, to_device, to_host
from .. import interrupts
from ..interrupts import interruptible

STOP_DONE = "done"                # ran the requested number of iterations
STOP_CONVERGED = "converged"      # the optimiser stopped on its own (no further progress possible)
STOP_INTERRUPTED = "interrupted"  # KeyboardInterrupt (Ctrl-C)
STOP_NONFINITE = "nonfinite"      # the loss or gradient became NaN or infinite
STOP_REQUESTED = "requested"      # the callback asked to stop


@dataclass
class OptimizeResult:
    x: np.ndarray            # best image found, network space, host float32 (1, 3, H, W)
    loss: float              # its loss
    iterations: int          # iterations completed
    evaluations: int         # objective evaluations
    stop: str                # one of the STOP_* values
    message: str = ""
    history: list = field(default_factory=list)  # one record per iteration (see _Tracker.record)


class _Stop(Exception):
    def __init__(self, reason, message=""):
        super().__init__(message)
        self.reason, self.message = reason, message


class _Tracker:
    """Counts evaluations, remembers the best point, and builds the per-iteration records."""

    def __init__(self, objective, callback):
        self.objective, self.callback = objective, callback
        self.start = time.perf_counter()
        self.evaluations = 0
        self.iterations = 0
        self.best_f, self.best_x = np.inf, None
        self.history = []
        self.recent = []  # (x, f, breakdown) of the last few evaluations, to label iterations

    def evaluate(self, x):
        """Objective at x (any device); returns (f, g). Raises _Stop on a non-finite result."""
        f, g = self.objective.value_and_grad(x)
        self.evaluations += 1
        breakdown = dict(getattr(self.objective, "last_breakdown", None) or {"total": f})
        if not np.isfinite(f) or not bool(get_xp(g).isfinite(g).all()):
            raise _Stop(STOP_NONFINITE, f"the loss became {f} at iteration {self.iterations + 1} "
                                        f"(evaluation {self.evaluations}); kept the best image so far")
        if f < self.best_f:
            self.best_f = f
            self.best_x = x.copy()  # stays on the device; copied to the host once, at the end
        return f, g, breakdown

    def record(self, f, breakdown, x_getter):
        """One iteration finished at a point with loss f. Returns True when the callback asks to stop."""
        interrupts.check()  # a signal whose KeyboardInterrupt Python swallowed (see interrupts.py)
        self.iterations += 1
        rec = {"iter": self.iterations, "loss": float(f),
               "content": float(breakdown.get("content", 0.0)),
               "style": float(breakdown.get("style", 0.0)),
               "tv": float(breakdown.get("tv", 0.0)),
               "seconds": time.perf_counter() - self.start,
               "evaluations": self.evaluations}
        rec.update({k: float(v) for k, v in breakdown.items() if "/" in k})
        self.history.append(rec)
        if self.callback is not None:
            return bool(self.callback(rec, x_getter))
        return False

    def result(self, stop, message="", fallback_x=None):
        x = self.best_x if self.best_x is not None else fallback_x
        x = to_host(x).astype(np.float32).reshape(self.shape)
        return OptimizeResult(x=x, loss=float(self.best_f), iterations=self.iterations,
                              evaluations=self.evaluations, stop=stop, message=message,
                              history=self.history)


def check_bounds(bounds):
    """None (no bounds) or (lo, hi): one lower and one upper bound per channel (the caller's box; the
    optimizer knows nothing of what the channels are)."""
    if bounds is None or bounds is False:
        return None
    if bounds is True or len(bounds) != 2:
        raise TypeError("bounds must be None or (lo, hi), one value per channel each")
    lo, hi = (np.asarray(b, dtype=np.float64).reshape(-1) for b in bounds)
    if lo.shape != hi.shape or np.any(lo > hi):
        raise ValueError("bounds: lo and hi must have one value per channel each, with lo <= hi")
    return lo, hi


def _bounds_vector(shape, bounds):
    lo, hi = bounds
    reps = int(np.prod(shape)) // (shape[0] * len(lo))
    lower = np.repeat(lo, reps)
    upper = np.repeat(hi, reps)
    return np.tile(lower, shape[0]), np.tile(upper, shape[0])


LBFGS_IMPLS = ("auto", "scipy", "nstyle")


def resolve_lbfgs_impl(impl, device):
    """'scipy' or 'nstyle': auto takes SciPy's on the CPU (the reference the project is specified
    with) and nstyle's own on the GPU (where SciPy's would copy the pixels to the host and back)."""
    if impl == "auto":
        return "nstyle" if device == "gpu" else "scipy"
    if impl not in LBFGS_IMPLS:
        raise ValueError(f"unknown L-BFGS-B implementation {impl!r}; choose one of {LBFGS_IMPLS}")
    return impl


def lbfgs(objective, x0, iters=500, bounds=None, callback=None, history_size=10, max_evaluations=None,
          impl="auto"):
    """Minimise with L-BFGS-B on a float64 copy of the pixels.

    x0: (1, C, H, W) start (NumPy or CuPy). bounds: None, or (lo, hi) per channel (the caller's box,
    for example ``app.files.imageio.pixel_bounds()`` keeps every pixel in 0..255).
    callback(record, get_x) is called after every iteration with the record dict (iter, loss, content,
    style, tv, seconds, evaluations and the per-layer terms) and a function returning the current image
    (host float32); returning True stops the run.
    impl: "scipy" (SciPy's, on the host: each evaluation costs a copy of the pixels each way on the GPU),
    "nstyle" (``lbfgsb.py``: the same algorithm with x, g and the history on the objective's device), or
    "auto" (see :func:`resolve_lbfgs_impl`). Both stop only on the iteration or evaluation limit
    (ftol = gtol = 0), or when no further progress is possible.
    """
    shape = tuple(x0.shape)
    device = getattr(objective.vgg, "device", "cpu") if hasattr(objective, "vgg") else "cpu"
    dtype = getattr(getattr(objective, "vgg", None), "dtype", np.float32)
    bounds = check_bounds(bounds)
    tracker = _Tracker(objective, callback)
    tracker.shape = shape
    maxfun = int(max_evaluations or 2 * iters + 20)
    run = _lbfgs_nstyle if resolve_lbfgs_impl(impl, device) == "nstyle" else _lbfgs_scipy
    try:
        with interruptible():
            stop, message = run(tracker, x0, shape, device, dtype, int(iters), bounds, int(history_size), maxfun)
    except _Stop as stop:
        return tracker.result(stop.reason, stop.message, to_host(x0))
    except KeyboardInterrupt:
        return tracker.result(STOP_INTERRUPTED, f"interrupted at iteration {tracker.iterations + 1}",
                              to_host(x0))
    return tracker.result(stop, message, to_host(x0))


def _finished(tracker, iters, what):
    if tracker.iterations >= iters:
        return STOP_DONE, ""
    return STOP_CONVERGED, f"L-BFGS-B stopped after {tracker.iterations} iterations: {what}"


def _lbfgs_scipy(tracker, x0, shape, device, dtype, iters, bounds, history_size, maxfun):
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
            raise _Stop(STOP_REQUESTED, "stopped by the callback")

    x_start = to_host(x0).astype(np.float64).ravel()
    options = {"maxiter": iters, "maxcor": history_size, "maxfun": maxfun, "ftol": 0.0, "gtol": 0.0}
    import scipy.optimize  # noqa: PLC0415 -- 0.7 s to import; every CLI start (--help, errors) would pay it

    box = scipy.optimize.Bounds(*_bounds_vector(shape, bounds)) if bounds else None
    if bounds:
        x_start = np.clip(x_start, box.lb, box.ub)
    res = scipy.optimize.minimize(fun, x_start, jac=True, method="L-BFGS-B", bounds=box,
                                  callback=on_iteration, options=options)
    return _finished(tracker, iters, res.message)


def _lbfgs_nstyle(tracker, x0, shape, device, dtype, iters, bounds, history_size, maxfun):
    from ..cpu.threads import blas_thread_control  # noqa: PLC0415
    from .lbfgsb import minimize_lbfgsb  # noqa: PLC0415

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
    return _finished(tracker, iters, res.message)


def adam(objective, x0, iters=500, lr=10.0, bounds=None, callback=None, beta1=0.9, beta2=0.999, eps=1e-8):
    """Minimise with Adam (Kingma & Ba), entirely on the objective's device.

    Same contract as :func:`lbfgs`; lr is the step size in pixel units (0..255 scale). With bounds on,
    each step is projected back into the pixel box (a clip). The record for iteration t reports the
    loss at the point where iteration t evaluated the gradient.
    """
    device = getattr(objective.vgg, "device", "cpu")
    dtype = objective.vgg.dtype
    x = to_device(to_host(x0), device).astype(dtype)
    xp = get_xp(x)
    bounds = check_bounds(bounds)
    tracker = _Tracker(objective, callback)
    tracker.shape = tuple(x.shape)
    if bounds:
        lo, hi = (xp.asarray(b.astype(dtype)).reshape(1, -1, 1, 1) for b in bounds)
        x = xp.clip(x, lo, hi)
    m = xp.zeros_like(x)
    v = xp.zeros_like(x)
    try:
        with interruptible():
            for t in range(1, iters + 1):
                f, g, breakdown = tracker.evaluate(x)
                # m, v: running means of the gradient and of its square; hats undo their bias toward 0.
                m *= beta1
                m += (1 - beta1) * g
                v *= beta2
                v += (1 - beta2) * (g * g)
                step = lr * (m / (1 - beta1 ** t)) / (xp.sqrt(v / (1 - beta2 ** t)) + eps)
                x_eval = x
                x = x - step.astype(dtype, copy=False)
                if bounds:
                    xp.clip(x, lo, hi, out=x)
                if tracker.record(f, breakdown, lambda x_eval=x_eval: to_host(x_eval).astype(np.float32)):
                    return tracker.result(STOP_REQUESTED, "stopped by the callback", to_host(x0))
            synchronize(xp)
    except _Stop as stop:
        return tracker.result(stop.reason, stop.message, to_host(x0))
    except KeyboardInterrupt:
        return tracker.result(STOP_INTERRUPTED, f"interrupted at iteration {tracker.iterations + 1}",
                              to_host(x0))
    return tracker.result(STOP_DONE, "", to_host(x0))
