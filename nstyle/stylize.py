"""``stylize``: a photo and one or more paintings in, a PIL image out.

This function's keyword defaults are the library's defaults; the command line reads them from
``stylize.__kwdefaults__`` rather than repeating them.
"""
import os

import numpy as np
from PIL import Image

from .backend import resolve_device
from .errors import InputError, RunError
from .imageio import fit_size, load_rgb, preprocess, deprocess, resize_longest
from .objective import (DEFAULT_CONTENT_LAYERS, DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_LAYERS,
                        DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT, StyleObjective)
from .optimize import STOP_INTERRUPTED, STOP_NONFINITE, adam, lbfgs
from .vgg import VGG19

INITS = ("content", "noise", "style")
OPTIMIZERS = ("lbfgs", "adam")


class StylizeInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``image`` is the best image so far, ``iteration`` where it stopped."""

    def __init__(self, image, iteration, message):
        super().__init__(message)
        self.image, self.iteration, self.message = image, iteration, message


class NonFiniteLoss(RunError):
    """The loss became NaN or infinite; ``image`` is the best image before that."""

    def __init__(self, image, message):
        super().__init__(message, hint="lower the weights or the Adam learning rate, or keep bounds on")
        self.image = image


def as_image(item, what):
    """A path or a PIL image or an (H, W, 3) uint8 array -> RGB PIL image."""
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, (str, os.PathLike)):
        return load_rgb(item)
    arr = np.asarray(item)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"{what}: expected a path, a PIL image or a uint8 (H, W, 3) array")
    return Image.fromarray(arr, "RGB")


def initial_image(init, content_x, style_imgs, seed):
    """The starting point in network space: the content, white noise, the (first) style, or an image."""
    shape = content_x.shape
    if isinstance(init, str) and init == "content":
        return content_x.copy()
    if isinstance(init, str) and init == "noise":
        rng = np.random.default_rng(seed)
        noise = rng.uniform(0, 255, size=(shape[2], shape[3], 3)).astype(np.uint8)
        return preprocess(noise)
    if isinstance(init, str) and init == "style":
        img = style_imgs[0]
    else:
        img = as_image(init, "init image")
    return preprocess(img.resize((shape[3], shape[2]), Image.Resampling.LANCZOS))


def stylize(content, style, *, size=512, iters=500, content_weight=DEFAULT_CONTENT_WEIGHT,
            style_weight=DEFAULT_STYLE_WEIGHT, tv_weight=DEFAULT_TV_WEIGHT, init="content", seed=0,
            optimizer="lbfgs", lr=10.0, bounds=True, pooling="avg",
            content_layers=DEFAULT_CONTENT_LAYERS, style_layers=DEFAULT_STYLE_LAYERS,
            style_layer_weights=None, style_blend=None, style_scale=1.0, device="cpu",
            weights=None, vgg=None, callback=None, log=None):
    """Paint ``content`` in the style of ``style`` (Gatys et al.); returns a PIL image.

    content: path, PIL image or uint8 RGB array; style: one of those or a list of them.
    size: longest side of the output in pixels. iters: optimiser iterations.
    init: "content", "noise", "style", or an image/path. seed: for the noise start.
    optimizer: "lbfgs" (SciPy L-BFGS-B) or "adam" (lr: its step in pixel units). bounds: keep pixels
    in 0..255. pooling: "avg" or "max". style_scale: the style image's longest side relative to the
    content's. device: "cpu", "gpu" or "auto". weights: a weights file (None: the default file).
    vgg: an already built VGG19 (then weights, pooling and device are taken from it).
    callback(record, get_x): called after each iteration (see ``optimize.lbfgs``); True stops.
    log(message): receives one-line notices (e.g. a device fallback).
    Raises StylizeInterrupted (holding the best image) on Ctrl-C and NonFiniteLoss on NaN/Inf.
    """
    if optimizer not in OPTIMIZERS:
        raise InputError(f"unknown optimizer {optimizer!r}; choose lbfgs or adam")
    if int(size) < 1 or int(iters) < 0:
        raise InputError("size must be >= 1 and iters >= 0")
    if not np.isfinite(style_scale) or style_scale <= 0:
        raise InputError(f"style scale must be a positive number (got {style_scale})")
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    content_img = resize_longest(as_image(content, "content image"), int(size))
    style_imgs = []
    for i, s in enumerate(styles):
        img = as_image(s, f"style image {i + 1}")
        longest = max(1, round(max(content_img.size) * style_scale))
        style_imgs.append(img.resize(fit_size(img.width, img.height, longest), Image.Resampling.LANCZOS))
    if vgg is None:
        dev = resolve_device(device, announce=log)
        vgg = VGG19.load(weights, pooling=pooling, device=dev)
    content_x = preprocess(content_img)
    objective = StyleObjective(vgg, content=content_x, styles=[preprocess(s) for s in style_imgs],
                               style_blend=style_blend, content_weight=content_weight,
                               style_weight=style_weight, tv_weight=tv_weight,
                               content_layers=content_layers, style_layers=style_layers,
                               style_layer_weights=style_layer_weights)
    x0 = initial_image(init, content_x, style_imgs, seed)
    if optimizer == "lbfgs":
        result = lbfgs(objective, x0, iters=int(iters), bounds=bounds, callback=callback)
    else:
        result = adam(objective, x0, iters=int(iters), lr=lr, bounds=bounds, callback=callback)
    image = deprocess(result.x)
    if result.stop == STOP_INTERRUPTED:
        raise StylizeInterrupted(image, result.iterations, result.message)
    if result.stop == STOP_NONFINITE:
        raise NonFiniteLoss(image, result.message)
    return image
