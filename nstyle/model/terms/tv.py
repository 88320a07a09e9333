"""Total variation, a smoothness prior on the pixels (not in the paper; ``--tv-weight``):

    TV = sum (x[i+1, j] - x[i, j])^2 + sum (x[i, j+1] - x[i, j])^2

over every channel. Each difference d = x_next - x_this adds d^2, whose derivative is 2d for x_next and
-2d for x_this; a pixel takes part in up to four differences, and the gradient is their sum
(``reference.losses.tv_loss``). The squared form is smooth everywhere, so the gradient is exact. A pixel
term (it reads no layer), and a sum over the pixels: scaling "pixels".
"""
from ...reference import losses
from .base import Term, register


@register
class TVTerm(Term):
    """TV of the pixels x (1, 3, H, W)."""

    name, group, scaling = "tv", "tv", "pixels"

    def loss(self, x):
        return losses.tv_loss(x)  # looked up when called: see model/gradcheck.py

    def loss_naive(self, x):
        return losses.tv_loss_naive(x)

    @classmethod
    def check_case(cls, rng):
        return cls(), rng.standard_normal((1, 3, 5, 4))
