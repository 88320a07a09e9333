"""nstyle: Gatys et al.'s neural algorithm of artistic style, with handwritten backprop on NumPy/CuPy."""
from .errors import DeviceError, InputError, NStyleError, RunError, WeightsError
from .imageio import deprocess, preprocess
from .objective import StyleObjective
from .optimize import adam, lbfgs
from .stylize import NonFiniteLoss, StylizeInterrupted, stylize
from .vgg import LAYER_NAMES, VGG19

__version__ = "0.1.0"

__all__ = ["VGG19", "LAYER_NAMES", "StyleObjective", "preprocess", "deprocess", "stylize", "lbfgs", "adam",
           "NStyleError", "InputError", "DeviceError", "WeightsError", "RunError", "StylizeInterrupted",
           "NonFiniteLoss", "__version__"]
