"""The sliced Wasserstein style term (Heitz et al., CVPR 2021): the histogram loss along K random unit
directions V (N x K) of the channel space,

    P = V^T F,    E = 1/(K M) * sum_k sum_j (P_k,pi_k(j) - q_kj)^2,    dE/dF = V (2/(K M) (P - q o rank))

q_kj: the mixture's quantile function of the projection V_k^T s, read at this output's M positions.
P is linear in F, so the gradient is the histogram loss's, mapped back by V; exact almost everywhere
for the same reason (the sorting permutation is locally constant; ties along a random direction need
equal feature vectors). Derivation and loop twin: ``reference/style_losses/sliced_wasserstein.py``.

V is drawn once per stage and layer from the run's seed (``model/style_loss.py``), so within one
L-BFGS-B run E is one fixed function; options ``directions`` (K, default N) and ``quantile_rule``.
"""
from ....reference.style_losses import sliced_wasserstein as sw
from ....reference.style_losses.quantiles import mixture_bytes, quantiles_bytes, quantiles_scratch_bytes
from ....validate import whole_number
from ..base import register
from .base import DistributionTerm, host_array, quantile_rule


@register
class SlicedWassersteinTerm(DistributionTerm):
    """E at ``layer`` against the projections' quantile table (``target.directions``: V)."""

    name = "sliced_wasserstein"
    default_weight = 2.5e4  # calibrated: docs/style_losses.md, "Default weights"
    quantile_table = True

    @classmethod
    def make_target(cls, features, blend, rng, options):
        rule = quantile_rule(options)
        k = options.get("directions")
        n = features[0].shape[1]
        k = n if k is None else whole_number("number of directions", k, 1)
        V = sw.draw_directions(n, k, rng)
        target = sw.sliced_wasserstein_targets(features, blend, V, rule)
        return target, {"directions": V}, {"directions": k, "quantile_rule": rule}

    @classmethod
    def buffer_bytes(cls, n, m, t, itemsize=4, options=None, styles=1):
        k = (options or {}).get("directions") or n
        kept = (n * k * itemsize + mixture_bytes(k, t, itemsize, shared=styles == 1)
                + quantiles_bytes(k, m, itemsize))
        return kept, max(sw.sliced_wasserstein_scratch_bytes(n, m, k, itemsize),
                         quantiles_scratch_bytes(k, t, m) + k * t * itemsize)  # + the projections

    def loss(self, F):
        return sw.sliced_wasserstein_loss(F, self.target, self.q(F.shape[2] * F.shape[3]))

    def loss_naive(self, F):
        features, blend = self.naive_sources()
        return sw.sliced_wasserstein_loss_naive(F, features, blend, host_array(self.target.directions),
                                                self.target.rule)

    @classmethod
    def check_case(cls, rng):
        return cls.case(rng, {"directions": 6})  # more directions than channels: V is N x K, any K
