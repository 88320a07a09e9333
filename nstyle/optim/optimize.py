"""The entry point every run calls: :func:`minimize` moves the pixels with L-BFGS-B (the paper's choice;
SciPy's or nstyle's own) or a handwritten Adam. ``lbfgs`` and ``adam`` are its two public short forms
(``nstyle.lbfgs``, ``nstyle.adam``).

Every method takes an objective with ``value_and_grad(x)``, reports every iteration to a callback, keeps
the best point seen, and stops cleanly -- returning that best point -- on Ctrl-C or when the loss stops
being a finite number (``records.py``). The box comes from the caller, one bound per channel; the
optimizers know nothing of images.
"""
import numpy as np

from ..interrupts import interruptible
from ..backend import to_host
from .adam import run_adam
from .nstyle_driver import run_nstyle
from .records import (STOP_CONVERGED, STOP_DONE, STOP_INTERRUPTED, STOP_NONFINITE, STOP_REQUESTED,  # noqa: F401
                      OptimizeResult, Stop, Tracker, check_bounds)
from .scipy_driver import run_scipy

METHODS = ("lbfgs", "adam")
LBFGS_IMPLS = ("auto", "scipy", "nstyle")


def resolve_lbfgs_impl(impl, device):
    """'scipy' or 'nstyle': auto takes SciPy's on the CPU (the reference the project is specified
    with) and nstyle's own on the GPU (where SciPy's would copy the pixels to the host and back).
    A run resolves it once, for the device its network is on, and records the answer."""
    if impl == "auto":
        return "nstyle" if device == "gpu" else "scipy"
    if impl not in LBFGS_IMPLS:
        raise ValueError(f"unknown L-BFGS-B implementation {impl!r}; choose one of {LBFGS_IMPLS}")
    return impl


def minimize(objective, x0, method="lbfgs", *, iters=500, bounds=None, callback=None, impl="auto", lr=10.0,
             history_size=10, max_evaluations=None, beta1=0.9, beta2=0.999, eps=1e-8):
    """Minimise ``objective`` from x0 with ``method`` ("lbfgs" or "adam"); returns an OptimizeResult.

    x0: (1, C, H, W) start (NumPy or CuPy). bounds: None, or (lo, hi) per channel (the caller's box, for
    example ``app.files.imageio.pixel_bounds()`` keeps every pixel in 0..255).
    callback(record, get_x) is called after every iteration with the record dict (iter, loss, content,
    style, tv, seconds, evaluations and the per-layer terms) and a function returning the current point
    (host float32); returning True stops the run.
    impl (L-BFGS-B only): "scipy" (SciPy's, on the host: each evaluation costs a copy of the pixels each
    way on the GPU), "nstyle" (``lbfgsb.py``: the same algorithm with x, g and the history on the
    objective's device), or "auto" (see :func:`resolve_lbfgs_impl`). Both stop only on the iteration or
    evaluation limit (ftol = gtol = 0), or when no further progress is possible; the result's ``impl``
    says which ran. history_size, max_evaluations: L-BFGS-B's memory and evaluation limit (default
    2 * iters + 20). lr, beta1, beta2, eps (Adam only): the step size, in the units of x, and Adam's
    decay rates and denominator guard.
    """
    if method not in METHODS:
        raise ValueError(f"unknown optimizer {method!r}; choose one of {METHODS}")
    vgg = getattr(objective, "vgg", None)
    device = getattr(vgg, "device", "cpu")
    dtype = getattr(vgg, "dtype", np.float32)
    bounds = check_bounds(bounds)
    tracker = Tracker(objective, callback, x0.shape)
    iters = int(iters)
    if method == "lbfgs":
        impl = resolve_lbfgs_impl(impl, device)
        driver = run_nstyle if impl == "nstyle" else run_scipy
        maxfun = int(max_evaluations or 2 * iters + 20)

        def go():
            return driver(tracker, x0, device, dtype, iters, bounds, int(history_size), maxfun)
    else:
        impl = None

        def go():
            return run_adam(tracker, x0, device, dtype, iters, bounds, lr, beta1, beta2, eps)
    try:
        with interruptible():
            stop, message = go()
    except Stop as stop:
        result = tracker.result(stop.reason, stop.message, to_host(x0))
    except KeyboardInterrupt:
        result = tracker.result(STOP_INTERRUPTED, f"interrupted at iteration {tracker.iterations + 1}", to_host(x0))
    else:
        result = tracker.result(stop, message, to_host(x0))
    result.method, result.impl = method, impl
    return result


def lbfgs(objective, x0, iters=500, bounds=None, callback=None, history_size=10, max_evaluations=None,
          impl="auto"):
    """Minimise with L-BFGS-B on a float64 copy of the pixels: :func:`minimize` with method "lbfgs"."""
    return minimize(objective, x0, "lbfgs", iters=iters, bounds=bounds, callback=callback, impl=impl,
                    history_size=history_size, max_evaluations=max_evaluations)


def adam(objective, x0, iters=500, lr=10.0, bounds=None, callback=None, beta1=0.9, beta2=0.999, eps=1e-8):
    """Minimise with Adam (Kingma & Ba), entirely on the objective's device: :func:`minimize` with
    method "adam"; lr is the step size in pixel units (0..255 scale)."""
    return minimize(objective, x0, "adam", iters=iters, bounds=bounds, callback=callback, lr=lr, beta1=beta1,
                    beta2=beta2, eps=eps)
