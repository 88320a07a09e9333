"""Weights that mean the same picture at every size, and with every network (``weight_scaling``).

The loss keeps the paper's terms exactly (``model/objective.py``); what changes is the factor each term
is multiplied by. With ``weight_scaling="paper"`` the factors are the weights as given -- Gatys et al.'s
literal loss, whose balance moves with the image size. With ``"invariant"`` (the default) the weights
are read as meaning what they mean at the reference size, :data:`REFERENCE_SIZE` = 512 pixels on the
longest side (the paper's size), and each term is scaled so that it keeps that meaning:

- content, layer l: Lc_l = 1/2 sum (F - P)^2 is a sum over the layer's M_l positions, so it grows
  with the pixel count. It is scaled by M_l(ref) / M_l: the positions of layer l in the image resized to
  the reference size (same aspect ratio, pools flooring as in the engines) over the positions it has in
  this stage. At the reference size the factor is exactly 1.
- style, layer l: E_l = 1/(4 N^2 M^2) sum (G - A)^2 with G and A sums over the M_l positions: the M^2
  already makes it a per-position statistic, so its factor is 1 at every size.
- total variation: the sum of squared neighbour differences grows with the pixel count for the
  pixel-scale noise it is there to remove, like the content term: it is scaled by P(ref) / P, the
  reference image's pixel count over this stage's.

So every term's gradient per pixel scales as 1/P at every size and every coarse-to-fine stage, and the
content/style/TV balance of a 128-pixel run is that of a 512-pixel run.

Normalised networks (``nstyle weights normalize``, Gatys et al. 2016): each filter's ReLU output is
divided by the filter's mean activation s_c on some images, which the file records. Each term then
changes scale by a layer-wide factor -- content at layer l by about 1/mean(s_c^2) (each channel's
squared differences divided by s_c^2), style by about 1/mean(s_c^2)^2 (Gram entries divided by
s_i s_j, squared) -- that runs from about 0.6 at relu1_1 to 1e9 at relu4_1 for the real VGG-19. In the
invariant scaling those layer-wide factors are multiplied back in (:func:`normalization_factors`), so
the same weights keep their meaning with the normalised network: what it changes is the balance of the
channels within each layer, not the balance of the terms.
"""
import os

import numpy as np

from ..model.arch import CONV_LAYERS, LAYER_INDEX, LAYER_NAMES
from ..model.objective import layer_positions
from ..validate import choice
from ..weights.hdf5 import read_normalization
from ..weights.paths import default_weights_path
from .imageio import fit_size

REFERENCE_SIZE = 512
WEIGHT_SCALINGS = ("invariant", "paper")


def check_scaling(value):
    return choice("weight scaling", value, WEIGHT_SCALINGS)


def _conv_of(layer):
    """The convolution whose filters ``layer``'s channels come from (relu3_1 -> conv3_1, pool3 -> conv3_4)."""
    return [n for n in LAYER_NAMES[:LAYER_INDEX[layer] + 1] if n in CONV_LAYERS][-1]


def normalization_factors(scales, content_layers=(), style_layers=()):
    """Per-term factors that undo a normalised network's change of scale, from the file's per-filter
    scales ``{conv: (O,) array}``: ``{"content/<l>": mean(s^2), "style/<l>": mean(s^2)^2}``."""
    out = {}
    for prefix, layers, power in (("content", content_layers, 1), ("style", style_layers, 2)):
        for layer in layers:
            s = scales.get(_conv_of(layer))
            if s is not None:
                out[f"{prefix}/{layer}"] = float(np.mean(np.square(s))) ** power
    return out


def term_scales(width, height, content_layers=(), style_layers=(), mode="invariant", normalization=None,
                reference=REFERENCE_SIZE):
    """The objective's ``term_scales`` for a stage of (width, height) pixels (see the module docstring).

    normalization: the weights file's per-filter scales (:func:`network_normalization`) or None.
    "paper" gives {} (every factor 1).
    """
    check_scaling(mode)
    if mode == "paper":
        return {}
    ref_w, ref_h = fit_size(width, height, reference)
    scales = {f"content/{layer}": layer_positions(ref_h, ref_w, layer) / layer_positions(height, width, layer)
              for layer in content_layers}
    scales.update({f"style/{layer}": 1.0 for layer in style_layers})
    scales["tv"] = (ref_w * ref_h) / (width * height)
    if normalization:
        for key, factor in normalization_factors(normalization, content_layers, style_layers).items():
            scales[key] *= factor
    return scales


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
