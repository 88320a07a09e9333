"""2-D average and max pooling on the GPU: one kernel launch per forward and per backward.

Same contracts and caches as the reference's ``reference/pool.py``; the backwards are gathers (each input element sums what the
windows containing it send back), so they write every element once, need no zero fill and no atomics.
Derivations: ``reference/pool.py``, ``avg_pool2d_backward`` and ``max_pool2d_backward``.
"""
from ..backend import get_xp
from ..reference.pool import _geometry
from . import kernels


def _prepare(x, kernel_size, stride):
    xp = get_xp(x)
    k, s, ho, wo = _geometry(x, kernel_size, stride)
    if not kernels.supported_dtype(x.dtype):
        raise TypeError(f"pooling on the GPU supports float32 and float64, not {x.dtype}")
    return xp, xp.ascontiguousarray(x), k, s, ho, wo


def avg_pool2d_forward_gpu(x, kernel_size=2, stride=None):
    xp, x, k, s, ho, wo = _prepare(x, kernel_size, stride)
    out = xp.empty((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
    kernels.avg_pool_forward(x, out, k, s)
    return out, {"x_shape": x.shape, "k": k, "s": s}


def avg_pool2d_backward_gpu(dout, cache):
    xp = get_xp(dout)
    dout = xp.ascontiguousarray(dout)
    dx = xp.empty(cache["x_shape"], dtype=dout.dtype)
    kernels.avg_pool_backward(dout, dx, cache["k"], cache["s"])
    return dx


def max_pool2d_forward_gpu(x, kernel_size=2, stride=None):
    xp, x, k, s, ho, wo = _prepare(x, kernel_size, stride)
    out = xp.empty((x.shape[0], x.shape[1], ho, wo), dtype=x.dtype)
    winner = xp.empty(out.shape, dtype=xp.uint8 if k * k < 256 else xp.int32)
    kernels.max_pool_forward(x, out, winner, k, s)
    return out, {"x_shape": x.shape, "k": k, "s": s, "winner": winner}


def max_pool2d_backward_gpu(dout, cache):
    xp = get_xp(dout)
    dout = xp.ascontiguousarray(dout)
    dx = xp.empty(cache["x_shape"], dtype=dout.dtype)
    kernels.max_pool_backward(dout, cache["winner"], dx, cache["k"], cache["s"])
    return dx
