"""How a run ends other than by finishing: the exceptions that carry the best image so far, and the
one mapping from an optimiser's stop reason to them (used by stylize, reconstruct and the grids)."""
from ...errors import InputError, RunError
from ...optim.optimize import STOP_CONVERGED, STOP_INTERRUPTED, STOP_NONFINITE


class StylizeInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``image`` is the best image so far (at the output size), ``iteration``
    the number of iterations done over all stages."""

    def __init__(self, image, iteration, message):
        super().__init__(message)
        self.image, self.iteration, self.message = image, iteration, message


class RunStopped(Exception):
    """The callback asked to stop a run that keeps nothing unfinished (a video frame): no image."""


class NonFiniteLoss(RunError):
    """The loss became NaN or infinite; ``image`` is the best image before that."""

    def __init__(self, image, message, iteration=None):
        super().__init__(message, hint="lower the weights or the Adam learning rate, or keep bounds on")
        self.image, self.iteration = image, iteration


class NothingPainted(InputError):
    """Settings whose run could only hand back its start (exit 2): see :func:`check_something_to_paint`."""


def check_something_to_paint(o, iters):
    """Refuse, before any work, settings whose loss is already at its minimum at the start: from the
    content image (init "content") with no style term (style weight 0, or every style layer weight 0)
    and no tv term, the content term alone is 0 with a zero gradient there -- the optimiser would stop
    at iteration 0 and hand the content back as "done". ``iters``: the stages' iteration counts (all
    zero: the user asked for the start itself, which is allowed)."""
    style = o["style_weight"] > 0 and bool(o["style_layers"]) and (
        o["style_layer_weights"] is None or any(w > 0 for w in o["style_layer_weights"]))
    if isinstance(o["init"], str) and o["init"] == "content" and not style and o["tv_weight"] == 0 and any(iters):
        raise NothingPainted("nothing to paint: the run starts from the content image, where the content term "
                             "alone (no style term: a style weight or every style layer weight of 0; no tv "
                             "term) is already at its minimum",
                             hint="give a style weight above 0, or start from --init noise to reconstruct the "
                                  "content")


def check_moved(result, log=None, where=""):
    """Say so when ``result`` (the first stage, from the init) stopped at iteration 0 without a step.

    The start is then the result. That is right when it already fits every target (the content and the
    style are the same picture) and a sign of weights too small to move the pixels otherwise -- which of
    the two the optimiser cannot tell, so the run does not fail; the message says what happened instead of
    a bare "done"."""
    if result.stop != STOP_CONVERGED or result.iterations > 0 or log is None:
        return
    why = (result.message.split(": ", 1)[-1] if result.message else "").strip().rstrip(":") or "no progress"
    log(f"note{where}: the optimiser stopped at its start without taking a step ({why}), so the result is the "
        f"starting image (loss {result.loss:.4g}): either it already fits every target (the content and the "
        "style are the same picture), or the weights are too small to move the pixels (raise --style-weight)")


def raise_for_stop(result, make_image, done=0, where=""):
    """Raise StylizeInterrupted or NonFiniteLoss when ``result`` (an OptimizeResult) stopped on Ctrl-C
    or a NaN/Inf loss; any other stop returns normally. make_image() gives the best image as the output
    would look (called only when raising); ``done``: the iterations of earlier stages; ``where``: a
    note like " (stage 2 of 3)"."""
    if result.stop not in (STOP_INTERRUPTED, STOP_NONFINITE):
        return
    image = make_image()
    if result.stop == STOP_INTERRUPTED:
        raise StylizeInterrupted(image, done + result.iterations,
                                 f"interrupted at iteration {done + result.iterations + 1}{where}")
    if result.stop == STOP_NONFINITE:
        raise NonFiniteLoss(image, result.message + where, iteration=done + result.iterations + 1)
