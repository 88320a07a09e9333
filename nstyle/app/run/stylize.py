"""``stylize``: a photo and one or more paintings in, a PIL image out.

Its keyword defaults are the library's defaults, declared once with every other fact about each option
in ``settings.py``, where the command line reads them too.

A run has two halves. ``prepare`` checks every setting (``Settings.checked``), opens and checks every
input, works out the size of every coarse-to-fine stage and estimates the memory the run needs -- all
before any weights load (``plan.py``). ``run`` then loads the network and runs the stages
(``stages.py``): each one starts from the previous stage's result, upsampled.
"""
import numpy as np

from ...backend import set_tf32
from ..tiles.run import run_tiled
from .network import load_network
from .plan import DEVICES, INITS, OPTIMIZERS, ORIGINAL_COLORS, Plan, as_image, make_plan  # noqa: F401
from .settings import DEFAULTS as D
from .settings import OPTION_NAMES, Settings
from .stages import run_stages
from .stops import NonFiniteLoss, StylizeInterrupted, raise_for_stop  # noqa: F401 -- re-exported
from .weighting import attach_normalization


def prepare(content, style, **options):
    """Open and check every input and setting, and plan the stages; loads no weights.

    Takes the same options as :func:`stylize` (the others keep their defaults). Raises TypeError for an
    unknown option and InputError naming the first problem found. Returns a ``plan.Plan``.
    """
    return make_plan(content, style, Settings.checked(**options))


def run(plan, vgg=None, callback=None, log=None):
    """Run a prepared plan; returns the output PIL image. See :func:`stylize` for the callback."""
    before = set_tf32(plan.settings.tf32)  # for this run only: the network's products read it
    try:
        return _run(plan, vgg, callback, log)
    finally:
        set_tf32(before)


def _run(plan, vgg, callback, log):
    o = plan.settings
    if vgg is None:
        vgg = load_network(o.weights, pooling=o.pooling, device=o.device, engine=o.engine, log=log)
    if not hasattr(vgg, "normalization"):  # is the network normalised? (weight_scaling="invariant" adapts)
        attach_normalization(vgg, o.weights)
    plan = plan.on_network(vgg)  # which L-BFGS-B runs: resolved once, here, for every stage and tile
    # Overflow to inf or NaN is caught by the optimisers (the run stops and keeps the best image), so
    # NumPy's warnings about it would only repeat that, with a traceback-like line, on stderr.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if plan.tiles:  # a tiled run (tiles/run.py): its base is made by the stage loop
            return run_tiled(plan, vgg, callback, log)
        return run_stages(plan, vgg, callback, log).image


def stylize(content, style, *, size=D.size, iters=D.iters, scales=D.scales, content_weight=D.content_weight,
            style_weight=D.style_weight, tv_weight=D.tv_weight, init=D.init, seed=D.seed, optimizer=D.optimizer,
            lbfgs_impl=D.lbfgs_impl, lr=D.lr, bounds=D.bounds, pooling=D.pooling, content_layers=D.content_layers,
            style_layers=D.style_layers, style_layer_weights=D.style_layer_weights, style_blend=D.style_blend,
            style_scale=D.style_scale, original_colors=D.original_colors, weight_scaling=D.weight_scaling,
            content_mask=D.content_mask, style_masks=D.style_masks, region_styles=D.region_styles,
            region_weights=D.region_weights, mask_mode=D.mask_mode, style_loss=D.style_loss, tile=D.tile, tile_base=D.tile_base,
            tile_overlap=D.tile_overlap, tile_passes=D.tile_passes, tile_iters=D.tile_iters, tile_dir=D.tile_dir,
            tile_cluster=D.tile_cluster, device=D.device, engine=D.engine, tf32=D.tf32, weights=D.weights,
            max_pixels=D.max_pixels, check_memory=D.check_memory, vgg=None, callback=None, log=None):
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
    style_loss: "gram" (the paper's), "mean_std", "histogram", "sliced_wasserstein", "mmd_linear",
    "mmd_polynomial", "mmd_gaussian", or a weighted sum ("gram:1,histogram:0.5" or {"gram": 1, ...}),
    each weight relative to that loss's calibrated default (``model/style_loss.py``); the random draws of
    sliced Wasserstein and the Gaussian MMD come from ``seed``, new at each stage. Content masks and
    tiles take the Gram loss only.
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
    given = locals()
    plan = prepare(content, style, **{name: given[name] for name in OPTION_NAMES})
    if check_memory:
        plan.check_memory()
    return run(plan, vgg=vgg, callback=callback, log=log)
