"""What every optimizer shares: the stop reasons, the result, and the tracker that counts evaluations,
keeps the best point seen and builds the one record per iteration that callbacks and logs receive.

A driver (``scipy_driver.py``, ``nstyle_driver.py``, ``adam.py``) evaluates the objective only through
:meth:`Tracker.evaluate` and ends each iteration with :meth:`Tracker.record`, so every method reports
the same way and stops the same way: on the iteration limit, when the callback asks, on Ctrl-C, or on
a loss that is not a finite number -- each time handing back the best point it has seen.
"""
import time
from dataclasses import dataclass, field

import numpy as np

from .. import interrupts
from ..backend import get_xp, to_host

STOP_DONE = "done"                # ran the requested number of iterations
STOP_CONVERGED = "converged"      # the optimiser stopped on its own (no further progress possible)
STOP_INTERRUPTED = "interrupted"  # KeyboardInterrupt (Ctrl-C)
STOP_NONFINITE = "nonfinite"      # the loss or gradient became NaN or infinite
STOP_REQUESTED = "requested"      # the callback asked to stop


@dataclass
class OptimizeResult:
    x: np.ndarray            # best point found, x0's shape, host float32
    loss: float              # its loss
    iterations: int          # iterations completed
    evaluations: int         # objective evaluations
    stop: str                # one of the STOP_* values
    message: str = ""
    history: list = field(default_factory=list)  # one record per iteration (see Tracker.record)
    method: str = ""         # "lbfgs" or "adam"
    impl: str = None         # whose L-BFGS-B ran: "scipy" or "nstyle" (None for Adam)


class Stop(Exception):
    """Raised inside a driver to end the run with ``reason`` (a STOP_* value)."""

    def __init__(self, reason, message=""):
        super().__init__(message)
        self.reason, self.message = reason, message


class Tracker:
    """Counts evaluations, remembers the best point, and builds the per-iteration records."""

    def __init__(self, objective, callback, shape):
        self.objective, self.callback, self.shape = objective, callback, tuple(shape)
        self.start = time.perf_counter()
        self.evaluations = 0
        self.iterations = 0
        self.best_f, self.best_x = np.inf, None
        self.history = []
        self.recent = []  # (x, f, breakdown) of the last few evaluations, to label iterations

    def evaluate(self, x):
        """Objective at x (any device); returns (f, g, breakdown). Raises Stop on a non-finite result."""
        f, g = self.objective.value_and_grad(x)
        self.evaluations += 1
        breakdown = dict(getattr(self.objective, "last_breakdown", None) or {"total": f})
        if not np.isfinite(f) or not bool(get_xp(g).isfinite(g).all()):
            raise Stop(STOP_NONFINITE, f"the loss became {f} at iteration {self.iterations + 1} "
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


def bounds_vector(shape, bounds):
    """The per-channel box (lo, hi) spread over every element of an (N, C, ...) array, flattened."""
    lo, hi = bounds
    reps = int(np.prod(shape)) // (shape[0] * len(lo))
    lower = np.repeat(lo, reps)
    upper = np.repeat(hi, reps)
    return np.tile(lower, shape[0]), np.tile(upper, shape[0])


def finished(tracker, iters, what):
    """How an L-BFGS-B run that returned on its own ended: the iteration limit, or converged."""
    if tracker.iterations >= iters:
        return STOP_DONE, ""
    return STOP_CONVERGED, f"L-BFGS-B stopped after {tracker.iterations} iterations: {what}"
