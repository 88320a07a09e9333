"""Where the default weights live: ``$NSTYLE_HOME`` (else ``~/.cache/nstyle``)/``vgg19_caffe_conv.h5``."""
import os
from pathlib import Path

WEIGHTS_FILENAME = "vgg19_caffe_conv.h5"


def cache_dir():
    """``$NSTYLE_HOME`` if set, else ``~/.cache/nstyle``."""
    home = os.environ.get("NSTYLE_HOME")
    return Path(home) if home else Path.home() / ".cache" / "nstyle"


def default_weights_path():
    """Where the default converted weights file lives (whether or not it exists yet)."""
    return cache_dir() / WEIGHTS_FILENAME
