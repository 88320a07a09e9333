"""The Gram style term of Gatys et al. (2015, eq. 4-6), at one layer l with N channels and M positions:

    G = F F^T,    E = 1/(4 N^2 M^2) * sum_ij (G_ij - A_ij)^2,    dE/dF = (G - A) F / (N^2 M^2)

(dE = 1/(2 N^2 M^2) <D, dG> with D = G - A symmetric, and <D, dF F^T + F dF^T> = 2 <D F, dF>; the
whole derivation is ``reference.losses.style_layer_loss``'s docstring). The target is each style
image's Gram matrix as a per-position average, scaled to the output's M positions and blended:

    A = M * sum_s b_s G_s / M_s

so it is rebuilt when the output's size changes (:meth:`GramTerm.target`). E is a per-position
statistic (the M^2 divides it out): the same at every size, scaling "mean".

The engine may do this term's work its own way: the objective asks ``engine.style_loss`` (the CPU
engine reads the tap in its bordered layout and keeps the gradient as the factors S and F,
``cpu/losses.py``); :meth:`GramTerm.loss` is the definition every engine is held to.
"""
import numpy as np

from ...backend import to_host
from ...reference import losses
from ..arch import layer_positions
from .base import Term, net_input, register


@register
class GramTerm(Term):
    """E at ``layer``: grams[s] = F_s F_s^T of style image s, with positions[s] = M_s and blend[s] = b_s
    (the blend sums to 1). layer_weight: w_l."""

    name, group, scaling = "gram", "style", "mean"
    default_weight = 1.0  # a choosable style loss (model/style_loss.py), the one the others are calibrated on

    def __init__(self, layer, grams, positions, blend, layer_weight=1.0):
        self.layer, self.layer_weight = layer, layer_weight
        self.grams, self.positions, self.blend = list(grams), list(positions), list(blend)
        self.cached = None  # (m, A): the target for the last output size seen

    @classmethod
    def from_images(cls, vgg, styles, blend, layers, layer_weights):
        """One term per layer, from one forward of each style image through all of ``layers``. The
        engine makes the Gram matrices (it may keep its taps in a layout of its own)."""
        grams = {name: ([], []) for name in layers}
        for s in styles:
            feats, trace = vgg.forward(net_input(vgg, s), layers)
            for name in layers:
                grams[name][0].append(vgg.engine.gram(feats, trace, name))
                grams[name][1].append(feats[name].shape[2] * feats[name].shape[3])
            del feats, trace
        return [cls(name, *grams[name], blend, layer_weights[name]) for name in layers]

    @classmethod
    def from_statistic(cls, layer, statistic, layer_weight=1.0):
        """A term whose per-position statistic sum_s b_s G_s / M_s was computed elsewhere (a tiled run
        computes it once for every tile)."""
        return cls(layer, [statistic], [1], [1.0], layer_weight)

    def bind(self, vgg):
        grams = [net_input(vgg, G) for G in self.grams]  # no copy for Gram matrices made by this network
        if any(a is not b for a, b in zip(grams, self.grams)):
            self.grams, self.cached = grams, None

    def target(self, m):
        """A for an output with m positions at this layer (kept until another size comes)."""
        if self.cached is None or self.cached[0] != m:
            self.cached = None  # drop the old target before building the new one
            self.cached = (m, losses.scaled_blended_gram(self.grams, self.positions, self.blend, m))
        return self.cached[1]

    def statistic(self):
        """The target per output position (N x N): sum_s b_s G_s / M_s."""
        return losses.scaled_blended_gram(self.grams, self.positions, self.blend, 1)

    def prepare(self, height, width):
        self.target(layer_positions(height, width, self.layer))

    def loss(self, F):
        return losses.style_layer_loss(F, self.target(F.shape[2] * F.shape[3]))

    def loss_naive(self, F):
        return losses.style_layer_loss_naive(F, self.target(F.shape[2] * F.shape[3]))

    def evaluate(self, taps):
        F = taps.features[self.layer]
        return taps.engine.style_loss(taps.features, taps.trace, self.layer, self.target(F.shape[2] * F.shape[3]))

    def normalization_factor(self, s):
        """Each Gram entry's squared difference grows by (s_i s_j)^2: |S A S|^2 / |A|^2, S = diag(s)."""
        return gram_normalization_factor(self.statistic(), s)

    @classmethod
    def check_case(cls, rng):
        F = rng.standard_normal((1, 4, 5, 6))
        styles = [rng.standard_normal((1, 4, 3, 3)), rng.standard_normal((1, 4, 4, 5))]  # other sizes
        term = cls("relu2_1", [losses.gram_matrix(S) for S in styles], [9, 20], [0.3, 0.7])
        return term, F


def gram_normalization_factor(A, s):
    """|S A S|^2 / |A|^2 for a per-position style statistic A (None when A is missing or zero)."""
    if A is None:
        return None
    A2 = np.asarray(to_host(A), dtype=np.float64) ** 2
    if A2.sum() > 0:
        return float((np.outer(s ** 2, s ** 2) * A2).sum() / A2.sum())
    return None
