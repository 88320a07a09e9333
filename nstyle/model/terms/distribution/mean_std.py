"""The mean and standard deviation style term (Li et al., IJCAI 2017), at one layer with N channels:

    E = 1/N * sum_i ((mu_i - mu*_i)^2 + (sigma_i - sigma*_i)^2)
    dE/dF_ij = 2/N * ((mu_i - mu*_i) / M + (sigma_i - sigma*_i) (F_ij - mu_i) / (M sigma_i))

mu_i, sigma_i: channel i's mean and standard deviation over the layer's M positions (sigma with
eps = 1e-5 under the root: a dead channel has variance 0); mu*, sigma*: the style mixture's. The
derivation, the mixture's moments and the loop twin are in ``reference/style_losses/mean_std.py``;
E is smooth, so the gradient is exact everywhere. No randomness.
"""
from ....reference.style_losses import mean_std as ms
from ..base import register
from .base import DistributionTerm


@register
class MeanStdTerm(DistributionTerm):
    """E at ``layer`` against a ``MeanStdTarget`` (mu*, sigma*)."""

    name = "mean_std"
    default_weight = 2.3e4  # calibrated: docs/style_losses.md, "Default weights"

    @classmethod
    def make_target(cls, features, blend, rng, options):
        return ms.mean_std_targets(features, blend), {}, {}

    @classmethod
    def buffer_bytes(cls, n, m, t, itemsize=4, options=None, styles=1):
        return 2 * 8 * n, ms.mean_std_scratch_bytes(n, m, itemsize)

    def loss(self, F):
        return ms.mean_std_loss(F, self.target)

    def loss_naive(self, F):
        features, blend = self.naive_sources()
        return ms.mean_std_loss_naive(F, features, blend, self.target.eps)

    @classmethod
    def check_case(cls, rng):
        return cls.case(rng)
