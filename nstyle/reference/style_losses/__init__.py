"""Style losses beyond the Gram matrix, each a plain function pair with its gradient derived by hand.

One module per loss -- ``mean_std``, ``histogram``, ``sliced_wasserstein``, ``mmd`` (linear,
polynomial, Gaussian by random Fourier features, ``fourier.py``) -- each with

- ``<loss>_targets(style_feats, blend, ...) -> target``: statistics of the style *mixture* (each style
  image s's positions weigh b_s / M_s, ``mixture.py``), so any style size, output size or tile shares
  one target; the histogram and sliced Wasserstein targets are quantile tables (``quantiles.py``) that
  ``quantiles(target, M)`` reads at any output size, by the target's rule ("midpoint" or "bin_mean");
- ``<loss>_loss(F, target, ...) -> (value, dE/dF)`` for features F of shape (1, N, H, W);
- ``<loss>_loss_naive``: the same from the definition with loops, in float64, for the tests;
- ``<loss>_scratch_bytes``: the extra memory one evaluation holds, for memory estimates.

Randomness (directions, Fourier features, the bandwidth's sample) comes only from ``draw_*`` and
``median_bandwidth`` calls with an explicit seed or Generator, and becomes part of the target: within
one optimisation run the loss is one fixed function of F. Everything is ``xp``-generic (NumPy, CuPy).
"""
from .fourier import DEFAULT_FEATURES, FourierDraw, draw_fourier_features, median_bandwidth, mixture_sample
from .histogram import histogram_loss, histogram_loss_naive, histogram_scratch_bytes, histogram_targets
from .mean_std import MeanStdTarget, mean_std_loss, mean_std_loss_naive, mean_std_scratch_bytes, mean_std_targets
from .mmd import KERNELS, MMDTarget, gaussian_mmd_exact, mmd_loss, mmd_loss_naive, mmd_scratch_bytes, mmd_targets
from .quantiles import RULES, MixtureQuantiles, mixture_bytes, quantiles, quantiles_bytes, quantiles_scratch_bytes
from .sliced_wasserstein import (
                                 SlicedWassersteinTarget,
                                 draw_directions,
                                 sliced_wasserstein_loss,
                                 sliced_wasserstein_loss_naive,
                                 sliced_wasserstein_scratch_bytes,
                                 sliced_wasserstein_targets,
)

__all__ = [
    "DEFAULT_FEATURES", "FourierDraw", "draw_fourier_features", "median_bandwidth", "mixture_sample",
    "histogram_loss", "histogram_loss_naive", "histogram_scratch_bytes", "histogram_targets",
    "MeanStdTarget", "mean_std_loss", "mean_std_loss_naive", "mean_std_scratch_bytes", "mean_std_targets",
    "KERNELS", "MMDTarget", "gaussian_mmd_exact", "mmd_loss", "mmd_loss_naive", "mmd_scratch_bytes", "mmd_targets",
    "RULES", "MixtureQuantiles", "mixture_bytes", "quantiles", "quantiles_bytes", "quantiles_scratch_bytes",
    "SlicedWassersteinTarget", "draw_directions", "sliced_wasserstein_loss", "sliced_wasserstein_loss_naive",
    "sliced_wasserstein_scratch_bytes", "sliced_wasserstein_targets",
]
