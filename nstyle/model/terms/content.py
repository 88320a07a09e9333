"""The content term of Gatys et al. (2015, eq. 1 and 2), at one layer l:

    Lc = 1/2 * sum_k (F_k - P_k)^2,        dLc/dF = F - P

with F the layer's response to the image being optimised and P its response to the content photo (the
target, a constant: it is computed once, through the network, when the term is built). dLc = sum_k
(F_k - P_k) dF_k gives the gradient; the ReLU's mask of the paper's eq. 2 is applied by the backward
sweep below the tap. The value is a sum over the layer's positions, so it grows with the image
(scaling "positions"). Functions: ``reference/losses.py`` (``content_loss`` and its loop twin).
"""
import numpy as np

from ...backend import to_host
from ...errors import InputError
from ...reference import losses
from .base import Term, net_input, register


@register
class ContentTerm(Term):
    """Lc at ``layer`` against ``target`` P (1, N, H_l, W_l); ``size``: the content image's (H, W)."""

    name, group, scaling = "content", "content", "positions"

    def __init__(self, layer, target, size=None):
        self.layer, self.target, self.size = layer, target, size

    @classmethod
    def from_image(cls, vgg, image, layers):
        """One term per layer in ``layers``, their targets from one forward of the content ``image``."""
        image = net_input(vgg, image)
        feats, _ = vgg.forward(image, layers)
        size = tuple(image.shape[2:])
        return [cls(name, feats[name], size) for name in layers]

    def bind(self, vgg):
        self.target = net_input(vgg, self.target)  # no copy for a target made through this network

    def loss(self, F):
        return losses.content_loss(F, self.target)  # looked up when called: see model/gradcheck.py

    def loss_naive(self, F):
        return losses.content_loss_naive(F, self.target)

    def check_size(self, height, width):
        if self.size is not None and (height, width) != self.size:
            raise InputError(f"x is {width}x{height} but the content image is {self.size[1]}x{self.size[0]}: "
                             "the content loss compares them position by position")

    def normalization_factor(self, s):
        """Each channel's squared differences grow by s_c^2: the ratio sum_c s_c^2 |P_c|^2 / sum_c |P_c|^2."""
        energy = (np.asarray(to_host(self.target), dtype=np.float64)[0] ** 2).sum(axis=(1, 2))
        if energy.sum() > 0:
            return float((s ** 2 * energy).sum() / energy.sum())
        return None

    @classmethod
    def check_case(cls, rng):
        F = rng.standard_normal((1, 4, 5, 6))
        return cls("relu3_1", rng.standard_normal(F.shape)), F
