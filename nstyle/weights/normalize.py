"""The "normalised" VGG-19 of Gatys et al. (CVPR 2016, section 2): every filter rescaled so that its mean
ReLU activation over a set of images and all positions is 1, with nothing else about the network changed.

Why deeper features survive: for a per-channel scale s > 0, relu(z / s) = relu(z) / s (ReLU is positively
homogeneous), and both average and max pooling act on each channel alone and commute with a positive
scale. So dividing filter o of a layer (its weights and bias) by s_o, and multiplying the next layer's
weights on input channel o by s_o, leaves the next layer's pre-activations exactly as they were. Done
layer by layer from conv1_1 to conv5_4, each layer's ReLU output becomes the original's divided by s per
channel, which is what style transfer sees at every tap: the same features, balanced in size, so the
style layers' Gram matrices and the content loss contribute on comparable scales.

The scales are measured on the network being built (layer l's mean is taken after layers before it have
been normalised and compensated), so the result has means of 1 up to float rounding on those images.

A dead filter -- one whose ReLU output is zero at every position of every image -- has no scale to
measure: it is left unchanged (scale 1) and listed in the file's attributes.
"""
import json
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..model.arch import CONV_LAYERS, LAYER_NAMES
from ..reference import avg_pool2d_forward, conv2d_forward, max_pool2d_forward
from .hdf5 import write_hdf5
from .sources import read_source


def normalize_params(params, images, pooling="avg"):
    """Rescale ``{"conv1_1": (W, b), ...}`` so each filter's mean ReLU activation over ``images`` is 1.

    Inputs: params (float32 or float64 arrays, any chaining widths); images: list of (1, 3, H, W)
    network-space arrays (``imageio.preprocess``), sizes may differ; pooling: "avg" or "max", the pooling
    used between blocks while measuring (the paper's style transfer uses average pooling).
    Returns: (new params as float32, scales, dead) -- ``scales[conv]`` (O,) float64 is what that layer's
    ReLU output was divided by; ``dead[conv]`` lists the filters left unchanged because they never fire.
    """
    if not images:
        raise ValueError("normalize_params needs at least one image")
    pool = avg_pool2d_forward if pooling == "avg" else max_pool2d_forward
    work = {name: [np.array(w, dtype=np.float64), np.array(b, dtype=np.float64)]
            for name, (w, b) in params.items() if name in CONV_LAYERS}
    last = max(LAYER_NAMES.index(name) for name in work)
    acts = [np.asarray(x, dtype=np.float32) for x in images]
    scales, dead = {}, {}
    for name in LAYER_NAMES[:last + 1]:
        if name.startswith("conv"):
            w, b = work[name]
            w32, b32 = w.astype(np.float32), b.astype(np.float32)
            acts = [np.maximum(conv2d_forward(h, w32, b32, stride=1, padding=1, keep_input=False)[0], 0)
                    for h in acts]
            total = sum(a.sum(axis=(0, 2, 3), dtype=np.float64) for a in acts)
            count = sum(a.shape[0] * a.shape[2] * a.shape[3] for a in acts)
            mean = total / count
            never = mean <= 0.0  # ReLU output is >= 0, so a zero mean means zero everywhere
            s = np.where(never, 1.0, mean)
            scales[name], dead[name] = s, np.flatnonzero(never).tolist()
            w /= s[:, None, None, None]
            b /= s
            acts = [a / s.astype(np.float32)[None, :, None, None] for a in acts]
            following = CONV_LAYERS.index(name) + 1
            if following < len(CONV_LAYERS) and CONV_LAYERS[following] in work:
                work[CONV_LAYERS[following]][0] *= s[None, :, None, None]  # compensate the next layer
        elif name.startswith("pool"):
            acts = [pool(a, 2, 2)[0] for a in acts]
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
    package needs nothing from the application); size: the longest side they were resized to (0: kept),
    recorded in the file. Returns (output path, dead filters per layer).
    """
    source, output = Path(source), Path(output)
    if output.exists() and output.resolve() == source.resolve():
        raise InputError(f"{output} is the source file; choose another output path")
    check_settings(size, pooling)
    params, attrs = read_source(source)
    if log:
        log(f"measuring mean activations on {len(images)} image(s)")
    new, scales, dead = normalize_params(params, images, pooling=pooling)
    attrs = {**attrs, **normalization_attrs(len(images), size, pooling, dead)}
    extra = {name: {"normalization_scale": scales[name]} for name in scales}
    write_hdf5(new, output, attrs, extra=extra)
    return output, dead
