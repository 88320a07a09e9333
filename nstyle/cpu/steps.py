"""The CPU engine's steps between convolutions, on the zero-bordered layout of ``padded.py``.

ReLU masks (bit-packed), the convolution epilogues that rectify a band of rows while it is still in
cache (forward) or add tap gradients and apply the mask (backward), element-wise adds and copies, and
2x2 pooling forward and backward. Every step runs on the thread pool of ``threads.py``, split over
channels. The engine that strings them together is ``engine.py``.
"""
import numpy as np

from . import padded
from .threads import parallel_ranges, scratch

# --- masks ------------------------------------------------------------------------------------------

def mask_shape(c, h, w):
    """Bit-packed ReLU mask of a padded buffer: one bit per element, each buffer row packed alone."""
    return (c, h + 3, (w + 2 + 7) // 8)


def unpack_rows(mask, lo, hi, r_lo, r_hi, wp):
    return np.unpackbits(mask[lo:hi, r_lo:r_hi], axis=-1, count=wp).view(bool)


# --- epilogues (see conv3x3.py) ----------------------------------------------------------------

class RowEpilogue:
    """A convolution epilogue: ``work(lo, hi, r_lo, r_hi)`` on channels [lo, hi) of buffer rows
    [r_lo, r_hi).

    Called as ``epilogue(r_lo, r_hi)`` (the kernels' protocol) it shares the channels out between the
    threads; :meth:`channels` runs one channel range inline, for a kernel whose threads already each
    own a range of output channels (the Winograd kernel on small maps): no hand-off to the pool.
    """

    def __init__(self, work, c, wp):
        self.work, self.c, self.wp = work, c, wp

    def __call__(self, r_lo, r_hi):
        parallel_ranges(lambda lo, hi: self.work(lo, hi, r_lo, r_hi), self.c, work=self.c * (r_hi - r_lo) * self.wp)

    def channels(self, lo, hi, r_lo, r_hi):
        self.work(lo, hi, r_lo, r_hi)


class ChannelChain:
    """An epilogue that runs more steps on each channel range after the layer's own epilogue work.

    For a kernel whose threads each own a range of output channels (the Winograd kernel on small maps,
    :meth:`RowEpilogue.channels`): the thread that has just made channels [lo, hi) of a layer's output
    also pools them, and transforms them as the next convolution's input -- steps that otherwise were
    regions of their own, each a hand-off to the other thread and a wait for it (bench/NOTES.md,
    section 15). ``first``: the layer's own epilogue (a RowEpilogue) or None; ``then``: callables
    (lo, hi). Only the channel protocol exists: the engine chains steps only where the kernel
    shares out channels (``PreparedConv3x3.small_map``).
    """

    def __init__(self, first, then):
        self.first, self.then = first, list(then)

    def channels(self, lo, hi, r_lo, r_hi):
        if self.first is not None:
            self.first.channels(lo, hi, r_lo, r_hi)
        for step in self.then:
            step(lo, hi)


def relu_epilogue(out, mask, w):
    """Rectify rows [r_lo, r_hi) in place and record their packed mask (the kernel added the bias).

    ReLU as x * (x > 0), reusing the comparison the mask needs: faster than np.maximum, which checks
    for NaN. (A negative input becomes -0.0, which every later step treats as 0.)
    """
    def work(lo, hi, r_lo, r_hi):
        rows = out[lo:hi, r_lo:r_hi]
        positive = scratch("relu.mask", rows.shape, bool)
        np.greater(rows, 0, out=positive)
        np.multiply(rows, positive, out=rows)
        mask[lo:hi, r_lo:r_hi] = np.packbits(positive, axis=-1)

    return RowEpilogue(work, out.shape[0], w + 2)


def grad_mask_epilogue(dx, tap_grad, mask, w):
    """Add the tap gradient (if any) to rows [r_lo, r_hi), then apply the ReLU mask.

    tap_grad: (C, H, W), added to the interior; padded (zero border), added whole; or factored
    (``losses.GramGradient`` on the padded tap), multiplied out for these rows only.
    """
    wp = w + 2
    factored = hasattr(tap_grad, "add_rows")
    whole = not factored and tap_grad is not None and tap_grad.shape[2] == wp

    def work(lo, hi, r_lo, r_hi):
        rows = dx[lo:hi, r_lo:r_hi]
        if factored:
            tap_grad.add_rows(rows, lo, hi, r_lo, r_hi, scratch("grad.rows", rows.shape, rows.dtype))
        elif whole:
            rows += tap_grad[lo:hi, r_lo:r_hi]
        elif tap_grad is not None:
            rows[:, :, 1:w + 1] += tap_grad[lo:hi, r_lo - 1:r_hi - 1]
        np.multiply(rows, unpack_rows(mask, lo, hi, r_lo, r_hi, wp), out=rows)

    return RowEpilogue(work, dx.shape[0], wp)


def masked_product(dx, tap_grad, mask, h, w, then=()):
    """dx = the factored gradient (``losses.GramGradient``) multiplied out, times the ReLU mask: the whole
    padded buffer, channels shared out between the threads.

    The backward's first step when the deepest tap is a style layer (relu5_1): one pass on the pool,
    where the product on the calling thread, a copy into the buffer and a mask pass made three.
    """
    def work(lo, hi):
        rows = dx[lo:hi]
        tap_grad.rows_into(rows, lo, hi, 0, h + 3)
        np.multiply(rows, unpack_rows(mask, lo, hi, 0, h + 3, w + 2), out=rows)

    # work: the product's N multiply-adds per element count as a pass over about N / 16 elements
    _over_channels(work, dx.shape[0], dx.size * (1 + tap_grad.S.shape[1] // 16), then)
    return dx


def relu_with_mask(buf, h, mask):
    def work(lo, hi):
        rows = buf[lo:hi, 1:h + 1]
        np.maximum(rows, 0, out=rows)
        mask[lo:hi, 1:h + 1] = np.packbits(rows > 0, axis=-1)

    parallel_ranges(work, buf.shape[0], work=buf.size)
    return mask


def apply_mask(buf, mask, h, w):
    def work(lo, hi):
        rows = buf[lo:hi]
        np.multiply(rows, unpack_rows(mask, lo, hi, 0, h + 3, w + 2), out=rows)

    parallel_ranges(work, buf.shape[0], work=buf.size)


def add_interior(buf, g, h, w):
    def work(lo, hi):
        buf[lo:hi, 1:h + 1, 1:w + 1] += g[lo:hi]

    parallel_ranges(work, buf.shape[0], work=buf.size)


def add_flat(buf, g):
    def work(lo, hi):
        buf[lo:hi] += g[lo:hi]

    parallel_ranges(work, buf.shape[0], work=buf.size)


def copy_in(buf, g, h, w):
    """Fill a padded buffer from g: (C, H, W) into the interior (border zeroed), or padded as a whole."""
    whole = g.shape[1:] == buf.shape[1:]

    def work(lo, hi):
        if whole:
            buf[lo:hi] = g[lo:hi]
        else:
            padded.zero_border(buf[lo:hi], h, w)
            buf[lo:hi, 1:h + 1, 1:w + 1] = g[lo:hi]

    parallel_ranges(work, buf.shape[0], work=buf.size)
    return buf


# --- pooling ------------------------------------------------------------------------------------------

def windows(buf, ho, wo):
    """The four 2x2-window corners of the interior: strided (C, Ho, Wo) views."""
    return [buf[:, 1 + di:1 + di + 2 * ho:2, 1 + dj:1 + dj + 2 * wo:2] for di in (0, 1) for dj in (0, 1)]


def _over_channels(step, n, work, then):
    """step(lo, hi) over channel ranges of [0, n) on the threads, each range followed by the ``then``
    steps on the same channels (see :class:`ChannelChain`)."""
    if then:
        def chained(lo, hi):
            step(lo, hi)
            for more in then:
                more(lo, hi)
        parallel_ranges(chained, n, work=work)
    else:
        parallel_ranges(step, n, work=work)


def avg_pool_step(buf, h, w, out):
    """2x2 average pooling into the padded ``out`` on channels [lo, hi) (its border zeroed too): the two
    rows of each window added first (contiguous rows, one pass), then the two columns of that sum
    (every other element). Returns the step, a callable (lo, hi)."""
    ho, wo = h // 2, w // 2
    quarter = buf.dtype.type(0.25)

    def work(lo, hi):
        padded.zero_border(out[lo:hi], ho, wo)
        pairs = buf[lo:hi, 1:1 + 2 * ho].reshape(hi - lo, ho, 2, buf.shape[2])
        rows = scratch("pool.rows", (hi - lo, ho, buf.shape[2]), buf.dtype)
        np.add(pairs[:, :, 0], pairs[:, :, 1], out=rows)
        dst = out[lo:hi, 1:ho + 1, 1:wo + 1]
        np.add(rows[:, :, 1:2 * wo:2], rows[:, :, 2:2 * wo + 1:2], out=dst)
        dst *= quarter

    return work


def avg_pool(buf, h, w, out, then=()):
    _over_channels(avg_pool_step(buf, h, w, out), buf.shape[0], buf.size, then)


def max_pool_step(buf, h, w, out, winner):
    """2x2 max pooling on channels [lo, hi); ``winner`` records which corner won. Returns the step."""
    ho, wo = h // 2, w // 2

    def work(lo, hi):
        padded.zero_border(out[lo:hi], ho, wo)
        views = windows(buf[lo:hi], ho, wo)
        dst = out[lo:hi, 1:ho + 1, 1:wo + 1]
        np.copyto(dst, views[0])
        winner[lo:hi] = 0
        for idx in range(1, 4):
            better = views[idx] > dst  # strict: the first offset keeps a tie, as in reference/pool.py
            np.copyto(winner[lo:hi], idx, where=better)
            np.copyto(dst, views[idx], where=better)

    return work


def max_pool(buf, h, w, out, winner, then=()):
    _over_channels(max_pool_step(buf, h, w, out, winner), buf.shape[0], buf.size, then)


# Elements of a pooling gradient masked at a time, a few channels, while still in cache (512 KB of float32).
MASK_CHUNK_ELEMS = 1 << 17


def pool_backward_step(dout, h, w, winner, dx, mask=None):
    """Gradient on channels [lo, hi) of the (C, h, w) map before a 2x2/2 pool, from the padded gradient
    after it. mask: the packed ReLU mask of that map (``mask_shape``), applied on the way -- the ReLU
    below a pool needs no pass of its own. Returns the step."""
    ho, wo = h // 2, w // 2
    chunk = max(1, MASK_CHUNK_ELEMS // dx[0].size)

    def work(lo, hi):
        for c0 in range(lo, hi, chunk):
            c1 = min(hi, c0 + chunk)
            padded.zero_border(dx[c0:c1], h, w)
            g = dout[c0:c1, 1:ho + 1, 1:wo + 1]
            if h % 2:
                dx[c0:c1, h, :] = 0  # rows and columns that no window covers get no gradient
            if w % 2:
                dx[c0:c1, :, w] = 0
            for idx, view in enumerate(windows(dx[c0:c1], ho, wo)):
                if winner is None:
                    np.multiply(g, dout.dtype.type(0.25), out=view)
                else:
                    np.multiply(g, winner[c0:c1] == idx, out=view)
            if mask is not None:
                rows = dx[c0:c1]
                np.multiply(rows, unpack_rows(mask, c0, c1, 0, h + 3, w + 2), out=rows)

    return work


def pool_backward(dout, h, w, winner, dx, mask=None, then=()):
    """:func:`pool_backward_step` on every channel, on the threads; returns dx."""
    _over_channels(pool_backward_step(dout, h, w, winner, dx, mask), dx.shape[0], dx.size, then)
    return dx
