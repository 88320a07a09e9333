"""Pieces of the per-layer race (bench/bench_layers.py) that every framework's side shares.

What a framework module (``layers_nstyle.py``, ``layers_torch.py``, ``layers_tf.py``, ``layers_jax.py``)
hands back for one layer, or for the losses, is an :class:`Op`: two callables that the child times
-- ``forward()`` and ``backward()`` on inputs already in the framework's own layout and memory -- and
two that turn the last results into NumPy arrays for the agreement check. Conversions between layouts
(NCHW to NHWC, the fast engine's zero-bordered buffers) happen while preparing, untimed: the race
times the layer, not the glue.

The inputs are the same bits in every process: seeded from (seed, size, layer index), so that no
framework needs another's files, only the float64 reference's (written once per size by the
reference child, see bench_layers.py).

No framework and no nstyle import at module level, and no change to sys.path (the objective's
constants come from shared.py): asv's benchmarks (bench/asv_benchmarks/) import this file too, and
must measure the nstyle that asv installed.
"""
import time

import numpy as np

from shared import CONTENT_LAYERS, CONTENT_WEIGHT, STYLE_LAYER_WEIGHT, STYLE_LAYERS, STYLE_WEIGHT, VGG19_BLOCKS


class Op:
    """forward() and backward(): the timed calls; out_forward() and out_backward(): their last results
    as NumPy arrays in NCHW ((1, C, H, W)). For the losses, out_forward() is the total (a float) and
    out_backward() a dict {tap: gradient}. ``fused``: an optional Op of the same layer as a network
    runs it (nstyle's fast engine: the convolution with its ReLU epilogue; see bench_layers.py)."""

    def __init__(self, forward, backward, out_forward, out_backward, fused=None):
        self.forward, self.backward = forward, backward
        self.out_forward, self.out_backward = out_forward, out_backward
        self.fused = fused


def layer_plan(last="relu5_1"):
    """[(kind, name, (in channels, out channels), scale)] up to ``last``: scale is the map's side
    divided by the image's at that layer's input (1, 1/2, 1/4, ...)."""
    plan, cin, scale = [], 3, 1
    for block, n_conv, width in VGG19_BLOCKS:
        for i in range(1, n_conv + 1):
            plan.append(("conv", f"conv{block}_{i}", (cin, width), scale))
            plan.append(("relu", f"relu{block}_{i}", (width, width), scale))
            cin = width
            if plan[-1][1] == last:
                return plan
        plan.append(("pool", f"pool{block}", (cin, cin), scale))
        scale *= 2
    return plan


def input_shape(entry, size):
    """(1, C, H, W) of a plan entry's input for a size x size image."""
    _, _, (cin, _), scale = entry
    return (1, cin, size // scale, size // scale)


def tap_shapes(size):
    """{tap: (1, C, H, W)} of the loss taps (the outputs of those ReLUs)."""
    return {e[1]: input_shape(e, size) for e in layer_plan() if e[1] in CONTENT_LAYERS + STYLE_LAYERS}


def _rng(seed, size, index):
    return np.random.default_rng([seed, size, index])


def layer_inputs(entry, index, size, seed=0, image=None):
    """(x, dy) float32 NCHW for plan entry ``index``: x its input, dy the gradient at its output.

    x is what the layer sees in the network: a convolution reads ReLU or pooling output (non-negative,
    about half zeros), a ReLU a convolution's output (signed), a pool a ReLU's output; conv1_1 reads
    ``image`` when given. dy is signed noise. Scales are about 1: no denormals, no overflow."""
    kind, _, (_, cout), _ = entry
    rng = _rng(seed, size, index)
    shape = input_shape(entry, size)
    x = rng.standard_normal(shape, dtype=np.float32)
    if kind != "relu":
        np.maximum(x, 0, out=x)
    if image is not None and index == 0:
        x = np.ascontiguousarray(image, dtype=np.float32)
    h, w = shape[2:]
    out = (1, cout, h // 2, w // 2) if kind == "pool" else (1, cout, h, w)
    dy = rng.standard_normal(out, dtype=np.float32)
    return x, dy


def loss_inputs(size, seed=0):
    """(taps, P, A): the taps' features (non-negative, like ReLU output), the content target P of each
    content layer, the style target A (N x N Gram matrix of other such features) of each style layer."""
    taps, P, A = {}, {}, {}
    for k, (name, shape) in enumerate(sorted(tap_shapes(size).items())):
        rng = _rng(seed, size, 1000 + k)
        taps[name] = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0)
        if name in CONTENT_LAYERS:
            P[name] = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0)
        if name in STYLE_LAYERS:
            other = np.maximum(rng.standard_normal(shape, dtype=np.float32), 0).reshape(shape[1], -1)
            A[name] = (other @ other.T).astype(np.float32)
    return taps, P, A


def weight_of(name):
    """The factor on a tap's term in the total (content weight, or style weight x layer weight)."""
    return CONTENT_WEIGHT if name in CONTENT_LAYERS else STYLE_WEIGHT * STYLE_LAYER_WEIGHT


def clock(fn, reps, warmup=1):
    """Times of ``reps`` calls of fn after ``warmup`` untimed ones (seconds, perf_counter)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def rel_diff(a, ref):
    """max |a - ref| / max |ref| (the benchmark's gradient measure), inf on a shape mismatch or NaN."""
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    if a.shape != ref.shape or not np.isfinite(a).all():
        return float("inf")
    return float(np.abs(a - ref).max() / max(np.abs(ref).max(), 1e-30))
