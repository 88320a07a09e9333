"""The maximum mean discrepancy style terms (Li et al., IJCAI 2017), one per kernel:

    MMD^2 = mean_{j,j'} k(f_j, f_j') + mean_{s,s'} k(s, s') - 2 mean_{j,s} k(f_j, s)
          = ||mean_j phi(f_j) - phi*||^2      for k(x, y) = phi(x).phi(y)

- ``mmd_linear``, k = x^T y: E = ||mu(F) - mu*||^2 (channel means only), dE/df_j = 2/M (mu(F) - mu*);
- ``mmd_polynomial``, k = (x^T y)^2: E = ||G/M - C||^2 = 4 N^2 E_gram, dE/dF = 4/M (G/M - C) F -- the
  Gram loss up to its constant (Li et al.'s equivalence; a test holds them to it);
- ``mmd_gaussian``, k = exp(-||x - y||^2 / (2 h^2)) by D random Fourier features phi(x) = sqrt(2/D)
  cos(W^T x + c), W ~ N(0, 1/h^2), c ~ U(0, 2 pi), h by the median heuristic on the style mixture:
  dE/df_j = -2/M sqrt(2/D) W (sin(W^T f_j + c) o (mean phi(F) - phi*)), positions in blocks.

All smooth: exact everywhere (the Gaussian one for the drawn W, c -- that fixed kernel is what one
L-BFGS-B run optimises; W, c and h's sample are drawn once per stage and layer from the run's seed).
Derivations and the pair-by-pair twin: ``reference/style_losses/mmd.py``. Option for the Gaussian
kernel: ``fourier_features`` (D, default 1024).
"""
import numpy as np

from ....reference.style_losses import fourier, mmd
from ....validate import whole_number
from ..base import register
from ..gram import gram_normalization_factor
from .base import DistributionTerm, host_array


class MMDTerm(DistributionTerm):
    """MMD^2 at ``layer`` with the class's ``kernel`` against an ``MMDTarget`` (not registered itself:
    one registered subclass per kernel)."""

    kernel = None

    @classmethod
    def make_target(cls, features, blend, rng, options):
        if cls.kernel != "gaussian":
            return mmd.mmd_targets(features, blend, cls.kernel), {}, {}
        d = whole_number("number of Fourier features", options.get("fourier_features", fourier.DEFAULT_FEATURES), 1)
        draw = fourier.draw_fourier_features(features[0].shape[1], d, rng)
        h = fourier.median_bandwidth(features, blend, rng)
        target = mmd.mmd_targets(features, blend, "gaussian", draw, h)
        return target, {"features": draw, "bandwidth": h}, {"fourier_features": d, "bandwidth": h}

    @classmethod
    def buffer_bytes(cls, n, m, t, itemsize=4, options=None, styles=1):
        d = (options or {}).get("fourier_features") or fourier.DEFAULT_FEATURES
        kept = {"linear": 8 * n, "polynomial": n * n * itemsize, "gaussian": (n + 1) * d * itemsize + 8 * d}
        return kept[cls.kernel], mmd.mmd_scratch_bytes(n, m, cls.kernel, d, itemsize=itemsize)

    def loss(self, F):
        return mmd.mmd_loss(F, self.target)

    def loss_naive(self, F):
        features, blend = self.naive_sources()
        return mmd.mmd_loss_naive(F, features, blend, self.kernel, **self.draws)

    def normalization_factor(self, s):
        """linear: sum_c s_c^2 mu*_c^2 / sum_c mu*_c^2; polynomial: as the Gram term's, on C; gaussian:
        None (not measurable: the bandwidth comes from the median distance of the network's own
        features, so the kernel follows their scale, and MMD^2 stays between 0 and 2)."""
        if self.kernel == "linear":
            return _linear_factor(self.target.embedding, s)
        if self.kernel == "polynomial":
            return gram_normalization_factor(self.target.embedding, s)
        return None

    @classmethod
    def check_case(cls, rng):
        return cls.case(rng, {"fourier_features": 64})


def _linear_factor(mean, s):
    m2 = host_array(mean) ** 2
    return float((np.asarray(s) ** 2 * m2).sum() / m2.sum()) if m2.sum() > 0 else None


@register
class MMDLinearTerm(MMDTerm):
    name, kernel = "mmd_linear", "linear"
    default_weight = 62.0


@register
class MMDPolynomialTerm(MMDTerm):
    name, kernel = "mmd_polynomial", "polynomial"
    default_weight = 9.6e-7


@register
class MMDGaussianTerm(MMDTerm):
    name, kernel = "mmd_gaussian", "gaussian"
    default_weight = 5.7e9
