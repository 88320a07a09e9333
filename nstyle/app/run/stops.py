"""How a run ends other than by finishing: the exceptions that carry the best image so far, and the
one mapping from an optimiser's stop reason to them (used by stylize, reconstruct and the grids)."""
from ...errors import RunError
from ...optim.optimize import STOP_INTERRUPTED, STOP_NONFINITE


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
