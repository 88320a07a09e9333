"""The style terms beyond the Gram matrix: each compares the distribution of the layer's feature vectors
with the style mixture's by another statistic (their functions, derivations and twins:
``reference/style_losses/``), and the weighted sum of several style losses at a layer.

    base.py                DistributionTerm: target from the style features, draws, twin's sources
    mean_std.py            MeanStdTerm            channel means and standard deviations
    histogram.py           HistogramTerm          per-channel 1-D optimal transport
    sliced_wasserstein.py  SlicedWassersteinTerm  the same along random directions
    mmd.py                 MMD{Linear,Polynomial,Gaussian}Term  maximum mean discrepancy by kernel
    style_sum.py           StyleSumTerm           sum_k c_k E_k at one layer
"""
from .base import DistributionTerm, loss_seed, style_features  # noqa: F401
from .mean_std import MeanStdTerm  # noqa: F401 -- importing a module registers its term
from .histogram import HistogramTerm  # noqa: F401
from .sliced_wasserstein import SlicedWassersteinTerm  # noqa: F401
from .mmd import MMDGaussianTerm, MMDLinearTerm, MMDPolynomialTerm  # noqa: F401
from .style_sum import StyleSumTerm  # noqa: F401
