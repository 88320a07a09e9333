"""Which style loss an objective uses -- the Gram matrix (the paper's), one of the losses beyond it, or a
weighted sum of several -- read from what the user wrote, built per layer, and recorded.

A choice is written ``"gram"``, ``"histogram"``, ``"gram:1,histogram:0.5"`` or as a dict
``{"gram": 1.0, "histogram": 0.5}``. The weight c_k of loss k is relative to its calibrated default:
the term the objective adds at a style layer is beta * c_k * kappa_k * E_k, with beta the style weight
and kappa_k the loss class's ``default_weight`` (1 for Gram; the others chosen so that c_k = 1 pulls
about as hard as the Gram default does, docs/style_losses.md says how). So ``"histogram"`` alone is a
full-strength histogram loss, and ``"gram:1,histogram:0.5"`` adds half a histogram loss to the Gram
loss. Several losses at a layer become one ``StyleSumTerm`` there (key ``style/<layer>``, each loss's
value beside it in the breakdown).

Randomness: a loss that draws (sliced Wasserstein's directions, the Gaussian MMD's Fourier features and
the sample its bandwidth comes from) gets its own NumPy Generator per stage and layer,
``default_rng([seed, stage, layer index, crc32(loss name)])``: fixed for one L-BFGS-B run (the
objective must be one function of the pixels for the line search and the curvature pairs to mean
anything), new at every coarse-to-fine stage (more directions seen over the run), and the same for
every tile of a stage. :func:`draws_record` is what the log keeps of it.
"""
from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ..validate import finite_number
from .arch import LAYER_INDEX
from .terms import TERMS, GramTerm, StyleSumTerm
from .terms.distribution import DistributionTerm, loss_seed, style_features

GRAM = "gram"
DEFAULT_STYLE_LOSS = GRAM
OPTIONS = ("quantile_rule", "directions", "fourier_features")  # what style_loss_options may set
# The choices besides Gram, for help texts that must not import the terms (the command line's).
OTHER_STYLE_LOSSES = ("mean_std", "histogram", "sliced_wasserstein", "mmd_linear", "mmd_polynomial", "mmd_gaussian")


def style_losses():
    """{name: term class} of the losses a user can choose (registered terms with a default weight)."""
    return {name: cls for name, cls in TERMS.items() if getattr(cls, "default_weight", None) is not None}


def parse_style_loss(spec):
    """{loss name: weight c_k} (in the order written, zero weights left out) from a choice written as
    above; None means the Gram loss. Raises InputError naming what is wrong."""
    if spec is None:
        spec = DEFAULT_STYLE_LOSS
    if isinstance(spec, str):
        items = []
        for part in spec.split(","):
            name, sep, weight = part.strip().partition(":")
            items.append((name.strip(), weight.strip() if sep else 1.0))
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        raise InputError(f"a style loss is a name, 'name:weight,...' or a dict of weights (got {spec!r})")
    known = style_losses()
    out = {}
    for name, weight in items:
        if name not in known:
            raise InputError(f"unknown style loss {name!r}; choose {', '.join(known)} (or a weighted sum "
                             "like gram:1,histogram:0.5)")
        if name in out:
            raise InputError(f"style loss {name} is named twice")
        out[name] = finite_number(f"weight of style loss {name}", weight)
    out = {name: c for name, c in out.items() if c > 0}
    if not out:
        raise InputError("the style loss weights are all zero (set --style-weight 0 to leave style out)")
    return out


def gram_only(spec):
    """Whether a choice is the Gram loss alone (at any weight): what masks and shared statistics take."""
    return list(parse_style_loss(spec)) == [GRAM]


def format_style_loss(losses):
    """The canonical text of a parsed choice: ``gram`` for the Gram loss at weight 1, else
    ``name:weight,...`` (what the log and the settings record)."""
    if list(losses.items()) == [(GRAM, 1.0)]:
        return GRAM
    return ",".join(f"{name}:{c:g}" for name, c in losses.items())


def check_options(options):
    """The style loss options as a dict (quantile_rule, directions, fourier_features), unknown keys refused."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InputError(f"unknown style loss option(s) {', '.join(unknown)}; valid: {', '.join(OPTIONS)}")
    return options


def build_style_terms(vgg, styles, blend, layers, layer_weights, losses, seed=0, stage=0, options=None):
    """[(term, factor)]: one style term per layer for the parsed choice ``losses``, and the factor its
    weight is multiplied by (beta * factor is its group weight): c * kappa for one loss, 1 for a sum
    (whose parts carry c_k * kappa_k). The Gram terms come from the engine's Gram matrices; the others
    from one forward per style image, their targets built a layer at a time."""
    known, options = style_losses(), check_options(options)
    per_loss = {}
    if GRAM in losses:
        per_loss[GRAM] = {t.layer: t for t in GramTerm.from_images(
            vgg, styles, blend, layers, {name: 1.0 if len(losses) > 1 else layer_weights[name] for name in layers})}
    others = [name for name in losses if name != GRAM]
    if others:
        features = style_features(vgg, styles, layers)
        for layer in layers:
            feats = features.pop(layer)  # each layer's features go once its targets are made
            for name in others:
                rng = np.random.default_rng(loss_seed(seed, stage, LAYER_INDEX[layer], name))
                term = known[name].from_features(layer, feats, blend, rng,
                                                 1.0 if len(losses) > 1 else layer_weights[layer], options)
                if term.draws:
                    term.record["seed"] = loss_seed(seed, stage, LAYER_INDEX[layer], name)
                per_loss.setdefault(name, {})[layer] = term
            del feats
    if len(losses) == 1:
        (name, c), = losses.items()
        return [(per_loss[name][layer], c * known[name].default_weight) for layer in layers]
    return [(StyleSumTerm(layer, [(name, per_loss[name][layer], c * known[name].default_weight)
                                  for name, c in losses.items()], layer_weights[layer]), 1.0) for layer in layers]


def draws_record(terms):
    """{layer: {loss: record}} of the style terms that drew random numbers or chose a rule: what the
    log keeps (the seed entropy, the bandwidth, how many directions or features)."""
    out = {}
    for term in terms:
        parts = [(name, t) for name, t, _ in term.parts] if isinstance(term, StyleSumTerm) else [(term.name, term)]
        for name, t in parts:
            if isinstance(t, DistributionTerm) and t.record:
                out.setdefault(t.layer, {})[name] = dict(t.record)
    return out


def buffer_bytes(losses, output_positions, style_positions, itemsize=4, options=None, styles=1):
    """{"style loss targets": bytes, "style loss scratch": bytes} of the losses beyond Gram (the Gram
    targets are counted with the network's): what their terms keep over all layers (targets, quantiles
    at the output's size, directions, Fourier features), and the most held at once besides -- one
    evaluation's sort indices, residuals, projections or feature blocks, a q table being built, or, while
    the targets are made, every style layer's features. output_positions: {layer: M}; style_positions:
    {layer: T, the style images' positions there, summed}."""
    from .arch import channels  # noqa: PLC0415

    known, kept, scratch = style_losses(), 0, 0
    others = [name for name in losses if name != GRAM]
    if not others:
        return {}
    for layer, m in output_positions.items():
        n, t = channels(layer), style_positions[layer]
        for name in others:
            k, s = known[name].buffer_bytes(n, m, t, itemsize, options, styles)
            kept += k
            scratch = max(scratch, s + (n * m * itemsize if len(losses) > 1 else 0))  # a sum's scaled part
    features = sum(channels(layer) * t * itemsize for layer, t in style_positions.items())
    return {"style loss targets": kept, "style loss scratch": max(scratch, features)}


def style_loss_bytes(style_loss, options, height, width, style_layers, style_shapes, itemsize=4):
    """:func:`buffer_bytes` for a run: the choice as written, an output of (height, width), the style
    images' (h, w) as the network sees them."""
    from .arch import layer_positions  # noqa: PLC0415

    return buffer_bytes(parse_style_loss(style_loss), {n: layer_positions(height, width, n) for n in style_layers},
                        {n: sum(layer_positions(h, w, n) for h, w in style_shapes) for n in style_layers},
                        itemsize, options, max(1, len(style_shapes)))
