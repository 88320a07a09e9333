"""The loss terms, one module each, and their registry (``TERMS``: name -> class, in reading order).

    content             ContentTerm            Gatys et al.'s content loss at a layer
    gram                GramTerm               the Gram-matrix style loss at a layer
    guided_gram         GuidedGramTerm         the same with spatial control (masks)
    tv                  TVTerm                 total variation of the pixels
    temporal            TemporalTerm           Ruder et al.'s temporal loss of a video frame, on the pixels
    mean_std            MeanStdTerm            channel means and standard deviations (Li et al. 2017)
    histogram           HistogramTerm          per-channel 1-D optimal transport (Risser et al. 2017)
    sliced_wasserstein  SlicedWassersteinTerm  the same along random directions (Heitz et al. 2021)
    mmd_linear, mmd_polynomial, mmd_gaussian   maximum mean discrepancy by kernel (Li et al. 2017)
    style_sum           StyleSumTerm           a weighted sum of style losses at a layer

``base.py`` holds the protocol every term follows; ``function.py`` wraps a loss written as a pair of
functions (a target from the style images, a loss against it) as a term; ``distribution/`` holds the
style losses beyond the Gram matrix (their functions: ``reference/style_losses/``), and
``model/style_loss.py`` chooses among them. ``nstyle gradcheck`` and the
tests take their list of terms from ``TERMS``; docs/backprop.md ("Adding a loss") walks through adding
one.
"""
from .base import SCALINGS, TERMS, Declaration, Parts, Taps, Term, net_input, register  # noqa: F401
from .function import FunctionTerm  # noqa: F401 -- a base for terms written as functions (not registered)
from .content import ContentTerm  # noqa: F401 -- importing a module registers its term
from .gram import GramTerm  # noqa: F401
from .guided_gram import GuidedGramTerm  # noqa: F401
from .tv import TVTerm  # noqa: F401
from .temporal import TemporalTerm  # noqa: F401
from .distribution import (HistogramTerm, MeanStdTerm, MMDGaussianTerm, MMDLinearTerm,  # noqa: F401
                           MMDPolynomialTerm, SlicedWassersteinTerm, StyleSumTerm)
