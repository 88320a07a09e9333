"""Loading the network for a run: one place that resolves the device, builds VGG19 on the chosen engine
and turns whatever a damaged weights file makes a reader raise into one WeightsError line."""
from ...backend import resolve_device
from ...errors import NStyleError, WeightsError
from ...model.vgg import VGG19


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
