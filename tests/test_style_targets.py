"""Style targets are per-position statistics: A_l = M_l * sum_s b_s (F_s F_s^T) / M_s,l.

A style image of another size than the output (``--style-scale``, another aspect ratio, blends of
images of different sizes) must give the same statistics; with equal sizes the target is the paper's
F_s F_s^T bit for bit.
"""
import numpy as np
import pytest

from nstyle.model.gradcheck import random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective, layer_positions
from nstyle.model.vgg import VGG19
from nstyle.reference.losses import blended_gram, content_loss, gram_matrix, scaled_blended_gram, style_layer_loss

from .conftest import require_torch
from .torch_reference import torch_objective

LAYERS = ("relu1_1", "relu2_1", "relu3_1")


@pytest.mark.parametrize("engine", ["reference", "cpu"])
def test_equal_sizes_give_the_papers_loss_exactly(rng, engine):
    """Targets, value and gradient as the paper writes them (float64, two blended styles of the
    output's size), computed here from the reference ops."""
    params = random_vgg_params(rng)
    content, s1, s2, x = (random_image(rng, 32, 40) for _ in range(4))
    vgg = VGG19(params, dtype=np.float64, engine=engine)
    obj = StyleObjective(vgg, content=content, styles=[s1, s2], style_blend=[0.25, 0.75], style_layers=LAYERS,
                         content_layers=("relu2_1",))
    ref = VGG19(params, dtype=np.float64, engine="reference")
    feats = [ref.forward(s, LAYERS)[0] for s in (s1, s2)]
    want = {n: blended_gram([gram_matrix(f[n]) for f in feats], [0.25, 0.75]) for n in LAYERS}
    for n in LAYERS:
        A = obj.term(f"style/{n}").target(layer_positions(32, 40, n))
        if engine == "reference":
            assert np.array_equal(A, want[n]), n  # bit for bit
        else:
            assert rel_error(A, want[n]) < 1e-13, n
    f, _ = obj.value_and_grad(x)
    fx = ref.forward(x, LAYERS)[0]
    P = ref.forward(content, ("relu2_1",))[0]["relu2_1"]
    expected = content_loss(fx["relu2_1"], P)[0] + 1e3 * sum(style_layer_loss(fx[n], want[n])[0] / 3 for n in LAYERS)
    assert f == pytest.approx(expected, rel=1e-13)


def test_scaled_blend_is_blended_gram_when_sizes_are_equal(rng):
    g1, g2 = (rng.standard_normal((5, 5)) for _ in range(2))
    assert np.array_equal(scaled_blended_gram([g1, g2], [70, 70], [0.4, 0.6], 70), blended_gram([g1, g2], [0.4, 0.6]))
    A = scaled_blended_gram([g1, g2], [35, 140], [0.4, 0.6], 70)
    np.testing.assert_allclose(A, 0.4 * 2 * g1 + 0.6 * 0.5 * g2, rtol=1e-15)


def periodic_texture(n):
    """Three channels of sines whose periods divide n: a texture that tiles seamlessly."""
    yy, xx = np.mgrid[0:n, 0:n] * 2 * np.pi / n
    return np.stack([60 * np.sin(2 * xx) + 40 * np.cos(4 * yy), 50 * np.sin(xx + 3 * yy),
                     70 * np.cos(3 * xx - yy) + 20 * np.sin(8 * xx)])[None]


def targets(vgg, style, out_hw, layers):
    obj = StyleObjective(vgg, content=None, content_weight=0.0, styles=[style], style_layers=layers)
    return {n: obj.term(f"style/{n}").target(layer_positions(*out_hw, n)) for n in layers}


def test_a_texture_tiled_2x2_gives_the_same_targets(rng):
    """The same periodic texture, once and tiled 2 x 2: the targets for one output agree within a few
    percent at relu1_1 (what differs is the zero padding along the borders), where the Gram matrices
    themselves -- the targets before -- differ by 4x."""
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64)
    texture = periodic_texture(64)
    tiled = np.tile(texture, (1, 1, 2, 2))
    once, twice = targets(vgg, texture, (64, 64), ("relu1_1",)), targets(vgg, tiled, (64, 64), ("relu1_1",))
    assert rel_error(twice["relu1_1"], once["relu1_1"]) < 0.03
    grams = [gram_matrix(vgg.forward(s, ["relu1_1"])[0]["relu1_1"]) for s in (texture, tiled)]
    assert np.linalg.norm(grams[1]) / np.linalg.norm(grams[0]) == pytest.approx(4.0, rel=0.05)


def test_tiling_with_the_borders_set_aside_gives_equal_targets_exactly(rng):
    """Borders set aside exactly: with zero biases a zero input gives zero features at every layer, so a
    texture inside a zero frame wider than the receptive fields, tiled 2 x 2, is four copies that do not
    see each other -- its Gram matrices are exactly 4x the single one's, and the targets are equal."""
    params = {k: (w, np.zeros_like(b)) for k, (w, b) in random_vgg_params(rng).items()}
    vgg = VGG19(params, dtype=np.float64)
    framed = np.zeros((1, 3, 64, 64))
    framed[:, :, 16:48, 16:48] = periodic_texture(32)
    tiled = np.tile(framed, (1, 1, 2, 2))
    once, twice = targets(vgg, framed, (48, 56), LAYERS), targets(vgg, tiled, (48, 56), LAYERS)
    for n in LAYERS:
        assert rel_error(twice[n], once[n]) < 1e-12, n
        g = [gram_matrix(vgg.forward(s, [n])[0][n]) for s in (framed, tiled)]
        assert rel_error(g[1], 4 * g[0]) < 1e-12, n


def test_the_target_follows_the_output_size(rng):
    """Without a content image (style reconstruction) the output's size is known only at evaluation:
    the target is rebuilt for each size and is always M times the per-position average."""
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64)
    style = random_image(rng, 24, 32)
    obj = StyleObjective(vgg, content=None, content_weight=0.0, styles=[style], style_weight=1.0,
                         style_layers=("relu1_1",))
    G = gram_matrix(vgg.forward(style, ["relu1_1"])[0]["relu1_1"])
    for h, w in ((24, 32), (48, 32), (12, 16)):
        obj.value_and_grad(random_image(rng, h, w))
        m, A = obj.style_targets["relu1_1"]
        assert m == h * w and rel_error(A, G * (h * w) / (24 * 32)) < 1e-14


@pytest.mark.parametrize("style_hw", [(64, 80), (16, 24)], ids=["style twice as large", "style half as large"])
def test_unequal_sizes_match_torch(rng, style_hw):
    torch = require_torch()
    params = random_vgg_params(rng)
    tparams = {k: (torch.tensor(w, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
               for k, (w, b) in params.items()}
    content, x = random_image(rng, 32, 40), random_image(rng, 32, 40)
    styles = [random_image(rng, *style_hw), random_image(rng, 40, 28)]
    obj = StyleObjective(VGG19(params, dtype=np.float64), content=content, styles=styles, style_blend=[0.6, 0.4],
                         style_layers=LAYERS, content_layers=("relu2_1",), tv_weight=1e-2)
    loss = torch_objective(torch, tparams, torch.tensor(content), [torch.tensor(s) for s in styles], [0.6, 0.4],
                           ("relu2_1",), LAYERS, [1 / 3] * 3, 1.0, 1e3, 1e-2)
    f, g = obj.value_and_grad(x)
    tx = torch.tensor(x, requires_grad=True)
    tf = loss(tx)
    tf.backward()
    assert abs(f - tf.item()) < 1e-10 * abs(tf.item())
    assert rel_error(g, tx.grad.numpy()) < 1e-10
