"""One video frame's stylisation: ``stylize``'s stages (coarse to fine, colours, regions) with the
temporal term added to each stage's objective and the frame's own starting image.

This is ``app/run/stylize.py``'s stage loop with two differences: the objective of every stage is wrapped
in ``TemporalObjective`` (the term resized to the stage), and a stop -- Ctrl-C, the callback, a NaN --
gives up the frame instead of keeping its best image: a video keeps whole frames only.
"""
import numpy as np

from ..run import color
from ..files.imageio import pixel_bounds, preprocess
from ...optim.optimize import STOP_CONVERGED, STOP_INTERRUPTED, STOP_REQUESTED, adam, lbfgs
from ..run.stops import StylizeInterrupted, check_moved, raise_for_stop
from ..run.stylize import _setup_stage
from .objective import TemporalObjective


class FrameStopped(Exception):
    """The callback asked to stop during a frame (the frame is not kept)."""


def to_network(img, mode):
    """An RGB output frame (PIL) as the network saw it: grey in the luminance colour mode."""
    if mode == "luminance":
        img = color.grey_image(color.luminance(img))
    return preprocess(img)


def stylize_frame(plan, vgg, start=None, term=None, weight=0.0, callback=None, log=None):
    """Run ``plan`` (a stylize plan for this frame) from ``start`` ((1, 3, H, W) network space at the output
    size; None: the plan's init) with ``weight`` * the temporal ``term`` (objective.TemporalTerm or None).

    Returns (image, x, breakdown): the output PIL image, its network-space pixels at the output size and
    the last iteration's record. Raises StylizeInterrupted (Ctrl-C), FrameStopped (the callback) or
    NonFiniteLoss, none of which keeps the frame.
    """
    o = plan.options
    x_prev, previous, last, done = start, None, {}, 0
    for k, stage in enumerate(plan.stages, 1):
        images, objective, x0 = _setup_stage(plan, stage, vgg, x_prev)
        for note in objective.notes:
            if note not in plan.notes:
                plan.notes.append(note)
                if log is not None:
                    log(note)
        if term is not None and weight > 0:
            objective = TemporalObjective(objective, term.at(stage.content_size), weight)
        if stage.iters == 0:
            x_prev, previous = x0, images
            continue

        def on_iteration(rec, get_x, k=k, stage=stage, images=images, before=done):
            rec.update(stage=k, stages=len(plan.stages), size=stage.size, step=before + rec["iter"],
                       total_steps=plan.total_iters,
                       temporal=weight * rec.get("paper/temporal", 0.0) if term is not None else 0.0)
            last.clear()
            last.update(rec)
            return bool(callback(rec, lambda: images.finish(get_x()))) if callback is not None else False

        if o["optimizer"] == "lbfgs":
            result = lbfgs(objective, x0, iters=stage.iters, bounds=pixel_bounds() if o["bounds"] else None, callback=on_iteration)
        else:
            result = adam(objective, x0, iters=stage.iters, lr=o["lr"], bounds=pixel_bounds() if o["bounds"] else None, callback=on_iteration)
        if result.stop == STOP_REQUESTED:
            raise FrameStopped("stopped by the callback")
        if result.stop == STOP_INTERRUPTED:
            raise StylizeInterrupted(None, done + result.iterations, "interrupted")
        raise_for_stop(result, lambda: images.finish(result.x), done,
                       f" (stage {k} of {len(plan.stages)})" if len(plan.stages) > 1 else "")
        if x_prev is None:  # from the plan's init (no warped previous frame): an unchanged start is said
            check_moved(result, log)
        if result.stop == STOP_CONVERGED and log is not None:
            log(result.message)
        done += result.iterations
        x_prev, previous = result.x, images
    return previous.finish(x_prev), np.asarray(x_prev, dtype=np.float32), last
