"""``stylize``: a photo and one or more paintings in, a PIL image out.

This function's keyword defaults are the library's defaults; the command line reads them from
``stylize.__kwdefaults__`` rather than repeating them.

A run has two halves. ``prepare`` opens and checks every input, works out the size of every
coarse-to-fine stage and estimates the memory the run needs -- all before any weights load
(``plan.py``). ``run`` then loads the network and runs the stages: each one starts from the previous
stage's result, upsampled.
"""
import time

import numpy as np
from PIL import Image

from . import color
from ...backend import set_tf32
from ...model.objective import (DEFAULT_CONTENT_LAYERS, DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_LAYERS,
                               DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT, StyleObjective)
from ..files.imageio import DEFAULT_MAX_PIXELS, deprocess, pixel_bounds, preprocess, white_noise
from .network import load_network
from ...optim.optimize import STOP_CONVERGED, STOP_REQUESTED, adam, lbfgs
from .plan import DEVICES, INITS, OPTIMIZERS, ORIGINAL_COLORS, Plan, as_image, make_plan  # noqa: F401
from .stops import NonFiniteLoss, StylizeInterrupted, check_moved, raise_for_stop  # noqa: F401 -- re-exported
from ..tiles.run import run_tiled
from ..tiles.plan import DEFAULT_OVERLAP
from .weighting import attach_normalization, compensate_normalization, network_normalization, term_scales


def prepare(content, style, **options):
    """Open and check every input and setting, and plan the stages; loads no weights.

    Takes the same arguments as :func:`stylize` (defaults from its keyword defaults). Raises InputError
    naming the first problem found. Returns a ``plan.Plan``.
    """
    defaults = stylize.__kwdefaults__
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    o = {**defaults, **options}
    for key in ("vgg", "callback", "log"):
        o.pop(key, None)
    return make_plan(content, style, o)


def _resize_network_image(x, size):
    """Resize a (1, 3, H, W) network-space array to (width, height) without rounding to 8 bits."""
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(x[0, c], dtype=np.float32), "F")
                        .resize(size, Image.Resampling.BICUBIC)) for c in range(3)]
    return np.stack(chans)[None].astype(np.float32)


class _StageImages:
    """The images one stage's objective sees, prepared for the colour option."""

    def __init__(self, plan, stage):
        o = plan.options
        self.content = plan.content.resize(stage.content_size, Image.Resampling.LANCZOS)
        styles = [s.resize(size, Image.Resampling.LANCZOS) for s, size in zip(plan.styles, stage.style_sizes)]
        mode = o["original_colors"]
        if mode == "luminance":
            self.net_content = color.grey_image(color.luminance(self.content))
            self.net_styles = [color.match_luminance(s, self.content) for s in styles]
        elif mode == "match":
            self.net_content = self.content
            self.net_styles = [color.match_colors(s, self.content) for s in styles]
        else:
            self.net_content, self.net_styles = self.content, styles
        self.mode = mode

    def to_network(self, img):
        """An RGB image as this stage's network input (grey in luminance mode)."""
        if self.mode == "luminance":
            img = color.grey_image(color.luminance(img))
        return preprocess(img)

    def finish(self, x, size=None, full_content=None):
        """Network-space x -> the output image (content colours restored), optionally resized."""
        img = deprocess(x)
        if size is not None and img.size != tuple(size):
            img = img.resize(size, Image.Resampling.LANCZOS)
        if self.mode == "luminance":
            img = color.restore_colors(img, full_content if size is not None else self.content)
        return img


def _initial_image(plan, images, seed):
    """Stage 1's starting point in network space: the content, white noise, the style, or an image."""
    init = plan.init
    w, h = images.content.size
    if isinstance(init, str) and init == "content":
        return preprocess(images.net_content)
    if isinstance(init, str) and init == "noise":
        return images.to_network(white_noise(w, h, seed))
    img = images.net_styles[0] if isinstance(init, str) else init
    return images.to_network(img.resize((w, h), Image.Resampling.LANCZOS))


def _setup_stage(plan, stage, vgg, x_prev):
    """The stage's images, objective and starting point (the previous result upsampled, or the init)."""
    o = plan.options
    images = _StageImages(plan, stage)
    content_layers = o["content_layers"] if o["content_weight"] > 0 else ()
    style_layers = o["style_layers"] if o["style_weight"] > 0 else ()
    scales = term_scales(*stage.content_size, content_layers, style_layers, o["weight_scaling"])
    masks = plan.regions.masks_at(stage.content_size, stage.style_sizes) if plan.regions else (None,) * 3
    objective = StyleObjective(
        vgg, content=preprocess(images.net_content) if o["content_weight"] > 0 else None,
        styles=[preprocess(s) for s in images.net_styles], style_blend=o["style_blend"],
        content_weight=o["content_weight"], style_weight=o["style_weight"], tv_weight=o["tv_weight"],
        content_layers=o["content_layers"], style_layers=o["style_layers"],
        style_layer_weights=o["style_layer_weights"], term_scales=scales, content_masks=masks[0],
        style_masks=masks[1], region_weights=masks[2], mask_mode=o["mask_mode"])
    if o["weight_scaling"] == "invariant":  # a normalised network: the terms' sizes of the plain one
        compensate_normalization(objective, network_normalization(vgg))
    if x_prev is None:
        return images, objective, _initial_image(plan, images, o["seed"])
    x0 = _resize_network_image(x_prev, stage.content_size)
    if o["bounds"]:
        lo, hi = (b.astype(np.float32).reshape(1, 3, 1, 1) for b in pixel_bounds())
        x0 = np.clip(x0, lo, hi)
    return images, objective, x0


def run(plan, vgg=None, callback=None, log=None):
    """Run a prepared plan; returns the output PIL image. See :func:`stylize` for the callback."""
    before = set_tf32(plan.options["tf32"])  # for this run only: the network's products read it
    try:
        return _run(plan, vgg, callback, log)
    finally:
        set_tf32(before)


def _run(plan, vgg, callback, log):
    if vgg is None:
        o = plan.options
        vgg = load_network(o["weights"], pooling=o["pooling"], device=o["device"], engine=o["engine"], log=log)
    if not hasattr(vgg, "normalization"):  # is the network normalised? (weight_scaling="invariant" adapts)
        attach_normalization(vgg, plan.options["weights"])
    # Overflow to inf or NaN is caught by the optimisers (the run stops and keeps the best image), so
    # NumPy's warnings about it would only repeat that, with a traceback-like line, on stderr.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if plan.tiles:  # a tiled run (tiles/run.py): its base is made by the stage loop below
            return run_tiled(plan, vgg, callback, log, run_stages=_run_stages)
        return _run_stages(plan, vgg, callback, log)


def _run_stages(plan, vgg, callback, log):
    o = plan.options
    final_size = plan.output_size
    n_stages, done, start = len(plan.stages), 0, time.perf_counter()
    x_prev = previous = None
    for k, stage in enumerate(plan.stages, 1):
        if n_stages > 1 and log is not None:
            log(f"stage {k}/{n_stages}: {stage.content_size[0]}x{stage.content_size[1]}, "
                f"{stage.iters} iterations")
        try:
            images, objective, x0 = _setup_stage(plan, stage, vgg, x_prev)
        except KeyboardInterrupt:
            if x_prev is None:
                raise  # nothing computed yet: nothing to keep
            image = previous.finish(x_prev, final_size, plan.content)
            raise StylizeInterrupted(image, done, f"interrupted between stages {k - 1} and {k}") from None
        for note in objective.notes:  # regions left out at some layer: said once, not once per stage
            if note not in plan.notes:
                plan.notes.append(note)
                if log is not None:
                    log(note)
        if stage.iters == 0:  # nothing to optimise: the stage's start is its result
            x_prev, previous = x0, images
            continue
        stage_start = time.perf_counter() - start

        def on_iteration(rec, get_x, k=k, stage=stage, images=images, offset=stage_start, before=done):
            rec.update(stage=k, stages=n_stages, size=stage.size, step=before + rec["iter"],
                       total_steps=plan.total_iters, seconds=offset + rec["seconds"])
            if callback is None:
                return False
            return callback(rec, lambda: images.finish(get_x()))

        if o["optimizer"] == "lbfgs":
            result = lbfgs(objective, x0, iters=stage.iters, bounds=pixel_bounds() if o["bounds"] else None, callback=on_iteration,
                           impl=o["lbfgs_impl"])
        else:
            result = adam(objective, x0, iters=stage.iters, lr=o["lr"], bounds=pixel_bounds() if o["bounds"] else None,
                          callback=on_iteration)
        resize = final_size if stage.content_size != final_size else None
        if result.stop == STOP_REQUESTED:  # the callback asked to stop: this stage's best is the result
            return images.finish(result.x, resize, plan.content)
        raise_for_stop(result, lambda: images.finish(result.x, resize, plan.content), done,
                       f" (stage {k} of {n_stages})" if n_stages > 1 else "")
        if x_prev is None:  # from the init: a start handed back unchanged is said, not passed off as done
            check_moved(result, log, f" (stage {k} of {n_stages})" if n_stages > 1 else "")
        done += result.iterations
        if result.stop == STOP_CONVERGED and log is not None and (x_prev is not None or result.iterations):
            log(result.message)
        x_prev, previous = result.x, images
    return previous.finish(x_prev)


def stylize(content, style, *, size=512, iters=500, scales=None, content_weight=DEFAULT_CONTENT_WEIGHT,
            style_weight=DEFAULT_STYLE_WEIGHT, tv_weight=DEFAULT_TV_WEIGHT, init="content", seed=0,
            optimizer="lbfgs", lbfgs_impl="auto", lr=10.0, bounds=True, pooling="avg",
            content_layers=DEFAULT_CONTENT_LAYERS, style_layers=DEFAULT_STYLE_LAYERS,
            style_layer_weights=None, style_blend=None, style_scale=1.0, original_colors="none",
            weight_scaling="invariant", content_mask=None, style_masks=None, region_styles=None,
            region_weights=None, mask_mode="inside", tile=None, tile_base=None, tile_overlap=DEFAULT_OVERLAP,
            tile_passes=1, tile_iters=None, tile_dir=None, tile_cluster=None,
            device="cpu", engine="auto", tf32=False, weights=None, max_pixels=DEFAULT_MAX_PIXELS,
            check_memory=True, vgg=None, callback=None, log=None):
    """Paint ``content`` in the style of ``style`` (Gatys et al.); returns a PIL image.

    content: path, PIL image or uint8 RGB array; style: one of those or a list of them.
    size: longest side of the output in pixels. iters: optimiser iterations (per stage).
    scales: coarse-to-fine stage sizes, e.g. (256, 512); each stage starts from the previous result,
    upsampled; the last is the output size (``size`` is then not used); iters may then be a list with
    one count per stage.
    init: "content", "noise", "style", or an image/path. seed: for the noise start.
    optimizer: "lbfgs" (L-BFGS-B) or "adam" (lr: its step in pixel units); lbfgs_impl: whose L-BFGS-B,
    "scipy", "nstyle" (``lbfgsb.py``, on the device) or "auto" (SciPy's on the CPU, nstyle's on the
    GPU). bounds: keep pixels
    in 0..255. pooling: "avg" or "max". style_scale: the style image's longest side relative to the
    content's. style_blend: one weight per style image (default equal).
    original_colors: "none"; "luminance" (transfer the style's luminance only and keep the content's
    colours); or "match" (map the style's colour statistics to the content's before the run).
    weight_scaling: "invariant" (the weights mean at every size, and on a normalised network, what they
    mean at 512 pixels with the plain network: ``weighting.py``) or "paper" (the paper's loss, literally).
    content_mask: a colour-coded segmentation of the content (path, PIL image or uint8 array) for
    spatial control (Gatys et al. 2017), with style_masks (one per style image: a region takes its
    target from the regions of its colour in the style images) or region_styles ({colour: style image
    number, 1-based}: the region takes the whole image); region_weights {colour: weight} (default
    equal); mask_mode "inside", "all" or "simple" (how masks follow the network: ``reference/guides.py``).
    Colours: names (red, green, blue, black, white, yellow, grey, cyan, magenta) or "#rrggbb".
    device: "cpu", "gpu" or "auto". engine: "auto" or "fast" (the device's fast engine) or "reference"
    (the readable layer loop of ``nstyle/reference``). tf32: allow TensorFloat-32 tensor cores for the GPU's
    float32 products during the run (faster on Ampere and newer; inputs rounded to 10 mantissa bits).
    weights: a weights file (None: the default weights).
    max_pixels: refuse input images with more pixels (decompression-bomb guard; None: no limit).
    check_memory: refuse, before loading anything, a run the memory estimate says will not fit.
    vgg: an already built VGG19 (then weights, pooling, device and engine are taken from it).
    callback(record, get_image): called after each iteration with the record (iter within the stage,
    step over all stages, stage, stages, size, loss, content, style, tv, per-layer terms, seconds since
    the run started) and a function giving the current image as the output would look; True stops.
    A callback that returns True ends the whole run (later stages too); the result is then the current
    stage's best image, resized to the output size.
    log(message): receives one-line notices (stages, a device fallback, an early stop).
    tile: tiles of this many pixels (or "auto": tiles only when the one-piece run does not fit in
    memory): the picture is stylised at tile_base (default: half the size, or the largest size that
    fits), upsampled, and refined in overlapping tiles at full size (``tiles/run.py``). tile_overlap: a
    fraction of the tile (below 1) or pixels; tile_passes: 2 adds a pass on a grid shifted by half a
    tile; tile_iters: iterations per tile (default: iters). tile_dir: a folder that keeps each finished
    tile, so that a run stopped by Ctrl-C resumes (default: a temporary one). tile_cluster: run the
    tiles as Dask tasks: {"workers": N, "threads": T} (a local cluster), {"scheduler": address} or
    {"client": a distributed.Client}; None runs them here, one after another. In a tiled run the
    callback's get_image gives the base or the current tile.
    Raises InputError for bad input (before loading weights), StylizeInterrupted (holding the best image)
    on Ctrl-C and NonFiniteLoss (holding the best image) on NaN/Inf.
    """
    options = {name: value for name, value in locals().items()
               if name not in ("content", "style", "vgg", "callback", "log")}
    plan = prepare(content, style, **options)
    if check_memory:
        plan.check_memory()
    return run(plan, vgg=vgg, callback=callback, log=log)
