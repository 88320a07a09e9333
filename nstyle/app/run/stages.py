"""The stage loop: a plan's coarse-to-fine stages, each an objective built from the stage's images and
optimised from the previous stage's result upsampled (the first from the plan's start).

One loop serves every path that paints a picture: ``stylize`` (and so reconstructions and the grid's
cells), the base of a tiled run (``tiles/run.py``) and each frame of a video (``video/frame.py``). The
frame's two differences are parameters: ``extend`` adds a term to every stage's objective (the video's
temporal term), and ``keep_best=False`` makes any stop -- Ctrl-C, the callback, a NaN -- give the
frame up instead of handing back the best image so far (a video keeps whole frames only).

Every stage optimises through :func:`optimize`, which hands the settings' method, L-BFGS-B
implementation, step size and bounds to the one optimizer entry point (``optim.optimize.minimize``).
"""
import time
from typing import NamedTuple

import numpy as np
from PIL import Image

from ...model.objective import StyleObjective
from ...optim.optimize import STOP_CONVERGED, STOP_INTERRUPTED, STOP_REQUESTED, minimize
from ..files.imageio import deprocess, pixel_bounds, preprocess, white_noise
from . import color
from .stops import RunStopped, StylizeInterrupted, check_moved, raise_for_stop
from .weighting import compensate_normalization, network_normalization, term_scales


def resize_network_image(x, size):
    """Resize a (1, 3, H, W) network-space array to (width, height) without rounding to 8 bits."""
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(x[0, c], dtype=np.float32), "F")
                        .resize(size, Image.Resampling.BICUBIC)) for c in range(3)]
    return np.stack(chans)[None].astype(np.float32)


class StageImages:
    """The images one stage's objective sees, prepared for the colour option."""

    def __init__(self, plan, stage):
        self.content = plan.content.resize(stage.content_size, Image.Resampling.LANCZOS)
        styles = [s.resize(size, Image.Resampling.LANCZOS) for s, size in zip(plan.styles, stage.style_sizes)]
        mode = plan.settings.original_colors
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


def initial_image(plan, images):
    """Stage 1's starting point in network space: the content, white noise, the style, or an image."""
    init = plan.init
    w, h = images.content.size
    if isinstance(init, str) and init == "content":
        return preprocess(images.net_content)
    if isinstance(init, str) and init == "noise":
        return images.to_network(white_noise(w, h, plan.settings.seed))
    img = images.net_styles[0] if isinstance(init, str) else init
    return images.to_network(img.resize((w, h), Image.Resampling.LANCZOS))


def bounds_of(settings):
    """The optimizer's box for these settings: every pixel in 0..255, or none."""
    return pixel_bounds() if settings.bounds else None


def setup_stage(plan, stage, vgg, x_prev, index=0):
    """The stage's images, objective and starting point (the previous result upsampled, or the init).
    index: the stage's place in the run (0 first): the style losses' random draws are new each stage."""
    o = plan.settings
    images = StageImages(plan, stage)
    content_layers = o.content_layers if o.content_weight > 0 else ()
    style_layers = o.style_layers if o.style_weight > 0 else ()
    scales = term_scales(*stage.content_size, content_layers, style_layers, o.weight_scaling)
    masks = plan.regions.masks_at(stage.content_size, stage.style_sizes) if plan.regions else (None,) * 3
    objective = StyleObjective(
        vgg, content=preprocess(images.net_content) if o.content_weight > 0 else None,
        styles=[preprocess(s) for s in images.net_styles], style_blend=o.style_blend,
        content_weight=o.content_weight, style_weight=o.style_weight, tv_weight=o.tv_weight,
        content_layers=o.content_layers, style_layers=o.style_layers,
        style_layer_weights=o.style_layer_weights, term_scales=scales, content_masks=masks[0],
        style_masks=masks[1], region_weights=masks[2], mask_mode=o.mask_mode, style_loss=o.style_loss,
        seed=o.seed, stage=index)
    if o.weight_scaling == "invariant":  # a normalised network: the terms' sizes of the plain one
        compensate_normalization(objective, network_normalization(vgg))
    if x_prev is None:
        return images, objective, initial_image(plan, images)
    x0 = resize_network_image(x_prev, stage.content_size)
    if o.bounds:
        lo, hi = (b.astype(np.float32).reshape(1, 3, 1, 1) for b in pixel_bounds())
        x0 = np.clip(x0, lo, hi)
    return images, objective, x0


def optimize(settings, objective, x0, iters, callback=None):
    """Optimise ``objective`` from x0 for ``iters`` iterations as the settings say (optimizer, L-BFGS-B
    implementation, Adam's step size, the pixel bounds); returns the OptimizeResult."""
    return minimize(objective, x0, settings.optimizer, iters=iters, bounds=bounds_of(settings),
                    callback=callback, impl=settings.lbfgs_impl, lr=settings.lr)


class StagesOutput(NamedTuple):
    image: object        # the output PIL image (colours restored)
    x: np.ndarray        # its network-space pixels at the last stage's size, float32 (1, 3, H, W)
    impl: str            # whose L-BFGS-B ran ("scipy" or "nstyle"; None for Adam or no iteration)


def run_stages(plan, vgg, callback=None, log=None, *, start=None, extend=None, keep_best=True):
    """Run the plan's stages on ``vgg``; returns a StagesOutput.

    callback(record, get_image): after every iteration, with the record (iter within the stage, step over
    all stages, stage, stages, size, loss, terms, seconds since the loop started) and a function giving
    the current image as the output would look; True stops. log(message): one-line notices.
    start: stage 1's starting point ((1, 3, H, W) network space, resized to the stage; None: the plan's
    init). extend(objective, stage) -> objective: what every stage's objective becomes (a video frame
    adds its temporal term). keep_best: a stop hands back the best image so far -- the callback's stop
    as the result (resized to the output), Ctrl-C and NaN as StylizeInterrupted / NonFiniteLoss holding
    it; False gives the work up instead: RunStopped for the callback's stop, StylizeInterrupted without
    an image for Ctrl-C.
    """
    plan = plan.on_network(vgg)  # the L-BFGS-B implementation, resolved once for the run (a no-op if so)
    final_size = plan.output_size
    n_stages, done, began = len(plan.stages), 0, time.perf_counter()
    x_prev, previous, impl = start, None, None
    for k, stage in enumerate(plan.stages, 1):
        if n_stages > 1 and log is not None:
            log(f"stage {k}/{n_stages}: {stage.content_size[0]}x{stage.content_size[1]}, "
                f"{stage.iters} iterations")
        try:
            images, objective, x0 = setup_stage(plan, stage, vgg, x_prev, k - 1)
        except KeyboardInterrupt:
            if previous is None or not keep_best:
                raise  # nothing computed yet, or nothing to keep
            image = previous.finish(x_prev, final_size, plan.content)
            raise StylizeInterrupted(image, done, f"interrupted between stages {k - 1} and {k}") from None
        for note in objective.notes:  # regions left out at some layer: said once, not once per stage
            if note not in plan.notes:
                plan.notes.append(note)
                if log is not None:
                    log(note)
        draws = objective.style_draws  # the stage's random draws (seeds, bandwidths): its first record keeps them
        if extend is not None:
            objective = extend(objective, stage)
        if stage.iters == 0:  # nothing to optimise: the stage's start is its result
            x_prev, previous = x0, images
            continue
        offset = time.perf_counter() - began

        def on_iteration(rec, get_x, k=k, stage=stage, images=images, offset=offset, before=done, draws=draws):
            rec.update(stage=k, stages=n_stages, size=stage.size, step=before + rec["iter"],
                       total_steps=plan.total_iters, seconds=offset + rec["seconds"])
            if draws and rec["iter"] == 1:
                rec["style_draws"] = draws
            if callback is None:
                return False
            return callback(rec, lambda: images.finish(get_x()))

        result = optimize(plan.settings, objective, x0, stage.iters, on_iteration)
        impl = result.impl
        resize = final_size if stage.content_size != final_size else None
        where = f" (stage {k} of {n_stages})" if n_stages > 1 else ""
        if not keep_best and result.stop == STOP_REQUESTED:
            raise RunStopped("stopped by the callback")
        if not keep_best and result.stop == STOP_INTERRUPTED:
            raise StylizeInterrupted(None, done + result.iterations, "interrupted")
        if result.stop == STOP_REQUESTED:  # the callback asked to stop: this stage's best is the result
            return StagesOutput(images.finish(result.x, resize, plan.content), result.x, impl)
        raise_for_stop(result, lambda: images.finish(result.x, resize, plan.content), done, where)
        if x_prev is None:  # from the init: a start handed back unchanged is said, not passed off as done
            check_moved(result, log, where)
        done += result.iterations
        if result.stop == STOP_CONVERGED and log is not None and (x_prev is not None or result.iterations):
            log(result.message)
        x_prev, previous = result.x, images
    return StagesOutput(previous.finish(x_prev), np.asarray(x_prev, dtype=np.float32), impl)
