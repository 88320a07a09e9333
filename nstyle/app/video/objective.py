"""The objective of one video frame: Gatys et al.'s loss (``model.objective.StyleObjective``, unchanged)
plus Ruder et al.'s temporal term on the pixels,

    L = L_style_transfer + lambda * L_t,    L_t = 1/D * sum_k c_k (x_k - omega_k)^2

with omega the previous stylised frame warped onto this one and c the reliability weights
(``reference/temporal.py`` has L_t and its gradient). The wrapper adds the term's value and gradient
to the inner objective's and reports it in ``last_breakdown`` as ``"temporal"`` (weighted, counted in
``"total"``) and ``"paper/temporal"`` (L_t itself).
"""
import numpy as np
from PIL import Image

from ...backend import to_device
from ...reference.temporal import temporal_loss


def _resize_planes(planes, size):
    """(C, H, W) float array -> (C, h, w) float32 at size = (w, h), bicubic, without rounding."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(p, dtype=np.float32), "F")
                                .resize(size, Image.Resampling.BICUBIC)) for p in planes])


class TemporalTerm:
    """omega (1, 3, H, W), network space, and c (H, W): the target and weights of one frame's term."""

    def __init__(self, omega, c):
        self.omega = np.asarray(omega, dtype=np.float32)
        self.c = np.asarray(c, dtype=np.float32)

    @property
    def size(self):
        return self.c.shape[1], self.c.shape[0]

    def at(self, size):
        """The term at another (width, height): a coarse-to-fine stage's size."""
        if tuple(size) == self.size:
            return self
        omega = _resize_planes(self.omega[0], size)[None]
        c = np.clip(_resize_planes(self.c[None], size)[0], 0.0, 1.0)
        return TemporalTerm(omega, c)


class TemporalObjective:
    """``objective`` (a StyleObjective) plus ``weight`` * L_t(x; term). Same interface: value_and_grad,
    value, last_breakdown, vgg, notes, evaluations."""

    def __init__(self, objective, term, weight):
        self.inner, self.weight = objective, float(weight)
        self.vgg = objective.vgg
        device = getattr(objective.vgg, "device", "cpu")
        dtype = getattr(objective.vgg, "dtype", np.float32)
        self.omega = to_device(term.omega.astype(dtype), device)
        self.c = to_device(term.c.astype(dtype), device)
        self.last_breakdown = None
        self.evaluations = 0

    @property
    def notes(self):
        return self.inner.notes

    def value_and_grad(self, x):
        total, grad = self.inner.value_and_grad(x)
        breakdown = dict(self.inner.last_breakdown or {"total": total})
        x = to_device(x, getattr(self.vgg, "device", "cpu")).astype(grad.dtype, copy=False)
        value, g = temporal_loss(x, self.omega, self.c)
        weighted = self.weight * value
        breakdown["paper/temporal"] = value
        breakdown["temporal"] = weighted
        breakdown["total"] = breakdown.get("total", total) + weighted
        g *= g.dtype.type(self.weight)
        grad = grad + g
        self.last_breakdown = breakdown
        self.evaluations += 1
        return breakdown["total"], grad

    def value(self, x):
        return self.value_and_grad(x)[0]
