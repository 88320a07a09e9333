"""The temporal term of one video frame at each coarse-to-fine stage's size.

The term itself -- Ruder et al.'s L_t = 1/D * sum_k c_k (x_k - omega_k)^2 and its gradient -- is a
pixel term of the model (``model/terms/temporal.py``; the loss in ``reference/temporal.py``). A frame's
stage adds it to its objective, ``objective.add_term(term.at(stage_size), weight)``, which reports it
in ``last_breakdown`` as ``"temporal"`` (weighted, counted in ``"total"``) and ``"paper/temporal"``
(L_t itself). What is the video's own: omega and c at another size, resized like the frames.
"""
import numpy as np
from PIL import Image

from ...model.terms import temporal


def _resize_planes(planes, size):
    """(C, H, W) float array -> (C, h, w) float32 at size = (w, h), bicubic, without rounding."""
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(p, dtype=np.float32), "F")
                                .resize(size, Image.Resampling.BICUBIC)) for p in planes])


class TemporalTerm(temporal.TemporalTerm):
    """The model's temporal term for a frame: omega (1, 3, H, W), network space, and c (H, W), kept
    in float32 on the host until an objective takes the term, and resizable (:meth:`at`)."""

    def __init__(self, omega, c):
        super().__init__(np.asarray(omega, dtype=np.float32), np.asarray(c, dtype=np.float32))

    @property
    def size(self):
        return self.c.shape[1], self.c.shape[0]

    def at(self, size):
        """A fresh term at another (width, height): a coarse-to-fine stage's size (each stage's objective
        takes a term of its own)."""
        if tuple(size) == self.size:
            return TemporalTerm(self.omega, self.c)
        omega = _resize_planes(self.omega[0], size)[None]
        c = np.clip(_resize_planes(self.c[None], size)[0], 0.0, 1.0)
        return TemporalTerm(omega, c)
