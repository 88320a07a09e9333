"""Rectified linear unit: forward and backward.

Shapes: any; out has the shape of x.
"""
from ..backend import get_xp


def relu_forward(x, inplace=False):
    """out = max(x, 0). The cache is the boolean mask ``x > 0`` (1 byte per element, not 4).

    inplace=True overwrites x with the result (the VGG hot path does this: the convolution output is
    not needed once rectified, and that saves a full activation-sized allocation per layer).
    """
    xp = get_xp(x)
    mask = x > 0
    out = xp.maximum(x, 0, out=x if inplace else None)
    return out, mask


def relu_backward(dout, cache, inplace=False):
    """dx = dout where x > 0, else 0.

    Derivation: d max(x, 0)/dx is 1 for x > 0 and 0 for x < 0. At x == 0 the function has no derivative;
    like PyTorch we use 0 there (the mask is ``x > 0``, strict), so a unit that is exactly off passes
    nothing back. inplace=True writes into dout.
    """
    xp = get_xp(dout)
    return xp.multiply(dout, cache, out=dout if inplace else None)


def relu_forward_naive(x):
    """Reference: element by element."""
    xp = get_xp(x)
    out = xp.empty_like(x)
    mask = xp.empty(x.shape, dtype=bool)
    for idx in range(x.size):
        v = x.flat[idx]
        mask.flat[idx] = v > 0
        out.flat[idx] = v if v > 0 else 0
    return out, mask


def relu_backward_naive(dout, cache):
    xp = get_xp(dout)
    dx = xp.zeros_like(dout)
    for idx in range(dout.size):
        if cache.flat[idx]:
            dx.flat[idx] = dout.flat[idx]
    return dx
