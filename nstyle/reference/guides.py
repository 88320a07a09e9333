"""Guidance channels for spatial control (Gatys, Ecker, Bethge, Hertzmann & Shechtman, CVPR 2017).

A region of an image is given as a mask at the pixels, (H, W) with values in 0..1. The guided style
loss needs the region at every layer's resolution: a guidance channel g_l of shape (H_l, W_l). How the
mask is carried down the network is a choice (the paper's section 4.1):

- ``inside``: a position counts only if its whole receptive field lies inside the region. Each 3x3
  convolution (stride 1, padding 1) erodes the guide by its window: g <- min over the 3x3 neighbours;
  each 2x2 pooling keeps a position only if all four inputs count: g <- min over the window. The
  paper's choice for a single style per region, and the default.
- ``all``: a position counts if any of its receptive field overlaps the region: dilation (max over
  the 3x3 window), and a 2x2 maximum at each pooling.
- ``simple``: the mask resized to each layer's size: unchanged by convolutions and ReLUs, averaged
  over each 2x2 window at a pooling (the area average). Soft masks (values between 0 and 1) keep
  their values; ``inside`` and ``all`` work on the mask thresholded at 1/2.

Positions outside the image (the convolutions' zero padding) belong to no image content, so they
neither erode nor dilate: the min / max runs over the part of the window inside the image. One region
covering the whole image therefore stays whole at every layer, and gives back the unguided loss
exactly. Pooling floors odd sizes as the engines do (the last row / column is dropped).

The guides are constants: they depend on the masks and the image size only, never on the pixels
being optimised, so nothing here has a backward pass (the guided loss's gradient treats g_l as fixed).
The propagation of ``inside`` and ``all`` is a discrete erosion / dilation; ``simple`` is linear in
the mask.

Each guide is then normalised, g^ = g / sqrt(mean(g^2)) (:func:`normalise_guide`), so that a region's
guided Gram matrix is a per-position average over the region, whatever its area.
"""
import numpy as np

GUIDE_MODES = ("inside", "all", "simple")


def _check(mask, mode):
    if mode not in GUIDE_MODES:
        raise ValueError(f"unknown guide mode {mode!r}; choose {', '.join(GUIDE_MODES)}")
    mask = np.asarray(mask, dtype=np.float64)
    if mask.ndim != 2:
        raise ValueError(f"a mask is one (H, W) channel; got shape {mask.shape}")
    return mask


def _window3(g, reduce, neutral):
    """reduce (np.minimum / np.maximum) over each position's 3x3 neighbourhood, the outside ignored."""
    h, w = g.shape
    padded = np.full((h + 2, w + 2), neutral)
    padded[1:-1, 1:-1] = g
    out = g.copy()
    for dy in range(3):
        for dx in range(3):
            reduce(out, padded[dy:dy + h, dx:dx + w], out=out)
    return out


def _pool2(g, how):
    h, w = g.shape[0] // 2, g.shape[1] // 2
    blocks = g[:2 * h, :2 * w].reshape(h, 2, w, 2)
    return getattr(blocks, how)(axis=(1, 3))


def propagate_guide(mask, names, mode="inside"):
    """The guide at every layer of ``names`` (the run from conv1_1, in order): ``{name: (H_l, W_l)}``.

    mask: (H, W) at the input's size, values in 0..1. mode: see the module docstring. Returns float64
    arrays (shared between a convolution and its ReLU, which have the same guide).
    """
    g = _check(mask, mode)
    if mode != "simple":
        g = (g >= 0.5).astype(np.float64)
    guides = {}
    for name in names:
        kind = name[:4]
        if kind == "conv":
            if mode == "inside":
                g = _window3(g, np.minimum, np.inf)
            elif mode == "all":
                g = _window3(g, np.maximum, -np.inf)
        elif kind == "pool":
            g = _pool2(g, {"inside": "min", "all": "max", "simple": "mean"}[mode])
        guides[name] = g
    return guides


def propagate_guide_naive(mask, names, mode="inside"):
    """:func:`propagate_guide` written as loops over positions, one layer at a time (the tests' twin)."""
    g = _check(mask, mode)
    if mode != "simple":
        g = np.where(g >= 0.5, 1.0, 0.0)
    guides = {}
    for name in names:
        h, w = g.shape
        if name.startswith("conv") and mode != "simple":
            out = np.empty_like(g)
            for i in range(h):
                for j in range(w):
                    window = [g[a, b] for a in range(i - 1, i + 2) for b in range(j - 1, j + 2)
                              if 0 <= a < h and 0 <= b < w]
                    out[i, j] = min(window) if mode == "inside" else max(window)
            g = out
        elif name.startswith("pool"):
            out = np.empty((h // 2, w // 2))
            for i in range(h // 2):
                for j in range(w // 2):
                    window = [g[2 * i + a, 2 * j + b] for a in range(2) for b in range(2)]
                    out[i, j] = {"inside": min, "all": max}[mode](window) if mode != "simple" else sum(window) / 4
            g = out
        guides[name] = g
    return guides


def normalise_guide(g):
    """g^ = g / sqrt(mean(g^2)): mean(g^2) becomes 1, so a guided Gram matrix summed over the M positions
    is M times the region's per-position average. Returns None for an empty guide (all zero)."""
    power = float(np.mean(np.square(g)))
    if power <= 0.0:
        return None
    return g / np.sqrt(power)
