"""nstyle: Gatys et al.'s neural algorithm of artistic style, with handwritten backprop on NumPy/CuPy.

The folders are the architecture, arrows pointing down only:

    cli/        the ``nstyle`` command: shared argument types, one module per sub-command
    app/        stylize, optimizers, memory estimate, images, colours, reconstructions, grids, sheets
    model/      the layer table (arch), VGG19 over an engine, the objective, gradient checks
    weights/    the HDF5 format, other formats' readers, the restricted unpickler, fetch, normalisation
    reference/  the readable engine: each op's forward beside its backward and a naive twin
    cpu/, gpu/  the fast engines, held to the reference by the tests
    backend.py, errors.py, atomic.py, version.py   what every layer may use
"""
from .app.imageio import deprocess, preprocess
from .app.optimize import adam, lbfgs
from .app.stylize import NonFiniteLoss, StylizeInterrupted, stylize
from .errors import DeviceError, InputError, NStyleError, RunError, WeightsError
from .model.arch import LAYER_NAMES
from .model.objective import StyleObjective
from .model.vgg import VGG19
from .version import __version__

__all__ = ["VGG19", "LAYER_NAMES", "StyleObjective", "preprocess", "deprocess", "stylize", "lbfgs", "adam",
           "NStyleError", "InputError", "DeviceError", "WeightsError", "RunError", "StylizeInterrupted",
           "NonFiniteLoss", "__version__"]
