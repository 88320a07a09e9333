"""What the style terms beyond the Gram matrix share: a target built once from the style mixture's
features at a layer (with its random draws, if any), a loss against it, and the bookkeeping around it.

The losses themselves -- value, hand-derived gradient, naive twin -- are plain functions in
``reference/style_losses/`` (one module each, derivation in its docstring). A term here binds one of
them to a layer of the network:

    term = HistogramTerm.from_features("relu3_1", [S_1, S_2], blend=[0.3, 0.7], rng=...)
    value, dE/dF = term.loss(F)

- ``make_target(features, blend, rng, options)``: the loss's target from the style features (one
  (1, N, h_s, w_s) array per style image) and what it drew (``draws``: directions, Fourier features,
  bandwidth). Every target is a statistic of the mixture per position, so it serves any output size and
  every tile: what depends on the output's M (a quantile table read at M) is built by ``prepare`` and
  kept until the size changes.
- Randomness comes only from ``rng``, a NumPy Generator the objective derives from its seed, the stage
  and the layer (``model/style_loss.py``): within one L-BFGS-B run the loss is one fixed function of the
  pixels. ``record`` is what a run's log keeps of it.
- ``sources``: the style features and blend on the host in float64, kept only when asked
  (``keep_sources``, as the check cases do): the naive twin rebuilds the target from them by its own
  route (pooled samples, loops), so it checks the target as well as the loss.
- ``normalization_factor``: how the term grows when channel c is multiplied by s_c (a normalised
  network), measured on the mixture's per-channel second moments.

Every one of these is a per-position statistic, the same at every size: scaling "mean", like the Gram
term, and group "style", so ``style/<layer>`` and the breakdown keep meaning what they mean for Gram.
"""
import dataclasses
import zlib

import numpy as np

from ....backend import to_device, to_host
from ....reference.style_losses.mixture import feature_matrix, row_dots
from ....reference.style_losses.quantiles import DEFAULT_RULE, RULES
from ....validate import choice
from ..base import Term, net_input


def style_features(vgg, styles, layers):
    """{layer: [one (1, N, h_s, w_s) array per style image]}: one forward per image through ``layers``
    (copies: an engine may reuse the forward's buffers)."""
    features = {name: [] for name in layers}
    for s in styles:
        feats, _ = vgg.forward(net_input(vgg, s), layers)
        for name in layers:
            features[name].append(feats[name].copy())
        del feats
    return features


def loss_seed(seed, stage, layer_index, name):
    """The entropy of one loss's draw at one layer of one stage: the run's seed, the stage, the layer's
    place in VGG-19 and the loss's name (so two losses on one layer draw independently, and adding a
    layer or a loss leaves the others' draws as they were)."""
    return [int(seed) % 2 ** 63, int(stage), int(layer_index), zlib.crc32(name.encode())]


def second_moments(features, blend):
    """The mixture's mean of f_c^2 per channel (N,), host float64: sum_s b_s mean_j S_s[c, j]^2 (summed
    where the features are, row by row: no copy of them)."""
    total = 0.0
    for S, b in zip(features, blend):
        Sm = feature_matrix(S)
        total = total + b * np.asarray(to_host(row_dots(Sm, Sm)), dtype=np.float64) / Sm.shape[1]
    return total


def moment_factor(moments, s):
    """sum_c s_c^2 m_c / sum_c m_c: how a sum of squared per-channel differences on the scale of the
    features m_c grows when channel c is multiplied by s_c (None when m is zero)."""
    if moments is None or not np.sum(moments) > 0:
        return None
    return float((np.asarray(s, dtype=np.float64) ** 2 * moments).sum() / np.sum(moments))


class DistributionTerm(Term):
    """A style loss at ``layer`` against ``target`` (``make_target``'s). Subclasses set ``name``,
    ``default_weight`` (its weight relative to the Gram term's at the same style weight, calibrated in
    docs/style_losses.md) and write ``make_target``, ``loss``, ``loss_naive`` and ``check_case``.

    draws: the random draws the target was made with (for the naive twin and the oracle); record: the
    log's account of them (seed, bandwidth, sizes); moments: the mixture's per-channel second moments
    (``normalization_factor``); sources: (host float64 style features, blend) or None."""

    group, scaling = "style", "mean"
    default_weight = None
    quantile_table = False   # True: the loss reads a quantile table at the output's M (q cached per size)

    def __init__(self, layer, target, layer_weight=1.0, draws=None, record=None, moments=None, sources=None):
        self.layer, self.target, self.layer_weight = layer, target, layer_weight
        self.draws, self.record = dict(draws or {}), dict(record or {})
        self.moments, self.sources = moments, sources
        self.cached = None  # (m, q): the quantiles for the last output size seen

    @classmethod
    def make_target(cls, features, blend, rng, options):
        """(target, draws, record) for style ``features`` with ``blend`` (see the module docstring)."""
        raise NotImplementedError

    @classmethod
    def buffer_bytes(cls, n, m, t, itemsize=4, options=None, styles=1):
        """(kept, scratch): the bytes this loss keeps at a layer of n channels (its target and, for the
        sorting losses, q for the output's m positions, from t style positions in all) and the most one
        evaluation -- or building q -- holds besides F and the gradient. For the memory estimate."""
        raise NotImplementedError

    @classmethod
    def from_features(cls, layer, features, blend, rng=0, layer_weight=1.0, options=None, keep_sources=False):
        """The term at ``layer`` from each style image's features there. rng: a Generator or a seed."""
        rng = np.random.default_rng(rng)
        target, draws, record = cls.make_target(features, list(blend), rng, dict(options or {}))
        sources = None
        if keep_sources:
            sources = ([np.asarray(to_host(S), dtype=np.float64) for S in features], list(blend))
        return cls(layer, target, layer_weight, draws, record, second_moments(features, blend), sources)

    def bind(self, vgg):
        """A target made elsewhere (on the host) moves to the network's device;
        its dtypes stay (the losses cast what they read)."""
        fields = {f.name: getattr(self.target, f.name) for f in dataclasses.fields(self.target)}
        moved = {k: to_device(v, vgg.device) for k, v in fields.items() if isinstance(v, np.ndarray)}
        if any(moved[k] is not fields[k] for k in moved):
            self.target, self.cached = dataclasses.replace(self.target, **moved), None

    def q(self, m):
        """The target's quantiles for an output of m positions at this layer (kept until m changes)."""
        from ....reference.style_losses import quantiles  # noqa: PLC0415 -- only the sorting losses need it

        if self.cached is None or self.cached[0] != m:
            self.cached = None  # drop the old table before building the new one
            self.cached = (m, quantiles(self.target, m))
        return self.cached[1]

    def prepare(self, height, width):
        if self.quantile_table:
            from ...arch import layer_positions  # noqa: PLC0415

            self.q(layer_positions(height, width, self.layer))

    def naive_sources(self):
        """(style features, blend) for the naive twin: only a term built with ``keep_sources`` has them."""
        if self.sources is None:
            raise ValueError(f"this {self.name} term was built without keep_sources: its naive twin needs "
                             "the style features")
        return self.sources

    def normalization_factor(self, s):
        return moment_factor(self.moments, s)

    @classmethod
    def case(cls, rng, options=None, layer="relu2_1"):
        """A check case: F (1, 4, 5, 6) and two style images of other sizes, blended 0.3 / 0.7, float64,
        sources kept for the naive twin."""
        F = rng.standard_normal((1, 4, 5, 6))
        styles = [rng.standard_normal((1, 4, 3, 3)) * 1.5 + 0.3, rng.standard_normal((1, 4, 4, 5)) * 0.8]
        term = cls.from_features(layer, styles, [0.3, 0.7], rng, options=options, keep_sources=True)
        return term, F


def quantile_rule(options):
    """The ``quantile_rule`` option of a quantile-table term, checked (default: DESIGN.md's midpoint)."""
    return choice("quantile rule", options.get("quantile_rule", DEFAULT_RULE), RULES)


def host_array(a):
    """A target's array on the host in float64 (for the naive twins)."""
    return np.asarray(to_host(a), dtype=np.float64)
