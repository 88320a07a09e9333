"""StyleObjective: the whole loss of Gatys et al. and its gradient with respect to the pixels, as the
weighted sum of its terms (``terms/``: one module per term, each with its derivation):

    L = sum_terms weight * w_l * s * value
      = alpha * sum_{l in content layers} s_l Lc_l + beta * sum_{l in style layers} s_l w_l E_l
        + gamma s_tv TV  (+ lambda L_t for a video frame, :meth:`StyleObjective.add_term`)

with weight the term group's weight (alpha, beta, gamma, lambda), w_l a style layer's weight (1 for the
others), and s the optional per-term scales (``term_scales``, by term key; 1 by default, which is the
paper's loss as written; ``app/run/weighting.py`` sets them from what each term declares, so that the
weights mean the same at every image size). The targets are computed once, at construction: the
content responses P_l, and per style layer each style image's Gram matrix, from which the target for
an output of M_l positions is A_l = M_l * sum_s b_s (F_s F_s^T) / M_s,l (``terms/gram.py``). With
masks (``content_masks``, ``style_masks``) each style layer's term is the guided one
(``terms/guided_gram.py``). The style terms may be another style loss, or a weighted sum of several,
instead of the Gram loss (``style_loss.py``; ``terms/distribution/``): E_l is then that loss at layer l.

One evaluation is one forward to the deepest layer any term reads and one backward sweep from all the
tap gradients (several terms on one layer add theirs), then the pixel terms' gradients added.
"""
import numpy as np

from ..backend import get_xp
from ..errors import InputError
from ..validate import distinct, normalised_weights, scaled_weights, weight, whole_number
from .arch import layer_positions  # noqa: F401 -- re-exported: callers import it from here
from .style_loss import GRAM, build_style_terms, check_options, draws_record, format_style_loss, parse_style_loss
from .terms import ContentTerm, GramTerm, GuidedGramTerm, Parts, Taps, TVTerm
from .terms.base import net_input
from .vgg import check_layer_names

DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 1e3
DEFAULT_TV_WEIGHT = 0.0

# The groups every breakdown records, even at weight 0 (the log's columns), and the sums of unweighted
# layer terms it records as "paper/<group>" even at weight 0 (any other group's appear with its terms).
GROUPS = ("content", "style", "tv")
PAPER_GROUPS = ("content", "style")


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
    return normalised_weights("style blend weight", blend)  # refuses a sum that overflows, a weight lost


def declared_terms(content_layers=(), style_layers=(), tv=True):
    """The declarations (key, scaling, layer) of the terms a StyleObjective with these layers builds
    (guided or not, a style layer's term declares the same), before any is built: what the weighting
    reads to scale a stage it has not made yet."""
    return ([ContentTerm.declare(layer) for layer in content_layers]
            + [GramTerm.declare(layer) for layer in style_layers] + ([TVTerm.declare()] if tv else []))


class StyleObjective:
    """The loss to minimise over the pixels x, and its gradient.

    vgg: a VGG19; content: (1, 3, H, W) preprocessed content image; styles: list of (1, 3, h, w)
    preprocessed style images (sizes may differ: see the module docstring); style_blend: one weight per
    style (normalised to sum to 1; default equal). style_layer_weights: w_l per style layer (default
    1/len(style_layers)). content may be None when content_weight is 0 (style reconstruction); styles
    may be empty when style_weight is 0 (content reconstruction).

    term_scales: ``{"content/<layer>": s, "style/<layer>": s, "tv": s}``, factors on top of the weights
    by term key (missing: 1). Spatial control (``regions.py``): content_masks ``{region: (H, W) mask}``
    at x's size, style_masks one ``{region: mask or None}`` per style, region_weights ``{region: w}``,
    mask_mode "inside" | "all" | "simple". ``notes`` lists the regions left out at some layer.
    style_grams: ``{layer: (N, N) array}``, the per-position statistics sum_s b_s G_s / M_s computed
    elsewhere (a tiled run computes them once, for every tile); they replace styles and style_blend.

    style_loss: which style loss (``style_loss.py``): "gram" (default, the paper's), "mean_std",
    "histogram", "sliced_wasserstein", "mmd_linear", "mmd_polynomial", "mmd_gaussian", or a weighted
    sum such as ``{"gram": 1.0, "histogram": 0.5}`` / ``"gram:1,histogram:0.5"`` (weights relative to
    each loss's calibrated default); style_loss_options: ``{"quantile_rule": "midpoint" | "bin_mean",
    "directions": K, "fourier_features": D}``; seed, stage: where the random draws of sliced Wasserstein
    and the Gaussian MMD come from (one generator per seed, stage, layer and loss; ``style_draws``
    records them). Masks and shared statistics work with the Gram loss only (InputError otherwise).

    ``terms``: the terms, in the order they are evaluated (content layers, style layers, pixel terms);
    ``term_weights``: their group weights by key. More terms: :meth:`add_term`.
    """

    def __init__(self, vgg, content=None, styles=(), style_blend=None,
                 content_weight=DEFAULT_CONTENT_WEIGHT, style_weight=DEFAULT_STYLE_WEIGHT,
                 tv_weight=DEFAULT_TV_WEIGHT, content_layers=DEFAULT_CONTENT_LAYERS,
                 style_layers=DEFAULT_STYLE_LAYERS, style_layer_weights=None, term_scales=None,
                 content_masks=None, style_masks=None, region_weights=None, mask_mode="inside",
                 style_grams=None, style_loss=None, style_loss_options=None, seed=0, stage=0):
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
        if not self.content_layers and not self.style_layers and self.tv_weight == 0:
            raise InputError("nothing to optimise: content, style and tv weights are all zero")
        self.notes = []
        self.terms, self.term_weights, self.taps = [], {}, ()
        self.style_loss = parse_style_loss(style_loss)
        self.style_loss_options = check_options(style_loss_options)
        self.seed, self.stage = whole_number("seed", seed), whole_number("stage", stage)

        if self.content_layers:
            if content is None:
                raise InputError("a content image is needed when the content weight is above zero")
            for term in ContentTerm.from_image(vgg, content, self.content_layers):
                self.add_term(term, self.content_weight)
        if self.style_layers:
            for term, factor in self._style_terms(content, styles, style_blend, style_grams, content_masks,
                                                  style_masks, region_weights, mask_mode):
                self.add_term(term, self.style_weight * factor)
        if self.tv_weight > 0:
            self.add_term(TVTerm(), self.tv_weight)
        vgg.release_buffers()  # buffers kept at the target images' sizes would sit idle in every evaluation
        self.last_breakdown = None
        self.evaluations = 0

    def _style_terms(self, content, styles, style_blend, style_grams, content_masks, style_masks, region_weights,
                     mode):
        """[(term, factor)]: one style term per style layer -- guided (masks), Gram, another style loss or
        a sum of several (``style_loss.py``), from the images or given statistics -- and the factor on
        the style weight (the chosen loss's weight times its calibrated default)."""
        losses = self.style_loss
        only_gram = list(losses) == [GRAM]
        if style_grams is not None:  # statistics computed elsewhere: one per-position set, weight 1
            if not only_gram:
                raise InputError(f"shared Gram statistics (a tiled run) serve the gram style loss only, not "
                                 f"{format_style_loss(losses)}")
            styles, style_blend = (None,), None
        if len(styles) == 0:
            raise InputError("at least one style image is needed when the style weight is above zero")
        self.style_blend = normalise_blend(style_blend, len(styles))
        if content_masks is not None:
            if not only_gram:
                raise InputError(f"content masks work with the gram style loss only; the style loss "
                                 f"{format_style_loss(losses)} has no guided form")
            terms, self.notes = GuidedGramTerm.from_images(
                self.vgg, styles, self.style_blend, self.style_layers, self.style_layer_weights, content_masks,
                style_masks, region_weights, mode, None if content is None else tuple(content.shape[2:]))
            return [(term, losses[GRAM]) for term in terms]
        if style_masks is not None:
            raise InputError("style masks need a content mask (which region of the output takes "
                             "which region of the styles)")
        if style_grams is not None:
            terms = [(GramTerm.from_statistic(name, net_input(self.vgg, style_grams[name]),
                                              self.style_layer_weights[name]), losses[GRAM])
                     for name in self.style_layers]
        else:
            terms = build_style_terms(self.vgg, styles, self.style_blend, self.style_layers,
                                      self.style_layer_weights, losses, self.seed, self.stage,
                                      self.style_loss_options)
        if content is not None:  # the output is normally the content's size: targets ready now
            for term, _ in terms:
                term.prepare(content.shape[2], content.shape[3])
        return terms

    @property
    def style_draws(self):
        """{layer: {loss: record}}: the seeds, bandwidths and sizes of the style losses' random draws
        (``style_loss.draws_record``), for the log."""
        return draws_record(self.terms)

    def add_term(self, term, weight):
        """Add ``weight`` * ``term`` to the loss (a video frame's temporal term, a loss of your own: any
        registered Term). Its constants move to the network's device and dtype; returns self."""
        weight = _finite_nonnegative(f"{term.key} weight", weight)
        if term.key in self.term_weights:
            raise InputError(f"the objective has a {term.key} term already")
        term.bind(self.vgg)
        self.terms.append(term)
        self.term_weights[term.key] = weight
        self.taps = tuple(dict.fromkeys(name for t in self.terms for name in t.layers))
        return self

    def term(self, key):
        """The term reported under ``key`` ("content/relu4_2", "style/relu1_1", "tv", ...)."""
        for t in self.terms:
            if t.key == key:
                return t
        raise KeyError(f"no {key!r} term; this objective has {', '.join(t.key for t in self.terms)}")

    # What other modules read of the targets: the GPU graph holds them, the weighting measures them.
    @property
    def content_targets(self):
        return {t.layer: t.target for t in self.terms if isinstance(t, ContentTerm)}

    @property
    def style_targets(self):
        """{layer: (m, A_l)}: the Gram terms' targets for the last output size seen."""
        return {t.layer: t.cached for t in self.terms if isinstance(t, GramTerm) and t.cached is not None}

    def style_statistics(self, name):
        """The style target of layer ``name`` per output position (N x N): sum_s b_s G_s / M_s, or with
        masks the regions' targets, weighted, over the output's positions (None: no region there)."""
        return self.term(f"style/{name}").statistic()

    def _record(self, breakdown, term, value):
        """Enter one term's value into the breakdown; returns its factor weight * w_l * s."""
        key, group, layer_weight = term.key, term.group, term.layer_weight
        w = self.term_weights[key] * layer_weight * self.term_scales.get(key, 1.0)
        for name, (c, part) in getattr(value, "parts", {}).items():  # a sum of style losses: each beside it
            breakdown[f"paper/{key}/{name}"] = part
            breakdown[f"{key}/{name}"] = w * c * part
        value = float(value) if isinstance(value, Parts) else value
        breakdown[f"paper/{key}"] = value
        breakdown[key] = w * value
        if key != group:  # a layer's term: its group sums them (a pixel term is its group)
            breakdown[f"paper/{group}"] = breakdown.get(f"paper/{group}", 0.0) + layer_weight * value
            breakdown[group] = breakdown.get(group, 0.0) + w * value
        return w

    def _sweep(self, x, breakdown):
        """The forward to the taps, the layer terms (entered into ``breakdown``) and the backward from
        all their gradients: dL/dx from the layer terms, or None when none has a gradient."""
        feats, trace = self.vgg.forward(x, self.taps)
        taps = Taps(feats, trace, self.vgg.engine)
        tap_grads = {}  # layer -> its terms' gradients (a layer may be a content and a style tap)
        for term in self.terms:
            if term.layer is None:
                continue
            value, g = term.evaluate(taps)
            w = self._record(breakdown, term, value)
            for part in (g if isinstance(g, list) else [] if g is None else [g]):
                part *= part.dtype.type(w)  # a factored Gram gradient scales its small factor instead
                tap_grads.setdefault(term.layer, []).append(part)
        # the engine may reuse the taps' buffers once nothing else holds them (a factored style
        # gradient holds its tap: the loop's last g too)
        del feats, taps
        g = part = None
        return self.vgg.backward(trace, tap_grads) if tap_grads else None

    def value_and_grad(self, x):
        """Total loss at x (1, 3, H, W) and its gradient (same shape, network's dtype and device).

        Also sets ``last_breakdown``: the weighted terms, which add up to the total:
        ``{"content": alpha*sum s_l Lc_l, "content/<layer>": ..., "style": beta*sum s_l w_l E_l,
        "style/<layer>": ..., "tv": gamma*s_tv*TV, "total": ...}``, and the paper's unweighted terms
        beside them: ``"paper/content/<layer>"`` (Lc_l), ``"paper/style/<layer>"`` (E_l), ``"paper/tv"``
        (TV), ``"paper/content"`` (sum Lc_l) and ``"paper/style"`` (sum w_l E_l, the paper's Ls); an
        added term the same way under its key (``"temporal"``, ``"paper/temporal"``).
        """
        x = net_input(self.vgg, x)
        xp = get_xp(x)
        if x.ndim != 4 or x.shape[:2] != (1, 3):
            raise InputError(f"x must be one image of shape (1, 3, H, W); got {tuple(x.shape)}")
        for term in self.terms:
            term.check_size(x.shape[2], x.shape[3])
        breakdown = {group: 0.0 for group in GROUPS}
        breakdown.update({f"paper/{group}": 0.0 for group in PAPER_GROUPS})
        grad = None
        if self.taps:
            with self.vgg.evaluation():  # the engine's hold on the cores (cpu: no BLAS threads polling)
                grad = self._sweep(x, breakdown)
        for term in self.terms:  # the pixel terms, after the sweep
            if term.layer is not None:
                continue
            value, g = term.loss(x)
            w = self._record(breakdown, term, value)
            if g is not None:
                g *= g.dtype.type(w)
                grad = g if grad is None else grad + g
        if grad is None:
            grad = xp.zeros_like(x)
        groups = list(dict.fromkeys(GROUPS + tuple(t.group for t in self.terms)))
        total = breakdown[groups[0]]
        for group in groups[1:]:
            total = total + breakdown[group]
        breakdown["total"] = total
        self.last_breakdown = breakdown
        self.evaluations += 1
        return breakdown["total"], grad

    def value(self, x):
        return self.value_and_grad(x)[0]
