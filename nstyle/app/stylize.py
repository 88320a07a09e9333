"""``stylize``: a photo and one or more paintings in, a PIL image out.

This function's keyword defaults are the library's defaults; the command line reads them from
``stylize.__kwdefaults__`` rather than repeating them.

A run has two halves. ``prepare`` opens and checks every input, works out the size of every
coarse-to-fine stage and estimates the memory the run needs -- all before any weights load, so that a
run which cannot finish says so in its first second. ``stylize`` then loads the network and runs the
stages: each one starts from the previous stage's result, upsampled.
"""
import os
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import color
from ..backend import resolve_device
from ..errors import InputError, NStyleError, RunError, WeightsError
from .imageio import DEFAULT_MAX_PIXELS, deprocess, fit_size, load_rgb, pixel_bounds, preprocess, white_noise
from .memory import available_bytes, estimate, format_bytes, gpu_available_bytes, largest_fitting_size
from ..model.objective import (DEFAULT_CONTENT_LAYERS, DEFAULT_CONTENT_WEIGHT, DEFAULT_STYLE_LAYERS,
                        DEFAULT_STYLE_WEIGHT, DEFAULT_TV_WEIGHT, StyleObjective)
from .optimize import STOP_CONVERGED, STOP_INTERRUPTED, STOP_NONFINITE, STOP_REQUESTED, adam, lbfgs
from ..model.arch import LAYER_INDEX, LAYER_NAMES, POOLINGS
from ..model.vgg import VGG19, check_layer_names

INITS = ("content", "noise", "style")
OPTIMIZERS = ("lbfgs", "adam")
ORIGINAL_COLORS = ("none", "luminance", "match")
DEVICES = ("auto", "cpu", "gpu")


class StylizeInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``image`` is the best image so far (at the output size), ``iteration``
    the number of iterations done over all stages."""

    def __init__(self, image, iteration, message):
        super().__init__(message)
        self.image, self.iteration, self.message = image, iteration, message


class NonFiniteLoss(RunError):
    """The loss became NaN or infinite; ``image`` is the best image before that."""

    def __init__(self, image, message, iteration=None):
        super().__init__(message, hint="lower the weights or the Adam learning rate, or keep bounds on")
        self.image, self.iteration = image, iteration


# ---------------------------------------------------------------------------------------------------
# Checking the settings (each raises InputError naming the setting).

def _count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum} (got {value!r})")
    return int(value)


def _number(name, value, positive=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number (got {value!r})") from None
    if not np.isfinite(value) or value < 0 or (positive and value == 0):
        raise InputError(f"{name} must be a finite number {'>' if positive else '>='} 0 (got {value})")
    return value


def _choice(name, value, choices):
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose {', '.join(choices)}")
    return value


def _stage_plan(size, scales, iters):
    """[(size, iters)] for each stage. iters: one count for every stage, or one per stage."""
    sizes = [_count("size", size, 1)] if scales is None else [_count("scale", s, 1) for s in scales]
    if not sizes:
        raise InputError("scales must name at least one size")
    counts = list(iters) if isinstance(iters, (list, tuple)) else [iters]
    counts = [_count("iters", n, 0) for n in counts]
    if len(counts) == 1:
        counts *= len(sizes)
    if len(counts) != len(sizes):
        raise InputError(f"{len(counts)} iteration counts given for {len(sizes)} scales",
                         hint="give one count for all stages, or one per stage")
    return list(zip(sizes, counts))


def _pools_before(layer):
    return sum(1 for name in LAYER_NAMES[:LAYER_INDEX[layer]] if name.startswith("pool"))


def _check_reach(what, original, size, layers, stage_size, is_content):
    """InputError when an image, resized to ``size`` (width, height), is too small for its features to
    reach the deepest of ``layers``. original: its (width, height) as loaded, for the hint."""
    if not layers:
        return
    deepest = max(layers, key=LAYER_INDEX.__getitem__)
    need = 2 ** _pools_before(deepest)  # every pool on the way halves the map, and needs 2 pixels
    width, height = size
    if min(width, height) < need:
        ratio = max(original) / min(original)
        hint = (f"use --size {int(np.ceil(need * ratio))} or more, or a shallower deepest layer" if is_content
                else "use a larger --style-scale, or a shallower deepest style layer")
        raise InputError(f"{what} ({original[0]}x{original[1]}) becomes {width}x{height} at size {stage_size}: "
                         f"too small for the network to reach {deepest}, which needs at least {need} pixels "
                         f"on each side", hint=hint)


def _name(item, what):
    """How messages name an input: its path when it came from a file."""
    if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
        return f"{what} {os.fsdecode(item)}"
    return what


def as_image(item, what, max_pixels=DEFAULT_MAX_PIXELS):
    """A path or a PIL image or an (H, W, 3) uint8 array -> RGB PIL image."""
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
        return load_rgb(item, max_pixels=max_pixels, what=what)
    arr = np.asarray(item)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise InputError(f"{what}: expected a path, a PIL image or a uint8 (H, W, 3) array")
    return Image.fromarray(arr, "RGB")


# ---------------------------------------------------------------------------------------------------
# The plan: everything known before the network loads.

@dataclass
class Stage:
    size: int                  # longest side of this stage's image
    iters: int
    content_size: tuple        # (width, height)
    style_sizes: list          # [(width, height)] per style image


@dataclass
class Plan:
    content: Image.Image       # decoded inputs, full size
    styles: list
    init: object               # "content" | "noise" | "style" | PIL image
    stages: list
    options: dict              # every stylize keyword, defaults filled in
    memory: object = None      # MemoryEstimate of the largest stage
    notes: list = field(default_factory=list)

    @property
    def output_size(self):
        return self.stages[-1].content_size

    @property
    def total_iters(self):
        return sum(s.iters for s in self.stages)

    def _estimate_at(self, stage_size):
        o = self.options
        w, h = fit_size(self.content.width, self.content.height, stage_size)
        longest = max(1, round(max(w, h) * o["style_scale"]))
        style_shapes = [fit_size(s.width, s.height, longest)[::-1] for s in self.styles]
        images = 6 * (self.content.width * self.content.height
                      + sum(s.width * s.height for s in self.styles))  # RGB bytes, and a converted copy
        return estimate(h, w, o["content_layers"] if o["content_weight"] > 0 else (),
                        o["style_layers"] if o["style_weight"] > 0 else (), style_shapes,
                        pooling=o["pooling"], optimizer=o["optimizer"], image_bytes=images,
                        device="gpu" if self._on_gpu() else "cpu")

    def memory_report(self):
        """(needed, free, source, largest size that fits or None)."""
        needed = self.memory.total
        free, source = available_bytes()
        largest = None
        if free is not None:
            largest = largest_fitting_size(free, self._estimate_at)
        return needed, free, source, largest

    def _on_gpu(self):
        device = self.options["device"]
        if device in ("gpu", "cuda"):
            return True
        if device == "auto":
            from ..backend import gpu_available  # noqa: PLC0415 -- imports CuPy, only when asked
            return gpu_available()
        return False

    def check_memory(self):
        """InputError when the estimate says the run will not fit in free memory (host, then GPU).

        On the GPU the network's activations and weights live on the device; the host keeps the rest
        (L-BFGS-B's history, the images)."""
        on_gpu = self._on_gpu()
        needed, free, source, largest = self.memory_report()
        if on_gpu:
            needed -= self.memory.parts["network"]
        w, h = self.output_size
        hint = (f"the largest size that fits is about {largest}: try --size {largest}"
                if largest and not on_gpu else "use a smaller --size, or close other programs")
        hint += " (or --no-memory-check to try anyway)"
        if free is not None and needed > free:
            raise InputError(f"a {w}x{h} run needs about {format_bytes(needed)} of memory, but only "
                             f"{format_bytes(free)} is free ({source})", hint=hint)
        if on_gpu:
            gfree, _ = gpu_available_bytes()
            if gfree is not None and self.memory.on_device > gfree:
                raise InputError(f"a {w}x{h} run needs about {format_bytes(self.memory.on_device)} of GPU "
                                 f"memory, but only {format_bytes(gfree)} is free", hint=hint)

    def describe(self):
        """Lines for ``--dry-run``: sizes, stages, layers, memory."""
        o = self.options
        w, h = self.output_size
        lines = [f"output size      {w}x{h}"]
        for i, st in enumerate(self.stages, 1):
            styles = ", ".join(f"{sw}x{sh}" for sw, sh in st.style_sizes)
            lines.append(f"stage {i}/{len(self.stages)}        {st.content_size[0]}x{st.content_size[1]}, "
                         f"{st.iters} iterations (style {styles})")
        if o["content_weight"] > 0:
            lines.append(f"content layers   {', '.join(o['content_layers'])} (weight {o['content_weight']:g})")
        if o["style_weight"] > 0:
            lines.append(f"style layers     {', '.join(o['style_layers'])} (weight {o['style_weight']:g})")
        lines.append(f"optimizer        {o['optimizer']}, pooling {o['pooling']}, init "
                     f"{o['init'] if isinstance(o['init'], str) else 'image'}, colours {o['original_colors']}")
        needed, free, source, largest = self.memory_report()
        parts = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.memory.parts.items())
        lines.append(f"memory needed    about {format_bytes(needed)} ({parts})")
        if free is None:
            lines.append(f"memory free      unknown ({source})")
        else:
            verdict = "fits" if needed <= free else "DOES NOT FIT"
            lines.append(f"memory free      {format_bytes(free)} ({source}): {verdict}")
            if largest:
                lines.append(f"largest size     about {largest} (longest side) fits in that memory")
        return lines


def prepare(content, style, **options):
    """Open and check every input and setting, and plan the stages; loads no weights.

    Takes the same arguments as :func:`stylize` (defaults from its keyword defaults). Raises InputError
    naming the first problem found.
    """
    defaults = stylize.__kwdefaults__
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    o = {**defaults, **options}
    for key in ("vgg", "callback", "log"):
        o.pop(key, None)
    _choice("optimizer", o["optimizer"], OPTIMIZERS)
    _choice("pooling", o["pooling"], POOLINGS)
    _choice("device", o["device"], DEVICES + ("cuda",))
    o["original_colors"] = "none" if o["original_colors"] in (None, False) else o["original_colors"]
    _choice("original colours option", o["original_colors"], ORIGINAL_COLORS)
    for key in ("content_weight", "style_weight", "tv_weight"):
        o[key] = _number(key.replace("_", " "), o[key])
    if o["content_weight"] == 0 and o["style_weight"] == 0 and o["tv_weight"] == 0:
        raise InputError("nothing to optimise: content, style and tv weights are all zero")
    o["lr"] = _number("learning rate", o["lr"], positive=True)
    o["style_scale"] = _number("style scale", o["style_scale"], positive=True)
    o["seed"] = _count("seed", o["seed"], 0)
    o["max_pixels"] = None if o["max_pixels"] is None else _count("max pixels", o["max_pixels"], 1)
    o["content_layers"], o["style_layers"] = tuple(o["content_layers"]), tuple(o["style_layers"])
    check_layer_names(o["content_layers"], "content layer")
    check_layer_names(o["style_layers"], "style layer")
    if o["content_weight"] > 0 and not o["content_layers"]:
        raise InputError("no content layers given, but the content weight is above zero")
    if o["style_weight"] > 0 and not o["style_layers"]:
        raise InputError("no style layers given, but the style weight is above zero")
    if o["style_layer_weights"] is not None:
        o["style_layer_weights"] = [_number("style layer weight", w) for w in o["style_layer_weights"]]
        if len(o["style_layer_weights"]) != len(o["style_layers"]):
            raise InputError(f"{len(o['style_layer_weights'])} style layer weights given for "
                             f"{len(o['style_layers'])} style layers")
    styles_in = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles_in:
        raise InputError("at least one style image is needed")
    if o["style_blend"] is not None:
        blend = [_number("style blend weight", b) for b in o["style_blend"]]
        if len(blend) != len(styles_in):
            raise InputError(f"{len(blend)} style blend weights given for {len(styles_in)} style image(s)")
        if sum(blend) <= 0:
            raise InputError("style blend weights must not all be zero")
        o["style_blend"] = blend
    stage_list = _stage_plan(o["size"], o["scales"], o["iters"])

    limit = o["max_pixels"]
    content_img = as_image(content, "content image", limit)
    style_imgs = [as_image(s, f"style image{'' if len(styles_in) == 1 else ' ' + str(i + 1)}", limit)
                  for i, s in enumerate(styles_in)]
    init = o["init"]
    if isinstance(init, str) and init in INITS:
        init_img = init
    else:
        init_img = as_image(init, "init image", limit)

    content_taps = o["content_layers"] if o["content_weight"] > 0 else ()
    style_taps = o["style_layers"] if o["style_weight"] > 0 else ()
    stages = []
    for stage_size, stage_iters in stage_list:
        cw, ch = fit_size(content_img.width, content_img.height, stage_size)
        _check_reach(_name(content, "content image"), content_img.size, (cw, ch), content_taps + style_taps,
                     stage_size, True)
        longest = max(1, round(max(cw, ch) * o["style_scale"]))
        sizes = []
        for i, s in enumerate(style_imgs):
            sw, sh = fit_size(s.width, s.height, longest)
            _check_reach(_name(styles_in[i], f"style image {i + 1}"), s.size, (sw, sh), style_taps, stage_size,
                         False)
            sizes.append((sw, sh))
        stages.append(Stage(stage_size, stage_iters, (cw, ch), sizes))
    plan = Plan(content_img, style_imgs, init_img, stages, o)
    biggest = max(stages, key=lambda st: st.content_size[0] * st.content_size[1])
    plan.memory = plan._estimate_at(biggest.size)
    return plan


# ---------------------------------------------------------------------------------------------------
# Running the plan.

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


def _load_network(options, log):
    device = resolve_device(options["device"], announce=log)
    try:
        return VGG19.load(options["weights"], pooling=options["pooling"], device=device)
    except (NStyleError, MemoryError):
        raise
    except Exception as exc:  # anything else a damaged weights file can make a reader raise
        where = f" from {options['weights']}" if options["weights"] else ""
        raise WeightsError(f"could not load the VGG-19 weights{where} ({type(exc).__name__}: {exc})",
                           hint="fetch them again with `nstyle weights fetch`, or pass another --weights") from exc


def _setup_stage(plan, stage, vgg, x_prev):
    """The stage's images, objective and starting point (the previous result upsampled, or the init)."""
    o = plan.options
    images = _StageImages(plan, stage)
    objective = StyleObjective(
        vgg, content=preprocess(images.net_content) if o["content_weight"] > 0 else None,
        styles=[preprocess(s) for s in images.net_styles], style_blend=o["style_blend"],
        content_weight=o["content_weight"], style_weight=o["style_weight"], tv_weight=o["tv_weight"],
        content_layers=o["content_layers"], style_layers=o["style_layers"],
        style_layer_weights=o["style_layer_weights"])
    if x_prev is None:
        return images, objective, _initial_image(plan, images, o["seed"])
    x0 = _resize_network_image(x_prev, stage.content_size)
    if o["bounds"]:
        lo, hi = (b.astype(np.float32).reshape(1, 3, 1, 1) for b in pixel_bounds())
        x0 = np.clip(x0, lo, hi)
    return images, objective, x0


def run(plan, vgg=None, callback=None, log=None):
    """Run a prepared plan; returns the output PIL image. See :func:`stylize` for the callback."""
    if vgg is None:
        vgg = _load_network(plan.options, log)
    # Overflow to inf or NaN is caught by the optimisers (the run stops and keeps the best image), so
    # NumPy's warnings about it would only repeat that, with a traceback-like line, on stderr.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
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
            result = lbfgs(objective, x0, iters=stage.iters, bounds=o["bounds"], callback=on_iteration)
        else:
            result = adam(objective, x0, iters=stage.iters, lr=o["lr"], bounds=o["bounds"],
                          callback=on_iteration)
        resize = final_size if stage.content_size != final_size else None
        if result.stop == STOP_REQUESTED:  # the callback asked to stop: this stage's best is the result
            return images.finish(result.x, resize, plan.content)
        if result.stop in (STOP_INTERRUPTED, STOP_NONFINITE):
            image = images.finish(result.x, resize, plan.content)
            where = f" (stage {k} of {n_stages})" if n_stages > 1 else ""
            if result.stop == STOP_INTERRUPTED:
                raise StylizeInterrupted(image, done + result.iterations,
                                         f"interrupted at iteration {done + result.iterations + 1}{where}")
            raise NonFiniteLoss(image, result.message + where, iteration=done + result.iterations + 1)
        done += result.iterations
        if result.stop == STOP_CONVERGED and log is not None:
            log(result.message)
        x_prev, previous = result.x, images
    return previous.finish(x_prev)


def stylize(content, style, *, size=512, iters=500, scales=None, content_weight=DEFAULT_CONTENT_WEIGHT,
            style_weight=DEFAULT_STYLE_WEIGHT, tv_weight=DEFAULT_TV_WEIGHT, init="content", seed=0,
            optimizer="lbfgs", lr=10.0, bounds=True, pooling="avg",
            content_layers=DEFAULT_CONTENT_LAYERS, style_layers=DEFAULT_STYLE_LAYERS,
            style_layer_weights=None, style_blend=None, style_scale=1.0, original_colors="none",
            device="cpu", weights=None, max_pixels=DEFAULT_MAX_PIXELS, check_memory=True,
            vgg=None, callback=None, log=None):
    """Paint ``content`` in the style of ``style`` (Gatys et al.); returns a PIL image.

    content: path, PIL image or uint8 RGB array; style: one of those or a list of them.
    size: longest side of the output in pixels. iters: optimiser iterations (per stage).
    scales: coarse-to-fine stage sizes, e.g. (256, 512); each stage starts from the previous result,
    upsampled; the last is the output size (``size`` is then not used); iters may then be a list with
    one count per stage.
    init: "content", "noise", "style", or an image/path. seed: for the noise start.
    optimizer: "lbfgs" (SciPy L-BFGS-B) or "adam" (lr: its step in pixel units). bounds: keep pixels
    in 0..255. pooling: "avg" or "max". style_scale: the style image's longest side relative to the
    content's. style_blend: one weight per style image (default equal).
    original_colors: "none"; "luminance" (transfer the style's luminance only and keep the content's
    colours); or "match" (map the style's colour statistics to the content's before the run).
    device: "cpu", "gpu" or "auto". weights: a weights file (None: the default weights).
    max_pixels: refuse input images with more pixels (decompression-bomb guard; None: no limit).
    check_memory: refuse, before loading anything, a run the memory estimate says will not fit.
    vgg: an already built VGG19 (then weights, pooling and device are taken from it).
    callback(record, get_image): called after each iteration with the record (iter within the stage,
    step over all stages, stage, stages, size, loss, content, style, tv, per-layer terms, seconds since
    the run started) and a function giving the current image as the output would look; True stops.
    A callback that returns True ends the whole run (later stages too); the result is then the current
    stage's best image, resized to the output size.
    log(message): receives one-line notices (stages, a device fallback, an early stop).
    Raises InputError for bad input (before loading weights), StylizeInterrupted (holding the best image)
    on Ctrl-C and NonFiniteLoss (holding the best image) on NaN/Inf.
    """
    options = {name: value for name, value in locals().items()
               if name not in ("content", "style", "vgg", "callback", "log")}
    plan = prepare(content, style, **options)
    if check_memory:
        plan.check_memory()
    return run(plan, vgg=vgg, callback=callback, log=log)
