"""VGG-19's convolutional part, by layer name, with a forward to chosen taps and one backward sweep.

Layer names follow the paper: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, ... relu5_4, pool5.
Input: (N, 3, H, W), BGR, 0..255 minus the Caffe mean (see ``imageio.preprocess``). Every convolution is
3x3, stride 1, zero padding 1; every pool is 2x2, stride 2, average (the paper's choice) or max.

``forward`` runs only as deep as the deepest requested tap, and keeps only what the backward needs:
ReLU masks (1 byte per element), max-pool winners, and the tap outputs themselves. Because style
transfer never needs weight gradients, convolution inputs are not kept.
"""
import numpy as np

from . import vgg_cpu
from .backend import get_xp, to_device, to_host, uses_device_kernels
from .errors import InputError, WeightsError
from .layers.buffers import BufferPool
from .layers.fastconv import PreparedConv3x3
from .layers import (avg_pool2d_backward, avg_pool2d_forward, conv2d_backward, conv2d_forward,
                     max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward)

# (block, number of convolutions, output channels) for VGG-19.
_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def _layer_table():
    layers, conv_shapes, in_ch = [], {}, 3
    for block, n_conv, ch in _BLOCKS:
        for i in range(1, n_conv + 1):
            layers += [f"conv{block}_{i}", f"relu{block}_{i}"]
            conv_shapes[f"conv{block}_{i}"] = (ch, in_ch, 3, 3)
            in_ch = ch
        layers.append(f"pool{block}")
    return tuple(layers), conv_shapes


LAYER_NAMES, CONV_SHAPES = _layer_table()
CONV_LAYERS = tuple(CONV_SHAPES)
LAYER_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}
POOLINGS = ("avg", "max")


def check_layer_names(names, what="layer"):
    """Raise InputError naming any unknown layer (with the valid names as the hint)."""
    bad = [n for n in names if n not in LAYER_INDEX]
    if bad:
        raise InputError(f"unknown {what} name(s): {', '.join(map(str, bad))}",
                         hint="valid names: " + ", ".join(LAYER_NAMES))


def layer_channels(name, params=None):
    """Number of channels a layer outputs (from the given params, else from standard VGG-19)."""
    conv = name if name.startswith("conv") else None
    if conv is None:
        # relu and pool keep the channels of the nearest convolution before them
        idx = LAYER_INDEX[name]
        conv = next(n for n in reversed(LAYER_NAMES[:idx + 1]) if n.startswith("conv"))
    if params is not None:
        return params[conv][0].shape[0]
    return CONV_SHAPES[conv][0]


class VGG19:
    """VGG-19 feature extractor with handwritten forward and backward.

    params: ``{"conv1_1": (W, b), ...}``, W (O, C, 3, 3) for BGR input, b (O,). Channel counts may differ
    from the real network's (tests use narrow random networks) as long as they chain; a prefix of the
    layers is enough when only shallow taps are used.
    """

    def __init__(self, params, pooling="avg", device="cpu", dtype=np.float32):
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
        self._prepared = {}
        self.buffers = BufferPool()  # the CPU fast path's activation buffers, kept between evaluations
        # False sends CPU arrays through the generic layer-by-layer path too (the reference in tests).
        self.fast_cpu = True

    def prepared(self, name):
        """The CPU fast path's transformed weights of conv layer ``name`` (made once, then kept)."""
        if name not in self._prepared:
            self._prepared[name] = PreparedConv3x3(*self.params[name])
        return self._prepared[name]

    def release_buffers(self):
        """Hand the CPU fast path's idle buffers back to the allocator.

        They are kept for the next evaluation of the same size; once the image size changes (after
        the style targets, between coarse-to-fine stages) they would only sit in memory.
        """
        self.buffers.clear()

    @classmethod
    def load(cls, path=None, pooling="avg", device="cpu", dtype=np.float32):
        """Build the network from a weights file (None: the default weights; see ``weights.py``)."""
        from .weights import load_params  # noqa: PLC0415 -- keeps h5py out of plain layer use
        return cls(load_params(path), pooling=pooling, device=device, dtype=dtype)

    def astype(self, dtype):
        """The same network computing in another precision (float64 for gradient checks)."""
        return VGG19({k: (to_host(w), to_host(b)) for k, (w, b) in self.params.items()},
                     pooling=self.pooling, device=self.device, dtype=dtype)

    def to(self, device):
        return VGG19({k: (to_host(w), to_host(b)) for k, (w, b) in self.params.items()},
                     pooling=self.pooling, device=device, dtype=self.dtype)

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
        want = set(taps)
        if (self.fast_cpu and get_xp(x) is np and not uses_device_kernels(x) and x.shape[0] == 1
                and x.dtype == self.dtype):
            # CPU, one image: padded buffers, fused epilogues, Winograd where it pays (vgg_cpu.py).
            # Overflow to inf/nan is not warned about: the objective's callers check the result.
            with np.errstate(over="ignore", invalid="ignore"):
                return vgg_cpu.forward(self, x, LAYER_NAMES[:last + 1], want, self.buffers)
        features, trace = {}, []
        h = x
        for name in LAYER_NAMES[:last + 1]:
            kind = name[:4]
            if kind == "conv":
                w, b = self.params[name]
                h, cache = conv2d_forward(h, w, b, stride=1, padding=1, keep_input=False)
                if name in want:
                    features[name] = h.copy()  # the ReLU below rectifies h in place
            elif kind == "relu":
                h, cache = relu_forward(h, inplace=True)
                if name in want:
                    features[name] = h
            else:
                if min(h.shape[2:]) < 2:
                    raise InputError(f"the image is too small to reach {name}: its feature map is "
                                     f"{h.shape[2]}x{h.shape[3]} before pooling")
                pool = avg_pool2d_forward if self.pooling == "avg" else max_pool2d_forward
                h, cache = pool(h, 2, 2)
                if name in want:
                    features[name] = h
            trace.append((name, cache))
        return features, trace

    def backward(self, trace, grads):
        """Sweep once from the deepest tap to the pixels.

        Inputs: trace from :meth:`forward`; grads: ``{layer name: dL/d(output of that layer)}`` for any
        subset of the forward's taps (content and style layers together).
        Returns: dL/dx, shaped like the forward's input.

        The gradient entering a layer is the one flowing back from above plus that layer's own tap
        gradient, if it has one (the loss depends on a tap both directly and through deeper layers).
        """
        ran = trace.names() if isinstance(trace, vgg_cpu.CpuTrace) else [name for name, _ in trace]
        unknown = set(grads) - set(ran)
        if unknown:
            raise ValueError(f"gradients given for layers the forward did not run: {sorted(unknown)}")
        if isinstance(trace, vgg_cpu.CpuTrace):
            with np.errstate(over="ignore", invalid="ignore"):
                return vgg_cpu.backward(trace, grads)
        dh = None
        for name, cache in reversed(trace):
            if name in grads:
                dh = grads[name].copy() if dh is None else dh + grads[name]
            if dh is None:
                continue  # above the deepest tap that carries a gradient: nothing flows yet
            kind = name[:4]
            if kind == "conv":
                dh = conv2d_backward(dh, cache)
            elif kind == "relu":
                dh = relu_backward(dh, cache, inplace=True)
            elif self.pooling == "avg":
                dh = avg_pool2d_backward(dh, cache)
            else:
                dh = max_pool2d_backward(dh, cache)
        if dh is None:
            raise ValueError("backward needs a gradient at one tap at least")
        return dh

    def recycle(self, trace):
        """After the backward: let the CPU fast path reuse the tap buffers nothing else still views."""
        if isinstance(trace, vgg_cpu.CpuTrace):
            vgg_cpu.recycle(trace)

    def xp(self):
        return get_xp(self.params["conv1_1"][0])
