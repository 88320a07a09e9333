"""2-D convolution on the GPU: the same lowering as the CPU path (im2col + one GEMM per band of output
rows), with bands sized for a GPU and each step a single launch.

Per band of output rows [r0, r0+nrows), P = nrows * Wo positions, K = C*KH*KW:

  forward   im2col_band          x (C, H, W)      -> cols (K, P)          one kernel launch
            out[:, band] = W @ cols               (O, K) @ (K, P)          one cuBLAS call, written in place
  backward  dcols = W^T @ dout[:, band]           (K, O) @ (O, P)          one cuBLAS call, read in place
            col2im_band          dcols (K, P)     -> dx += ...            one kernel launch (a gather)
  weights   dW += dout[:, band] @ cols^T          (O, P) @ (P, K)          one cuBLAS call (needs x)

The band of ``out``/``dout`` is a (O, P) block of the (O, Ho*Wo) map, rows Ho*Wo apart, which cuBLAS
addresses in place through its leading dimension (see ``blas.py``). Padding is never materialised:
the kernels read it as zeros and never write it.

Band size: the column buffer holds about half as many elements as the layer's output, clamped to
[BAND_MIN_ELEMS, BAND_MAX_ELEMS] (16 M .. 256 MB in float32). A GPU needs wide products -- even the
smallest band gives cuBLAS thousands of columns -- while the buffer stays below half an activation, so
the peak memory of an evaluation (set by the activations of the first block) hardly grows; the cap
bounds it at 4K sizes.

:func:`set_band_rows` overrides the budget with a fixed number of rows per band (the tests run every
multi-band branch on small maps with it).

Derivations are the reference's (``reference/conv.py``, ``conv2d_backward``): only the order of work
differs.

A second lowering, chosen with :func:`set_lowering` ("winograd"), computes 3x3 stride-1 convolutions
(all of VGG's) with Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
Convolutional Neural Networks", 2016; the algebra and the weight transform, shared with the CPU engine:
``reference/winograd.py``): per band of 2x2 output tiles, one kernel turns each 4x4 input tile
d into V = B^T d B, 16 batched GEMMs multiply by the transformed weights U = G g G^T (summing over
input channels), and one kernel turns each tile back with Y = A^T M A (+ bias). 16 multiplications per
2x2 outputs instead of 36: 2.25x fewer. The backward's dx is the same algorithm: dx is the correlation
of dout (padded by 2 - padding) with the weights flipped in both spatial axes and with input and output
channels swapped. Weight gradients always use im2col.
"""
import numpy as np

from ..backend import get_xp
from ..reference.conv import _check
from ..reference.winograd import winograd_weights
from . import blas, kernels
from .blas import OP_N, OP_T

BAND_MIN_ELEMS = 1 << 22
BAND_MAX_ELEMS = 1 << 26
WINOGRAD_BAND_MIN_ELEMS = 1 << 23
WINOGRAD_BAND_MAX_ELEMS = 1 << 25

LOWERINGS = ("im2col", "winograd")
# Winograd by default: on an H200 it evaluated the objective in 40 ms at 1024 and 128 ms at 2048 against
# im2col's 68 and 253 ms (bench/results/gpu_precision_h200.json), with the same 2-norm gradient error
# against float64 as im2col and cuDNN (8e-4 at 1024 with random weights).
LOWERING = "winograd"

# None: rows per band from the budget (gpu_band_rows, winograd_band_tile_rows); an int: at most that many.
_BAND_ROWS = None


def set_lowering(name):
    """Choose how 3x3 stride-1 convolutions run on the GPU ("im2col" or "winograd"); returns the previous
    choice. Other convolutions always use im2col."""
    global LOWERING
    if name not in LOWERINGS:
        raise ValueError(f"unknown lowering {name!r}; choose one of {LOWERINGS}")
    before, LOWERING = LOWERING, name
    return before


def set_band_rows(rows):
    """Bands of at most ``rows`` output rows (im2col) or tile rows of two output rows (Winograd) instead of
    the memory budget's, so that small maps run the multi-band code; None: back to the budget. Returns the
    previous setting."""
    global _BAND_ROWS
    if rows is not None and int(rows) < 1:
        raise ValueError(f"rows per band must be >= 1 (got {rows})")
    before, _BAND_ROWS = _BAND_ROWS, None if rows is None else int(rows)
    return before


def _capped(rows):
    return rows if _BAND_ROWS is None else min(rows, _BAND_ROWS)


def winograd_applies(kh, kw, stride, padding):
    return LOWERING == "winograd" and kh == 3 and kw == 3 and stride == 1 and padding <= 2


def gpu_band_rows(k, ho, wo, out_elems):
    """Output rows per band: the column buffer (k x rows*wo) holds ~out_elems/2 elements, within the bounds."""
    budget = min(max(out_elems // 2, BAND_MIN_ELEMS), BAND_MAX_ELEMS)
    return max(1, min(ho, budget // max(1, k * wo)))


def _common_dtype(xp, *arrays):
    dtype = np.result_type(*[a.dtype for a in arrays if a is not None])
    if not kernels.supported_dtype(dtype):
        raise TypeError(f"conv2d on the GPU supports float32 and float64, not {dtype}")
    return dtype


def conv2d_forward_gpu(x, w, b=None, stride=1, padding=0, keep_input=True, transformed=None):
    """Same contract as :func:`nstyle.reference.conv.conv2d_forward`; the cache also says which lowering
    ran ("im2col" or "winograd"). transformed: None, or (U, U of the backward's flipped filters) from
    :func:`transformed_weights`, made once for constant weights (the GPU engine keeps them per layer)."""
    xp = get_xp(x)
    ho, wo = _check(x, w, b, stride, padding)
    dtype = _common_dtype(xp, x, w, b)
    x = xp.ascontiguousarray(x, dtype=dtype)
    w_c = xp.ascontiguousarray(w, dtype=dtype)
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    k = c * kh * kw
    out = xp.empty((n, o, ho, wo), dtype=dtype)
    cache = {"x": x if keep_input else None, "w": w_c, "has_bias": b is not None, "stride": stride,
             "padding": padding, "x_shape": x.shape, "gpu": True, "lowering": "im2col"}
    if winograd_applies(kh, kw, stride, padding):
        cache["lowering"] = "winograd"
        if transformed is not None and transformed[0].dtype == dtype:
            cache["u_dx"] = transformed[1]
        winograd_conv(x, w_c, None if b is None else xp.asarray(b, dtype=dtype), padding, out,
                      u=None if cache.get("u_dx") is None else transformed[0])
        return out, cache
    rows = _capped(gpu_band_rows(k, ho, wo, o * ho * wo))
    cols = xp.empty(k * rows * wo, dtype=dtype)
    w_flat = w_c.reshape(-1)
    for i, r0, nrows, band in _bands(n, ho, wo, rows, k, cols):
        p = nrows * wo
        kernels.im2col_band(x[i], band, kh, kw, stride, padding, r0, nrows, wo)
        # out[:, band] (O x P, row-major, rows Ho*Wo apart) is column-major (P x O) with ld Ho*Wo:
        #   out_cm(P x O) = cols_cm(P x K, ld P) @ W_cm(K x O, ld K)
        blas.gemm(OP_N, OP_N, p, o, k, band, p, w_flat, k, out[i].reshape(-1)[r0 * wo:], ho * wo)
    del cols
    if b is not None:
        out += xp.asarray(b, dtype=dtype).reshape(1, o, 1, 1)
    return out, cache


def _bands(n, ho, wo, rows, k, buf):
    """(i, r0, nrows, band) for every image i and every band of ``rows`` output rows starting at r0
    (nrows of them; fewer in the last band); band: the first k * nrows * wo entries of buf."""
    for i in range(n):
        for r0 in range(0, ho, rows):
            nrows = min(rows, ho - r0)
            yield i, r0, nrows, buf[:k * nrows * wo]


def conv2d_backward_gpu(dout, cache, weight_grads=False):
    """Same contract as :func:`nstyle.reference.conv.conv2d_backward`."""
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
    rows = _capped(gpu_band_rows(k, ho, wo, o * ho * wo))
    if winograd_applies(kh, kw, stride, padding):
        # dx[c, y, x] = sum_{o,i,j} dout[o, y + p - i, x + p - j] w[o, c, i, j]: a correlation of dout,
        # padded by 2 - p, with w flipped in i and j and its channel axes swapped.
        dx = xp.empty((n, c, h, wd), dtype=dtype)
        u_dx = cache.get("u_dx")
        u_dx = None if u_dx is None or u_dx.dtype != dtype else u_dx
        winograd_conv(dout, _flipped(w) if u_dx is None else None, None, 2 - padding, dx, u=u_dx)
        return _weight_grads(xp, dx, dout, cache, w, rows) if weight_grads else dx
    dx = xp.zeros((n, c, h, wd), dtype=dtype)
    dcols = xp.empty(k * rows * wo, dtype=dtype)
    for i, r0, nrows, band in _bands(n, ho, wo, rows, k, dcols):
        p = nrows * wo
        # dcols (K x P, row-major) is column-major (P x K) with ld P:
        #   dcols_cm(P x K) = dout_cm(P x O, ld Ho*Wo) @ W_cm(K x O, ld K)^T
        blas.gemm(OP_N, OP_T, p, k, o, dout[i].reshape(-1)[r0 * wo:], ho * wo, w_flat, k, band, p)
        kernels.col2im_band(band, dx[i], kh, kw, stride, padding, r0, nrows, wo)
    del dcols
    return _weight_grads(xp, dx, dout, cache, w, rows) if weight_grads else dx


def _weight_grads(xp, dx, dout, cache, w, rows):
    """(dx, dW, db): dW band by band through im2col (needs the cached input), db by a sum."""
    stride, padding = cache["stride"], cache["padding"]
    n, c, h, wd = cache["x_shape"]
    o, _, kh, kw = w.shape
    k = c * kh * kw
    _, _, ho, wo = dout.shape
    dtype = w.dtype
    x = cache["x"]
    if x is None:
        raise ValueError("conv2d_backward: weight gradients need the input; run the forward with keep_input=True")
    dw = xp.zeros((o, k), dtype=dtype)
    dw_flat = dw.reshape(-1)
    cols = xp.empty(k * rows * wo, dtype=dtype)
    for i, r0, nrows, band in _bands(n, ho, wo, rows, k, cols):
        p = nrows * wo
        kernels.im2col_band(x[i], band, kh, kw, stride, padding, r0, nrows, wo)
        # dW (O x K, row-major) is column-major (K x O) with ld K; accumulate over bands (beta = 1):
        #   dW_cm(K x O) += cols_cm(P x K, ld P)^T @ dout_cm(P x O, ld Ho*Wo)
        blas.gemm(OP_T, OP_N, k, o, p, band, p, dout[i].reshape(-1)[r0 * wo:], ho * wo, dw_flat, k, beta=1.0)
    db = dout.sum(axis=(0, 2, 3)) if cache["has_bias"] else None
    return dx, dw.reshape(w.shape), db


def winograd_band_tile_rows(c, o, th, tw, out_elems):
    """Tile rows per band: the two tile buffers (16*(C+O) per tile) hold ~out_elems/2 elements, clamped."""
    budget = min(max(out_elems // 2, WINOGRAD_BAND_MIN_ELEMS), WINOGRAD_BAND_MAX_ELEMS)
    return max(1, min(th, budget // (16 * (c + o) * tw)))


def batched_gemm(u, v, out):
    """out[e] = u[e] @ v[e] for the 16 Winograd entries, u (16, O, C), v (16, C, T), out (16, O, T), all
    contiguous: one strided-batched cuBLAS call (``blas.gemm_batched``; TF32 when allowed). Row-major
    (O x T) = (O x C) @ (C x T) is column-major (T x O) = (T x C, ld T) @ (C x O, ld C)."""
    e, o, c = u.shape
    t = v.shape[2]
    blas.gemm_batched(OP_N, OP_N, t, o, c, v.reshape(-1), t, c * t, u.reshape(-1), c, o * c, out.reshape(-1), t,
                      o * t, e)
    return out


def _flipped(w):
    """The backward's filters: w with input and output channels swapped, flipped in both spatial axes."""
    return get_xp(w).ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


def transformed_weights(w):
    """(U, U_dx): the Winograd transforms (``reference.winograd.winograd_weights``) of w (O, C, 3, 3) and of
    the backward's flipped filters, for :func:`conv2d_forward_gpu`'s ``transformed``."""
    w = get_xp(w).ascontiguousarray(w)
    return winograd_weights(w), winograd_weights(_flipped(w))


def winograd_conv(x, w, b, padding, out, u=None):
    """out (N, O, Ho, Wo) = conv(x, w) + b for 3x3 stride-1 filters by Winograd F(2x2, 3x3), band by band.

    x (N, C, H, W) and w (O, C, 3, 3) contiguous, same float dtype; Ho = H + 2*padding - 2 (likewise Wo).
    u: w's transform U (16, O, C) when already made (then w may be None). Per band of tile rows:
    V = winograd_input(x) (16, C, T); M = U @ V, 16 batched (O x C) @ (C x T) products; out =
    winograd_output(M) + b.
    """
    xp = get_xp(x)
    n, c, _, _ = x.shape
    u = winograd_weights(w) if u is None else u
    o = u.shape[1]
    ho, wo = out.shape[2], out.shape[3]
    th, tw = -(-ho // 2), -(-wo // 2)
    rows = _capped(winograd_band_tile_rows(c, o, th, tw, o * ho * wo))
    v_buf = xp.empty(16 * c * rows * tw, dtype=x.dtype)
    m_buf = xp.empty(16 * o * rows * tw, dtype=x.dtype)
    for i in range(n):
        for ty0 in range(0, th, rows):
            nty = min(rows, th - ty0)
            nt = nty * tw
            v = v_buf[:16 * c * nt].reshape(16, c, nt)
            m = m_buf[:16 * o * nt].reshape(16, o, nt)
            kernels.winograd_input(x[i], v, padding, ty0, nty, tw)
            batched_gemm(u, v, m)
            kernels.winograd_output(m, b, out[i], ty0, nty, tw)
    return out
