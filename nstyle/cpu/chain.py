"""Steps done early, on the channels a thread has just made: the engine's chaining on small maps.

On a small map the Winograd kernel shares its work out by channel ranges: first the input transform
(a region of the thread team: each thread transforms ``split(c, threads)``'s part), then the products
and everything after them (a second region, by output channel ranges, ending in the epilogue). The
step after a layer -- its pool, or the next convolution's input transform -- works on channel ranges
too, and the next layer's input channels are this layer's output channels: the same ranges. So the
thread that has just finished channels [lo, hi) of a layer can pool them and transform them for the
next convolution at once, while they are in its cache, in the same region: at 128 px about half of an
evaluation's regions, each a hand-off to the other thread and a wait for the slower one, go away
(bench/NOTES.md, section 15).

What it does not change: every step still runs on the same channel ranges with the same calls (the
input transform one ``split`` part at a time, ``winograd.input_step``), so the bits are those of the
unchained engine. Chaining is planned only where each step's conditions hold (no tap gradient to add
between them, the next convolution on the small-map path); anything else runs as before. With one
thread nothing is chained (the kernels run in bands). ``CHAIN = False`` turns it off (the tests
compare both).
"""
import numpy as np

from . import padded
from .steps import avg_pool_step, max_pool_step, pool_backward_step
from .winograd import input_arrays, input_step

CHAIN = True


def _transform_ahead(prep, src, h, w, pool, dtype, transposed):
    """(step, (d, v)) transforming ``src`` for ``prep``'s convolution on an h x w map, or None where
    that convolution does not take the small-map path."""
    m = prep.small_map(h, w, transposed)
    if m is None:
        return None
    d_shape, v_shape = input_arrays(src.shape[0], h, w, m)
    d, v = pool.take(d_shape, dtype), pool.take(v_shape, dtype)
    return input_step(src, d, v, m, h, w, transposed), (d, v)


def forward_ahead(engine, names, j, src, h, w, pool, dtype, with_pool=True):
    """What a forward step that makes ``src`` (the output of the layer before ``names[j]``, h x w) can do
    on its channel ranges: pool them (``names[j]``, with_pool) and transform them for the convolution
    after. Returns (steps, pooled, ahead): pooled = (pool name, out, winner) made by the steps,
    ahead = (conv name, (d, v)); empty / None for what is not chained."""
    steps, pooled, ahead = [], None, None
    if not CHAIN:
        return steps, pooled, ahead
    if with_pool and j < len(names) and names[j].startswith("pool") and min(h, w) >= 2:
        ho, wo = h // 2, w // 2
        out = pool.take(padded.padded_shape(src.shape[0], ho, wo), dtype)
        if engine.pooling == "avg":
            winner = None
            steps.append(avg_pool_step(src, h, w, out))
        else:
            winner = pool.take((src.shape[0], ho, wo), np.uint8)
            steps.append(max_pool_step(src, h, w, out, winner))
        pooled = (names[j], out, winner)
        src, h, w, j = out, ho, wo, j + 1
    if j < len(names) and names[j].startswith("conv"):
        found = _transform_ahead(engine.prepared(names[j]), src, h, w, pool, dtype, False)
        if found is not None:
            steps.append(found[0])
            ahead = (names[j], found[1])
    return steps, pooled, ahead


def backward_ahead(records, j, grads, src, h, w, pool, dtype):
    """The same for the backward: the step that makes ``src``, the gradient at the output of record
    ``j`` (h x w), can run that record's pool backward (with the mask of the ReLU below it) and the
    input transform of the input-gradient convolution after, on its channel ranges -- where no tap
    gradient joins in between. Returns (steps, pooled, ahead): pooled = (record index, dx),
    ahead = (record index, (d, v))."""
    steps, pooled, ahead = [], None, None
    if not CHAIN or j < 0:
        return steps, pooled, ahead
    kind, name, data = records[j]
    if kind == "pool":
        ph, pw, winner = data
        below = records[j - 1] if j > 0 else None
        if grads.get(name) or below is None or below[0] != "relu" or grads.get(below[1]):
            return steps, pooled, ahead
        dx = pool.take(padded.padded_shape(src.shape[0], ph, pw), dtype)
        steps.append(pool_backward_step(src, ph, pw, winner, dx, mask=below[2][0]))
        pooled = (j, dx)
        src, h, w, j = dx, ph, pw, j - 2
        if j < 0:
            return steps, pooled, ahead
        kind, name, data = records[j]
    if kind == "conv" and not grads.get(name):
        found = _transform_ahead(data[0], src, h, w, pool, dtype, True)
        if found is not None:
            steps.append(found[0])
            ahead = (j, found[1])
    return steps, pooled, ahead
