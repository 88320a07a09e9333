"""A style term made of plain functions: the shortest way to bring a loss written as functions into the
objective.

Many style losses come as a pair: a target made once from the style images' features at a layer, and
a loss of the output's features against it,

    target = make_target(features, blend)       features: one (1, N, H_s, W_s) array per style image
    value, dE/dF = loss(F, target)              blend: their weights b_s, summing to 1

(with a loop twin of ``loss``). :class:`FunctionTerm` wraps such a pair: a subclass names the three
functions and a check case, and is registered like any term.

    @register
    class MeanStdTerm(FunctionTerm):
        name, group, scaling = "mean_std", "style", "mean"
        make_target = staticmethod(mean_std_target)
        loss_function = staticmethod(mean_std_loss)
        naive_function = staticmethod(mean_std_loss_naive)

        @classmethod
        def check_case(cls, rng): ...
"""
from .base import Term, net_input


class FunctionTerm(Term):
    """A layer term from functions (see the module docstring): ``target`` as ``make_target`` made it."""

    make_target = None
    loss_function = None
    naive_function = None

    def __init__(self, layer, target, layer_weight=1.0):
        self.layer, self.target, self.layer_weight = layer, target, layer_weight

    @classmethod
    def from_images(cls, vgg, styles, blend, layers, layer_weights=None):
        """One term per layer, each target from every style image's features there (one forward per
        image through all of ``layers``)."""
        features = {name: [] for name in layers}
        for s in styles:
            feats, _ = vgg.forward(net_input(vgg, s), layers)
            for name in layers:
                features[name].append(feats[name].copy())  # an engine may reuse the forward's buffers
            del feats
        weights = layer_weights or {}
        return [cls(name, cls.make_target(features.pop(name), list(blend)), weights.get(name, 1.0))
                for name in layers]

    def loss(self, F):
        return type(self).loss_function(F, self.target)  # read off the class: no self bound to it

    def loss_naive(self, F):
        return type(self).naive_function(F, self.target)
