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


class NonFiniteLoss(RunError):
    """The loss became NaN or infinite; ``image`` is the best image before that."""

    def __init__(self, image, message, iteration=None):
        super().__init__(message, hint="lower the weights or the Adam learning rate, or keep bounds on")
        self.image, self.iteration = image, iteration


class NothingPainted(InputError):
    """The optimiser stopped on its own before its first step from the run's start (exit 2): the loss is
    flat there, so the result would be the start itself -- the content, or the noise."""


def check_moved(result, where=""):
    """Raise NothingPainted when ``result`` (the first stage, from the init) converged at iteration 0.

    That happens when the loss cannot move the pixels at the start: every weight that could is zero
    or so small that the gradient is (a style weight of 0 with init content: the content term is already
    at its minimum), or the loss is flat for another reason. Handing the start back as a "done" picture
    would be a wrong answer with exit code 0."""
    if result.stop != STOP_CONVERGED or result.iterations > 0:
        return
    why = (result.message.split(": ", 1)[-1] if result.message else "").strip().rstrip(":") or "no progress possible"
    raise NothingPainted(f"nothing was painted{where}: the optimiser stopped at its start without taking a "
                         f"step ({why}); the loss does not change there",
                         hint="a style weight of 0 (or a tiny one) with --init content leaves nothing to do: "
                              "raise --style-weight or the layer weights, or start from --init noise")


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
