"""Lowering a convolution to a matrix product, a band of output rows at a time.

``im2col`` copies, for every kernel tap (ki, kj), the input pixels that tap sees into one block of rows of
a column matrix, so the whole convolution is a single GEMM ``W (O, C*KH*KW) @ cols (C*KH*KW, P)``.
``col2im`` is its adjoint: it scatter-adds such a column matrix back onto the (padded) input grid.

Both work on a band of output rows ``[r0, r1)`` so the column buffer stays bounded (the full matrix for
conv1_2 at 1024x1024 would be 2.4 GB); the loops are over taps and bands, never over pixels.
"""


def band_rows(c, kh, kw, wo, budget_elems=1 << 21):
    """How many output rows one band holds so that its column matrix has about ``budget_elems`` entries.

    The reference's single-threaded bands; the fast engines size theirs their own way
    (``cpu/conv3x3.balanced_band_rows``: a multiple of the thread count; ``gpu/conv.gpu_band_rows``:
    a budget that grows with the layer)."""
    return max(1, budget_elems // max(1, c * kh * kw * wo))


def tap_window(k, stride, start_row, n_rows):
    """The input slice (padded coordinates) that kernel offset ``k`` reads for ``n_rows`` output rows."""
    first = k + stride * start_row
    return slice(first, first + stride * (n_rows - 1) + 1, stride)


def im2col_band(xpad, kh, kw, stride, r0, r1, wo, out):
    """Fill ``out`` (C, KH, KW, r1-r0, Wo) with the receptive fields of output rows [r0, r1).

    xpad: (C, Hp, Wp) one zero-padded image. Row order of the flattened result is (c, ki, kj), which
    matches ``w.reshape(O, C*KH*KW)`` for OIHW weights.
    """
    n = r1 - r0
    for ki in range(kh):
        rows = tap_window(ki, stride, r0, n)
        for kj in range(kw):
            out[:, ki, kj] = xpad[:, rows, tap_window(kj, stride, 0, wo)]
    return out


def col2im_band(cols, xpad_grad, kh, kw, stride, r0, r1, wo):
    """Adjoint of :func:`im2col_band`: add ``cols`` (C, KH, KW, r1-r0, Wo) into ``xpad_grad`` (C, Hp, Wp).

    Within one tap the target positions are distinct (a strided grid), so a plain ``+=`` on the strided
    view is exact; overlaps between taps are handled by doing the taps one after another.
    """
    n = r1 - r0
    for ki in range(kh):
        rows = tap_window(ki, stride, r0, n)
        for kj in range(kw):
            xpad_grad[:, rows, tap_window(kj, stride, 0, wo)] += cols[:, ki, kj]
    return xpad_grad
