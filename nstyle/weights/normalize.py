"""The "normalised" VGG-19 of Gatys et al. (CVPR 2016, section 2): every filter rescaled so that its mean
ReLU activation over a set of images and all positions is 1, with nothing else about the network changed.

Why deeper features survive: for a per-channel scale s > 0, relu(z / s) = relu(z) / s (ReLU is positively
homogeneous), and both average and max pooling act on each channel alone and commute with a positive
scale. So dividing filter o of a layer (its weights and bias) by s_o, and multiplying the next layer's
weights on input channel o by s_o, leaves the next layer's pre-activations exactly as they were. Done
layer by layer from conv1_1 to conv5_4, each layer's ReLU output becomes the original's divided by s per
channel, which is what style transfer sees at every tap: the same features, balanced in size, so the
style layers' Gram matrices and the content loss contribute on comparable scales.

Hence the scales need no network being built: since layer l's pre-activations in the normalised network
are the original's exactly, its mean ReLU activation there is the original's. So one forward pass of the
original network per image gives every layer's mean at once (:func:`measure_means`), the images taken one
at a time and summed in their order -- memory holds one image's maps whatever the number of images -- and
the result has means of 1 up to float rounding on those images.

A dead filter -- one whose ReLU output is zero at every position of every image -- has no scale to
measure: it is left unchanged (scale 1) and listed in the file's attributes.
"""
import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.arch import CONV_LAYERS, LAYER_NAMES
from ..reference import avg_pool2d_forward, conv2d_forward, max_pool2d_forward
from .hdf5 import write_hdf5
from .sources import read_source


def measure_means(params, images, pooling="avg"):
    """Each conv layer's mean ReLU activation per filter over ``images``, by the network ``params``.

    images: any iterable of (1, 3, H, W) network-space arrays, read once, one at a time (sizes may
    differ; every position of every image weighs the same). Returns ({conv: (O,) float64 mean},
    the number of images); sums are float64, added in the images' order (same bits on every run).
    """
    pool = avg_pool2d_forward if pooling == "avg" else max_pool2d_forward
    convs = [name for name in CONV_LAYERS if name in params]
    last = max(LAYER_NAMES.index(name) for name in convs)
    weights = {name: (np.asarray(params[name][0], np.float32), np.asarray(params[name][1], np.float32))
               for name in convs}
    sums = {name: 0.0 for name in convs}
    counts = dict.fromkeys(convs, 0)
    n = 0
    for x in images:
        n += 1
        h = np.asarray(x, dtype=np.float32)
        for name in LAYER_NAMES[:last + 1]:
            if name.startswith("conv"):
                w, b = weights[name]
                h = np.maximum(conv2d_forward(h, w, b, stride=1, padding=1, keep_input=False)[0], 0)
                sums[name] = sums[name] + h.sum(axis=(0, 2, 3), dtype=np.float64)
                counts[name] += h.shape[0] * h.shape[2] * h.shape[3]
            elif name.startswith("pool"):
                h = pool(h, 2, 2)[0]
        del h
    if n == 0:
        raise ValueError("normalize_params needs at least one image")
    return {name: np.asarray(sums[name], np.float64) / counts[name] for name in convs}, n


def normalize_params(params, images, pooling="avg", means=None):
    """Rescale ``{"conv1_1": (W, b), ...}`` so each filter's mean ReLU activation over ``images`` is 1.

    Inputs: params (float32 or float64 arrays, any chaining widths); images: an iterable of (1, 3, H, W)
    network-space arrays (``imageio.preprocess``), sizes may differ, read one at a time; pooling: "avg"
    or "max", the pooling used between blocks while measuring (the paper's style transfer uses average
    pooling); means: :func:`measure_means`'s result when already measured (images then unused).
    Returns: (new params as float32, scales, dead) -- ``scales[conv]`` (O,) float64 is what that layer's
    ReLU output was divided by; ``dead[conv]`` lists the filters left unchanged because they never fire.
    """
    if means is None:
        means, _ = measure_means(params, images, pooling)
    work = {name: [np.array(w, dtype=np.float64), np.array(b, dtype=np.float64)]
            for name, (w, b) in params.items() if name in CONV_LAYERS}
    scales, dead = {}, {}
    for name in [n for n in CONV_LAYERS if n in work]:
        mean = means[name]
        never = mean <= 0.0  # ReLU output is >= 0, so a zero mean means zero everywhere
        s = np.where(never, 1.0, mean)
        scales[name], dead[name] = s, np.flatnonzero(never).tolist()
        w, b = work[name]
        w /= s[:, None, None, None]
        b /= s
        following = CONV_LAYERS.index(name) + 1
        if following < len(CONV_LAYERS) and CONV_LAYERS[following] in work:
            work[CONV_LAYERS[following]][0] *= s[None, :, None, None]  # compensate the next layer
    out = {name: (w.astype(np.float32), b.astype(np.float32)) for name, (w, b) in work.items()}
    return out, scales, dead


def normalization_attrs(n_images, size, pooling, dead):
    """File attributes recording what was done (JSON for the dead-filter lists)."""
    n_dead = sum(len(v) for v in dead.values())
    return {
        "normalized": ("Gatys et al. 2016: each filter scaled so its mean ReLU activation over the "
                       "images and positions is 1; the next layer's input weights compensate"),
        "normalization_images": int(n_images),
        "normalization_size": int(size) if size else 0,
        "normalization_pooling": pooling,
        "normalization_dead_filters": json.dumps({k: v for k, v in dead.items() if v}),
        "normalization_dead_count": int(n_dead),
    }


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def image_files(folder):
    """The image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images in {folder}", hint="expected " + ", ".join(IMAGE_SUFFIXES) + " files")
    return files


MIN_SIDE = 16  # four 2x2 poolings before conv5_1 leave a 16-pixel side 1 pixel wide


def check_settings(size, pooling):
    """InputError for a size or pooling normalize_file cannot use (checked before any image is read)."""
    if size < 0 or 0 < size < MIN_SIDE:
        raise InputError(f"size {size} is too small: the network needs images of at least {MIN_SIDE} pixels",
                         hint=f"use 0 (keep each image's size) or {MIN_SIDE} and up")
    if pooling not in ("avg", "max"):
        raise InputError(f"unknown pooling {pooling!r}; choose avg or max")


def normalize_file(source, output, images, *, size=256, pooling="avg", log=None):
    """Read weights ``source`` (any supported format), normalise on ``images`` and write ``output``.

    images: network-space arrays (``app.imageio.preprocess``; the caller reads and resizes them, so this
    package needs nothing from the application) -- any iterable, read once, one image at a time; size:
    the longest side they were resized to (0: kept), recorded in the file. Returns (output path, dead
    filters per layer).
    """
    source, output = Path(source), Path(output)
    if output.exists() and os.path.samefile(output, source):  # by name, symlink or hard link
        raise InputError(f"{output} is the source file; choose another output path")
    check_settings(size, pooling)
    params, attrs = read_source(source)
    if log:
        log("measuring mean activations, one image at a time")
    means, n_images = measure_means(params, images, pooling)
    new, scales, dead = normalize_params(params, None, pooling=pooling, means=means)
    attrs = {**attrs, **normalization_attrs(n_images, size, pooling, dead)}
    extra = {name: {"normalization_scale": scales[name]} for name in scales}
    write_hdf5(new, output, attrs, extra=extra)
    return output, dead
