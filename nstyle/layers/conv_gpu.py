"""2-D convolution on the GPU: the same lowering as the CPU path (im2col + one GEMM per band of output
rows), with bands sized for a GPU and each step a single launch.

Per band of output rows [r0, r0+nrows), P = nrows * Wo positions, K = C*KH*KW:

  forward   im2col_band          x (C, H, W)      -> cols (K, P)          one kernel launch
            out[:, band] = W @ cols               (O, K) @ (K, P)          one cuBLAS call, written in place
  backward  dcols = W^T @ dout[:, band]           (K, O) @ (O, P)          one cuBLAS call, read in place
            col2im_band          dcols (K, P)     -> dx += ...            one kernel launch (a gather)
  weights   dW += dout[:, band] @ cols^T          (O, P) @ (P, K)          one cuBLAS call (needs x)

The band of ``out``/``dout`` is a (O, P) block of the (O, Ho*Wo) map, rows Ho*Wo apart, which cuBLAS
addresses in place through its leading dimension (see ``gpu_blas.py``). Padding is never materialised:
the kernels read it as zeros and never write it.

Band size: the column buffer holds about half as many elements as the layer's output, clamped to
[BAND_MIN_ELEMS, BAND_MAX_ELEMS] (16 M .. 256 MB in float32). A GPU needs wide products -- even the
smallest band gives cuBLAS thousands of columns -- while the buffer stays below half an activation, so
the peak memory of an evaluation (set by the activations of the first block) hardly grows; the cap
bounds it at 4K sizes.

Derivations are the CPU path's (``conv.py``, ``conv2d_backward``): only the order of work differs.
"""
import numpy as np

from ..backend import get_xp
from . import gpu_blas, gpu_kernels
from .gpu_blas import OP_N, OP_T

BAND_MIN_ELEMS = 1 << 22
BAND_MAX_ELEMS = 1 << 26


def gpu_band_rows(k, ho, wo, out_elems):
    """Output rows per band: the column buffer (k x rows*wo) holds ~out_elems/2 elements, within the bounds."""
    budget = min(max(out_elems // 2, BAND_MIN_ELEMS), BAND_MAX_ELEMS)
    return max(1, min(ho, budget // max(1, k * wo)))


def _common_dtype(xp, *arrays):
    dtype = np.result_type(*[a.dtype for a in arrays if a is not None])
    if not gpu_kernels.supported_dtype(dtype):
        raise TypeError(f"conv2d on the GPU supports float32 and float64, not {dtype}")
    return dtype


def conv2d_forward_gpu(x, w, b=None, stride=1, padding=0, keep_input=True):
    """Same contract as :func:`nstyle.layers.conv.conv2d_forward`."""
    from .conv import _check  # noqa: PLC0415 -- conv.py imports this module lazily too

    xp = get_xp(x)
    ho, wo = _check(x, w, b, stride, padding)
    dtype = _common_dtype(xp, x, w, b)
    x = xp.ascontiguousarray(x, dtype=dtype)
    w_c = xp.ascontiguousarray(w, dtype=dtype)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    k = c * kh * kw
    out = xp.empty((n, o, ho, wo), dtype=dtype)
    rows = gpu_band_rows(k, ho, wo, o * ho * wo)
    cols = xp.empty(k * rows * wo, dtype=dtype)
    w_flat = w_c.reshape(-1)
    for i in range(n):
        out_flat = out[i].reshape(-1)
        for r0 in range(0, ho, rows):
            nrows = min(rows, ho - r0)
            p = nrows * wo
            band = cols[:k * p]
            gpu_kernels.im2col_band(x[i], band, kh, kw, stride, padding, r0, nrows, wo)
            # out[:, band] (O x P, row-major, rows Ho*Wo apart) is column-major (P x O) with ld Ho*Wo:
            #   out_cm(P x O) = cols_cm(P x K, ld P) @ W_cm(K x O, ld K)
            gpu_blas.gemm(OP_N, OP_N, p, o, k, band, p, w_flat, k, out_flat[r0 * wo:], ho * wo)
    del cols
    if b is not None:
        out += xp.asarray(b, dtype=dtype).reshape(1, o, 1, 1)
    cache = {"x": x if keep_input else None, "w": w_c, "has_bias": b is not None, "stride": stride,
             "padding": padding, "x_shape": x.shape, "gpu": True}
    return out, cache


def conv2d_backward_gpu(dout, cache, weight_grads=False):
    """Same contract as :func:`nstyle.layers.conv.conv2d_backward`."""
    xp = get_xp(dout)
    dtype = _common_dtype(xp, dout, cache["w"])
    w = xp.ascontiguousarray(cache["w"], dtype=dtype)
    stride, padding = cache["stride"], cache["padding"]
    n, c, h, wd = cache["x_shape"]
    o, _, kh, kw = w.shape
    k = c * kh * kw
    _, _, ho, wo = dout.shape
    dout = xp.ascontiguousarray(dout, dtype=dtype)
    w_flat = w.reshape(-1)
    rows = gpu_band_rows(k, ho, wo, o * ho * wo)
    dx = xp.zeros((n, c, h, wd), dtype=dtype)
    dcols = xp.empty(k * rows * wo, dtype=dtype)
    for i in range(n):
        dout_flat = dout[i].reshape(-1)
        for r0 in range(0, ho, rows):
            nrows = min(rows, ho - r0)
            p = nrows * wo
            band = dcols[:k * p]
            # dcols (K x P, row-major) is column-major (P x K) with ld P:
            #   dcols_cm(P x K) = dout_cm(P x O, ld Ho*Wo) @ W_cm(K x O, ld K)^T
            gpu_blas.gemm(OP_N, OP_T, p, k, o, dout_flat[r0 * wo:], ho * wo, w_flat, k, band, p)
            gpu_kernels.col2im_band(band, dx[i], kh, kw, stride, padding, r0, nrows, wo)
    del dcols
    if not weight_grads:
        return dx
    x = cache["x"]
    if x is None:
        raise ValueError("conv2d_backward: weight gradients need the input; run the forward with keep_input=True")
    dw = xp.zeros((o, k), dtype=dtype)
    dw_flat = dw.reshape(-1)
    cols = xp.empty(k * rows * wo, dtype=dtype)
    for i in range(n):
        dout_flat = dout[i].reshape(-1)
        for r0 in range(0, ho, rows):
            nrows = min(rows, ho - r0)
            p = nrows * wo
            band = cols[:k * p]
            gpu_kernels.im2col_band(x[i], band, kh, kw, stride, padding, r0, nrows, wo)
            # dW (O x K, row-major) is column-major (K x O) with ld K; accumulate over bands (beta = 1):
            #   dW_cm(K x O) += cols_cm(P x K, ld P)^T @ dout_cm(P x O, ld Ho*Wo)
            gpu_blas.gemm(OP_T, OP_N, k, o, p, band, p, dout_flat[r0 * wo:], ho * wo, dw_flat, k, beta=1.0)
    db = dout.sum(axis=(0, 2, 3)) if cache["has_bias"] else None
    return dx, dw.reshape(w.shape), db
