"""Weights that mean the same picture at every size, and with every network (``weight_scaling``).

The loss keeps the paper's terms exactly (``model/objective.py``); what changes is the factor each term
is multiplied by. Each term declares how its value grows with the image (its ``scaling``,
``model/terms/base.py``), and the factors here follow that declaration, whatever the term. With
``weight_scaling="paper"`` the factors are the weights as given -- Gatys et al.'s literal loss, whose
balance moves with the image size. With ``"invariant"`` (the default) the weights are read as meaning
what they mean at the reference size, :data:`REFERENCE_SIZE` = 512 pixels on the longest side (the
paper's size), and each term is scaled so that it keeps that meaning:

- "positions" (the content term at layer l): Lc_l = 1/2 sum (F - P)^2 is a sum over the layer's M_l
  positions, so it grows with the pixel count. It is scaled by M_l(ref) / M_l: the positions of layer l
  in the image resized to the reference size (same aspect ratio, pools flooring as in the engines) over
  the positions it has in this stage. At the reference size the factor is exactly 1.
- "mean" (the style terms, the temporal term): E_l = 1/(4 N^2 M^2) sum (G - A)^2 with G and A sums
  over the M_l positions: the M^2 already makes it a per-position statistic, so its factor is 1 at
  every size (and L_t is a mean over the pixels).
- "pixels" (total variation): the sum of squared neighbour differences grows with the pixel count for
  the pixel-scale noise it is there to remove, like the content term: it is scaled by P(ref) / P, the
  reference image's pixel count over this stage's.

So every term's gradient per pixel scales as 1/P at every size and every coarse-to-fine stage, and the
content/style/TV balance of a 128-pixel run is that of a 512-pixel run.

Normalised networks (``nstyle weights normalize``, Gatys et al. 2016): each filter's ReLU output is
divided by the filter's mean activation s_c on some images, which the file records. Each term then
changes scale -- each channel's squared content differences by 1/s_c^2, each Gram entry's squared
difference by 1/(s_i s_j)^2 -- by factors from about 1e-3 to 1e10 on the real VGG-19 depending on the
layer and on the images. In the invariant scaling each term is multiplied by its size on the plain
network over its size on the normalised one, measured on the run's own targets
(:func:`normalization_factors`), so the same weights keep their meaning with the normalised network:
what it changes is the balance of the channels within each layer, not the balance of the terms.
"""
import os

from ...model.arch import CONV_LAYERS, LAYER_INDEX, LAYER_NAMES, layer_positions
from ...model.objective import declared_terms
from ...validate import choice
from ...weights.hdf5 import read_normalization
from ...weights.paths import default_weights_path
from ..files.imageio import fit_size

REFERENCE_SIZE = 512
WEIGHT_SCALINGS = ("invariant", "paper")


def check_scaling(value):
    return choice("weight scaling", value, WEIGHT_SCALINGS)


def _conv_of(layer):
    """The convolution whose filters ``layer``'s channels come from (relu3_1 -> conv3_1, pool3 -> conv3_4)."""
    return [n for n in LAYER_NAMES[:LAYER_INDEX[layer] + 1] if n in CONV_LAYERS][-1]


def normalization_factors(terms, scales):
    """Per-term factors that undo a normalised network's change of scale, for this run's images.

    terms: an objective (its ``terms``) or a list of terms. scales: the file's per-filter scales
    ``{conv: (O,) array}``: the plain network's features are F_plain = s o F (channel c times s_c). Each
    term says how much it grows under that change, measured on its own targets
    (``Term.normalization_factor``): a content term by sum_c s_c^2 |P_c|^2 / sum_c |P_c|^2 (P: the
    content target), a Gram style term by |S A S|^2 / |A|^2 (S = diag(s), A the style target per
    position). (Filters that are nearly silent on the images the scales were measured on can fire on a
    painting and dominate; measuring on the run's targets follows that, a layer-wide average would not.)
    Pixel terms read no layer and do not change. Returns ``{term key: factor}``.
    """
    out = {}
    for term in getattr(terms, "terms", terms):
        s = None if term.layer is None else scales.get(_conv_of(term.layer))
        factor = None if s is None else term.normalization_factor(s)
        if factor is not None:
            out[term.key] = factor
    return out


def size_ratio(declaration, width, height, ref_w, ref_h):
    """(numerator, denominator) of how much a term grows from a (width, height) image to a (ref_w,
    ref_h) one, as its declared scaling says: the layer's positions, the pixels, or not at all."""
    if declaration.scaling == "positions":
        return (layer_positions(ref_h, ref_w, declaration.layer),
                layer_positions(height, width, declaration.layer))
    if declaration.scaling == "pixels":
        return ref_w * ref_h, width * height
    return 1, 1


def scales_for(declarations, width, height, mode="invariant", reference=REFERENCE_SIZE):
    """``{key: factor}`` for terms declared as ``Declaration(key, scaling, layer)`` in a stage of
    (width, height) pixels (see the module docstring); "paper" gives {} (every factor 1)."""
    check_scaling(mode)
    if mode == "paper":
        return {}
    ref_w, ref_h = fit_size(width, height, reference)
    scales = {}
    for d in declarations:
        num, den = size_ratio(d, width, height, ref_w, ref_h)
        scales[d.key] = num / den
    return scales


def term_scales(width, height, content_layers=(), style_layers=(), mode="invariant", reference=REFERENCE_SIZE,
                whole=None):
    """The objective's ``term_scales`` for a stage of (width, height) pixels with these layers (the
    terms ``model.objective.declared_terms`` gives, TV included); "paper" gives {} (every factor 1).

    whole: the (W, H) of the picture this stage is a piece of (a tile): the terms are scaled as for the
    whole picture, then each grows as it declares from the piece to the whole -- every term's gradient
    per pixel is then the whole run's times one factor, and a tile keeps the balance of the run it
    belongs to (the style terms are per-position statistics already)."""
    declared = declared_terms(content_layers, style_layers)
    if whole is None:
        return scales_for(declared, width, height, mode, reference)
    scales = scales_for(declared, *whole, mode, reference)
    for d in declared:
        num, den = size_ratio(d, width, height, *whole)
        scales[d.key] = scales.get(d.key, 1.0) * num / den
    return scales


def compensate_normalization(objective, normalization):
    """Multiply a normalised network's factors (:func:`normalization_factors`) into the objective's
    term scales; nothing for a plain network (normalization None)."""
    if normalization:
        for key, factor in normalization_factors(objective, normalization).items():
            objective.term_scales[key] = objective.term_scales.get(key, 1.0) * factor
    return objective


def weights_file(weights):
    """The file a run's weights come from: ``weights``, else $NSTYLE_WEIGHTS, else the cached default."""
    if weights is not None:
        return weights
    return os.environ.get("NSTYLE_WEIGHTS") or default_weights_path()


def attach_normalization(vgg, weights=None):
    """Record on a freshly loaded network what its weights file says about normalisation
    (``vgg.normalization``: the per-filter scales, or None); returns vgg."""
    path = weights_file(weights)
    vgg.normalization = read_normalization(path) if os.path.isfile(path) else None
    return vgg


def network_normalization(vgg):
    """The per-filter scales of a normalised network, or None for a plain one (or one built by the
    caller from parameters, whose origin nothing records)."""
    return getattr(vgg, "normalization", None)
