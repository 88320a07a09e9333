"""The reference engine: VGG-19's forward and backward as a plain loop over the reference ops.

This is the code a learner reads first, and it runs end to end: ``VGG19(params, engine="reference")``
(or ``nstyle stylize ... --engine reference``). Every engine offers the same five methods:

    forward(x, names, want)            -> (features, trace)
    backward(trace, grads)             -> dL/dx
    gram(features, trace, name)        -> G = F F^T of one tap
    style_loss(features, trace, name, A) -> (E_l, dE_l/dF)
    release()                          hand idle work buffers back

``names`` is the run of layers from conv1_1 to the deepest one needed, in order (``model/arch.py``);
``want`` the set of layers whose outputs the caller needs. The faster engines (``nstyle/cpu``,
``nstyle/gpu``) keep the features in their own layouts, which is why the Gram statistics are asked of
the engine rather than computed on ``features`` directly; here they are just ``reference.losses``.
"""
from ..errors import InputError
from .conv import conv2d_backward, conv2d_forward
from .losses import gram_matrix, style_layer_loss
from .pool import avg_pool2d_backward, avg_pool2d_forward, max_pool2d_backward, max_pool2d_forward
from .relu import relu_backward, relu_forward


def too_small(name, h, w):
    """The error for a map that a 2x2 pool cannot halve (the image is too small for this depth)."""
    return InputError(f"the image is too small to reach {name}: its feature map is {h}x{w} before pooling")


def sum_contributions(contributions):
    """One gradient from a list of them (a layer can be both a content and a style tap)."""
    total = contributions[0].copy()
    for g in contributions[1:]:
        total += g
    return total


class ReferenceEngine:
    """Layer by layer: each op's forward keeps its cache, the backward visits the caches in reverse.

    params: ``{"conv1_1": (W, b), ...}`` on the engine's device; pooling: "avg" or "max". Runs on NumPy
    and on CuPy arrays alike (the ops are written with ``xp = get_xp(x)``), any batch size and dtype.
    """

    name = "reference"

    # The ops this loop runs. The GPU engine is this same loop over its own kernels.
    conv_forward = staticmethod(conv2d_forward)
    conv_backward = staticmethod(conv2d_backward)
    relu_forward = staticmethod(relu_forward)
    relu_backward = staticmethod(relu_backward)
    pool_forward = {"avg": avg_pool2d_forward, "max": max_pool2d_forward}
    pool_backward = {"avg": avg_pool2d_backward, "max": max_pool2d_backward}

    def __init__(self, params, pooling="avg"):
        self.params, self.pooling = params, pooling

    def forward(self, x, names, want):
        """Run ``names`` in order on x (N, 3, H, W). Returns (features, trace).

        features[name]: that layer's output, for every name in ``want``. trace: (name, cache) per layer,
        what the backward needs. Convolution inputs are not kept (keep_input=False): style transfer
        needs only the gradient with respect to the pixels, never the weight gradients.
        """
        features, trace = {}, []
        h = x
        for name in names:
            kind = name[:4]
            if kind == "conv":
                w, b = self.params[name]
                h, cache = self.conv_forward(h, w, b, stride=1, padding=1, keep_input=False)
                if name in want:
                    features[name] = h.copy()  # the ReLU below rectifies h in place
            elif kind == "relu":
                h, cache = self.relu_forward(h, inplace=True)
                if name in want:
                    features[name] = h
            else:
                if min(h.shape[2:]) < 2:
                    raise too_small(name, h.shape[2], h.shape[3])
                h, cache = self.pool_forward[self.pooling](h, 2, 2)
                if name in want:
                    features[name] = h
            trace.append((name, cache))
        return features, trace

    def backward(self, trace, grads):
        """dL/dx from ``grads``: ``{layer: [dL/d(output of that layer), ...]}`` for taps of the forward.

        One sweep from the deepest tap to the pixels. The gradient entering a layer is the one flowing
        back from above plus that layer's own tap gradients, if it has any: the loss depends on a tap
        both directly and through every deeper layer.
        """
        dh = None
        for name, cache in reversed(trace):
            if name in grads:
                own = sum_contributions(grads[name])
                dh = own if dh is None else dh + own
            if dh is None:
                continue  # above the deepest tap that carries a gradient: nothing flows yet
            kind = name[:4]
            if kind == "conv":
                dh = self.conv_backward(dh, cache)
            elif kind == "relu":
                dh = self.relu_backward(dh, cache, inplace=True)
            else:
                dh = self.pool_backward[self.pooling](dh, cache)
        if dh is None:
            raise ValueError("backward needs a gradient at one tap at least")
        return dh

    def gram(self, features, trace, name):
        return gram_matrix(features[name])

    def style_loss(self, features, trace, name, A):
        return style_layer_loss(features[name], A)

    def release(self):
        """Nothing to release: this engine allocates afresh every time."""
