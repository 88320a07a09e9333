"""The histogram style term (Risser et al. 2017) as exact 1-D optimal transport per channel:

    E = 1/(N M) * sum_i sum_j (F_i,pi_i(j) - q_ij)^2,    dE/dF_i,pi_i(j) = 2/(N M) (F_i,pi_i(j) - q_ij)

pi_i sorts channel i ascending; q_ij: the style mixture's quantile function of channel i read at this
output's M positions (rule "midpoint", DESIGN.md's, by default; "bin_mean" on request -- option
``quantile_rule``). The sorting permutation is locally constant wherever a channel has no ties, so
there E is a plain sum of squares and the formula its exact derivative: exact almost everywhere (the
ties that occur are ReLU zeros, masked below). Derivation and loop twin:
``reference/style_losses/histogram.py``. The table of sorted style samples is built once; q for an
output size is read from it by ``prepare`` and kept. No randomness.
"""
from ....reference.style_losses import histogram as hist
from ....reference.style_losses.quantiles import mixture_bytes, quantiles_bytes, quantiles_scratch_bytes
from ..base import register
from .base import DistributionTerm, quantile_rule


@register
class HistogramTerm(DistributionTerm):
    """E at ``layer`` against the mixture's per-channel quantile table."""

    name = "histogram"
    default_weight = 2.0e4  # calibrated: docs/style_losses.md, "Default weights"
    quantile_table = True

    @classmethod
    def make_target(cls, features, blend, rng, options):
        rule = quantile_rule(options)
        return hist.histogram_targets(features, blend, rule), {}, {"quantile_rule": rule}

    @classmethod
    def buffer_bytes(cls, n, m, t, itemsize=4, options=None, styles=1):
        kept = mixture_bytes(n, t, itemsize, shared=styles == 1) + quantiles_bytes(n, m, itemsize)
        return kept, max(hist.histogram_scratch_bytes(n, m, itemsize), quantiles_scratch_bytes(n, t, m))

    def loss(self, F):
        return hist.histogram_loss(F, self.target, self.q(F.shape[2] * F.shape[3]))

    def loss_naive(self, F):
        features, blend = self.naive_sources()
        return hist.histogram_loss_naive(F, features, blend, self.target.rule)

    @classmethod
    def check_case(cls, rng):
        return cls.case(rng)
