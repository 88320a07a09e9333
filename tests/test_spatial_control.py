"""Spatial control with guided Gram matrices (Gatys et al., CVPR 2017): guides, loss, engines, masks, runs."""
import numpy as np
import pytest
from PIL import Image

from nstyle import stylize
from nstyle.app.run.masks import colors_in_use, parse_color, plan_regions, read_segmentation
from nstyle.app.run.memory import estimate
from nstyle.app.run.stylize import prepare
from nstyle.errors import InputError
from nstyle.model.arch import LAYER_NAMES
from nstyle.model.gradcheck import directional_check, numerical_gradient, random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19
from nstyle.reference.guides import GUIDE_MODES, normalise_guide, propagate_guide, propagate_guide_naive
from nstyle.reference.losses import guided_style_loss

from .conftest import require_torch
from .torch_reference import torch_objective

RUN = LAYER_NAMES[:LAYER_NAMES.index("relu3_1") + 1]
LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def halves(h, w, split=None):
    left = np.zeros((h, w))
    left[:, :split or w // 2] = 1
    return {"left": left, "right": 1 - left}


# --- guides ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", GUIDE_MODES)
def test_propagation_matches_a_naive_transcription(rng, mode):
    """Odd sizes (pools floor) and a blobby mask; soft values for simple, thresholded for the others."""
    mask = (rng.uniform(size=(23, 29)) > 0.4) * 1.0 if mode != "simple" else rng.uniform(size=(23, 29))
    mask[5:15, 6:20] = 1
    fast, naive = propagate_guide(mask, RUN, mode), propagate_guide_naive(mask, RUN, mode)
    for name in RUN:
        assert fast[name].shape == naive[name].shape, name
        np.testing.assert_allclose(fast[name], naive[name], rtol=1e-15, atol=0, err_msg=name)
    assert fast["relu3_1"].shape == (5, 7)


def test_inside_erodes_all_dilates_simple_averages():
    mask = np.zeros((16, 16))
    mask[4:12, 4:12] = 1
    inside, everywhere, simple = (propagate_guide(mask, ("conv1_1", "relu1_1", "pool1"), m) for m in GUIDE_MODES)
    assert inside["conv1_1"].sum() == 36 and everywhere["conv1_1"].sum() == 100  # 6x6 and 10x10
    # 2x2 windows wholly inside the eroded 6x6 block: 2x2; touching the dilated 10x10 one: 6x6
    assert inside["pool1"].sum() == 4 and everywhere["pool1"].sum() == 36 and simple["pool1"].sum() == 16
    assert simple["relu1_1"] is simple["conv1_1"]  # a ReLU keeps its convolution's guide


@pytest.mark.parametrize("mode", GUIDE_MODES)
def test_a_whole_image_region_stays_whole_and_simple_is_linear(rng, mode):
    """The outside of the image neither erodes nor dilates; simple is linear in the (soft) mask."""
    for g in propagate_guide(np.ones((13, 18)), RUN, mode).values():
        assert (g == 1).all()
    if mode == "simple":
        a, b = rng.uniform(size=(2, 20, 24))
        pa, pb, pab = (propagate_guide(m, RUN, mode) for m in (a, b, 0.3 * a + 0.7 * b))
        for name in RUN:
            np.testing.assert_allclose(pab[name], 0.3 * pa[name] + 0.7 * pb[name], rtol=1e-13)


def test_normalised_guides_have_unit_mean_square_and_empty_ones_are_none():
    g = np.zeros((4, 5))
    assert normalise_guide(g) is None
    g[1:3, 1:4] = 1
    assert np.mean(normalise_guide(g) ** 2) == pytest.approx(1.0)


# --- the guided loss ----------------------------------------------------------------------------------

def test_guided_loss_gradient_by_central_differences(rng):
    F = rng.standard_normal((1, 3, 4, 5))
    guides = [normalise_guide(rng.uniform(size=(4, 5))), normalise_guide((rng.uniform(size=(4, 5)) > 0.5) * 1.0)]
    targets = [(lambda a: a @ a.T)(rng.standard_normal((3, 20))) for _ in range(2)]
    f = lambda F: guided_style_loss(F, guides, targets, [0.3, 0.7])[0]
    _, g = guided_style_loss(F, guides, targets, [0.3, 0.7])
    assert rel_error(g, numerical_gradient(f, F.copy())) < 1e-7


@pytest.mark.parametrize("mode", GUIDE_MODES)
def test_guided_objective_directional_derivative(rng, mode):
    """Through the whole network in float64, two regions, two styles of other sizes, one style only
    guiding one region; the guides are constants, so the loss is smooth in the pixels."""
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64, engine="reference")
    obj = StyleObjective(vgg, content=random_image(rng, 32, 40), styles=[random_image(rng, 28, 36),
                         random_image(rng, 40, 44)], style_blend=[0.4, 0.6], style_layers=LAYERS,
                         content_layers=("relu2_1",), tv_weight=1e-2, content_masks=halves(32, 40, 17),
                         style_masks=[halves(28, 36, 13), {"right": None}], region_weights={"left": 2},
                         mask_mode=mode)
    x = random_image(rng, 32, 40)
    _, g = obj.value_and_grad(x)
    assert directional_check(obj.value, g, x, rng, eps=1e-3) < 1e-6


def guided_objective(engine, params, images, masks, mode="inside", device="cpu"):
    content, s1, s2 = images
    return StyleObjective(VGG19(params, dtype=np.float64, engine=engine, device=device), content=content,
                          styles=[s1, s2], style_blend=[0.4, 0.6], style_layers=LAYERS, content_layers=("relu2_1",),
                          content_masks=masks[0], style_masks=masks[1], mask_mode=mode)


def test_guided_loss_matches_torch_on_two_regions(rng):
    torch = require_torch()
    params = random_vgg_params(rng)
    images = [random_image(rng, 32, 40), random_image(rng, 28, 36), random_image(rng, 48, 52)]
    masks = (halves(32, 40, 15), [halves(28, 36, 20), {"left": np.ones((48, 52)) * (np.arange(52) < 30)}])
    tmasks = ({k: torch.tensor(v) for k, v in masks[0].items()},
              [{k: torch.tensor(v) for k, v in masks[1][0].items()}, {"left": torch.tensor(masks[1][1]["left"])}])
    tparams = {k: (torch.tensor(w, dtype=torch.float64), torch.tensor(b, dtype=torch.float64))
               for k, (w, b) in params.items()}
    x = random_image(rng, 32, 40)
    for mode in GUIDE_MODES:
        f, g = guided_objective("reference", params, images, masks, mode).value_and_grad(x)
        loss = torch_objective(torch, tparams, torch.tensor(images[0]), [torch.tensor(s) for s in images[1:]],
                               [0.4, 0.6], ("relu2_1",), LAYERS, [1 / 3] * 3, 1.0, 1e3, 0.0, masks=tmasks,
                               mask_mode=mode)
        tx = torch.tensor(x, requires_grad=True)
        tf = loss(tx)
        tf.backward()
        assert abs(f - tf.item()) < 1e-10 * abs(tf.item()), mode
        assert rel_error(g, tx.grad.numpy()) < 1e-10, mode


@pytest.mark.parametrize("engine", ["reference", "cpu"])
def test_one_region_covering_everything_is_the_unguided_loss(rng, engine):
    params = random_vgg_params(rng)
    images = [random_image(rng, 24, 32), random_image(rng, 20, 28), random_image(rng, 32, 32)]
    x = random_image(rng, 24, 32)
    for mode in GUIDE_MODES:
        guided = guided_objective(engine, params, images, ({"all": np.ones((24, 32))},
                                                           [{"all": None}, {"all": np.ones((32, 32))}]), mode)
        plain = StyleObjective(VGG19(params, dtype=np.float64, engine=engine), content=images[0], styles=images[1:],
                               style_blend=[0.4, 0.6], style_layers=LAYERS, content_layers=("relu2_1",))
        (f1, g1), (f2, g2) = guided.value_and_grad(x), plain.value_and_grad(x)
        assert abs(f1 - f2) <= 1e-12 * abs(f2) and rel_error(g1, g2) < 1e-12, mode


@pytest.mark.parametrize("engine", ["cpu", "gpu"])
def test_every_engine_gives_the_references_guided_loss(rng, engine):
    """The guided loss runs on each engine's plain feature arrays (the GPU engine on NumPy arrays runs
    its kernels' emulation)."""
    params = random_vgg_params(rng)
    images = [random_image(rng, 24, 32), random_image(rng, 20, 28), random_image(rng, 32, 32)]
    masks = (halves(24, 32, 11), [halves(20, 28), {"right": None}])
    x = random_image(rng, 24, 32)
    f_ref, g_ref = guided_objective("reference", params, images, masks, "all").value_and_grad(x)
    f, g = guided_objective(engine, params, images, masks, "all").value_and_grad(x)
    assert abs(f - f_ref) <= 1e-12 * abs(f_ref) and rel_error(g, g_ref) < 1e-12


def test_a_region_empty_at_a_layer_is_left_out_and_said(rng):
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64)
    masks = halves(24, 32, 4)  # "left" is 4 pixels wide: eroded away by relu2_1
    obj = StyleObjective(vgg, content=random_image(rng, 24, 32), styles=[random_image(rng, 24, 32)],
                         style_layers=LAYERS, content_masks=masks, style_masks=[halves(24, 32)])
    assert any("region left is empty in the output at relu2_1, relu3_1" in n for n in obj.notes)
    assert [w for _, _, w in obj.term("style/relu2_1").regions] == [pytest.approx(0.5)]  # right only, weight kept
    f, g = obj.value_and_grad(random_image(rng, 24, 32))
    assert np.isfinite(f) and np.isfinite(g).all()


# --- masks ---------------------------------------------------------------------------------------------

def two_colour_mask(w, h, split, left=(255, 0, 0), right=(0, 0, 255), blur=True):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, :split] = left
    arr[:, split:] = right
    if blur:  # an anti-aliased edge: two columns of blends
        arr[:, split - 1] = (np.array(left) * 0.7 + np.array(right) * 0.3).astype(np.uint8)
        arr[:, split] = (np.array(left) * 0.3 + np.array(right) * 0.7).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def test_anti_aliased_edges_snap_to_the_colours_in_use():
    seg = read_segmentation(two_colour_mask(40, 30, 20), "mask", (80, 60))
    assert sorted(seg.keys) == ["blue", "red"]
    masks = seg.masks((40, 30))
    assert masks["red"][:, :20].all() and not masks["red"][:, 20:].any()
    assert colors_in_use(np.asarray(two_colour_mask(40, 30, 20, (10, 200, 30)))) [0] in [(10, 200, 30), (0, 0, 255)]
    assert parse_color("#0a0B0c") == (10, 11, 12) and parse_color("Grey") == (128, 128, 128)


@pytest.mark.parametrize("options,message", [
    ({"region_styles": "red=1,blue=3"}, "blue=3 names no style image"),
    ({"region_styles": "red=1"}, "colour(s) blue have no source region"),
    ({"region_styles": "red=1,blue=2,green=1"}, "colour green is not in the content mask"),
    ({"region_styles": "red=1,pink=2"}, "unknown colour 'pink'"),
    ({"region_styles": "red=1,blue=2", "style_masks": ["a", "b"]}, "not both"),
    ({"style_masks": [two_colour_mask(30, 30, 10)]}, "1 style mask(s) given for 2 style image(s)"),
    ({"style_masks": [two_colour_mask(30, 30, 10, (255, 0, 0), (0, 255, 0)), two_colour_mask(30, 30, 10, (0, 255, 0),
                                                                                              (255, 0, 0))]},
     "colour(s) blue have no source region"),
    ({"region_styles": "red=1,blue=2", "region_weights": "red=-1"}, "red=-1 is not a finite number"),
    ({}, "needs style masks"),
])
def test_bad_spatial_settings_are_refused_before_any_work(options, message):
    content, styles = Image.new("RGB", (40, 30)), [Image.new("RGB", (30, 30))] * 2
    with pytest.raises(InputError) as err:
        plan_regions(content, styles, two_colour_mask(40, 30, 20), **options)
    assert message in err.value.message


def test_a_mask_of_another_shape_and_masks_without_a_content_mask_are_refused(tmp_path):
    with pytest.raises(InputError, match="aspect ratios differ by more than 2%"):
        prepare(Image.new("RGB", (40, 30)), Image.new("RGB", (30, 30)), content_mask=two_colour_mask(40, 28, 20),
                region_styles="red=1,blue=1")
    with pytest.raises(InputError, match="need a content mask"):
        prepare(Image.new("RGB", (40, 30)), Image.new("RGB", (30, 30)), region_styles="red=1")
    with pytest.raises(InputError, match="cannot|not|no such"):
        prepare(Image.new("RGB", (40, 30)), Image.new("RGB", (30, 30)), content_mask=tmp_path / "missing.png",
                region_styles="red=1")


def test_the_memory_estimate_counts_targets_and_guides_per_region():
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    plain, two, four = (estimate(256, 256, ("relu4_2",), layers, [(256, 256)], regions=r) for r in (0, 2, 4))
    assert "guides" not in plain.parts and two.parts["guides"] < four.parts["guides"]
    assert plain.parts["targets"] < two.parts["targets"] < four.parts["targets"]


# --- whole runs ----------------------------------------------------------------------------------------

def test_each_half_ends_nearer_its_own_styles_colours(rng):
    """A synthetic two-region photo; style 1 warm, style 2 cool. Guided, each half of the result ends
    nearer its own style's mean colour than the other half does."""
    h, w = 40, 64
    photo = np.clip(rng.normal(128, 30, (h, w, 3)), 0, 255).astype(np.uint8)
    warm = np.clip(rng.normal((200, 90, 40), 25, (40, 40, 3)), 0, 255).astype(np.uint8)
    cool = np.clip(rng.normal((40, 110, 210), 25, (40, 40, 3)), 0, 255).astype(np.uint8)
    out = stylize(photo, [warm, cool], size=64, iters=25, content_mask=two_colour_mask(w, h, 32, blur=False),
                  region_styles={"red": 1, "blue": 2}, vgg=VGG19(random_vgg_params(rng)),
                  content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))
    arr = np.asarray(out, dtype=np.float64)
    left, right = arr[:, :32].mean(axis=(0, 1)), arr[:, 32:].mean(axis=(0, 1))
    mw, mc = warm.mean(axis=(0, 1)), cool.mean(axis=(0, 1))
    assert np.linalg.norm(left - mw) < np.linalg.norm(right - mw)
    assert np.linalg.norm(right - mc) < np.linalg.norm(left - mc)
    assert np.linalg.norm(left - mw) < 0.5 * np.linalg.norm(left - mc)


def test_guided_style_reconstruction_runs(rng):
    from nstyle.app.figures.reconstruct import reconstruct
    image = np.concatenate([np.full((32, 24, 3), (200, 60, 40), np.uint8), np.full((32, 24, 3), (40, 80, 200), np.uint8)], 1)
    out = reconstruct(image, style_layers=("relu1_1", "relu2_1"), mask=two_colour_mask(48, 32, 24, blur=False),
                      size=48, iters=5, vgg=VGG19(random_vgg_params(rng)))
    assert out.size == (48, 32)


def test_the_command_line_refuses_bad_masks_in_one_line(tmp_path, capsys):
    from nstyle.cli import main as cli
    Image.new("RGB", (40, 30), (90, 120, 150)).save(tmp_path / "c.png")
    Image.new("RGB", (30, 30), (200, 40, 40)).save(tmp_path / "s.png")
    two_colour_mask(40, 30, 20).save(tmp_path / "m.png")
    base = ["stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o", str(tmp_path / "o.png")]
    for extra, needle in ((["--content-mask", str(tmp_path / "nope.png"), "--region-styles", "red=1"], "nope.png"),
                          (["--content-mask", str(tmp_path / "m.png"), "--region-styles", "red=1,blue=2"], "blue=2"),
                          (["--content-mask", str(tmp_path / "m.png"), "--region-styles", "red=1"], "blue"),
                          (["--style-masks", str(tmp_path / "m.png")], "content mask")):
        assert cli.main(base + extra) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.startswith("nstyle: error")]) == 1
    assert not (tmp_path / "o.png").exists()
    code = cli.main(base[:3] + ["--content-mask", str(tmp_path / "m.png"), "--region-styles", "red=1,blue=1",
                                "--mask-mode", "simple", "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0 and "regions          " in out and "mask mode simple" in out
