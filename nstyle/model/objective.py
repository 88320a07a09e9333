"""StyleObjective: the whole loss of Gatys et al. and its gradient with respect to the pixels.

    L = alpha * sum_{l in content layers} s_l Lc_l + beta * sum_{l in style layers} s_l w_l E_l + gamma s_tv TV

with Lc, E_l and TV as in ``reference/losses.py``, and s the optional per-term scales (``term_scales``;
1 by default, which is the paper's loss as written; ``app/run/weighting.py`` sets them so that the weights
mean the same at every image size). The content targets P_l and the style statistics are computed
once, at construction. The style target of layer l is

    A_l = M_l * sum_s b_s (F_s F_s^T) / M_s,l

each style image's Gram matrix as a per-position average (M_s,l positions) scaled to the output's M_l
positions, blended with weights b_s: a style image of any size gives the same statistics, and with
equal sizes this is exactly the paper's A_l = F_s F_s^T. With masks (``content_masks``, ``style_masks``)
the style term of each layer is the guided one of ``reference.losses.guided_style_loss`` (``regions.py``).

One evaluation is one forward to the deepest layer used and one backward sweep to the pixels. The
network's engine is asked for the Gram statistics of its taps (an engine may keep them in a layout of
its own); the guided loss works on the plain feature arrays every engine hands out.
"""
import numpy as np

from ..backend import get_xp, to_device
from ..errors import InputError
from ..reference.losses import content_loss, guided_style_loss, scaled_blended_gram, tv_loss
from .arch import LAYER_INDEX, LAYER_NAMES
from .regions import Regions
from ..validate import distinct, normalised_weights, scaled_weights, weight
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


def layer_positions(height, width, name):
    """M_l: the positions of layer ``name``'s map for an (height, width) input (pools floor the halves)."""
    for layer in LAYER_NAMES[:LAYER_INDEX[name] + 1]:
        if layer.startswith("pool"):
            height, width = height // 2, width // 2
    return height * width


def normalise_blend(style_blend, n_styles):
    """Blend weights for ``n_styles`` images, scaled to sum to 1 (equal weights when None)."""
    if style_blend is None:
        return [1.0 / n_styles] * n_styles
    blend = [_finite_nonnegative("style blend weight", b) for b in style_blend]
    if len(blend) != n_styles:
        raise InputError(f"{len(blend)} style blend weights given for {n_styles} style image(s)")
    return normalised_weights("style blend weight", blend)  # refuses a sum that overflows, a weight lost


class StyleObjective:
    """The loss to minimise over the pixels x, and its gradient.

    vgg: a VGG19; content: (1, 3, H, W) preprocessed content image; styles: list of (1, 3, h, w)
    preprocessed style images (sizes may differ: see the module docstring); style_blend: one weight per
    style (normalised to sum to 1; default equal). style_layer_weights: w_l per style layer (default
    1/len(style_layers)). content may be None when content_weight is 0 (style reconstruction); styles
    may be empty when style_weight is 0 (content reconstruction).

    term_scales: ``{"content/<layer>": s, "style/<layer>": s, "tv": s}``, factors on top of the weights
    (missing: 1). Spatial control (``regions.py``): content_masks ``{region: (H, W) mask}`` at x's
    size, style_masks one ``{region: mask or None}`` per style, region_weights ``{region: w}``,
    mask_mode "inside" | "all" | "simple". ``notes`` lists the regions left out at some layer.
    style_grams: ``{layer: (N, N) array}``, the per-position statistics sum_s b_s G_s / M_s computed
    elsewhere (a tiled run computes them once, for every tile); they replace styles and style_blend.
    """

    def __init__(self, vgg, content=None, styles=(), style_blend=None,
                 content_weight=DEFAULT_CONTENT_WEIGHT, style_weight=DEFAULT_STYLE_WEIGHT,
                 tv_weight=DEFAULT_TV_WEIGHT, content_layers=DEFAULT_CONTENT_LAYERS,
                 style_layers=DEFAULT_STYLE_LAYERS, style_layer_weights=None, term_scales=None,
                 content_masks=None, style_masks=None, region_weights=None, mask_mode="inside",
                 style_grams=None):
        self.vgg = vgg
        self.content_weight = weight("content weight", content_weight)  # finite, >= 0, not subnormal
        self.style_weight = weight("style weight", style_weight)
        self.tv_weight = weight("tv weight", tv_weight)
        # A layer named twice would count its term twice in the loss: refused (validate.distinct).
        self.content_layers = distinct("content layers", content_layers) if self.content_weight > 0 else ()
        self.style_layers = distinct("style layers", style_layers) if self.style_weight > 0 else ()
        check_layer_names(self.content_layers, "content layer")
        check_layer_names(self.style_layers, "style layer")
        if style_layer_weights is None:
            style_layer_weights = [1.0 / max(1, len(self.style_layers))] * len(self.style_layers)
        elif self.style_weight > 0 and len(style_layer_weights) != len(self.style_layers):
            raise InputError(f"{len(style_layer_weights)} style layer weights given for "
                             f"{len(self.style_layers)} style layers")
        self.style_layer_weights = dict(zip(self.style_layers, scaled_weights(
            "style layer weight", list(style_layer_weights)[:len(self.style_layers)], self.style_weight,
            "style weight")))
        self.term_scales = {key: _finite_nonnegative(f"scale of {key}", v) for key, v in (term_scales or {}).items()}
        self.taps = tuple(dict.fromkeys(self.content_layers + self.style_layers))
        if not self.taps and self.tv_weight == 0:
            raise InputError("nothing to optimise: content, style and tv weights are all zero")
        self.notes = []

        self.content_targets = {}
        self.content_size = None if content is None else tuple(content.shape[2:])
        if self.content_layers:
            if content is None:
                raise InputError("a content image is needed when the content weight is above zero")
            feats, _ = vgg.forward(self._to_net(content), self.content_layers)
            self.content_targets = feats
        self.style_targets = {}   # unguided: A_l for the last output size seen
        self.guided = None        # guided: {layer: [(guide, A_t, w_t), ...]}
        self._grams = {}          # unguided: {layer: ([F_s F_s^T per style], [M_s,l per style])}
        if self.style_layers:
            if style_grams is not None:  # statistics computed elsewhere: one per-position set, weight 1
                styles, style_blend = (None,), None
            if len(styles) == 0:
                raise InputError("at least one style image is needed when the style weight is above zero")
            self.style_blend = normalise_blend(style_blend, len(styles))
            if content_masks is not None:
                self._guided_targets(styles, content, content_masks, style_masks, region_weights, mask_mode)
            else:
                if style_masks is not None:
                    raise InputError("style masks need a content mask (which region of the output takes "
                                     "which region of the styles)")
                if style_grams is None:
                    self._style_statistics(styles)
                else:
                    self._grams = {name: ([self._to_net(style_grams[name])], [1]) for name in self.style_layers}
                if content is not None:  # the output is normally the content's size: targets ready now
                    for name in self.style_layers:
                        self._target(name, layer_positions(content.shape[2], content.shape[3], name))
        vgg.release_buffers()  # buffers kept at the target images' sizes would sit idle in every evaluation
        self.last_breakdown = None
        self.evaluations = 0

    def _style_statistics(self, styles):
        """Each style image's Gram matrix and position count at every style layer."""
        self._grams = {name: ([], []) for name in self.style_layers}
        for s in styles:
            feats, trace = self.vgg.forward(self._to_net(s), self.style_layers)
            for name in self.style_layers:
                grams, positions = self._grams[name]
                grams.append(self.vgg.engine.gram(feats, trace, name))
                positions.append(feats[name].shape[2] * feats[name].shape[3])
            del feats, trace

    def _target(self, name, m):
        """A_l for an output with m positions at layer ``name`` (kept until another size comes)."""
        cached = self.style_targets.get(name)
        if cached is None or cached[0] != m:
            grams, positions = self._grams[name]
            self.style_targets[name] = (m, None)  # drop the old target before building the new one
            self.style_targets[name] = (m, scaled_blended_gram(grams, positions, self.style_blend, m))
        return self.style_targets[name][1]

    def style_statistics(self, name):
        """The style target of layer ``name`` per output position (N x N): sum_s b_s G_s / M_s, or with
        masks the regions' targets, weighted, over the output's positions. A term's scale, for callers
        that compare networks (``app/run/weighting.py``)."""
        if self.guided is None:
            grams, positions = self._grams[name]
            return scaled_blended_gram(grams, positions, self.style_blend, 1)
        terms = self.guided[name]
        if not terms:
            return None
        total = None
        for g, A, w in terms:
            part = A * A.dtype.type(w / g.size)
            total = part if total is None else total + part
        return total

    def _guided_targets(self, styles, content, content_masks, style_masks, region_weights, mode):
        regions = Regions(content_masks, style_masks, region_weights, mode, self.style_layers, len(styles),
                          self.style_blend)
        if content is not None and tuple(content.shape[2:]) != regions.size:
            raise InputError(f"the content mask is {regions.size[1]}x{regions.size[0]} but the content image "
                             f"is {content.shape[3]}x{content.shape[2]}")
        for i, s in enumerate(styles):
            feats, _ = self.vgg.forward(self._to_net(s), self.style_layers)
            regions.add_style(i, feats, tuple(s.shape[2:]), self.vgg.device)
            del feats
        self.guided = regions.finish(self.vgg.device, self.vgg.dtype)
        self.guide_size = regions.size
        self.notes = regions.notes

    def _to_net(self, x):
        """x moved to the network's device and dtype (no copy when it already is)."""
        x = to_device(x, self.vgg.device)
        return x.astype(self.vgg.dtype, copy=False)

    def _style_term(self, feats, trace, name):
        """(E_l, dE_l/dF) of one style layer, guided or not."""
        if self.guided is None:
            F = feats[name]
            return self.vgg.engine.style_loss(feats, trace, name, self._target(name, F.shape[2] * F.shape[3]))
        terms = self.guided[name]
        if not terms:
            return 0.0, None
        return guided_style_loss(feats[name], *zip(*terms))

    def value_and_grad(self, x):
        """Total loss at x (1, 3, H, W) and its gradient (same shape, network's dtype and device).

        Also sets ``last_breakdown``: the weighted terms, which add up to the total:
        ``{"content": alpha*sum s_l Lc_l, "content/<layer>": ..., "style": beta*sum s_l w_l E_l,
        "style/<layer>": ..., "tv": gamma*s_tv*TV, "total": ...}``, and the paper's unweighted terms
        beside them: ``"paper/content/<layer>"`` (Lc_l), ``"paper/style/<layer>"`` (E_l), ``"paper/tv"``
        (TV), ``"paper/content"`` (sum Lc_l) and ``"paper/style"`` (sum w_l E_l, the paper's Ls).
        """
        x = self._to_net(x)
        xp = get_xp(x)
        if x.ndim != 4 or x.shape[:2] != (1, 3):
            raise InputError(f"x must be one image of shape (1, 3, H, W); got {tuple(x.shape)}")
        if self.guided is not None and tuple(x.shape[2:]) != self.guide_size:
            raise InputError(f"this objective's masks are {self.guide_size[1]}x{self.guide_size[0]}; "
                             f"x is {x.shape[3]}x{x.shape[2]}")
        if self.content_layers and tuple(x.shape[2:]) != self.content_size:
            raise InputError(f"x is {x.shape[3]}x{x.shape[2]} but the content image is "
                             f"{self.content_size[1]}x{self.content_size[0]}: the content loss compares them "
                             "position by position")
        scale = self.term_scales
        breakdown = {"content": 0.0, "style": 0.0, "tv": 0.0, "paper/content": 0.0, "paper/style": 0.0}
        grad = None
        if self.taps:
            feats, trace = self.vgg.forward(x, self.taps)
            tap_grads = {}  # layer -> its gradient contributions (a layer may be content and style tap)
            for name in self.content_layers:
                value, g = content_loss(feats[name], self.content_targets[name])
                w = self.content_weight * scale.get(f"content/{name}", 1.0)
                breakdown[f"paper/content/{name}"] = value
                breakdown["paper/content"] += value
                breakdown[f"content/{name}"] = w * value
                breakdown["content"] += w * value
                tap_grads.setdefault(name, []).append(g * g.dtype.type(w))
            for name in self.style_layers:
                layer_weight = self.style_layer_weights[name]
                w = self.style_weight * layer_weight * scale.get(f"style/{name}", 1.0)
                value, g = self._style_term(feats, trace, name)
                breakdown[f"paper/style/{name}"] = value
                breakdown["paper/style"] += layer_weight * value
                breakdown[f"style/{name}"] = w * value
                breakdown["style"] += w * value
                if g is not None:
                    g *= g.dtype.type(w)
                    tap_grads.setdefault(name, []).append(g)
            # the engine may reuse the taps' buffers once nothing else holds them (a factored style
            # gradient holds its tap: the loop's last g too)
            del feats
            g = None
            if tap_grads:
                grad = self.vgg.backward(trace, tap_grads)
            del tap_grads
        if self.tv_weight > 0:
            value, g = tv_loss(x)
            w = self.tv_weight * scale.get("tv", 1.0)
            breakdown["paper/tv"] = value
            breakdown["tv"] = w * value
            g *= g.dtype.type(w)
            grad = g if grad is None else grad + g
        if grad is None:
            grad = xp.zeros_like(x)
        breakdown["total"] = breakdown["content"] + breakdown["style"] + breakdown["tv"]
        self.last_breakdown = breakdown
        self.evaluations += 1
        return breakdown["total"], grad

    def value(self, x):
        return self.value_and_grad(x)[0]
