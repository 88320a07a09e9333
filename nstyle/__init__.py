"""nstyle: Gatys et al.'s neural algorithm of artistic style, with handwritten backprop on NumPy/CuPy.

The folders are the architecture, arrows pointing down only:

    cli/        the ``nstyle`` command: shared argument types, one module per sub-command
    app/        what the commands do, a room per job: run, files, figures, batch, tiles, video
    optim/      the optimizers: SciPy's L-BFGS-B driver, nstyle's own L-BFGS-B, Adam
    model/      the layer table (arch), VGG19 over an engine, the objective, gradient checks
    weights/    the HDF5 format, other formats' readers, the restricted unpickler, fetch, normalisation
    reference/  the readable engine: each op's forward beside its backward and a naive twin
    cpu/, gpu/  the fast engines, held to the reference by the tests
    backend.py, errors.py, atomic.py, version.py   what every layer may use
"""
from .version import __version__

# The public names, imported on first use (PEP 562) rather than here: `nstyle` on the command line then
# starts without loading NumPy, SciPy or Pillow before it can handle Ctrl-C, and `import nstyle` stays
# cheap. ``from nstyle import VGG19`` works as usual.
_PUBLIC = {
    "VGG19": "app.run.network", "LAYER_NAMES": "model.arch", "StyleObjective": "model.objective",
    "preprocess": "app.files.imageio", "deprocess": "app.files.imageio", "stylize": "app.run.stylize",
    "reconstruct": "app.figures.reconstruct", "reconstruct_sheet": "app.figures.reconstruct",
    "make_grid": "app.figures.grid",
    "minimize": "optim.optimize", "lbfgs": "optim.optimize", "adam": "optim.optimize",
    "NStyleError": "errors", "InputError": "errors", "DeviceError": "errors", "WeightsError": "errors",
    "RunError": "errors", "StylizeInterrupted": "app.run.stops", "NonFiniteLoss": "app.run.stops",
}

__all__ = list(_PUBLIC) + ["__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        import importlib  # noqa: PLC0415
        value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
