"""2-D convolution (cross-correlation, as in every deep learning library): forward and backward.

Shapes: x (N, C, H, W), w (O, C, KH, KW), b (O,), out (N, O, Ho, Wo) with
``Ho = (H + 2*padding - KH) // stride + 1`` (likewise Wo). Zero padding, any kernel size and stride.

``conv2d_forward`` / ``conv2d_backward`` lower the convolution to one matrix product per band of output
rows (im2col, see ``im2col.py``): general, readable, and the GEMM reference the fast engines' kernels
are held to. ``*_naive`` are the obvious loops, the reference the tests compare everything against.
"""
from ..backend import get_xp
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


def conv2d_forward(x, w, b=None, stride=1, padding=0, keep_input=True):
    """Convolve x with w and add b, by im2col bands and one GEMM per band (any kernel, stride, padding).

    Inputs: x (N, C, H, W); w (O, C, KH, KW); b (O,) or None; stride, padding: ints.
    keep_input: store x in the cache so the backward can also return dw (style transfer needs only dx,
    so its engines pass False and the input can be freed as soon as the next layer has it).
    Returns: out (N, O, Ho, Wo) and a cache for :func:`conv2d_backward`.
    """
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
