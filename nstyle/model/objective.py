"""StyleObjective: the whole loss of Gatys et al. and its gradient with respect to the pixels.

    L = alpha * sum_{l in content layers} Lc_l + beta * sum_{l in style layers} w_l E_l + gamma * TV

with Lc, E_l and TV as in ``reference/losses.py``. The content targets P_l and the (blended) style
targets A_l are computed once, at construction. One evaluation is one forward to the deepest layer used
and one backward sweep to the pixels. The network's engine is asked for the Gram statistics of its taps
(an engine may keep them in a layout of its own); everything else here is the paper's arithmetic.
"""
import numpy as np

from ..backend import get_xp, to_device
from ..errors import InputError
from ..reference.losses import blended_gram, content_loss, tv_loss
from .vgg import check_layer_names

DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 1e3
DEFAULT_TV_WEIGHT = 0.0


def _finite_nonnegative(name, value):
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise InputError(f"{name} must be a finite number >= 0 (got {value})")
    return value


def normalise_blend(style_blend, n_styles):
    """Blend weights for ``n_styles`` images, scaled to sum to 1 (equal weights when None)."""
    if style_blend is None:
        return [1.0 / n_styles] * n_styles
    blend = [_finite_nonnegative("style blend weight", b) for b in style_blend]
    if len(blend) != n_styles:
        raise InputError(f"{len(blend)} style blend weights given for {n_styles} style image(s)")
    total = sum(blend)
    if total <= 0:
        raise InputError("style blend weights must not all be zero")
    return [b / total for b in blend]


class StyleObjective:
    """The loss to minimise over the pixels x, and its gradient.

    vgg: a VGG19; content: (1, 3, H, W) preprocessed content image; styles: list of (1, 3, h, w)
    preprocessed style images (sizes may differ); style_blend: one weight per style (normalised to sum
    to 1; default equal). style_layer_weights: w_l per style layer (default 1/len(style_layers)).
    content may be None when content_weight is 0 (style reconstruction); styles may be empty when
    style_weight is 0 (content reconstruction).
    """

    def __init__(self, vgg, content=None, styles=(), style_blend=None,
                 content_weight=DEFAULT_CONTENT_WEIGHT, style_weight=DEFAULT_STYLE_WEIGHT,
                 tv_weight=DEFAULT_TV_WEIGHT, content_layers=DEFAULT_CONTENT_LAYERS,
                 style_layers=DEFAULT_STYLE_LAYERS, style_layer_weights=None):
        self.vgg = vgg
        self.content_weight = _finite_nonnegative("content weight", content_weight)
        self.style_weight = _finite_nonnegative("style weight", style_weight)
        self.tv_weight = _finite_nonnegative("tv weight", tv_weight)
        self.content_layers = tuple(content_layers) if self.content_weight > 0 else ()
        self.style_layers = tuple(style_layers) if self.style_weight > 0 else ()
        check_layer_names(self.content_layers, "content layer")
        check_layer_names(self.style_layers, "style layer")
        if style_layer_weights is None:
            style_layer_weights = [1.0 / max(1, len(self.style_layers))] * len(self.style_layers)
        elif self.style_weight > 0 and len(style_layer_weights) != len(self.style_layers):
            raise InputError(f"{len(style_layer_weights)} style layer weights given for "
                             f"{len(self.style_layers)} style layers")
        self.style_layer_weights = {name: _finite_nonnegative("style layer weight", w)
                                    for name, w in zip(self.style_layers, style_layer_weights)}
        self.taps = tuple(dict.fromkeys(self.content_layers + self.style_layers))
        if not self.taps and self.tv_weight == 0:
            raise InputError("nothing to optimise: content, style and tv weights are all zero")

        self.content_targets = {}
        if self.content_layers:
            if content is None:
                raise InputError("a content image is needed when the content weight is above zero")
            feats, _ = vgg.forward(self._to_net(content), self.content_layers)
            self.content_targets = feats
        self.style_targets = {}
        if self.style_layers:
            if len(styles) == 0:
                raise InputError("at least one style image is needed when the style weight is above zero")
            self.style_blend = normalise_blend(style_blend, len(styles))
            per_style = []
            for s in styles:
                feats, trace = vgg.forward(self._to_net(s), self.style_layers)
                per_style.append({name: vgg.engine.gram(feats, trace, name) for name in self.style_layers})
                del feats, trace
            self.style_targets = {name: blended_gram([g[name] for g in per_style], self.style_blend)
                                  for name in self.style_layers}
        vgg.release_buffers()  # buffers kept at the target images' sizes would sit idle in every evaluation
        self.last_breakdown = None
        self.evaluations = 0

    def _to_net(self, x):
        """x moved to the network's device and dtype (no copy when it already is)."""
        x = to_device(x, self.vgg.device)
        return x.astype(self.vgg.dtype, copy=False)

    def value_and_grad(self, x):
        """Total loss at x (1, 3, H, W) and its gradient (same shape, network's dtype and device).

        Also sets ``last_breakdown``: the weighted terms, which add up to the total:
        ``{"content": alpha*sum Lc, "content/<layer>": ..., "style": beta*sum w_l E_l,
        "style/<layer>": ..., "tv": gamma*TV, "total": ...}``.
        """
        x = self._to_net(x)
        xp = get_xp(x)
        breakdown = {"content": 0.0, "style": 0.0, "tv": 0.0}
        grad = None
        if self.taps:
            feats, trace = self.vgg.forward(x, self.taps)
            tap_grads = {}  # layer -> its gradient contributions (a layer may be content and style tap)
            for name in self.content_layers:
                value, g = content_loss(feats[name], self.content_targets[name])
                value *= self.content_weight
                breakdown[f"content/{name}"] = value
                breakdown["content"] += value
                tap_grads.setdefault(name, []).append(g * g.dtype.type(self.content_weight))
            for name in self.style_layers:
                w = self.style_weight * self.style_layer_weights[name]
                value, g = self.vgg.engine.style_loss(feats, trace, name, self.style_targets[name])
                value *= w
                breakdown[f"style/{name}"] = value
                breakdown["style"] += value
                g *= g.dtype.type(w)
                tap_grads.setdefault(name, []).append(g)
            del feats  # the engine may reuse the taps' buffers once nothing else holds them
            grad = self.vgg.backward(trace, tap_grads)
            del tap_grads
        if self.tv_weight > 0:
            value, g = tv_loss(x)
            breakdown["tv"] = self.tv_weight * value
            g *= g.dtype.type(self.tv_weight)
            grad = g if grad is None else grad + g
        if grad is None:
            grad = xp.zeros_like(x)
        breakdown["total"] = breakdown["content"] + breakdown["style"] + breakdown["tv"]
        self.last_breakdown = breakdown
        self.evaluations += 1
        return breakdown["total"], grad

    def value(self, x):
        return self.value_and_grad(x)[0]
