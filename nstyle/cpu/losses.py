"""The style loss on the CPU engine's zero-bordered taps, with its gradient kept in factored form.

The loss is ``reference.losses.style_layer_loss``'s; two things differ, both about memory:

- the tap F arrives whole, in the engine's (1, N, H+3, W+2) layout with a zero border (``padded.py``),
  instead of as an (N, H*W) copy of its interior. Zeros add nothing to G = F F^T, and D times a zero
  column is a zero column, so E_l is unchanged (with M = H*W, the real positions) and the gradient is
  exactly zero on the border;
- the gradient S F (S = (G - A) / (N^2 M^2)) is returned as its two factors, a :class:`GramGradient`,
  which the engine's backward multiplies out a band of rows at a time inside the convolution epilogue
  that consumes it: the (N, M) gradient, as large as the layer's activations, never exists whole.

And one thing about time: G = F F^T is a product with a long inner dimension (M) and a small result
(N x N). The BLAS shares out a product's *result* between its threads, so for N = 64 it ran on one
core; :func:`gram` cuts M in two parts for the threads instead and adds their N x N results (64
channels at 256 x 256: 3.4 -> 1.7 ms, 2 threads; bench/NOTES.md, section 13).
"""
import numpy as np

from ..reference.losses import _as_matrix, gram_difference_loss
from . import blas
from .threads import for_each_task, split

# M is cut into a fixed number of parts, whatever the thread count, so that the sum -- and with it
# every picture -- is the same on one thread as on several (tests/test_batch.py compares the bytes of
# runs on Dask workers of one thread with runs here). Cut only while each part stays at least
# GRAM_SPLIT_MIN_DEPTH times N long: thinner parts lose to the BLAS's own threading (512 x 8 x 8).
GRAM_PARTS = 2
GRAM_SPLIT_MIN_DEPTH = 0.25


def gram(Fm):
    """F F^T for an (N, M) matrix, its parts along M on the threads (see the module docstring)."""
    n, m = Fm.shape
    if m < GRAM_SPLIT_MIN_DEPTH * n * GRAM_PARTS:
        return Fm @ Fm.T
    pieces = split(m, GRAM_PARTS)
    parts = [None] * len(pieces)

    def part(i):
        lo, hi = pieces[i]
        block = Fm[:, lo:hi]
        parts[i] = block @ block.T  # NumPy's symmetric product (syrk): half the multiply-adds

    for_each_task(part, len(pieces))
    total = parts[0]
    for other in parts[1:]:
        total += other
    return total


class GramGradient:
    """The style gradient dE/dF = S F (S = (G - A) / (N^2 M^2), N x N), kept as its two factors.

    The CPU engine's backward multiplies it out a band of rows at a time (:meth:`add_rows`),
    inside the convolution epilogue that consumes it, so the (N, M) gradient -- as large as the layer's
    activations -- never exists whole. Anything else gets the plain array from ``np.asarray``.
    """

    def __init__(self, S, F):
        self.S, self.F = S, F
        self.shape, self.dtype = F.shape, F.dtype

    def __imul__(self, factor):
        self.S = self.S * self.S.dtype.type(factor)
        return self

    def __array__(self, dtype=None, copy=None):
        if self.F is None:
            raise ValueError("this factored gradient was released after use")
        out = (self.S @ _as_matrix(self.F)).reshape(self.F.shape)
        return out if dtype is None else out.astype(dtype, copy=False)

    def add_rows(self, target, lo, hi, r_lo, r_hi, work=None):
        """target (channels lo..hi-1, rows r_lo..r_hi-1 of F's (1, N, H', W') layout) += those of S F.

        work: optional array of target's shape and dtype for the product (saves an allocation).
        """
        rows = self.F[0, :, r_lo:r_hi].reshape(self.F.shape[1], -1)
        if blas.available(target.dtype):
            try:  # a view when each channel's rows of target are contiguous (the engine's bands)
                flat = np.reshape(target, (hi - lo, -1), copy=False)
            except ValueError:
                flat = None
            if flat is not None:
                blas.accumulate(self.S[lo:hi], rows, flat)  # added in place, no temporary
                return
        if work is None:
            target += (self.S[lo:hi] @ rows).reshape(target.shape)
        else:
            np.matmul(self.S[lo:hi], rows, out=work.reshape(hi - lo, -1))
            target += work

    def rows_into(self, target, lo, hi, r_lo, r_hi):
        """target = channels lo..hi-1, rows r_lo..r_hi-1 of S F (written, not added), target laid out as
        those rows of F's (1, N, H', W') layout with each channel's rows contiguous (a block of the
        engine's padded buffers). With all rows and channels it is the product ``np.asarray`` makes,
        the same call: the same bits."""
        rows = self.F[0, :, r_lo:r_hi].reshape(self.F.shape[1], -1)
        np.matmul(self.S[lo:hi], rows, out=np.reshape(target, (hi - lo, -1), copy=False))

    def release(self):
        """Drop the reference to F once the gradient has been used (it may then be freed or reused)."""
        self.F = None


def bordered_style_loss(F, A, positions):
    """E_l and its factored gradient for a zero-bordered tap F (1, N, H+3, W+2) with ``positions`` = H*W.

    F must stay unmodified until the gradient has been used.
    """
    Fm = _as_matrix(F)
    D = gram(Fm) - A
    value, S = gram_difference_loss(D, Fm.shape[0], positions)
    return value, GramGradient(S, F)
