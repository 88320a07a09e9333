"""The CPU hot path of :meth:`VGG19.forward` and :meth:`VGG19.backward` (NumPy, one image at a time).

Same mathematics as the generic path in ``vgg.py`` (which CuPy arrays and batches of several images
take); what differs is how the work is laid out for a CPU with a multi-threaded BLAS:

- every activation and every gradient lives in the zero-bordered layout of ``layers/padded.py``, so
  no layer copies its input to pad it;
- convolutions run through ``layers/conv3x3.py`` (direct GEMM) or ``layers/winograd.py``
  (F(2x2, 3x3), 2.25x fewer multiplications) depending on the layer's shape (``layers/fastconv.py``), and
  the input gradient is the convolution with flipped, transposed weights -- the same kernels again;
- the bias is added inside the kernels (a column of the GEMM, or in the Winograd output transform);
  ReLU and its mask are applied band by band while the convolution's output is still in cache (the
  kernels' epilogue), and so are the backward's tap gradients and mask products;
- ReLU masks are kept bit-packed (1 bit per element; ``np.packbits`` row by row), max-pool winners as
  bytes, and nothing else: the backward needs no activations.

The element-wise steps run on the thread pool of ``layers/threads.py``.
"""
import numpy as np

from .layers import padded
from .layers.fastconv import PreparedConv3x3
from .layers.threads import parallel_ranges, scratch

# --- masks ------------------------------------------------------------------------------------------

def mask_shape(c, h, w):
    """Bit-packed ReLU mask of a padded buffer: one bit per element, each buffer row packed alone."""
    return (c, h + 3, (w + 2 + 7) // 8)


def unpack_rows(mask, lo, hi, r_lo, r_hi, wp):
    return np.unpackbits(mask[lo:hi, r_lo:r_hi], axis=-1, count=wp).view(bool)


# --- epilogues (see layers/conv3x3.py) ----------------------------------------------------------------

def _relu_epilogue(out, mask, w):
    """Rectify rows [r_lo, r_hi) in place and record their packed mask (the kernel added the bias).

    ReLU as x * (x > 0), reusing the comparison the mask needs: faster than np.maximum, which checks
    for NaN. (A negative input becomes -0.0, which every later step treats as 0.)
    """
    wp = w + 2

    def epilogue(r_lo, r_hi):
        def work(lo, hi):
            rows = out[lo:hi, r_lo:r_hi]
            positive = scratch("relu.mask", rows.shape, bool)
            np.greater(rows, 0, out=positive)
            np.multiply(rows, positive, out=rows)
            mask[lo:hi, r_lo:r_hi] = np.packbits(positive, axis=-1)

        parallel_ranges(work, out.shape[0], work=out.shape[0] * (r_hi - r_lo) * wp)

    return epilogue


def _grad_mask_epilogue(dx, tap_grad, mask, w):
    """Add the tap gradient (if any) to rows [r_lo, r_hi), then apply the ReLU mask.

    tap_grad: (C, H, W), added to the interior; padded (zero border), added whole; or factored
    (``losses.GramGradient`` on the padded tap), multiplied out for these rows only.
    """
    wp = w + 2
    factored = hasattr(tap_grad, "add_rows")
    whole = not factored and tap_grad is not None and tap_grad.shape[2] == wp

    def epilogue(r_lo, r_hi):
        def work(lo, hi):
            rows = dx[lo:hi, r_lo:r_hi]
            if factored:
                tap_grad.add_rows(rows, lo, hi, r_lo, r_hi, scratch("grad.rows", rows.shape, rows.dtype))
            elif whole:
                rows += tap_grad[lo:hi, r_lo:r_hi]
            elif tap_grad is not None:
                rows[:, :, 1:w + 1] += tap_grad[lo:hi, r_lo - 1:r_hi - 1]
            np.multiply(rows, unpack_rows(mask, lo, hi, r_lo, r_hi, wp), out=rows)

        parallel_ranges(work, dx.shape[0], work=dx.shape[0] * (r_hi - r_lo) * wp)

    return epilogue


def _relu_with_mask(buf, h, w, mask):
    def work(lo, hi):
        rows = buf[lo:hi, 1:h + 1]
        np.maximum(rows, 0, out=rows)
        mask[lo:hi, 1:h + 1] = np.packbits(rows > 0, axis=-1)

    parallel_ranges(work, buf.shape[0], work=buf.size)
    return mask


def _apply_mask(buf, mask, h, w):
    def work(lo, hi):
        rows = buf[lo:hi]
        np.multiply(rows, unpack_rows(mask, lo, hi, 0, h + 3, w + 2), out=rows)

    parallel_ranges(work, buf.shape[0], work=buf.size)


def _add_interior(buf, g, h, w):
    def work(lo, hi):
        buf[lo:hi, 1:h + 1, 1:w + 1] += g[lo:hi]

    parallel_ranges(work, buf.shape[0], work=buf.size)


def _add_flat(buf, g):
    def work(lo, hi):
        buf[lo:hi] += g[lo:hi]

    parallel_ranges(work, buf.shape[0], work=buf.size)


def _copy_in(buf, g, h, w):
    """Fill a padded buffer from g: (C, H, W) into the interior (border zeroed), or padded as a whole."""
    whole = g.shape[1:] == buf.shape[1:]
    if not whole:
        padded.zero_border(buf, h, w)

    def work(lo, hi):
        if whole:
            buf[lo:hi] = g[lo:hi]
        else:
            buf[lo:hi, 1:h + 1, 1:w + 1] = g[lo:hi]

    parallel_ranges(work, buf.shape[0], work=buf.size)
    return buf


# --- pooling ------------------------------------------------------------------------------------------

def _windows(buf, ho, wo):
    """The four 2x2-window corners of the interior: strided (C, Ho, Wo) views."""
    return [buf[:, 1 + di:1 + di + 2 * ho:2, 1 + dj:1 + dj + 2 * wo:2] for di in (0, 1) for dj in (0, 1)]


def _avg_pool(buf, h, w, out, winner):
    ho, wo = h // 2, w // 2

    def work(lo, hi):
        a, b_, c_, d = _windows(buf[lo:hi], ho, wo)
        dst = out[lo:hi, 1:ho + 1, 1:wo + 1]
        np.add(a, b_, out=dst)
        dst += c_
        dst += d
        dst *= buf.dtype.type(0.25)

    parallel_ranges(work, buf.shape[0], work=buf.size)


def _max_pool(buf, h, w, out, winner):
    ho, wo = h // 2, w // 2

    def work(lo, hi):
        views = _windows(buf[lo:hi], ho, wo)
        dst = out[lo:hi, 1:ho + 1, 1:wo + 1]
        np.copyto(dst, views[0])
        winner[lo:hi] = 0
        for idx in range(1, 4):
            better = views[idx] > dst  # strict: the first offset keeps a tie, as in layers/pool.py
            np.copyto(winner[lo:hi], idx, where=better)
            np.copyto(dst, views[idx], where=better)

    parallel_ranges(work, buf.shape[0], work=buf.size)


def _pool_backward(dout, h, w, winner, dx):
    """Gradient on the (C, h, w) map before a 2x2/2 pool, from the padded gradient after it."""
    ho, wo = h // 2, w // 2
    padded.zero_border(dx, h, w)

    def work(lo, hi):
        g = dout[lo:hi, 1:ho + 1, 1:wo + 1]
        if h % 2:
            dx[lo:hi, h, :] = 0  # rows and columns that no window covers get no gradient
        if w % 2:
            dx[lo:hi, :, w] = 0
        for idx, view in enumerate(_windows(dx[lo:hi], ho, wo)):
            if winner is None:
                np.multiply(g, dout.dtype.type(0.25), out=view)
            else:
                np.multiply(g, winner[lo:hi] == idx, out=view)

    parallel_ranges(work, dx.shape[0], work=dx.size)
    return dx


# --- forward and backward -------------------------------------------------------------------------

class CpuTrace:
    """What :func:`backward` needs: one record (kind, name, data) per layer run, in forward order.

    Iterating gives (name, data) pairs, like the generic path's trace of (name, cache).
    ``padded_taps[name] = (buffer (1, C, H+3, W+2), H*W)``: the relu and pool taps whole, zero border
    included, for losses that can use them without copying (``losses.style_layer_loss(positions=)``);
    gradients in that shape may be handed to :func:`backward` (their border must be zero).
    A trace serves one backward: that backward clears ``padded_taps`` and recycles masks and buffers.
    """

    def __init__(self, records, input_shape, dtype, pool, padded_taps, tap_buffers):
        self.records, self.input_shape, self.dtype = records, input_shape, dtype
        self.pool, self.padded_taps, self.tap_buffers = pool, padded_taps, tap_buffers
        self.used = False
        self._names = [name for _, name, _ in records]

    def names(self):
        return list(self._names)

    def __iter__(self):
        return iter([(name, data) for _, name, data in self.records])

    def __len__(self):
        return len(self.records)


def forward(vgg, x, names, want, pool):
    """Run layers ``names`` (in order, from conv1_1) on x (1, 3, H, W); returns (features, CpuTrace).

    pool: a ``layers.buffers.BufferPool`` the buffers come from (and go back to in :func:`backward`).
    """
    _, _, h, w = x.shape
    dtype = x.dtype
    buf = _copy_in(pool.take(padded.padded_shape(3, h, w), dtype), x[0], h, w)
    features, records, whole, taps = {}, [], {}, []

    def done_with(b):
        if not any(b is t for t in taps):
            pool.give(b)

    i = 0
    while i < len(names):
        name = names[i]
        kind = name[:4]
        if kind == "conv":
            prep = vgg.prepared(name)
            relu_name = names[i + 1] if i + 1 < len(names) else None
            fuse = relu_name is not None and name not in want
            out = pool.take(padded.padded_shape(prep.o, h, w), dtype)
            mask = None
            if relu_name is not None:
                mask = pool.take(mask_shape(prep.o, h, w), np.uint8)
                mask[:, 0] = 0  # the epilogue fills rows 1..h
                mask[:, h + 1:] = 0
            prep.run(buf, out, h, w, epilogue=_relu_epilogue(out, mask, w) if fuse else None, bias=True)
            done_with(buf)
            records.append(("conv", name, (prep, h, w)))
            if name in want:
                features[name] = np.ascontiguousarray(padded.interior(out, h, w))[None]
            if relu_name is not None:
                if not fuse:
                    _relu_with_mask(out, h, w, mask)
                records.append(("relu", relu_name, (mask, h, w)))
                if relu_name in want:
                    features[relu_name] = padded.interior(out, h, w)[None]
                    whole[relu_name] = (out[None], h * w)
                    taps.append(out)
                i += 1
            buf = out
        elif kind == "pool":
            ho, wo = h // 2, w // 2
            out = pool.take(padded.padded_shape(buf.shape[0], ho, wo), dtype)
            padded.zero_border(out, ho, wo)
            winner = None
            if vgg.pooling == "avg":
                _avg_pool(buf, h, w, out, None)
            else:
                winner = pool.take((buf.shape[0], ho, wo), np.uint8)
                _max_pool(buf, h, w, out, winner)
            done_with(buf)
            records.append(("pool", name, (h, w, winner)))
            buf, h, w = out, ho, wo
            if name in want:
                features[name] = padded.interior(buf, h, w)[None]
                whole[name] = (buf[None], h * w)
                taps.append(buf)
        else:  # a relu not preceded by its convolution cannot happen in VGG's layer order
            raise AssertionError(f"unexpected layer order at {name}")
        i += 1
    return features, CpuTrace(records, x.shape, dtype, pool, whole, taps)


def _accumulate(dh, g, h, w, dtype, pool):
    """dh + g (dh may be None: then a new buffer holding g). g: (C, H, W), or padded with zero border."""
    if g is None:
        return dh
    if dh is None:
        return _copy_in(pool.take(padded.padded_shape(g.shape[0], h, w), dtype), g, h, w)
    if g.shape[1:] == dh.shape[1:]:
        _add_flat(dh, g)
    else:
        _add_interior(dh, g, h, w)
    return dh


def backward(trace, grads):
    """dL/dx (1, 3, H, W) from gradients at any of the forward's taps (see VGG19.backward)."""
    if trace.used:
        raise ValueError("this trace was already used by a backward; run the forward again")
    trace.used = True
    trace.padded_taps.clear()  # the losses are done with them; their buffers may be recycled as we go
    records, dtype, pool = trace.records, trace.dtype, trace.pool

    def tap_grad(name, factored=False):
        g = grads.get(name)
        if g is None or (factored and hasattr(g, "add_rows")):
            return g  # a losses.GramGradient, multiplied out band by band in the epilogue
        return np.asarray(g, dtype=dtype)[0]

    dh = None        # gradient at the output of the current record, padded
    masked = False   # the relu about to be visited was already applied by a fused epilogue
    for idx in range(len(records) - 1, -1, -1):
        kind, name, data = records[idx]
        if kind == "relu":
            mask, h, w = data
            if not masked:
                dh = _accumulate(dh, tap_grad(name), h, w, dtype, pool)
                if dh is not None:
                    _apply_mask(dh, mask, h, w)
            masked = False
            pool.give(mask)
        elif kind == "conv":
            prep, h, w = data
            dh = _accumulate(dh, tap_grad(name), h, w, dtype, pool)
            if dh is None:
                continue
            dx = pool.take(padded.padded_shape(prep.c, h, w), dtype)
            epilogue, below_grad = None, None
            if idx > 0 and records[idx - 1][0] == "relu":
                below_name, (below_mask, _, _) = records[idx - 1][1], records[idx - 1][2]
                below_grad = tap_grad(below_name, factored=True)
                epilogue = _grad_mask_epilogue(dx, below_grad, below_mask, w)
                masked = True
            prep.run(dh, dx, h, w, transposed=True, epilogue=epilogue)
            pool.give(dh)
            dh = dx
            if hasattr(below_grad, "release"):
                # that tap's activations are needed no more: its buffer can go back to the pool now
                below_grad.release()
                del below_grad, epilogue
                _recycle_taps(trace)
        else:
            h, w, winner = data
            dh = _accumulate(dh, tap_grad(name), h // 2, w // 2, dtype, pool)
            if dh is not None:
                dx = _pool_backward(dh, h, w, winner, pool.take(padded.padded_shape(dh.shape[0], h, w), dtype))
                pool.give(dh)
                dh = dx
            pool.give(winner)
    if dh is None:
        raise ValueError("backward needs a gradient at one tap at least")
    _, _, h, w = trace.input_shape
    dx = np.ascontiguousarray(padded.interior(dh, h, w))[None]
    pool.give(dh)
    trace.padded_taps.clear()
    trace.records = []
    recycle(trace)
    return dx


def recycle(trace):
    """Give the tap buffers back to the pool unless something (features kept by the caller, gradients
    that view them) still holds them; the others are left to the garbage collector."""
    if trace.used:
        _recycle_taps(trace)


def _recycle_taps(trace):
    kept = []
    while trace.tap_buffers:
        buf = trace.tap_buffers.pop()
        if trace.pool.give_if_unused(buf, known_refs=1) is False:
            kept.append(buf)
        del buf
    trace.tap_buffers = kept
