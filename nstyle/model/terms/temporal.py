"""The temporal term of Ruder, Dosovitskiy & Brox (2016) for video, a pixel term:

    L_t = 1/D * sum_k c_k (x_k - omega_k)^2,      dL_t/dx = 2/D * c o (x - omega)

over the D = C*H*W pixel values, with omega the previous stylised frame warped onto this one and c
the reliability weights (0 where the warp cannot be trusted, 1 elsewhere), broadcast over the
channels. omega and c depend on the previous frame and the flows, never on x: constants here, so
dL_t = 2/D sum c (x - omega) dx gives the gradient. ``reference/temporal.py`` has the loss, the warp
and the reliability; ``app/video`` makes omega and c for each frame. Already a mean over the pixel
values: scaling "mean".
"""
import numpy as np

from ...backend import to_device
from ...errors import InputError
from ...reference import temporal
from .base import Term, register


@register
class TemporalTerm(Term):
    """L_t with target omega (1, 3, H, W) in network space and reliability c (H, W)."""

    name, group, scaling = "temporal", "temporal", "mean"

    def __init__(self, omega, c):
        self.omega, self.c = omega, c

    def bind(self, vgg):
        self.omega = to_device(np.asarray(self.omega).astype(vgg.dtype), vgg.device)
        self.c = to_device(np.asarray(self.c).astype(vgg.dtype), vgg.device)

    def loss(self, x):
        return temporal.temporal_loss(x, self.omega, self.c)  # looked up when called: see model/gradcheck.py

    def loss_naive(self, x):
        return temporal.temporal_loss_naive(x, self.omega, self.c)

    def check_size(self, height, width):
        if (height, width) != tuple(self.c.shape):
            raise InputError(f"the temporal term is {self.c.shape[1]}x{self.c.shape[0]}; x is {width}x{height}")

    @classmethod
    def check_case(cls, rng):
        x = rng.standard_normal((1, 3, 5, 4))
        c = (rng.uniform(0, 1, (5, 4)) > 0.3).astype(np.float64)
        return cls(rng.standard_normal(x.shape), c), x
