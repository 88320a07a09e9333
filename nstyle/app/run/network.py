"""Loading the network for a run: VGG-19 from a weights file. The model (``model/vgg.py``) builds a
network from arrays and knows nothing of files; reading one (``nstyle/weights``: the formats, the cache,
the default weights) happens here, above it.

:class:`VGG19` is the model's network with one more constructor, :meth:`VGG19.load` -- the class the
package exports as ``nstyle.VGG19``, so ``nstyle.VGG19.load(path)`` and ``nstyle.VGG19(params)`` both
work. :func:`load_network` is what the commands call: it resolves the device too, and turns whatever a
damaged weights file makes a reader raise into one WeightsError line.
"""
import numpy as np

from ...backend import resolve_device
from ...errors import NStyleError, WeightsError
from ...model import vgg
from ...weights.store import load_params


class VGG19(vgg.VGG19):
    __doc__ = vgg.VGG19.__doc__

    @classmethod
    def load(cls, path=None, pooling="avg", device="cpu", dtype=np.float32, engine="auto"):
        """Build the network from a weights file (None: the default weights; see ``nstyle/weights``)."""
        return cls(load_params(path), pooling=pooling, device=device, dtype=dtype, engine=engine)


def load_network(weights=None, pooling="avg", device="cpu", engine="auto", log=None):
    """VGG19 from ``weights`` (None: the default weights) on ``device`` ("cpu", "gpu", "auto")."""
    device = resolve_device(device, announce=log)
    try:
        return VGG19.load(weights, pooling=pooling, device=device, engine=engine)
    except (NStyleError, MemoryError):
        raise
    except Exception as exc:  # anything else a damaged weights file can make a reader raise
        where = f" from {weights}" if weights else ""
        raise WeightsError(f"could not load the VGG-19 weights{where} ({type(exc).__name__}: {exc})",
                           hint="fetch them again with `nstyle weights fetch`, or pass another --weights") from exc
