"""The guided Gram style term (spatial control, Gatys et al., CVPR 2017), at one layer l:

    E = sum_t w_t / (4 N^2 M^2) * sum_ij (G_t - A_t)_ij^2,    G_t = (F o g_t)(F o g_t)^T

    dE/dF = sum_t w_t / (N^2 M^2) * ((G_t - A_t)(F o g_t)) o g_t

with g_t region t's normalised guidance channel at this layer (a constant: it comes from the masks)
and A_t the blended target of region t in the style images. The unguided derivation with F replaced
by F o g_t, and since d(F o g_t) = dF o g_t and <X, dF o g_t> = <X o g_t, dF>, one more factor g_t
(``reference.losses.guided_style_loss`` has it step by step). One region covering everything is the
Gram term exactly. Per-position, like the Gram term: scaling "mean".

The masks, guides and targets are built by ``model/regions.py`` (:meth:`GuidedGramTerm.from_images`);
the loss works on the plain feature arrays every engine hands out.
"""
from ...errors import InputError
from ...reference import losses
from ..regions import Regions
from .base import Term, net_input, register
from .gram import gram_normalization_factor


@register
class GuidedGramTerm(Term):
    """E at ``layer`` over ``regions``, a list of (guide (H_l, W_l), A_t (N, N), w_t) -- empty where no
    region reaches this layer (the term is then 0). size: the masks' pixel size (H, W)."""

    name, group, scaling = "guided_gram", "style", "mean"

    def __init__(self, layer, regions, size=None, layer_weight=1.0):
        self.layer, self.regions, self.size, self.layer_weight = layer, list(regions), size, layer_weight

    @classmethod
    def from_images(cls, vgg, styles, blend, layers, layer_weights, content_masks, style_masks, region_weights,
                    mode, content_size=None):
        """One term per layer and the notes on regions left out (``regions.Regions`` checks the masks)."""
        regions = Regions(content_masks, style_masks, region_weights, mode, layers, len(styles), blend)
        if content_size is not None and tuple(content_size) != regions.size:
            raise InputError(f"the content mask is {regions.size[1]}x{regions.size[0]} but the content image "
                             f"is {content_size[1]}x{content_size[0]}")
        for i, s in enumerate(styles):
            feats, _ = vgg.forward(net_input(vgg, s), layers)
            regions.add_style(i, feats, tuple(s.shape[2:]), vgg.device)
            del feats
        guided = regions.finish(vgg.device, vgg.dtype)
        return [cls(name, guided[name], regions.size, layer_weights[name]) for name in layers], regions.notes

    def loss(self, F):
        if not self.regions:
            return 0.0, None
        return losses.guided_style_loss(F, *zip(*self.regions))

    def loss_naive(self, F):
        if not self.regions:
            return 0.0, None
        return losses.guided_style_loss_naive(F, *zip(*self.regions))

    def statistic(self):
        """The regions' targets, weighted, per output position (N x N); None when no region is here."""
        total = None
        for g, A, w in self.regions:
            part = A * A.dtype.type(w / g.size)
            total = part if total is None else total + part
        return total

    def check_size(self, height, width):
        if self.size is not None and (height, width) != tuple(self.size):
            raise InputError(f"this objective's masks are {self.size[1]}x{self.size[0]}; x is {width}x{height}")

    def normalization_factor(self, s):
        return gram_normalization_factor(self.statistic(), s)

    @classmethod
    def check_case(cls, rng):
        F = rng.standard_normal((1, 4, 5, 6))
        regions = []
        for w in (0.3, 0.7):
            g = rng.uniform(0.1, 1.0, (5, 6))  # soft masks: every position counts, each its own amount
            g /= (g ** 2).mean() ** 0.5
            A = losses.guided_gram(rng.standard_normal((1, 4, 4, 4)), rng.uniform(0, 1, (4, 4))) * (30 / 16)
            regions.append((g, A, w))
        return cls("relu2_1", regions, (10, 12)), F
