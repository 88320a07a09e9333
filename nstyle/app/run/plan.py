"""The plan of a stylize run: every input opened and checked, every setting validated, the size of every
coarse-to-fine stage worked out and the memory estimated -- all before any weights load, so that a run
which cannot finish says so in its first second. ``stylize.py`` runs the plan.
"""
import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ...errors import InputError
from ...model.arch import LAYER_INDEX, pools_before
from ...model.style_loss import gram_only
from ...model.vgg import resolve_engine
from ...optim.optimize import resolve_lbfgs_impl
from ...validate import whole_number
from ..figures.cells import image_fingerprint
from ..files.imageio import fit_size, load_rgb, viewed_rgb
from ..tiles.plan import plan_tiles
from .masks import plan_regions
from .memory import available_bytes, estimate, format_bytes, gpu_available_bytes, largest_fitting_size
from .settings import DEFAULT_MAX_PIXELS, DEVICES, INITS, OPTIMIZERS, ORIGINAL_COLORS, Settings  # noqa: F401
from .stops import check_something_to_paint


def _stage_plan(size, scales, iters):
    """[(size, iters)] for each stage. iters: one count for every stage, or one per stage."""
    sizes = [whole_number("size", size, 1)] if scales is None else [whole_number("scale", s, 1) for s in scales]
    if not sizes:
        raise InputError("scales must name at least one size")
    counts = list(iters) if isinstance(iters, (list, tuple)) else [iters]
    counts = [whole_number("iters", n, 0) for n in counts]
    if len(counts) == 1:
        counts *= len(sizes)
    if len(counts) != len(sizes):
        raise InputError(f"{len(counts)} iteration counts given for {len(sizes)} scales",
                         hint="give one count for all stages, or one per stage")
    return list(zip(sizes, counts))



def check_reach(what, original, size, layers, stage_size, is_content):
    """InputError when an image, resized to ``size`` (width, height), is too small for its features to
    reach the deepest of ``layers``. original: its (width, height) as loaded, for the hint."""
    if not layers:
        return
    deepest = max(layers, key=LAYER_INDEX.__getitem__)
    # Each pool floors the map to half and needs 2 pixels on each side: the k-th needs 2^k at the input.
    need = 2 ** pools_before(deepest)
    width, height = size
    if min(width, height) < need:
        ratio = max(original) / min(original)
        hint = (f"use a size of {int(np.ceil(need * ratio))} or more (longest side), or a shallower deepest "
                "layer" if is_content else "use a larger style scale, or a shallower deepest style layer")
        raise InputError(f"{what} ({original[0]}x{original[1]}) becomes {width}x{height} at size {stage_size}: "
                         f"too small for the network to reach {deepest}, which needs at least {need} pixels "
                         f"on each side", hint=hint)


def _name(item, what):
    """How messages name an input: its path when it came from a file."""
    if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
        return f"{what} {os.fsdecode(item)}"
    return what


def as_image(item, what, max_pixels=DEFAULT_MAX_PIXELS):
    """A path or a PIL image or an (H, W, 3) uint8 array -> RGB PIL image. A PIL image of any mode is
    converted exactly as a file of it is read (``imageio.viewed_rgb``); max_pixels guards decoding files."""
    if isinstance(item, Image.Image):
        return viewed_rgb(item, what)
    if isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
        return load_rgb(item, max_pixels=max_pixels, what=what)
    arr = np.asarray(item)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise InputError(f"{what}: expected a path, a PIL image or a uint8 (H, W, 3) array")
    return Image.fromarray(arr, "RGB")


def input_fingerprint(item, max_pixels=DEFAULT_MAX_PIXELS):
    """What identifies an input image (an init image, a mask) in a resumable folder's key: ``pixels:``
    and the SHA-256 of its decoded pixels -- the same whether it came as a path, a PIL image or an array
    (a mask may be a grey (H, W) array: it counts as the RGB image it stands for)."""
    if not isinstance(item, (Image.Image, str, bytes)) and not hasattr(item, "__fspath__"):
        arr = np.asarray(item)
        item = np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr
    return "pixels:" + image_fingerprint(as_image(item, "image", max_pixels))


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
    settings: Settings         # every stylize option, checked (settings.py)
    memory: object = None      # MemoryEstimate of the largest stage
    notes: list = field(default_factory=list)
    regions: object = None     # masks.RegionPlan (spatial control) or None
    tiles: object = None       # tiles.TilePlan (a tiled run: the one stage is its base) or None

    @property
    def options(self):
        """The settings under their older name (a read-only mapping, as the options dict was read)."""
        return self.settings

    @property
    def output_size(self):
        return self.tiles.size if self.tiles else self.stages[-1].content_size

    @property
    def total_iters(self):
        return sum(s.iters for s in self.stages) + (self.tiles.iters * len(self.tiles.all_tiles()) if self.tiles else 0)

    def _estimate_at(self, stage_size):
        o = self.settings
        w, h = fit_size(self.content.width, self.content.height, stage_size)
        longest = max(1, round(max(w, h) * o.style_scale))
        style_shapes = [fit_size(s.width, s.height, longest)[::-1] for s in self.styles]
        images = 6 * (self.content.width * self.content.height
                      + sum(s.width * s.height for s in self.styles))  # RGB bytes, and a converted copy
        return estimate(h, w, o.content_layers if o.content_weight > 0 else (),
                        o.style_layers if o.style_weight > 0 else (), style_shapes,
                        pooling=o.pooling, optimizer=o.optimizer, image_bytes=images,
                        device=self.device, engine=self.engine,
                        regions=len(self.regions.keys) if self.regions else 0, style_loss=o.style_loss)

    def memory_report(self):
        """(needed, free, source, largest size that fits or None)."""
        needed = self.memory.total
        free, source = available_bytes()
        largest = None
        if free is not None:
            largest = largest_fitting_size(free, self._estimate_at)
        return needed, free, source, largest

    @property
    def device(self):
        """Where the run will compute: "cpu" or "gpu"."""
        return "gpu" if self._on_gpu() else "cpu"

    @property
    def lbfgs_impl(self):
        """Whose L-BFGS-B the run will use: "scipy" or "nstyle"."""
        return resolve_lbfgs_impl(self.settings.lbfgs_impl, self.device)

    def on_network(self, vgg):
        """This plan as it runs on ``vgg``: the L-BFGS-B implementation resolved for the network's device
        (the device option's, unless an API caller's network sits elsewhere) -- once per run, here, so
        that the stages, the tiles and the frames all run the one the logs record."""
        impl = resolve_lbfgs_impl(self.settings.lbfgs_impl, getattr(vgg, "device", "cpu"))
        if impl == self.settings.lbfgs_impl:
            return self
        return dataclasses.replace(self, settings=self.settings.replace(lbfgs_impl=impl))

    @property
    def engine(self):
        """The engine the run will use: "reference", "cpu" or "gpu"."""
        return resolve_engine(self.settings.engine, self.device)

    def _on_gpu(self):
        device = self.settings.device
        if device in ("gpu", "cuda"):
            return True
        if device == "auto":
            from ...backend import gpu_available  # noqa: PLC0415 -- imports CuPy, only when asked
            return gpu_available()
        return False

    def check_memory(self):
        """InputError when the estimate says the run will not fit in free memory (host, then GPU).

        On the GPU the network's activations and weights live on the device; the host keeps the rest
        (L-BFGS-B's history, the images). A tiled run checks each of its phases (``tiles/plan.py``)."""
        if self.tiles:
            return self.tiles.check_memory(self)
        on_gpu = self._on_gpu()
        needed, free, source, largest = self.memory_report()
        if on_gpu:
            needed -= self.memory.parts["network"]
        w, h = self.output_size
        hint = (f"the largest size that fits is about {largest} (longest side)"
                if largest and not on_gpu else "use a smaller size, or close other programs")
        hint += " (--no-memory-check tries anyway)"
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
        o = self.settings
        w, h = self.output_size
        lines = [f"output size      {w}x{h}"]
        for i, st in enumerate(self.stages, 1):
            styles = ", ".join(f"{sw}x{sh}" for sw, sh in st.style_sizes)
            lines.append(f"stage {i}/{len(self.stages)}        {st.content_size[0]}x{st.content_size[1]}, "
                         f"{st.iters} iterations (style {styles})")
        if o.content_weight > 0:
            lines.append(f"content layers   {', '.join(o.content_layers)} (weight {o.content_weight:g})")
        if o.style_weight > 0:
            lines.append(f"style layers     {', '.join(o.style_layers)} (weight {o.style_weight:g})")
            lines.append(f"style loss       {o.style_loss}" + ("" if gram_only(o.style_loss) else f" (seed {o.seed})"))
        lines.append(f"weight scaling   {o.weight_scaling}")
        if self.regions:
            lines.append(f"regions          {', '.join(self.regions.keys)} (mask mode {self.regions.mode})")
        tf32 = ", TF32 allowed" if o.tf32 and self.device == "gpu" else \
            ", TF32 asked for (no effect on the CPU)" if o.tf32 else ""
        lines.append(f"engine           {self.engine} on the {self.device.upper()}{tf32}")
        optimizer = o.optimizer + (f" ({self.lbfgs_impl}'s L-BFGS-B)" if o.optimizer == "lbfgs" else "")
        lines.append(f"optimizer        {optimizer}, pooling {o.pooling}, init "
                     f"{o.init if isinstance(o.init, str) else 'image'}, colours {o.original_colors}")
        if self.tiles:
            return lines + self.tiles.describe(self)
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


def make_plan(content, style, settings):
    """Open and check every input, and plan the stages; loads no weights.

    settings: the run's checked Settings (``settings.Settings.checked``). Raises InputError naming the
    first problem found.
    """
    o = settings
    styles_in = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles_in:
        raise InputError("at least one style image is needed")
    if o.style_blend is not None:
        if len(o.style_blend) != len(styles_in):
            raise InputError(f"{len(o.style_blend)} style blend weights given for {len(styles_in)} style image(s)")
        if sum(o.style_blend) <= 0:
            raise InputError("style blend weights must not all be zero")
    stage_list = _stage_plan(o.size, o.scales, o.iters)
    check_something_to_paint(o, [it for _, it in stage_list])  # a start that is already the answer

    limit = o.max_pixels
    content_img = as_image(content, "content image", limit)
    style_imgs = [as_image(s, f"style image{'' if len(styles_in) == 1 else ' ' + str(i + 1)}", limit)
                  for i, s in enumerate(styles_in)]
    init = o.init
    if isinstance(init, str) and init in INITS:
        init_img = init
    else:
        init_img = as_image(init, "init image", limit)

    content_taps = o.content_layers if o.content_weight > 0 else ()
    style_taps = o.style_layers if o.style_weight > 0 else ()
    stages = []
    for stage_size, stage_iters in stage_list:
        cw, ch = fit_size(content_img.width, content_img.height, stage_size)
        check_reach(_name(content, "content image"), content_img.size, (cw, ch), content_taps + style_taps,
                     stage_size, True)
        longest = max(1, round(max(cw, ch) * o.style_scale))
        sizes = []
        for i, s in enumerate(style_imgs):
            sw, sh = fit_size(s.width, s.height, longest)
            check_reach(_name(styles_in[i], f"style image {i + 1}"), s.size, (sw, sh), style_taps, stage_size,
                         False)
            sizes.append((sw, sh))
        stages.append(Stage(stage_size, stage_iters, (cw, ch), sizes))
    regions = plan_regions(content_img, style_imgs, o.content_mask, o.style_masks, o.region_styles,
                           o.region_weights, o.mask_mode, limit)
    plan = Plan(content_img, style_imgs, init_img, stages, settings, regions=regions)
    biggest = max(stages, key=lambda st: st.content_size[0] * st.content_size[1])
    plan.memory = plan._estimate_at(biggest.size)
    plan.tiles, base = plan_tiles(plan)  # None unless the tile option asks for tiles
    if plan.tiles and settings.style_weight > 0 and not gram_only(settings.style_loss):  # --tile auto chose tiles
        raise InputError(f"this run needs tiles to fit in memory, and tiles work with the gram style loss only "
                         f"(not {settings.style_loss})", hint="use a smaller --size, or --style-loss gram")
    if plan.tiles:  # a tiled run's one stage is the base the tiles start from
        plan.stages = [Stage(*base)]
        plan.memory = plan._estimate_at(base[0])
    return plan


