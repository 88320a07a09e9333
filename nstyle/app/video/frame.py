"""One video frame's stylisation: the stage loop every run uses (``app/run/stages.py``: coarse to fine,
colours, regions) with the frame's two differences as its parameters -- the temporal term added to each
stage's objective (``objective.add_term``: the term resized to the stage) and the frame's own starting
image -- and with ``keep_best=False``: a stop (Ctrl-C, the callback, a NaN) gives up the frame instead of
keeping its best image, since a video keeps whole frames only.
"""
import numpy as np

from ..run import color
from ..files.imageio import preprocess
from ..run.stages import run_stages
from ..run.stops import RunStopped

FrameStopped = RunStopped   # the callback asked to stop during a frame (the frame is not kept)


def to_network(img, mode):
    """An RGB output frame (PIL) as the network saw it: grey in the luminance colour mode."""
    if mode == "luminance":
        img = color.grey_image(color.luminance(img))
    return preprocess(img)


def stylize_frame(plan, vgg, start=None, term=None, weight=0.0, callback=None, log=None):
    """Run ``plan`` (a stylize plan for this frame) from ``start`` ((1, 3, H, W) network space at the output
    size; None: the plan's init) with ``weight`` * the temporal ``term`` (objective.TemporalTerm or None).

    Returns (image, x, breakdown): the output PIL image, its network-space pixels at the output size and
    the last iteration's record (with ``lbfgs_impl``: whose L-BFGS-B ran). Raises StylizeInterrupted
    (Ctrl-C), FrameStopped (the callback) or NonFiniteLoss, none of which keeps the frame.
    """
    last = {}
    temporal = term is not None and weight > 0

    def extend(objective, stage):
        if temporal:
            objective.add_term(term.at(stage.content_size), weight)
        return objective

    def on_iteration(rec, get_image):
        rec["temporal"] = weight * rec.get("paper/temporal", 0.0) if term is not None else 0.0
        last.clear()
        last.update(rec)
        return bool(callback(rec, get_image)) if callback is not None else False

    out = run_stages(plan, vgg, on_iteration, log, start=start, extend=extend, keep_best=False)
    return out.image, np.asarray(out.x, dtype=np.float32), {**last, "lbfgs_impl": out.impl}
