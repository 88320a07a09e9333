"""The fast CPU engine: VGG-19's forward and backward on NumPy, one image at a time.

Same mathematics as the reference engine (``reference/engine.py``, which batches of several images and
other dtypes fall back to); what differs is how the work is laid out for a CPU with a multi-threaded
BLAS:

- every activation and every gradient lives in the zero-bordered layout of ``padded.py``, so
  no layer copies its input to pad it;
- convolutions run through ``conv3x3.py`` (direct GEMM) or ``winograd.py`` (F(4x4, 3x3): 4x fewer
  multiplications; F(2x2, 3x3): 2.25x) depending on the layer's shape (``fastconv.py``), and
  the input gradient is the convolution with flipped, transposed weights -- the same kernels again;
- the bias is added inside the kernels (a column of the GEMM, or one Winograd point);
  ReLU and its mask are applied band by band while the convolution's output is still in cache (the
  kernels' epilogue), and so are the backward's tap gradients and mask products;
- ReLU masks are kept bit-packed (1 bit per element; ``np.packbits`` row by row), max-pool winners as
  bytes, and nothing else: the backward needs no activations;
- the style loss reads the relu and pool taps whole, border included, and hands back its gradient in
  factored form (``losses.py``), multiplied out band by band in the backward's epilogue;
- buffers come from a pool (``buffers.py``) and go back to it as soon as they die.

The element-wise steps run on the thread pool of ``threads.py``.
"""
import numpy as np

from ..reference.engine import ReferenceEngine, too_small
from ..reference.losses import gram_matrix
from . import chain, padded
from .buffers import BufferPool
from .fastconv import PreparedConv3x3
from .losses import bordered_style_loss
from .steps import (
    ChannelChain,
    add_flat,
    add_interior,
    apply_mask,
    avg_pool,
    copy_in,
    grad_mask_epilogue,
    mask_shape,
    masked_product,
    max_pool,
    pool_backward,
    relu_epilogue,
    relu_with_mask,
)
from .threads import pool_owns_cores

# --- forward and backward -------------------------------------------------------------------------

class CpuTrace:
    """What :func:`backward` needs: one record (kind, name, data) per layer run, in forward order.

    Iterating gives (name, data) pairs, like the generic path's trace of (name, cache).
    ``padded_taps[name] = (buffer (1, C, H+3, W+2), H*W)``: the relu and pool taps whole, zero border
    included, for losses that can use them without copying (``losses.bordered_style_loss``);
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


def forward(engine, x, names, want, pool):
    """Run layers ``names`` (in order, from conv1_1) on x (1, 3, H, W); returns (features, CpuTrace).

    pool: a ``buffers.BufferPool`` the buffers come from (and go back to in :func:`backward`).
    """
    _, _, h, w = x.shape
    dtype = x.dtype
    buf = copy_in(pool.take(padded.padded_shape(3, h, w), dtype), x[0], h, w)
    features, records, whole, taps = {}, [], {}, []

    def done_with(b):
        if not any(b is t for t in taps):
            pool.give(b)

    chained, ahead = {}, {}  # pools made by the step before them; convolutions' inputs transformed ahead
    i = 0
    while i < len(names):
        name = names[i]
        kind = name[:4]
        if kind == "conv":
            prep = engine.prepared(name)
            relu_name = names[i + 1] if i + 1 < len(names) else None
            fuse = relu_name is not None and name not in want
            out = pool.take(padded.padded_shape(prep.o, h, w), dtype)
            mask = None
            if relu_name is not None:
                mask = pool.take(mask_shape(prep.o, h, w), np.uint8)
                mask[:, 0] = 0  # the epilogue fills rows 1..h
                mask[:, h + 1:] = 0
            epilogue = relu_epilogue(out, mask, w) if fuse else None
            if fuse and prep.small_map(h, w):  # its threads own channel ranges: chain what follows
                steps, pooled, next_input = chain.forward_ahead(engine, names, i + 2, out, h, w, pool, dtype)
                if steps:
                    epilogue = ChannelChain(epilogue, steps)
                if pooled:
                    chained[pooled[0]] = pooled[1:]
                if next_input:
                    ahead[next_input[0]] = next_input[1]
            inputs = ahead.pop(name, None)
            prep.run(buf, out, h, w, epilogue=epilogue, bias=True, inputs=inputs)
            for b in inputs or ():
                pool.give(b)
            done_with(buf)
            records.append(("conv", name, (prep, h, w)))
            if name in want:
                features[name] = np.ascontiguousarray(padded.interior(out, h, w))[None]
            if relu_name is not None:
                if not fuse:
                    relu_with_mask(out, h, mask)
                records.append(("relu", relu_name, (mask, h, w)))
                if relu_name in want:
                    features[relu_name] = padded.interior(out, h, w)[None]
                    whole[relu_name] = (out[None], h * w)
                    taps.append(out)
                i += 1
            buf = out
        elif kind == "pool":
            if min(h, w) < 2:
                raise too_small(name, h, w)
            ho, wo = h // 2, w // 2
            if name in chained:  # pooled already, by the convolution's threads
                out, winner = chained.pop(name)
            else:
                out = pool.take(padded.padded_shape(buf.shape[0], ho, wo), dtype)  # border: by the pool step
                steps, _, next_input = chain.forward_ahead(engine, names, i + 1, out, ho, wo, pool, dtype,
                                                           with_pool=False)
                if next_input:
                    ahead[next_input[0]] = next_input[1]
                winner = None
                if engine.pooling == "avg":
                    avg_pool(buf, h, w, out, steps)
                else:
                    winner = pool.take((buf.shape[0], ho, wo), np.uint8)
                    max_pool(buf, h, w, out, winner, steps)
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
        return copy_in(pool.take(padded.padded_shape(g.shape[0], h, w), dtype), g, h, w)
    if g.shape[1:] == dh.shape[1:]:
        add_flat(dh, g)
    else:
        add_interior(dh, g, h, w)
    return dh


def backward(trace, grads):
    """dL/dx (1, 3, H, W) from ``{tap: [gradient, ...]}`` (see ``ReferenceEngine.backward``).

    Consumes ``grads``: the dict is emptied, so that nothing keeps the tap buffers from the pool.
    """
    if trace.used:
        raise ValueError("this trace was already used by a backward; run the forward again")
    trace.used = True
    trace.padded_taps.clear()  # the losses are done with them; their buffers may be recycled as we go
    records, dtype, pool = trace.records, trace.dtype, trace.pool

    def tap_grad(name, factored=False):
        contributions = grads.get(name)
        if not contributions:
            return None
        if len(contributions) > 1:
            return _sum_contributions(contributions, dtype)
        g = contributions[0]
        if factored and hasattr(g, "add_rows"):
            return g  # a losses.GramGradient, multiplied out band by band in the epilogue
        return np.asarray(g, dtype=dtype)[0]

    dh = None        # gradient at the output of the current record, padded
    masked = False   # the relu about to be visited was already applied by a fused epilogue
    chained, ahead = {}, {}  # by record index: pools run, inputs transformed by the step before them
    for idx in range(len(records) - 1, -1, -1):
        kind, name, data = records[idx]
        if kind == "relu":
            mask, h, w = data
            if not masked:
                g = tap_grad(name, factored=dh is None)
                if hasattr(g, "rows_into"):  # the deepest tap's style gradient: multiplied out, masked
                    dh = pool.take(padded.padded_shape(g.shape[1], h, w), dtype)
                    steps = _chain_behind(records, idx - 1, grads, dh, h, w, pool, dtype, chained, ahead)
                    masked_product(dh, g, mask, h, w, steps)
                    g.release()
                    _recycle_taps(trace)
                else:
                    dh = _accumulate(dh, g, h, w, dtype, pool)
                    if dh is not None:
                        apply_mask(dh, mask, h, w)
                del g
            masked = False
            pool.give(mask)
        elif kind == "conv":
            prep, h, w = data
            dh = _accumulate(dh, tap_grad(name), h, w, dtype, pool)
            if dh is None:
                continue
            dx = pool.take(padded.padded_shape(prep.c, h, w), dtype)
            epilogue, below_grad, below = None, None, idx - 1
            if idx > 0 and records[idx - 1][0] == "relu":
                below_name, (below_mask, _, _) = records[idx - 1][1], records[idx - 1][2]
                below_grad = tap_grad(below_name, factored=True)
                epilogue = grad_mask_epilogue(dx, below_grad, below_mask, w)
                masked, below = True, idx - 2
            if prep.small_map(h, w, transposed=True):  # its threads own channel ranges: chain what follows
                steps = _chain_behind(records, below, grads, dx, h, w, pool, dtype, chained, ahead)
                if steps:
                    epilogue = ChannelChain(epilogue, steps)
            inputs = ahead.pop(idx, None)
            prep.run(dh, dx, h, w, transposed=True, epilogue=epilogue, inputs=inputs)
            for b in inputs or ():
                pool.give(b)
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
            below_mask = None
            if idx > 0 and records[idx - 1][0] == "relu" and not grads.get(records[idx - 1][1]):
                below_mask = records[idx - 1][2][0]  # that ReLU has no tap gradient: mask it here
            if idx in chained:  # run already, by the threads of the convolution above
                pool.give(dh)
                dh, masked = chained.pop(idx), True
            elif dh is not None:
                dx = pool.take(padded.padded_shape(dh.shape[0], h, w), dtype)
                steps = _chain_behind(records, idx - 2, grads, dx, h, w, pool, dtype, chained, ahead) \
                    if below_mask is not None else ()
                dx = pool_backward(dh, h, w, winner, dx, mask=below_mask, then=steps)
                pool.give(dh)
                dh = dx
                masked = below_mask is not None
            pool.give(winner)
    if dh is None:
        raise ValueError("backward needs a gradient at one tap at least")
    _, _, h, w = trace.input_shape
    dx = np.ascontiguousarray(padded.interior(dh, h, w))[None]
    pool.give(dh)
    trace.padded_taps.clear()
    trace.records = []
    grads.clear()
    _recycle_taps(trace)
    return dx


def _chain_behind(records, j, grads, src, h, w, pool, dtype, chained, ahead):
    """The steps the backward can chain after the one making ``src`` (the gradient at record j's output):
    ``chain.backward_ahead``'s, with what they make entered in ``chained`` and ``ahead``."""
    steps, pooled, next_input = chain.backward_ahead(records, j, grads, src, h, w, pool, dtype)
    if pooled:
        chained[pooled[0]] = pooled[1]
    if next_input:
        ahead[next_input[0]] = next_input[1]
    return steps


def _sum_contributions(contributions, dtype):
    """One (C, H, W) or padded (C, H+3, W+2) array from several gradients at one tap (a layer that is
    both a content and a style tap): plain arrays of the interior, or padded / factored ones."""
    arrays = [np.asarray(g, dtype=dtype)[0] for g in contributions]
    largest = max(arrays, key=lambda a: a.shape[1])
    total = np.zeros_like(largest)
    for a in arrays:
        if a.shape == total.shape:
            total += a
        else:  # interior only: the padded buffer has 1 row above, 2 below, 1 column each side
            total[:, 1:a.shape[1] + 1, 1:a.shape[2] + 1] += a
    return total


def _recycle_taps(trace):
    """Give the tap buffers back to the pool unless something (features kept by the caller, gradients
    that view them) still holds them; the others are left to the garbage collector."""
    kept = []
    while trace.tap_buffers:
        buf = trace.tap_buffers.pop()
        if trace.pool.give_if_unused(buf, known_refs=1) is False:
            kept.append(buf)
        del buf
    trace.tap_buffers = kept


class CpuEngine:
    """The engine interface (see ``reference/engine.py``) over the functions above.

    Holds what lives between evaluations: each layer's weights in its kernel's forms (made on first
    use) and the buffer pool. winograd: "auto", "always", "f2" or "never" (see ``fastconv.choose_kernel``). One image in the network's dtype takes the fast path; a batch or another
    dtype runs on the reference engine instead. Overflow to inf/nan is not warned about: the
    objective's callers check every result.
    """

    name = "cpu"

    def __init__(self, params, pooling="avg", winograd="auto"):
        self.params, self.pooling, self.winograd = params, pooling, winograd
        self.dtype = params["conv1_1"][0].dtype
        self.buffers = BufferPool()
        self._prepared = {}
        self._reference = ReferenceEngine(params, pooling)

    def prepared(self, name):
        """Conv layer ``name``'s weights in the kernels' forms (made once, then kept)."""
        if name not in self._prepared:
            self._prepared[name] = PreparedConv3x3(*self.params[name], winograd=self.winograd)
        return self._prepared[name]

    def evaluation(self):
        """A context around one whole evaluation (forward, losses, backward): with more than one thread
        the BLAS stays single-threaded throughout, and only the pool spreads work over the cores
        (``threads.pool_owns_cores``: a BLAS thread woken between pool calls would poll on the
        pool's core)."""
        return pool_owns_cores()

    def forward(self, x, names, want):
        if x.shape[0] != 1 or x.dtype != self.dtype:
            return self._reference.forward(x, names, want)
        with np.errstate(over="ignore", invalid="ignore"):
            return forward(self, x, names, want, self.buffers)

    def backward(self, trace, grads):
        if not isinstance(trace, CpuTrace):
            return self._reference.backward(trace, grads)
        with np.errstate(over="ignore", invalid="ignore"):
            return backward(trace, grads)

    def gram(self, features, trace, name):
        whole = getattr(trace, "padded_taps", {})
        return gram_matrix(whole[name][0] if name in whole else features[name])

    def style_loss(self, features, trace, name, A):
        whole = getattr(trace, "padded_taps", {})
        if name in whole:
            return bordered_style_loss(whole[name][0], A, whole[name][1])
        return self._reference.style_loss(features, trace, name, A)

    def release(self):
        """Hand the pooled buffers back to the allocator.

        They are kept for the next evaluation of the same size; once the image size changes (after
        the style targets, between coarse-to-fine stages) they would only sit in memory.
        """
        self.buffers.clear()
