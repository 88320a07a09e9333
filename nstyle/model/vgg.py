"""VGG-19's convolutional part, by layer name: a forward to chosen taps and one backward sweep.

Input: (N, 3, H, W), BGR, 0..255 minus the Caffe mean (see ``app/imageio.preprocess``). The layer table
is ``arch.py``; the work is done by an engine (``reference/engine.py`` documents the interface):

    reference   the readable layer loop over the reference ops (NumPy or CuPy)
    cpu         the fast CPU engine (``nstyle/cpu``)
    gpu         the GPU engine (``nstyle/gpu``; on NumPy arrays, its kernels' emulation)

``engine="auto"`` and ``"fast"`` pick the device's fast engine (cpu or gpu).

``forward`` runs only as deep as the deepest requested tap and keeps only what the backward needs.
"""
import contextlib

import numpy as np

from ..backend import to_device, to_host
from ..errors import InputError, WeightsError
from .arch import CONV_LAYERS, LAYER_INDEX, LAYER_NAMES, POOLINGS, unknown_layers

ENGINES = ("auto", "reference", "fast")  # what users choose from; "cpu" and "gpu" name one exactly


def check_layer_names(names, what="layer"):
    """Raise InputError naming any unknown layer (with the valid names as the hint)."""
    bad = unknown_layers(names)
    if bad:
        raise InputError(f"unknown {what} name(s): {', '.join(map(str, bad))}",
                         hint="valid names: " + ", ".join(LAYER_NAMES))


def resolve_engine(engine, device):
    """The engine name to build: 'reference', 'cpu' or 'gpu' (or a factory, passed through)."""
    if callable(engine):
        return engine
    if engine in ("auto", "fast"):
        return "gpu" if device == "gpu" else "cpu"
    if engine in ("reference", "cpu", "gpu"):
        return engine
    raise InputError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def make_engine(name, params, pooling):
    if callable(name):
        return name(params, pooling)
    # Imported here so that only the engine in use is loaded (the GPU one pulls in its kernels).
    if name == "reference":
        from ..reference.engine import ReferenceEngine  # noqa: PLC0415
        return ReferenceEngine(params, pooling)
    if name == "cpu":
        from ..cpu.engine import CpuEngine  # noqa: PLC0415
        return CpuEngine(params, pooling)
    from ..gpu.engine import GpuEngine  # noqa: PLC0415
    return GpuEngine(params, pooling)


class VGG19:
    """VGG-19 feature extractor with handwritten forward and backward.

    params: ``{"conv1_1": (W, b), ...}``, W (O, C, 3, 3) for BGR input, b (O,). Channel counts may differ
    from the real network's (tests use narrow random networks) as long as they chain; a prefix of the
    layers is enough when only shallow taps are used. engine: a name (see the module docstring), or a
    factory ``engine(params, pooling)`` for an engine built with options of its own, e.g.
    ``lambda p, pool: CpuEngine(p, pool, winograd="always")``.

    The model builds a network from arrays and knows nothing of files: ``nstyle.VGG19.load(path)`` (the
    application's subclass, ``app/run/network.py``) reads a weights file into these params.
    """

    def __init__(self, params, pooling="avg", device="cpu", dtype=np.float32, engine="auto"):
        if pooling not in POOLINGS:
            raise InputError(f"unknown pooling {pooling!r}; choose avg or max")
        self.pooling = pooling
        self.device = device
        self.dtype = np.dtype(dtype)
        self.params = {}
        in_ch = 3
        for name in CONV_LAYERS:
            if name not in params:
                break
            w, b = params[name]
            w = np.asarray(to_host(w), dtype=self.dtype)
            b = np.asarray(to_host(b), dtype=self.dtype)
            if w.ndim != 4 or w.shape[1] != in_ch or w.shape[2:] != (3, 3) or b.shape != (w.shape[0],):
                raise WeightsError(f"{name}: weight {w.shape} / bias {b.shape} do not fit a 3x3 convolution "
                                   f"over {in_ch} input channels")
            self.params[name] = (to_device(np.ascontiguousarray(w), device), to_device(b, device))
            in_ch = w.shape[0]
        if not self.params:
            raise WeightsError("VGG19 needs at least conv1_1's weights")
        extra = set(params) - set(CONV_LAYERS)
        if extra:
            raise WeightsError(f"unexpected parameter names: {', '.join(sorted(extra))}")
        # The deepest runnable layer is the one just before the first convolution without weights.
        missing = [n for n in CONV_LAYERS if n not in self.params]
        self.depth = LAYER_INDEX[missing[0]] - 1 if missing else len(LAYER_NAMES) - 1
        self.engine = make_engine(resolve_engine(engine, device), self.params, pooling)
        self.engine_name = self.engine.name

    def _check_taps(self, taps):
        check_layer_names(taps, "tap layer")
        too_deep = [t for t in taps if LAYER_INDEX[t] > self.depth]
        if too_deep:
            raise WeightsError(f"layer(s) {', '.join(too_deep)} need weights this network does not have")

    def forward(self, x, taps):
        """Run from the pixels to the deepest of ``taps``.

        Inputs: x (N, 3, H, W) in the network's dtype and on its device; taps: iterable of layer names.
        Returns: (features, trace): ``features[name]`` is the output of that layer (N, C_l, H_l, W_l);
        ``trace`` is what :meth:`backward` needs.
        """
        taps = tuple(dict.fromkeys(taps))
        self._check_taps(taps)
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"VGG19 expects input of shape (N, 3, H, W); got {x.shape}")
        last = max(LAYER_INDEX[t] for t in taps)
        return self.engine.forward(x, LAYER_NAMES[:last + 1], set(taps))

    def backward(self, trace, grads):
        """Sweep once from the deepest tap to the pixels.

        Inputs: trace from :meth:`forward`; grads: ``{layer name: dL/d(output of that layer)}`` for any
        subset of the forward's taps, each value one array or a list of them (summed).
        Returns: dL/dx, shaped like the forward's input.
        """
        ran = trace.names() if hasattr(trace, "names") else [name for name, _ in trace]
        unknown = set(grads) - set(ran)
        if unknown:
            raise ValueError(f"gradients given for layers the forward did not run: {sorted(unknown)}")
        if not all(isinstance(g, list) for g in grads.values()):
            grads = {name: list(g) if isinstance(g, tuple) else [g] for name, g in grads.items()}
        return self.engine.backward(trace, grads)  # an engine may consume (empty) the dict

    def evaluation(self):
        """A context to hold around one evaluation (forward, the losses, backward): the engine's, where it
        has one (the CPU engine's keeps the BLAS from competing with its own threads), else nothing."""
        hold = getattr(self.engine, "evaluation", None)
        return contextlib.nullcontext() if hold is None else hold()

    def release_buffers(self):
        """Hand the engine's idle work buffers back (after the targets, between stages)."""
        self.engine.release()
