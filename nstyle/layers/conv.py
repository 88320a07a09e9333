"""2-D convolution (cross-correlation, as in every deep learning library): forward and backward.

Shapes: x (N, C, H, W), w (O, C, KH, KW), b (O,), out (N, O, Ho, Wo) with
``Ho = (H + 2*padding - KH) // stride + 1`` (likewise Wo). Zero padding, any kernel size and stride.

``conv2d_forward`` / ``conv2d_backward`` take the CPU fast path of ``fastconv.py`` (padded layout, direct
or Winograd kernels, input gradient as a convolution with flipped weights) for NumPy arrays with a 3x3
kernel, stride 1 and padding 1 -- every convolution of VGG -- and the im2col path otherwise.
``*_im2col`` lower the convolution to one matrix product per band of output rows (see ``im2col.py``):
the general path, and the GEMM reference for the fast kernels. ``*_naive`` are the obvious loops, the
reference the tests compare everything against.
"""
import numpy as np

from ..backend import get_xp, uses_device_kernels
from . import padded
from .fastconv import PreparedConv3x3
from .im2col import band_rows, col2im_band, im2col_band


def conv_output_size(h, w, kh, kw, stride, padding):
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


def _check(x, w, b, stride, padding):
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d expects x (N,C,H,W) and w (O,C,KH,KW); got {x.shape} and {w.shape}")
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels, weights expect {w.shape[1]}")
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"conv2d: bias shape {b.shape} does not match {w.shape[0]} filters")
    if stride < 1 or padding < 0:
        raise ValueError(f"conv2d: stride must be >= 1 and padding >= 0 (got {stride}, {padding})")
    ho, wo = conv_output_size(x.shape[2], x.shape[3], w.shape[2], w.shape[3], stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: input {x.shape[2]}x{x.shape[3]} too small for a {w.shape[2]}x{w.shape[3]} "
                         f"kernel with padding {padding}")
    return ho, wo


def _pad(x, padding):
    xp = get_xp(x)
    if padding == 0:
        return x
    n, c, h, w = x.shape
    out = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
    out[:, :, padding:padding + h, padding:padding + w] = x
    return out


def _fast_case(x, w, stride, padding):
    return (get_xp(x) is np and w.shape[2:] == (3, 3) and stride == 1 and padding == 1
            and x.dtype == w.dtype and x.dtype in (np.float32, np.float64))


def conv2d_forward(x, w, b=None, stride=1, padding=0, keep_input=True):
    """Convolve x with w and add b.

    Inputs: x (N, C, H, W); w (O, C, KH, KW); b (O,) or None; stride, padding: ints.
    keep_input: store x in the cache so the backward can also return dw (style transfer needs only dx,
    so its hot path passes False and the input can be freed as soon as the next layer has it).
    Returns: out (N, O, Ho, Wo) and a cache for :func:`conv2d_backward`.
    """
    if uses_device_kernels(x):  # GPU: same lowering, bands and launches sized for the device
        from .conv_gpu import conv2d_forward_gpu  # noqa: PLC0415
        return conv2d_forward_gpu(x, w, b, stride, padding, keep_input)
    _check(x, w, b, stride, padding)
    if not _fast_case(x, w, stride, padding):
        return conv2d_forward_im2col(x, w, b, stride, padding, keep_input)
    n, _, h, wd = x.shape
    prep = PreparedConv3x3(w, b)
    out = np.empty((n, w.shape[0], h, wd), dtype=x.dtype)
    outbuf = np.empty(padded.padded_shape(w.shape[0], h, wd), dtype=x.dtype)
    for i in range(n):
        prep.run(padded.to_padded(x[i]), outbuf, h, wd, bias=True)
        out[i] = padded.interior(outbuf, h, wd)
    cache = {"x": x if keep_input else None, "w": w, "has_bias": b is not None, "stride": stride,
             "padding": padding, "x_shape": x.shape, "prepared": prep}
    return out, cache


def conv2d_forward_im2col(x, w, b=None, stride=1, padding=0, keep_input=True):
    """:func:`conv2d_forward` by im2col bands and GEMM, for any kernel, stride and padding (NumPy or CuPy)."""
    xp = get_xp(x)
    ho, wo = _check(x, w, b, stride, padding)
    n, c, _, _ = x.shape
    o, _, kh, kw = w.shape
    xpad = _pad(x, padding)
    w_mat = w.reshape(o, c * kh * kw)
    out = xp.empty((n, o, ho, wo), dtype=x.dtype)
    rows = band_rows(c, kh, kw, wo)
    cols = xp.empty((c, kh, kw, rows, wo), dtype=x.dtype)
    for i in range(n):
        flat_out = out[i].reshape(o, ho * wo)
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            band = cols[:, :, :, :r1 - r0] if r1 - r0 < rows else cols
            im2col_band(xpad[i], kh, kw, stride, r0, r1, wo, band)
            flat_out[:, r0 * wo:r1 * wo] = w_mat @ band.reshape(c * kh * kw, (r1 - r0) * wo)
    if b is not None:
        out += b.reshape(1, o, 1, 1)
    cache = {"x": x if keep_input else None, "w": w, "has_bias": b is not None, "stride": stride,
             "padding": padding, "x_shape": x.shape}
    return out, cache


def conv2d_backward(dout, cache, weight_grads=False):
    """Backward of :func:`conv2d_forward`.

    Inputs: dout (N, O, Ho, Wo), the loss gradient at the output; cache from the forward.
    Returns: dx (N, C, H, W); with ``weight_grads=True`` returns (dx, dw, db) instead.

    On the fast path dx is the padding-1 convolution of dout with the weights flipped and transposed
    (derivation: ``conv3x3.flip_transpose``); dw and db, when asked for, come from the im2col path.
    """
    if uses_device_kernels(dout):
        from .conv_gpu import conv2d_backward_gpu  # noqa: PLC0415
        return conv2d_backward_gpu(dout, cache, weight_grads)
    prep = cache.get("prepared")
    if prep is None or get_xp(dout) is not np or dout.dtype != prep.w.dtype:
        return conv2d_backward_im2col(dout, cache, weight_grads)
    n, c, h, wd = cache["x_shape"]
    dx = np.empty((n, c, h, wd), dtype=dout.dtype)
    dxbuf = np.empty(padded.padded_shape(c, h, wd), dtype=dout.dtype)
    for i in range(n):
        prep.run(padded.to_padded(dout[i]), dxbuf, h, wd, transposed=True)
        dx[i] = padded.interior(dxbuf, h, wd)
    if not weight_grads:
        return dx
    _, dw, db = conv2d_backward_im2col(dout, cache, weight_grads=True)
    return dx, dw, db


def conv2d_backward_im2col(dout, cache, weight_grads=False):
    """Backward of :func:`conv2d_forward_im2col` (same contract as :func:`conv2d_backward`).

    Derivation: the forward is ``out[n,o,p] = b[o] + sum_k W[o,k] cols[n,k,p]`` with k running over
    (c, ki, kj) and p over output positions, and cols a fixed linear gather of x (im2col). So
      dcols = W^T dout                    -> dx = col2im(dcols)   (the adjoint of the gather: scatter-add),
      dW    = sum_n dout cols^T           (needs x, hence keep_input),
      db[o] = sum_{n,p} dout[n,o,p].
    """
    xp = get_xp(dout)
    w = cache["w"]
    stride, padding = cache["stride"], cache["padding"]
    n, c, h, wd = cache["x_shape"]
    o, _, kh, kw = w.shape
    _, _, ho, wo = dout.shape
    w_t = w.reshape(o, c * kh * kw).T
    dxpad = xp.zeros((n, c, h + 2 * padding, wd + 2 * padding), dtype=dout.dtype)
    rows = band_rows(c, kh, kw, wo)
    for i in range(n):
        flat_dout = dout[i].reshape(o, ho * wo)
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            dcols = w_t @ flat_dout[:, r0 * wo:r1 * wo]
            col2im_band(dcols.reshape(c, kh, kw, r1 - r0, wo), dxpad[i], kh, kw, stride, r0, r1, wo)
    dx = dxpad[:, :, padding:padding + h, padding:padding + wd]
    if padding:
        dx = xp.ascontiguousarray(dx)
    if not weight_grads:
        return dx
    if cache["x"] is None:
        raise ValueError("conv2d_backward: weight gradients need the input; run the forward with keep_input=True")
    xpad = _pad(cache["x"], padding)
    dw = xp.zeros((o, c * kh * kw), dtype=dout.dtype)
    cols = xp.empty((c, kh, kw, rows, wo), dtype=dout.dtype)
    for i in range(n):
        flat_dout = dout[i].reshape(o, ho * wo)
        for r0 in range(0, ho, rows):
            r1 = min(ho, r0 + rows)
            band = cols[:, :, :, :r1 - r0] if r1 - r0 < rows else cols
            im2col_band(xpad[i], kh, kw, stride, r0, r1, wo, band)
            dw += flat_dout[:, r0 * wo:r1 * wo] @ band.reshape(c * kh * kw, (r1 - r0) * wo).T
    db = dout.sum(axis=(0, 2, 3)) if cache["has_bias"] else None
    return dx, dw.reshape(w.shape), db


def conv2d_forward_naive(x, w, b=None, stride=1, padding=0):
    """Reference forward: one dot product per output element. Same contract as conv2d_forward."""
    xp = get_xp(x)
    ho, wo = _check(x, w, b, stride, padding)
    n, o = x.shape[0], w.shape[0]
    kh, kw = w.shape[2], w.shape[3]
    xpad = _pad(x, padding)
    out = xp.zeros((n, o, ho, wo), dtype=x.dtype)
    for i in range(n):
        for f in range(o):
            for r in range(ho):
                for s in range(wo):
                    patch = xpad[i, :, r * stride:r * stride + kh, s * stride:s * stride + kw]
                    out[i, f, r, s] = (patch * w[f]).sum() + (b[f] if b is not None else 0)
    return out, {"x": x, "w": w, "has_bias": b is not None, "stride": stride, "padding": padding,
                 "x_shape": x.shape}


def conv2d_backward_naive(dout, cache):
    """Reference backward: each output element sends dout * w back to its patch and dout * patch to w.

    Returns (dx, dw, db).
    """
    xp = get_xp(dout)
    x, w, stride, padding = cache["x"], cache["w"], cache["stride"], cache["padding"]
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xpad = _pad(x, padding)
    dxpad = xp.zeros_like(xpad)
    dw = xp.zeros_like(w)
    for i in range(n):
        for f in range(o):
            for r in range(dout.shape[2]):
                for s in range(dout.shape[3]):
                    g = dout[i, f, r, s]
                    rs, cs = slice(r * stride, r * stride + kh), slice(s * stride, s * stride + kw)
                    dxpad[i, :, rs, cs] += g * w[f]
                    dw[f] += g * xpad[i, :, rs, cs]
    db = dout.sum(axis=(0, 2, 3)) if cache["has_bias"] else None
    return dxpad[:, :, padding:padding + h, padding:padding + wd], dw, db
