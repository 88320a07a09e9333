"""The memory estimate counts the style losses' buffers: each term class's own count of what it keeps
against the arrays a built term holds, and the estimate's parts for a run with each choice."""
import numpy as np
import pytest

from nstyle.app.run import memory
from nstyle.backend import to_host
from nstyle.model.style_loss import style_losses
from nstyle.model.terms.distribution import DistributionTerm

LOSSES = [name for name, cls in style_losses().items() if issubclass(cls, DistributionTerm)]


def kept_arrays(term):
    """Bytes of the arrays a built term holds: its target's arrays and its q table."""
    total = 0
    for value in vars(term.target).values():
        a = to_host(value) if hasattr(value, "nbytes") else None
        total += 0 if a is None else a.nbytes
    return total + (term.cached[1].nbytes if term.cached else 0)


@pytest.mark.parametrize("styles", [1, 2])
@pytest.mark.parametrize("name", LOSSES)
def test_a_term_keeps_what_its_class_counts(rng, name, styles):
    cls = style_losses()[name]
    n, h, w = 16, 12, 10
    feats = [rng.standard_normal((1, n, 9 + 3 * s, 8)).astype(np.float32) for s in range(styles)]
    options = {"fourier_features": 256, "directions": 24}
    term = cls.from_features("relu2_1", feats, [1.0 / styles] * styles, rng, options=options)
    term.prepare(4 * h, 4 * w)  # relu2_1 is one pool down: h x w positions... at half the pixels
    m = (4 * h // 2) * (4 * w // 2)
    t = sum(f.shape[2] * f.shape[3] for f in feats)
    kept, scratch = cls.buffer_bytes(n, m, t, 4, options, styles)
    assert kept == pytest.approx(kept_arrays(term), rel=0.02), name
    assert scratch >= 0


def test_the_estimate_has_a_part_for_the_losses_beyond_gram():
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

    def est(style_loss, size=256, style=(256, 256)):
        return memory.estimate(size, size, ("relu4_2",), layers, [style], style_loss=style_loss)

    gram, hist, both = est(None), est("histogram"), est("gram:1,histogram:0.5")
    assert "style loss targets" not in gram.parts
    assert hist.parts["targets"] < gram.parts["targets"] == both.parts["targets"]  # no Gram targets kept
    assert hist.parts["style loss targets"] == both.parts["style loss targets"] > 0
    # the table holds every style position, q every output position: as many of each here; a style
    # twice as wide doubles the table's half
    wide = est("histogram", style=(256, 512))
    assert 1.45 < wide.parts["style loss targets"] / hist.parts["style loss targets"] < 1.55
    # the Gaussian MMD keeps D features per layer, whatever the image
    g1, g2 = est("mmd_gaussian", 128), est("mmd_gaussian", 512)
    assert g1.parts["style loss targets"] == g2.parts["style loss targets"]
    assert est("sliced_wasserstein").parts["style loss scratch"] > 0
    assert gram.total < hist.total
