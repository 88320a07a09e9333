"""Weights that make no picture (issue 26 item 6): weights whose normalisation overflows or underflows are
refused up front -- at plan time, before any weights file is opened, and by the objective itself. Settings
whose start is already the loss's minimum (init content, no style or tv term) are refused up front too,
unless zero iterations were asked for; a run that stops at its start for another reason says so instead of
a bare "done" (it may be right: the content and the style are the same picture)."""
import numpy as np
import pytest
from PIL import Image

from nstyle import VGG19, StyleObjective, stylize
from nstyle.app.files.imageio import preprocess
from nstyle.app.run.stops import NothingPainted
from nstyle.app.run.stylize import prepare
from nstyle.errors import InputError
from nstyle.model.gradcheck import random_vgg_params

from .clitools import FAST_LAYERS, assert_one_line_error, gradient_image, nstyle, random_weights_file, stripes_image

FAST = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}
MISSING = "/nonexistent/never-opened.h5"  # a plan-time refusal comes before the weights are looked for


def two_colour_mask(w, h):
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2:] = (0, 0, 255)
    return Image.fromarray(arr, "RGB")


CASES = [
    ({"style_blend": [1e308, 1e308]}, "add up to more than the largest float"),
    ({"style_blend": [1e-320, 1.0]}, "style blend weight 9.99989e-321 is too small"),
    ({"style_blend": [1e300, 1e-300]}, "style blend weight 1e-300 is lost beside the others"),
    ({"style_layer_weights": [1e308, 1.0]}, "times the style weight 1000 is inf"),
    ({"style_layer_weights": [1e-320, 1.0]}, "style layer weight 9.99989e-321 is too small"),
    ({"style_layer_weights": [1e-306, 1.0], "style_weight": 1e-5}, "too small to compute with"),
    ({"region_weights": {"red": 1e308, "blue": 1e308}}, "region weights add up to more"),
    ({"region_weights": {"red": 1e-320, "blue": 1.0}}, "region weight 9.99989e-321 is too small"),
    ({"region_weights": {"red": 1e-300, "blue": 1e300}}, "region weight 1e-300 is lost"),
    ({"content_weight": 1e-320}, "content weight 9.99989e-321 is too small"),
    ({"style_weight": 5e-324}, "style weight 4.94066e-324 is too small"),
    ({"tv_weight": 1e-310}, "tv weight 1e-310 is too small"),
]


@pytest.mark.parametrize("options, message", CASES)
def test_weights_that_normalise_to_nothing_are_refused_at_plan_time(options, message):
    content, styles = gradient_image(40, 30), [stripes_image(30, 30), stripes_image(30, 30, seed=2)]
    if "region_weights" in options:
        options = {**options, "content_mask": two_colour_mask(40, 30), "region_styles": "red=1,blue=2"}
    with pytest.raises(InputError) as info:
        prepare(content, styles, size=32, iters=3, weights=MISSING, **FAST, **options)
    assert message in info.value.message, (options, info.value.message)


@pytest.fixture(scope="module")
def vgg():
    return VGG19(random_vgg_params(np.random.default_rng(0)))


@pytest.mark.parametrize("options, message", [
    ({"style_blend": [1e308, 1e308]}, "add up to more than the largest float"),
    ({"style_blend": [1e300, 1e-300]}, "is lost beside the others"),
    ({"style_layer_weights": [1e308, 1.0]}, "is inf"),
    ({"style_layer_weights": [1e-320, 1.0]}, "too small"),
    ({"style_weight": 1e-320}, "too small"),
])
def test_the_objective_refuses_them_too(vgg, options, message):
    x = preprocess(gradient_image(24, 24))
    s = preprocess(stripes_image(24, 24))
    with pytest.raises(InputError, match=message):
        StyleObjective(vgg, content=x, styles=[s, s], **FAST, **options)


def test_regions_refuse_a_weight_lost_in_normalisation(vgg):
    x = preprocess(gradient_image(24, 24))
    s = preprocess(stripes_image(24, 24))
    left = np.zeros((24, 24), np.float32)
    left[:, :12] = 1
    masks = {"left": left, "right": 1 - left}
    with pytest.raises(InputError, match="region weight 1e-300 is lost"):
        StyleObjective(vgg, content=x, styles=[s], content_masks=masks, style_masks=[{"left": None, "right": None}],
                       region_weights={"left": 1e-300, "right": 1e300}, **FAST)


@pytest.mark.parametrize("options", [{"style_weight": 0.0}, {"style_layer_weights": [0.0, 0.0]},
                                     {"style_weight": 0.0, "scales": (16, 32), "iters": [0, 3]}])
def test_settings_whose_start_is_the_answer_are_refused_up_front(options):
    content, style = gradient_image(32, 24), stripes_image(32, 32)
    with pytest.raises(NothingPainted, match="nothing to paint"):
        prepare(content, style, **{"size": 32, "iters": 5, **options}, weights=MISSING, **FAST)


def test_a_run_stopped_at_its_start_says_so(vgg):
    """Weights too small to move the pixels: the optimiser cannot take a first step. The start comes
    back, and the log says why instead of a bare "done"."""
    content, style = gradient_image(32, 24), stripes_image(32, 32)
    logs = []
    out = stylize(content, style, size=32, iters=5, style_weight=1e-30, vgg=vgg, log=logs.append, **FAST)
    assert np.array_equal(np.asarray(out), np.asarray(content))
    notes = [m for m in logs if "stopped at its start without taking a step" in m]
    assert len(notes) == 1 and "weights are too small" in notes[0], logs


def test_the_same_picture_as_content_and_style_is_no_error(vgg):
    """Its start already fits every target: handing it back is right (a batch's cross product meets this)."""
    content = gradient_image(32, 24)
    out = stylize(content, content, size=32, iters=5, vgg=vgg, **FAST)
    assert out.size == content.size


def test_zero_iterations_asked_for_still_hand_back_the_start(vgg):
    content, style = gradient_image(32, 24), stripes_image(32, 32)
    out = stylize(content, style, size=32, iters=0, style_weight=0.0, vgg=vgg, **FAST)
    assert np.array_equal(np.asarray(out), np.asarray(content))


def test_a_content_only_run_from_noise_still_paints(vgg):
    content, style = gradient_image(32, 24), stripes_image(32, 32)
    out = stylize(content, style, size=32, iters=5, style_weight=0.0, init="noise", vgg=vgg, **FAST)
    assert out.size == content.size


@pytest.mark.parametrize("args, message", [
    (["--style-blend", "1e308,1e308"], "add up to more than the largest float"),
    (["--style-layer-weights", "1e-320,1"], "too small to compute with"),
    (["--style-weight", "0"], "nothing to paint"),
])
def test_the_command_line_says_so_in_one_line_and_writes_nothing(tmp_path, args, message):
    gradient_image(32, 24).save(tmp_path / "c.png")
    stripes_image(32, 32).save(tmp_path / "s.png")
    style = ["s.png", "s.png"] if "--style-blend" in args else ["s.png"]
    r = nstyle(tmp_path, "stylize", "c.png", *style, "-o", "out.png", "--size", "32", "--iters", "4",
               "--weights", random_weights_file(tmp_path), *FAST_LAYERS, *args)
    assert_one_line_error(r, 2, message)
    assert not (tmp_path / "out.png").exists()
