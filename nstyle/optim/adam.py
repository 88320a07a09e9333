"""Adam (Kingma & Ba 2015), handwritten, entirely on the objective's device.

With bounds, each step is projected back into the box (a clip). The record for iteration t reports the
loss at the point where iteration t evaluated the gradient.
"""
import numpy as np

from ..backend import get_xp, synchronize, to_device, to_host
from .records import STOP_DONE, STOP_REQUESTED


def run_adam(tracker, x0, device, dtype, iters, bounds, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Minimise from x0 inside ``bounds`` (checked (lo, hi) or None) with step size ``lr``; returns
    (stop, message)."""
    x = to_device(to_host(x0), device).astype(dtype)
    xp = get_xp(x)
    if bounds:
        lo, hi = (xp.asarray(b.astype(dtype)).reshape(1, -1, 1, 1) for b in bounds)
        x = xp.clip(x, lo, hi)
    m = xp.zeros_like(x)
    v = xp.zeros_like(x)
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
            return STOP_REQUESTED, "stopped by the callback"
    synchronize(xp)
    return STOP_DONE, ""
