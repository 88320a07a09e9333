"""Winograd convolution F(m x m, 3x3) between padded buffers (CPU fast path, NumPy only).

The algebra -- Y = A^T [ (G g G^T) * (B^T d B) ] A per m x m output tile, the matrices of F(2x2, 3x3)
and F(4x4, 3x3), why F(4x4)'s points are (0, +-1, 1/2, -2), and the weight transform
:func:`winograd_weights` (shared with the GPU engine) -- is in ``nstyle/reference/winograd.py``.

Here a convolution of C -> O channels runs, per band of tile rows, in five steps:

1. gather: the a x a input tiles (a = m + 2; they overlap by 2) into D (a*a, C, tiles): a*a strided
   copies of the padded buffer, one per position in the tile;
2. input transform: V = kron(B^T, B^T) @ D -- B^T d B for every tile and channel, as two matrix
   products with the small (a, a) matrix B^T (:func:`separable`);
3. the products: M[k] = U[k] (O, C) @ V[k] (C, tiles) for each of the a*a Winograd points k -- the sum
   over input channels, taken in the Winograd domain, where it costs a*a multiply-adds per m*m outputs
   and channel pair instead of 9 m*m (F(4x4): 36 for 16 outputs, 4 times fewer than direct);
4. output transform: Y = kron(A^T, A^T) @ M (m*m, O, tiles), the same way with A^T (m, a);
5. scatter: each of the m*m output positions of the tiles into its strided place in the output buffer.

Steps 2 and 4 are matrix products that read and write each element once per pass, where a transform
written as NumPy additions would pass over it once per term. kron(B^T, B^T) @ D is B^T applied along
the tiles' rows, then along their columns: two passes of a multiply-adds per element instead of one
pass of a*a. They were once single products with the (a*a, a*a) matrix, bound by those multiply-adds
(bench/NOTES.md, section 17); as two thin products BLAS runs them at the speed of memory
(F(4x4), 256 channels at 32 x 32, one thread, AMD EPYC with AVX-512: the input transform 0.92 -> 0.39
ms, the output transform 0.46 -> 0.25 ms; a whole evaluation at 128 px 8% faster on two threads).

Maps whose sides are not multiples of m get a last row (column) of partial tiles: positions of such a
tile beyond the buffer read zeros, and its outputs beyond the map are not written -- they would only
depend on those zeros.

The input-gradient convolution (flipped, transposed weights, ``conv3x3.flip_transpose``) needs no second
weight transform: the algorithm on the inverted points turns the flipped filter into the forward's U,
permuted and rescaled (``reference.winograd.flip_relation``). :func:`transposed_form` stores U's blocks
in that permutation, each transposed, so that the backward's products are one batched product on plain
operands (read through transposed views they were slower: 512 channels at 32x32, 4.41 -> 3.67 ms);
the scale goes into that direction's output-transform matrix.

The bias goes into one Winograd point: A^T's column for the point 1 is all ones, so adding b to M at
(1, 1) adds it to every output of the tile, 1/(m*m) of the work of adding it to the output.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..reference.winograd import F2, F4, flip_relation, winograd_weights
from . import blas, padded
from .conv3x3 import balanced_band_rows
from .threads import for_each_task, num_threads, scratch, split

# Winograd-domain elements (a*a * channels * tiles) per band: the band's arrays then stay in the
# last-level cache between the steps. Every band reads all of U, though, and the widest layers' U
# (36 x 512 x 512 floats, 38 MB) does not stay in any cache: there a band holds as many elements as U,
# up to MAX_BAND_ELEMS (512 channels at 64 x 64: 26 -> 19 ms, 2 threads; bench/NOTES.md, section 11).
BAND_ELEMS = 1 << 20
MAX_BAND_ELEMS = 1 << 22
# Maps whose Winograd-domain input has at most this many elements run as one band, the threads sharing
# out each step instead (channel ranges for the transforms, the a*a products): bands of such a map
# would make matrix products of a few tens of tiles (512 channels at 32 x 32: 6.4 -> 5.9 ms, 2 threads).
SMALL_MAP_ELEMS = 1 << 21

ALGORITHMS = {2: F2, 4: F4}


def winograd_form(w, m):
    """The weights (O, C, 3, 3) in F(m x m)'s Winograd domain: (a*a, O, C)."""
    return winograd_weights(w, ALGORITHMS[m].G)


def transposed_form(u):
    """The (a*a, C, O) weights of the input-gradient convolution from the forward's (a*a, O, C) U:
    block k is U's block ``index_t[k]``, transposed (see the module docstring)."""
    index_t = matrices(tile_of(u), u.dtype).index_t
    return np.ascontiguousarray(u[index_t].transpose(0, 2, 1))


def tile_of(u):
    """m of the algorithm whose transform ``u`` (a*a, ., .) is."""
    for m, algorithm in ALGORITHMS.items():
        if algorithm.a ** 2 == u.shape[0]:
            return m
    raise ValueError(f"no Winograd algorithm has {u.shape[0]} points")


class _Matrices:
    """One algorithm's transforms, in one dtype, for both directions: the one-dimensional matrices
    (``input``: B^T, a x a; ``output``: A^T, m x a), which :func:`separable` applies along both axes of
    a tile. The input-gradient direction's output matrix carries the flip relation's scale:
    kron(A^T, A^T) * kron(s, s) = kron(A^T diag(s), A^T diag(s))."""

    def __init__(self, algorithm, dtype):
        inverse, perm, scale = flip_relation(algorithm)
        a = algorithm.a
        self.input = {False: np.ascontiguousarray(algorithm.B_T, dtype=dtype),
                      True: np.ascontiguousarray(inverse.B_T, dtype=dtype)}
        self.output = {False: np.ascontiguousarray(algorithm.A_T, dtype=dtype),
                       True: np.ascontiguousarray(inverse.A_T * scale[None, :], dtype=dtype)}
        self.index_t = [perm[k // a] * a + perm[k % a] for k in range(a * a)]
        one = algorithm.points.index(1)
        self.bias_point = one * a + one


_matrices = {}


def matrices(m, dtype):
    key = (m, np.dtype(dtype).str)
    if key not in _matrices:
        _matrices[key] = _Matrices(ALGORITHMS[m], dtype)
    return _matrices[key]


def separable(t, src, dst, tmp=None):
    """dst = kron(t, t) @ src for a one-dimensional transform t (r x a), in two passes of t.

    src: (a*a, ...) -- position a*k + l of a tile, then the columns (channels x tiles) -- and dst
    (r*r, ...), blocks of the band arrays whose columns flatten without a copy; tmp: a*r*X elements
    for the pass between (default: this thread's ``scratch``), X the columns per point. With M[k, l]
    the (X,)-rows of src, the first pass makes T[l, i] = sum_k t[i, k] M[k, l] (a products
    t @ M[:, l], one per column position l), the second dst[i, j] = sum_l t[j, l] T[l, i] (r products
    t @ T[:, i]). The same calls on the same shapes give the same bits, whichever thread makes them.
    """
    r, a = t.shape
    x = src[0].size
    if tmp is None:
        tmp = scratch("winograd.half", (a * r * x,), src.dtype)
    grid = np.reshape(src, (a, a, x), copy=False)      # [k, l, X]
    half = np.reshape(tmp, (a, r, x), copy=False)      # [l, i, X]
    np.matmul(t, grid.transpose(1, 0, 2), out=half)    # half[l] = t @ grid[:, l]
    np.matmul(t, half.transpose(1, 0, 2), out=np.reshape(dst, (r, r, x), copy=False))  # dst[i] = t @ half[:, i]
    return dst


def products(u, v, out):
    """out[k] = u[k] @ v[k] for every Winograd point k: u (a*a, O, C), v (a*a, C, tiles).

    One batched ``np.matmul``, cut into blocks of output channels where OpenBLAS multiplies blocks of
    that size in place (``blas.small_product_rows``: the thin products of small maps). The blocks depend
    on the shapes only, so the bits do too; and they are the same whichever range of output channels a
    thread takes.
    """
    o = u.shape[1]
    rows = blas.small_product_rows(u.shape[2], v.shape[2], u.dtype)
    if rows is None or rows >= o:
        return np.matmul(u, v, out=out)
    step = -(-o // -(-o // rows))  # blocks of near-equal size, none over ``rows``
    for lo in range(0, o, step):
        np.matmul(u[:, lo:lo + step], v, out=out[:, lo:lo + step])
    return out


def _gather(xbuf, d, i0, i1, lo, hi, m, h, w):
    """D[:, lo:hi] of tile rows [i0, i1): D[a*i + j, c, t, s] = xbuf[c, m*(i0+t) + i, m*s + j], zero
    where that is beyond the buffer (rows past H+2, columns past W+1). When no tile of the band reaches
    beyond, that is one copy from a strided view of the buffer; else one copy per tile position."""
    a = m + 2
    tb, tw = d.shape[2], d.shape[3]
    if m * (i0 + tb - 1) + a - 1 <= h + 2 and m * (tw - 1) + a - 1 <= w + 1:  # every tile inside: one copy
        sc, sr, ss = xbuf.strides
        tiles = as_strided(xbuf[lo:hi, m * i0:], shape=(a, a, hi - lo, tb, tw),
                           strides=(sr, ss, sc, m * sr, m * ss), writeable=False)
        np.copyto(d[:, lo:hi].reshape(tiles.shape), tiles)
        return
    for i in range(a):
        r0 = m * i0 + i
        nr = min(tb, max(0, (h + 2 - r0) // m + 1))
        for j in range(a):
            nc = min(tw, max(0, (w + 1 - j) // m + 1))
            dst = d[a * i + j, lo:hi]
            if nr and nc:
                dst[:, :nr, :nc] = xbuf[lo:hi, r0:r0 + m * (nr - 1) + 1:m, j:j + m * (nc - 1) + 1:m]
            dst[:, nr:] = 0
            dst[:, :nr, nc:] = 0


def _scatter(y, outbuf, i0, lo, hi, m, h, w):
    """Output positions (p, q) of the tiles, y (m*m, O, tb, tw), into buffer rows 1 + m*(i0+t) + p,
    columns 1 + m*s + q -- those inside the map."""
    tb, tw = y.shape[2], y.shape[3]
    if m * (i0 + tb) <= h and m * tw <= w:  # every output inside the map: one copy
        sc, sr, ss = outbuf.strides
        places = as_strided(outbuf[lo:hi, 1 + m * i0:, 1:], shape=(m, m, hi - lo, tb, tw),
                            strides=(sr, ss, sc, m * sr, m * ss))
        np.copyto(places, y[:, lo:hi].reshape(places.shape))
        return
    for p in range(m):
        r0 = 1 + m * i0 + p
        nr = min(tb, max(0, -(-(h - (r0 - 1)) // m)))
        for q in range(m):
            nc = min(tw, max(0, -(-(w - q) // m)))
            if nr and nc:
                outbuf[lo:hi, r0:r0 + m * (nr - 1) + 1:m, 1 + q:1 + q + m * (nc - 1) + 1:m] = \
                    y[m * p + q, lo:hi, :nr, :nc]


def band_plan(c, o, h, w, m, threads=None):
    """How :func:`conv3x3_winograd` cuts a C -> O convolution on an h x w map: ("small", tile rows) --
    one band, the threads sharing out its steps -- or ("bands", tile rows per band)."""
    a = m + 2
    th, tw = -(-h // m), -(-w // m)
    threads = threads or num_threads()
    if a * a * max(c, o) * th * tw <= SMALL_MAP_ELEMS and threads > 1:
        return "small", th
    budget = min(MAX_BAND_ELEMS, max(BAND_ELEMS, a * a * c * o))
    return "bands", balanced_band_rows(th, a * a * max(c, o) * tw, budget, threads)


def small_map(c, o, h, w, m):
    """Whether :func:`conv3x3_winograd` runs this convolution as one band, the threads sharing out its
    input transform by ``split(c, threads)`` and the rest by ``split(o, threads)`` (its epilogue's
    ``channels``), so that steps around it may work on the same channel ranges."""
    return band_plan(c, o, h, w, m)[0] == "small"


def input_arrays(c, h, w, m):
    """Shapes of (D, V) for a small map's input transform: the whole map as one band."""
    th, tw = -(-h // m), -(-w // m)
    d, v, _, _ = band_shapes(c, c, th, tw, m)
    return d, v


def input_step(xbuf, d, v, m, h, w, transposed=False):
    """Steps 1 and 2 (gather, input transform) of a small map's convolution as a step on channel
    ranges: a callable (lo, hi) that transforms input channels [lo, hi) of ``xbuf`` into ``v``, one
    ``split(c, threads)`` part at a time -- the very products :func:`conv3x3_winograd` makes for them
    (the same shapes: the same bits), so the step before it can do them on its own channel ranges.
    The convolution then takes ``inputs=(d, v)``."""
    kb = matrices(m, xbuf.dtype).input[transposed]
    th = -(-h // m)
    parts = split(xbuf.shape[0], num_threads())

    def step(lo, hi):
        for plo, phi in parts:
            if lo <= plo and phi <= hi:
                _gather(xbuf, d, 0, th, plo, phi, m, h, w)
                separable(kb, d[:, plo:phi], v[:, plo:phi])

    return step


def band_shapes(c, o, tb, tw, m):
    """Shapes of a band's work arrays (D, V, M, Y) for ``tb`` tile rows of ``tw`` tiles."""
    a = m + 2
    return (a * a, c, tb, tw), (a * a, c, tb * tw), (a * a, o, tb * tw), (m * m, o, tb, tw)


def scratch_elements(c, o, h, w, m, rows):
    """Elements of each work array a band of ``rows`` tile rows takes from ``scratch``: D, V, M, Y, and
    the transforms' pass-between array (:func:`separable`, the larger of the two directions'; on a
    small map each thread takes one for its channel range, counted here as if for all of them)."""
    tb, tw = min(rows, -(-h // m)), -(-w // m)
    a = m + 2
    shapes = band_shapes(c, o, tb, tw, m)
    return tuple(int(np.prod(shape)) for shape in shapes) + (max(a * a * c, a * m * o) * tb * tw,)


def conv3x3_winograd(xbuf, u, outbuf, h, w, epilogue=None, transposed=False, rows=None, bias=None, ut=None,
                     inputs=None):
    """3x3 / stride 1 / padding 1 convolution between padded buffers by Winograd F(m x m, 3x3).

    xbuf: (C, H+3, W+2) padded input (zero border). u: (a*a, O, C) from :func:`winograd_form` (m
    follows from its size) -- or, with ``transposed=True``, the forward's (a*a, C, O) transform, to run
    the input-gradient convolution (flipped, transposed weights) of that layer; ``ut``: that
    direction's :func:`transposed_form` of it, if the caller keeps one. outbuf: (O, H+3, W+2),
    any contents; on return it holds the output with a zero border. epilogue(r_lo, r_hi): called when
    buffer rows [r_lo, r_hi) are final. bias: (O,) added to every output, or None. rows: tile rows (m
    output rows each) per band; bands run on the thread pool. inputs: (D, V) of :func:`input_arrays`
    with V made already by :func:`input_step` (a small map only): the input transform is skipped.
    """
    m = tile_of(u)
    t = matrices(m, xbuf.dtype)
    if transposed:
        u = transposed_form(u) if ut is None else ut  # from here on, (a*a, O, C) as in the forward
    c, o = xbuf.shape[0], u.shape[1]
    th, tw = -(-h // m), -(-w // m)
    dtype = xbuf.dtype
    kb, ka = t.input[transposed], t.output[transposed]
    outbuf[:, 0] = 0
    outbuf[:, h + 1:] = 0

    def transform_in(d, v, i0, i1, lo, hi):
        _gather(xbuf, d, i0, i1, lo, hi, m, h, w)
        separable(kb, d[:, lo:hi], v[:, lo:hi])

    def transform_out(mm, y, i0, lo, hi):
        if bias is not None:
            mm[t.bias_point, lo:hi] += bias[lo:hi, None]
        separable(ka, mm[:, lo:hi], y[:, lo:hi])
        _scatter(y, outbuf, i0, lo, hi, m, h, w)

    def arrays(prefix, tb):
        return [scratch(f"{prefix}.{name}", shape, dtype)
                for name, shape in zip("dvmy", band_shapes(c, o, tb, tw, m))]

    threads = num_threads()
    how, planned = band_plan(c, o, h, w, m, threads)
    if rows is None and how == "small":
        # A small map: one band. The threads share out the input transform by input channels, then
        # each takes a range of output channels through the products, the output transform, the
        # scatter and the epilogue (when it can run on a channel range): two hand-offs per layer.
        d, v, mm, y = arrays("winograd.small", th)
        if inputs is not None:
            d, v = inputs
        c_parts, o_parts = split(c, threads), split(o, threads)
        by_channels = hasattr(epilogue, "channels")

        def finish(i):
            lo, hi = o_parts[i]
            products(u[:, lo:hi], v, mm[:, lo:hi])
            transform_out(mm, y, 0, lo, hi)
            padded.zero_border_columns(outbuf[lo:hi], 1, 1 + h, w)
            if by_channels:
                epilogue.channels(lo, hi, 1, 1 + h)

        if inputs is None:
            for_each_task(lambda i: transform_in(d, v, 0, th, *c_parts[i]), len(c_parts))
        for_each_task(finish, len(o_parts))
        if epilogue is not None and not by_channels:
            epilogue(1, 1 + h)
        return outbuf
    if inputs is not None:
        raise ValueError("inputs transformed ahead serve a small map's single band only")
    rows = rows or planned
    starts = list(range(0, th, rows))

    def band(i):
        i0 = starts[i]
        i1 = min(th, i0 + rows)
        d, v, mm, y = arrays("winograd", i1 - i0)
        transform_in(d, v, i0, i1, 0, c)
        products(u, v, mm)
        transform_out(mm, y, i0, 0, o)
        r_lo, r_hi = 1 + m * i0, 1 + min(h, m * i1)
        padded.zero_border_columns(outbuf, r_lo, r_hi, w)
        if epilogue is not None:
            epilogue(r_lo, r_hi)

    for_each_task(band, len(starts))
    return outbuf
