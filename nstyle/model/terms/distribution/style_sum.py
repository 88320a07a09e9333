"""A weighted sum of style losses at one layer (Risser et al. combine the Gram and histogram losses):

    E = sum_k c_k E_k,    dE/dF = sum_k c_k dE_k/dF

with E_k the k-th loss's term at this layer (Gram, histogram, ...) and c_k its coefficient: the weight
the user gave it times the loss's calibrated ``default_weight`` (its strength relative to the Gram
term's at the same style weight). The derivative of a sum is the sum of the derivatives: each part's
gradient is its own term's, checked on its own; this term's check differentiates the sum.

It reports under the one key ``style/<layer>`` (so the weighting, the term scales and the breakdown's
``paper/style`` treat it as the layer's style term), and its value carries each part's unweighted
value (:class:`~nstyle.model.terms.base.Parts`): the breakdown writes them beside it as
``paper/style/<layer>/<loss>``. Inside the objective each part may use its engine's fast form (the
CPU engine's factored Gram gradient): ``evaluate`` hands the sweep one gradient per part.
"""
from ..base import TERMS, Parts, Term, register


@register
class StyleSumTerm(Term):
    """sum_k c_k E_k at ``layer``; parts: [(loss name, term, c_k)], every term at this layer."""

    name, group, scaling = "style_sum", "style", "mean"

    def __init__(self, layer, parts, layer_weight=1.0):
        self.layer, self.layer_weight = layer, layer_weight
        self.parts = [(name, term, float(c)) for name, term, c in parts]
        if any(term.layer != layer for _, term, _ in self.parts):
            raise ValueError(f"every part of a style sum at {layer} must read {layer}")

    def _sum(self, results):
        values, total, grad = {}, 0.0, None
        for (name, _, c), (value, g) in zip(self.parts, results):
            values[name] = (c, float(value))
            total += c * float(value)
            if g is not None:
                g = g * g.dtype.type(c)
                grad = g if grad is None else grad + g
        return Parts(total, values), grad

    def loss(self, F):
        return self._sum([term.loss(F) for _, term, _ in self.parts])

    def loss_naive(self, F):
        return self._sum([term.loss_naive(F) for _, term, _ in self.parts])

    def evaluate(self, taps):
        """Each part's own ``evaluate`` (its engine's fast form), the gradients as a list the sweep adds."""
        values, total, grads = {}, 0.0, []
        for name, term, c in self.parts:
            value, g = term.evaluate(taps)
            values[name] = (c, float(value))
            total += c * float(value)
            if g is not None:
                g *= g.dtype.type(c)   # a factored Gram gradient scales its small factor
                grads.append(g)
        return Parts(total, values), grads

    def bind(self, vgg):
        for _, term, _ in self.parts:
            term.bind(vgg)

    def prepare(self, height, width):
        for _, term, _ in self.parts:
            term.prepare(height, width)

    def check_size(self, height, width):
        for _, term, _ in self.parts:
            term.check_size(height, width)

    def normalization_factor(self, s):
        """The parts' factors averaged with weights c_k (a part that cannot measure counts 1): exact when
        they agree; otherwise the balance between the parts shifts by their ratio."""
        factors = [(c, term.normalization_factor(s)) for _, term, c in self.parts]
        total = sum(c for c, _ in factors)
        return sum(c * (1.0 if f is None else f) for c, f in factors) / total if total > 0 else None

    @classmethod
    def check_case(cls, rng):
        parts, F = [], None
        for name, c in (("gram", 0.7), ("histogram", 2.0), ("mmd_gaussian", 0.5)):
            term, inputs = TERMS[name].check_case(rng)  # registered before this module is imported
            F = inputs if F is None else F
            parts.append((name, term, c))
        return cls("relu2_1", parts), F
