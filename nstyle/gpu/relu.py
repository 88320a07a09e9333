"""ReLU on the GPU: the forward rectifies and records the mask in one kernel (one read of x, one write
of out, one byte of mask per element), in place when asked. The backward is one elementwise product,
the same expression as the reference's. Derivation: ``reference/relu.py``, ``relu_backward``.
"""
from ..backend import get_xp
from . import kernels


def relu_forward_gpu(x, inplace=False):
    """Same contract as :func:`nstyle.reference.relu.relu_forward`: returns (out, mask), mask = x > 0."""
    xp = get_xp(x)
    if not (x.flags.c_contiguous and kernels.supported_dtype(x.dtype)):
        # Strided or non-float input: the generic expressions (still on the device with CuPy).
        mask = x > 0
        return xp.maximum(x, 0, out=x if inplace else None), mask
    out = x if inplace else xp.empty_like(x)
    mask = xp.empty(x.shape, dtype=bool)
    kernels.relu_forward(x, out, mask)
    return out, mask


def relu_backward_gpu(dout, mask, inplace=False):
    xp = get_xp(dout)
    return xp.multiply(dout, mask, out=dout if inplace else None)
