"""Winograd F(2x2, 3x3) convolution between padded buffers (CPU fast path, NumPy only).

The algebra -- Y = A^T [ (G g G^T) * (B^T d B) ] A per 2x2 output tile, the matrices, the derivation
and the weight transform :func:`winograd_weights` (shared with the GPU engine) -- is in
``nstyle/reference/winograd.py``.

Here, summing over input channels inside the Winograd domain turns the 16 element-wise products into 16
matrix products U[k] (O, C) @ V[k] (C, tiles): 16 multiply-adds per 2x2 output block and channel pair
instead of 36 -- 2.25 times fewer than direct convolution. The transforms of d and of the output are
additions only (done here with NumPy on channel ranges spread over the thread pool); the kernel's
transform U = G g G^T is computed once per weight tensor, in float64.

Accuracy: the transforms only add and subtract (and G halves), so the float32 rounding error stays
within a small factor of direct convolution's (tests/test_fast_conv.py bounds it against the float64
reference).

The input-gradient convolution (weights flipped and transposed, ``conv3x3.flip_transpose``) needs no
second transform: G J = P G, with J the 3x3 flip and P the permutation swapping rows 0 and 3 of G (rows
1 and 2 are palindromes), so its transformed kernel is ``U_t[u, v] = U[p(u), p(v)]^T``, handed to BLAS
as a transposed operand.
"""
import numpy as np

from ..reference.winograd import A_T, B_T, G, winograd_weights  # noqa: F401 -- this module's API too
from . import padded
from .conv3x3 import balanced_band_rows
from .threads import for_each_task, num_threads, parallel_ranges, scratch

FLIP_PERMUTATION = (3, 1, 2, 0)

# Winograd-domain elements (16 * channels * tiles) per band: the input and output bands then stay in
# the last-level cache between the transforms and the matrix products.
BAND_ELEMS = 1 << 20
# Maps whose Winograd-domain input (16 x channels x tiles) has at most this many elements run as one
# band, the 16 products shared out between the threads: 5-10% faster than two thin bands for VGG's
# 8x8 and 16x16 maps of 512 channels (best of 15 runs, 2 threads; bench/NOTES.md).
SMALL_MAP_ELEMS = 1 << 20


def transposed_index():
    """k -> index into U of the kernel the flipped-transposed convolution uses at Winograd point k."""
    p = FLIP_PERMUTATION
    return [4 * p[k // 4] + p[k % 4] for k in range(16)]


def supported(h, w):
    return h % 2 == 0 and w % 2 == 0 and h >= 2 and w >= 2


def _input_transform(xbuf, i0, i1, tw, vband, scratch_rows):
    """V[4u+v] (C, tiles) of tile rows [i0, i1) from the padded buffer.

    Tile (i, j) is buffer rows 2i..2i+3, columns 2j..2j+3. First B^T d: four combinations of rows, kept
    split into even and odd columns (scratch_rows: (2, 4, C, rows, tw+1)), so that then (B^T d) B --
    combinations of columns 2j..2j+3, i.e. even/odd columns j and j+1 -- reads contiguous memory.
    """
    c = xbuf.shape[0]
    tb = i1 - i0
    v4 = vband.reshape(4, 4, c, tb, tw)

    def work(lo, hi):
        rows = [xbuf[lo:hi, 2 * i0 + a:2 * i1 + a:2] for a in range(4)]  # (C', tb, W+2) each
        for parity in (0, 1):
            r = [row[..., parity::2] for row in rows]
            out = scratch_rows[parity, :, lo:hi]
            np.subtract(r[0], r[2], out=out[0])  # the rows of B^T d
            np.add(r[1], r[2], out=out[1])
            np.subtract(r[2], r[1], out=out[2])
            np.subtract(r[1], r[3], out=out[3])
        for u in range(4):
            even, odd = scratch_rows[0, u, lo:hi], scratch_rows[1, u, lo:hi]
            c0, c1, c2, c3 = even[..., :tw], odd[..., :tw], even[..., 1:], odd[..., 1:]  # columns 2j..2j+3
            np.subtract(c0, c2, out=v4[u, 0, lo:hi])
            np.add(c1, c2, out=v4[u, 1, lo:hi])
            np.subtract(c2, c1, out=v4[u, 2, lo:hi])
            np.subtract(c1, c3, out=v4[u, 3, lo:hi])

    parallel_ranges(work, c, work=16 * c * tb * tw)


def _output_transform(mband, outbuf, i0, i1, tw, s, bias=None):
    """Y = A^T M A (+ bias) for tile rows [i0, i1), written into the buffer's interior.

    s: scratch (8, O, tb, tw). The bias goes into (A^T M)[:, 1], which both output columns of a tile
    contain with coefficient 1: a quarter of the work of adding it to the output.
    """
    o = outbuf.shape[0]
    tb = i1 - i0
    m4 = mband.reshape(4, 4, o, tb, tw)

    def work(lo, hi):
        m = m4[:, :, lo:hi]
        for v in range(4):  # rows of A^T M
            t0, t1 = s[v, lo:hi], s[4 + v, lo:hi]
            np.add(m[0, v], m[1, v], out=t0)
            t0 += m[2, v]
            np.subtract(m[1, v], m[2, v], out=t1)
            t1 -= m[3, v]
        if bias is not None:
            b = bias[lo:hi, None, None]
            s[1, lo:hi] += b
            s[5, lo:hi] += b
        for p in range(2):  # then (A^T M) A, written to output rows 2i+p, columns 2j and 2j+1
            s0, s1, s2, s3 = (s[4 * p + v, lo:hi] for v in range(4))
            rows = slice(1 + 2 * i0 + p, 1 + 2 * i1 + p, 2)
            even = outbuf[lo:hi, rows, 1:1 + 2 * tw:2]
            odd = outbuf[lo:hi, rows, 2:2 + 2 * tw:2]
            np.add(s0, s1, out=even)
            even += s2
            np.subtract(s1, s2, out=odd)
            odd -= s3

    parallel_ranges(work, o, work=16 * o * tb * tw)


def conv3x3_winograd(xbuf, u, outbuf, h, w, epilogue=None, transposed=False, rows=None, bias=None):
    """3x3 / stride 1 / padding 1 convolution between padded buffers by Winograd F(2x2, 3x3).

    xbuf: (C, H+3, W+2) padded input (zero border); H and W even. u: (16, O, C) from
    :func:`winograd_weights` -- or, with ``transposed=True``, the forward's (16, C, O) transform, to run
    the input-gradient convolution (flipped, transposed weights) of that layer. outbuf: (O, H+3, W+2),
    any contents; on return it holds the output with a zero border. epilogue(r_lo, r_hi): called when
    buffer rows [r_lo, r_hi) are final. bias: (O,) added to every output, or None. rows: tile rows (2
    output rows each) per band; bands run on the thread pool.
    """
    if not supported(h, w):
        raise ValueError(f"Winograd F(2x2,3x3) needs an even-sized map; got {h}x{w}")
    c = xbuf.shape[0]
    o = u.shape[2] if transposed else u.shape[1]
    th, tw = h // 2, w // 2
    dtype = xbuf.dtype
    index = transposed_index() if transposed else None
    outbuf[:, 0] = 0
    outbuf[:, h + 1:] = 0

    def products(vband, mband, ks):
        for k in ks:
            a = u[index[k]].T if transposed else u[k]
            np.matmul(a, vband[k], out=mband[k])

    if rows is None and 16 * max(c, o) * th * tw <= SMALL_MAP_ELEMS and num_threads() > 1:
        # A small map: bands would make thin matrix products (tens of tiles), so the whole map is one
        # band and the threads share out the 16 products instead (transforms split by channels).
        n = th * tw
        vband = scratch("winograd.small.v", (16, c, n), dtype)
        mband = scratch("winograd.small.m", (16, o, n), dtype)
        _input_transform(xbuf, 0, th, tw, vband, scratch("winograd.small.r", (2, 4, c, th, tw + 1), dtype))
        for_each_task(lambda k: products(vband, mband, (k,)), 16)
        _output_transform(mband, outbuf, 0, th, tw, scratch("winograd.small.s", (8, o, th, tw), dtype), bias)
        padded.zero_border_columns(outbuf, 1, 1 + h, w)
        if epilogue is not None:
            epilogue(1, 1 + h)
        return outbuf
    rows = rows or balanced_band_rows(th, 16 * max(c, o) * tw, BAND_ELEMS)
    starts = list(range(0, th, rows))

    def band(i):
        i0 = starts[i]
        i1 = min(th, i0 + rows)
        tb, n = i1 - i0, (i1 - i0) * tw
        vband = scratch("winograd.v", (16, c, n), dtype)
        mband = scratch("winograd.m", (16, o, n), dtype)
        _input_transform(xbuf, i0, i1, tw, vband, scratch("winograd.r", (2, 4, c, tb, tw + 1), dtype))
        if transposed:
            products(vband, mband, range(16))
        else:
            np.matmul(u, vband, out=mband)
        _output_transform(mband, outbuf, i0, i1, tw, scratch("winograd.s", (8, o, tb, tw), dtype), bias)
        padded.zero_border_columns(outbuf, 1 + 2 * i0, 1 + 2 * i1, w)
        if epilogue is not None:
            epilogue(1 + 2 * i0, 1 + 2 * i1)

    for_each_task(band, len(starts))
    return outbuf
