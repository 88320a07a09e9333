"""CPU fast path for the one convolution VGG uses: 3x3 kernel, stride 1, zero padding 1 (NumPy only).

Both kernels here and in ``winograd.py`` read a zero-bordered input buffer and write a zero-bordered
output buffer (the layout of ``padded.py``), so layers chain without padding copies, and both call an
optional ``epilogue(r_lo, r_hi)`` as soon as output buffer rows [r_lo, r_hi) are final (interior
computed, border columns zero), while those rows are still in cache: the VGG hot path adds the bias and
applies the ReLU there, or multiplies a gradient by a ReLU mask.

The backward of such a convolution with respect to its input is again a 3x3, stride-1, padding-1
convolution, of the output gradient with the weights transposed (O <-> C) and flipped in both spatial
directions (see :func:`flip_transpose`), so the backward runs through the same kernels: no col2im
scatter-add.

``conv3x3_direct`` is the plain GEMM convolution (the reference the Winograd kernel is tested against):
for a band of output rows it copies the 9 tap slices of the flat buffer -- each one contiguous, see
``padded.py`` -- into a (9*C, band) matrix and multiplies it by the (O, 9*C) weight matrix, writing the
result straight into the output buffer.
"""
import numpy as np

from . import blas, padded
from .threads import for_each_task, num_threads, parallel_ranges, scratch

# Elements of the (9*C, band) column matrix per band (4 MB of float32; bench/NOTES.md, sections 1 and 13).
DIRECT_BAND_ELEMS = 1 << 20
# Elements of a band's input and output rows in conv3x3_taps (1 MB of float32: half a core's L2).
TAPS_BAND_ELEMS = 1 << 18


def flip_transpose(w):
    """The weights of the input-gradient convolution: ``w_t[c, o, i, j] = w[o, c, 2 - i, 2 - j]``.

    Derivation: out[o, r, s] = sum_{c,i,j} w[o,c,i,j] x[c, r+i-1, s+j-1], so
    dx[c, p, q] = sum_{o,i,j} w[o,c,i,j] dout[o, p-i+1, q-j+1]; substituting i' = 2-i, j' = 2-j gives
    dx[c, p, q] = sum_{o,i',j'} w[o,c,2-i',2-j'] dout[o, p+i'-1, q+j'-1]: a padding-1 convolution of dout
    with w_t. Output positions whose window leaves the map read zeros, which is exactly the padding.
    """
    return np.ascontiguousarray(w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])


def tap_matrix(w, b=None):
    """(O, C, 3, 3) weights as the (O, 9*C) matrix whose column t*C + c is tap t = 3*i + j, channel c.

    With a bias b, one more column holding it: :func:`conv3x3_direct` then adds a row of ones to its
    column matrix, and the GEMM adds the bias on the way.
    """
    o, c = w.shape[:2]
    taps = w.transpose(0, 2, 3, 1).reshape(o, 9 * c)
    if b is None:
        return np.ascontiguousarray(taps)
    return np.ascontiguousarray(np.concatenate([taps, b.reshape(o, 1).astype(w.dtype)], axis=1))


def balanced_band_rows(h, row_elems, budget, threads=None):
    """Rows per band for bands run on the thread pool: at most about ``budget`` elements of work buffer
    per band, and a number of bands that is a multiple of the thread count (so that no thread is left
    with one band more at the end). (``reference/im2col.band_rows`` sizes the reference's single-threaded
    column matrix by its budget alone.)"""
    threads = threads or num_threads()
    by_budget = max(1, budget // max(1, row_elems))
    bands = max(threads, -(-h // by_budget))
    bands = min(h, -(-bands // threads) * threads)
    return -(-h // bands)


def _flat_views(xbuf, wtaps, outbuf, w):
    """What both 3x3 kernels read their buffers through: input channels C, padded width W+2, the input
    and output as (channels, flat positions), the flat offset of output (0, 0), the nine taps' offsets
    (``padded.py``), and whether ``wtaps`` carries the bias column."""
    c = xbuf.shape[0]
    return (c, w + 2, xbuf.reshape(c, -1), outbuf.reshape(outbuf.shape[0], -1), padded.out_flat_offset(w),
            padded.tap_offsets(w), wtaps.shape[1] == 9 * c + 1)


def conv3x3_direct(xbuf, wtaps, outbuf, h, w, epilogue=None, rows=None):
    """3x3 / stride 1 / padding 1 convolution between padded buffers, by GEMM over bands of rows.

    xbuf: (C, H+3, W+2) padded input (zero border); wtaps: (O, 9*C), or (O, 9*C + 1) with the bias,
    from :func:`tap_matrix`; outbuf: (O, H+3, W+2) buffer to fill (any contents; on return it holds
    the output with a zero border). epilogue(r_lo, r_hi): see the module docstring.
    rows: output rows per band (default: :func:`balanced_band_rows`). Bands run on the thread pool.
    """
    c, wp, xf, of, base, offsets, with_bias = _flat_views(xbuf, wtaps, outbuf, w)
    k = wtaps.shape[1]

    def band(q0, n):
        cols = scratch("direct.cols", (k, n), xbuf.dtype)
        if with_bias:
            cols[9 * c] = 1

        def gather(lo, hi):
            for t in range(lo, hi):
                cols[t * c:(t + 1) * c] = xf[:, q0 + offsets[t]:q0 + offsets[t] + n]

        parallel_ranges(gather, 9, work=9 * c * n)
        # Output (r, s) lands at flat q + base (see padded.py). The last output of the band, (r1-1, W+1),
        # is garbage that would land on column 0 of row r1+1 -- the next band's row -- so it is left out.
        np.matmul(wtaps, cols[:, :n - 1], out=of[:, base + q0:base + q0 + n - 1])

    return _run_bands(band, outbuf, h, w, rows or balanced_band_rows(h, k * wp, DIRECT_BAND_ELEMS), epilogue)


def conv3x3_taps(xbuf, wtaps, outbuf, h, w, epilogue=None, rows=None):
    """The convolution of :func:`conv3x3_direct` without its column matrix: per band, nine products of
    depth C, one per tap, each reading the tap's window of the flat input where it lies (a contiguous
    slice of every channel's row, see ``padded.py``) and adding into the output band in place
    (``blas.accumulate``: GEMM with beta = 1). Same weights (:func:`tap_matrix`; tap t's block is
    columns t*C .. t*C+C-1, read in place), same arguments.

    The column matrix is nine copies of the band's input, written and read back through the cache;
    here the input is read where it lies. Where memory traffic is dear the products win more than their
    smaller depth costs: 64 -> 64 channels with its ReLU epilogue, 2 threads, Intel Xeon (AVX-512,
    shared host): 128 x 128 8.0 -> 7.0 ms, 512 x 512 142 -> 125 ms, 256 x 256 equal; on the AMD EPYC of
    bench/NOTES.md section 13 they tied (section 15). Each output is then a sum of nine partial sums of
    depth C (and the bias first) instead of one of depth 9C: other roundings than the direct kernel's.
    """
    c, wp, xf, of, base, offsets, with_bias = _flat_views(xbuf, wtaps, outbuf, w)
    o = wtaps.shape[0]

    def band(q0, n):
        target = of[:, base + q0:base + q0 + n - 1]  # n - 1: see conv3x3_direct
        first = 0
        if with_bias:
            np.copyto(target, wtaps[:, 9 * c:])
        else:
            np.matmul(wtaps[:, :c], xf[:, q0 + offsets[0]:q0 + offsets[0] + n - 1], out=target)
            first = 1
        for t in range(first, 9):
            blas.accumulate(wtaps[:, t * c:(t + 1) * c], xf[:, q0 + offsets[t]:q0 + offsets[t] + n - 1], target)

    return _run_bands(band, outbuf, h, w, rows or balanced_band_rows(h, (c + o) * wp, TAPS_BAND_ELEMS), epilogue)


def _run_bands(band, outbuf, h, w, rows, epilogue):
    """Zero the output's top and bottom border rows, then on the thread pool, for each band of ``rows``
    output rows [r0, r1): ``band(q0, n)`` (q0, n: the band's flat start and length in the
    padded row pitch) writes its rows, their border columns are zeroed, and the epilogue runs."""
    wp = w + 2
    starts = list(range(0, h, rows))
    outbuf[:, 0] = 0
    outbuf[:, h + 1:] = 0

    def task(i):
        r0 = starts[i]
        r1 = min(h, r0 + rows)
        band(r0 * wp, (r1 - r0) * wp)
        padded.zero_border_columns(outbuf, r0 + 1, r1 + 1, w)
        if epilogue is not None:
            epilogue(r0 + 1, r1 + 1)

    for_each_task(task, len(starts))
    return outbuf


def shift_matrix(w):
    """(O, C, 3, 3) weights as the (9*O, C) stack whose rows t*O .. t*O+O-1 are tap t = 3*i + j."""
    o, c = w.shape[:2]
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1).reshape(9 * o, c))


def conv3x3_shift(xbuf, wshift, outbuf, h, w, epilogue=None, rows=None):
    """The same convolution as :func:`conv3x3_direct`, multiplying first and shifting after.

    For few output channels (the input-gradient convolution of conv1_1: 64 -> 3) the column matrix of
    the direct kernel is nine times the input for very little arithmetic. Here each band computes
    Z = wshift (9*O, C) @ x (C, band + 2 rows), one read of the input, and then adds the nine (O, band)
    slices of Z, each shifted by its tap's flat offset: out[q] = sum_t Z_t[q + offset_t].
    wshift: from :func:`shift_matrix`. Other arguments as for :func:`conv3x3_direct`.
    """
    c = xbuf.shape[0]
    o = wshift.shape[0] // 9
    wp = w + 2
    xf = xbuf.reshape(c, -1)
    of = outbuf.reshape(o, -1)
    base = padded.out_flat_offset(w)
    offsets = padded.tap_offsets(w)
    halo = offsets[-1]

    def band(q0, n):
        z = scratch("shift.z", (9 * o, n + halo), xbuf.dtype)
        np.matmul(wshift, xf[:, q0:q0 + n + halo], out=z)
        target = of[:, base + q0:base + q0 + n - 1]  # n - 1: see conv3x3_direct
        np.copyto(target, z[0:o, offsets[0]:offsets[0] + n - 1])
        for t in range(1, 9):
            target += z[t * o:(t + 1) * o, offsets[t]:offsets[t] + n - 1]

    return _run_bands(band, outbuf, h, w, rows or balanced_band_rows(h, (c + 9 * o) * wp, DIRECT_BAND_ELEMS), epilogue)
