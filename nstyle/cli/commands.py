"""The sub-commands of ``nstyle``, in the order ``nstyle --help`` lists them: name -> (module beside this
one, one-line help). The modules are imported only when their command runs (``main.py``); the one-line
help lives here so that the list needs none of them."""
from collections import namedtuple

Command = namedtuple("Command", "module summary")

COMMANDS = {
    "stylize": Command("stylize", "paint a photo in the style of one or more paintings"),
    "video": Command("video", "stylise a video without flicker (Ruder et al. 2016)"),
    "batch": Command("batch", "run many stylisations as one resumable job on a Dask cluster"),
    "demo": Command("demo", "run a real style transfer on sample images (a few minutes on a CPU)"),
    "reconstruct": Command("reconstruct", "reconstruct an image from white noise using one layer's content or "
                                          "some layers' style"),
    "grid": Command("grid", "stylise at several content/style ratios and style depths, as a labelled sheet"),
    "gradcheck": Command("gradcheck", "check every hand-derived gradient numerically (float64)"),
    "weights": Command("weights", "manage the VGG-19 weights"),
}


def summary(name):
    """The command's one-line help (its module passes it to argparse)."""
    return COMMANDS[name].summary
