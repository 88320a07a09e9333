"""nstyle.app.run.stylize as a library: planning without weights, stages, callbacks, interruption, colours."""
import numpy as np
import pytest
from PIL import Image

from nstyle import InputError, NonFiniteLoss, StylizeInterrupted, stylize
from nstyle.app.run.color import rgb_to_yiq
from nstyle.app.run.stylize import prepare
from nstyle.model.gradcheck import random_vgg_params
from nstyle.model.vgg import VGG19

from .clitools import gradient_image, stripes_image

FAST = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


@pytest.fixture
def vgg(rng):
    return VGG19(random_vgg_params(rng))


def test_prepare_plans_stages_without_loading_weights(tmp_path):
    gradient_image(300, 200).save(tmp_path / "c.png")
    stripes_image(100, 50).save(tmp_path / "s.png")
    plan = prepare(tmp_path / "c.png", tmp_path / "s.png", scales=(128, 256), iters=(30, 20), style_scale=0.5,
                   weights=tmp_path / "not-there.h5")
    assert [(st.size, st.iters, st.content_size) for st in plan.stages] == [(128, 30, (128, 85)), (256, 20, (256, 171))]
    assert plan.stages[1].style_sizes == [(128, 64)], "style longest side = 0.5 x the content's"
    assert plan.output_size == (256, 171) and plan.total_iters == 50
    text = "\n".join(plan.describe())
    assert "stage 2/2        256x171, 20 iterations" in text and "memory needed" in text
    assert plan.memory.total > plan.memory.parts["weights"]


@pytest.mark.parametrize("options,message", [
    ({"iters": (1, 2)}, "2 iteration counts given for 1 scales"),
    ({"scales": (64, 128), "iters": (1, 2, 3)}, "3 iteration counts"),
    ({"optimizer": "sgd"}, "unknown optimizer"),
    ({"original_colors": "sepia"}, "unknown original colours option"),
    ({"style_weight": float("nan")}, "style weight must be a finite number"),
    ({"iters": -1}, "iters must be a whole number >= 0"),
    ({"content_weight": 0, "style_weight": 0}, "nothing to optimise"),
    ({"style_layer_weights": [1, 2]}, "2 style layer weights given for 5 style layers"),
    ({"size": 20}, "needs at least 16 pixels"),
])
def test_prepare_refuses_bad_settings(tmp_path, options, message):
    gradient_image(40, 20).save(tmp_path / "c.png")
    with pytest.raises(InputError, match=message):
        prepare(tmp_path / "c.png", stripes_image(30, 30), **options)


def test_callback_records_stages_and_gives_the_image(vgg):
    seen = []

    def callback(rec, get_image):
        seen.append((rec["stage"], rec["iter"], rec["step"], get_image().size))
    out = stylize(gradient_image(60, 40), stripes_image(40, 40), scales=(24, 36), iters=(2, 3), vgg=vgg,
                  callback=callback, **FAST)
    assert out.size == (36, 24)
    assert seen == [(1, 1, 1, (24, 16)), (1, 2, 2, (24, 16)), (2, 1, 3, (36, 24)), (2, 2, 4, (36, 24)),
                    (2, 3, 5, (36, 24))]


def test_callback_can_stop_a_run_early(vgg):
    steps = []
    out = stylize(gradient_image(60, 40), stripes_image(40, 40), size=32, iters=50, vgg=vgg,
                  callback=lambda rec, _: steps.append(rec["step"]) or rec["step"] >= 3, **FAST)
    assert steps == [1, 2, 3] and out.size == (32, 21)
    steps.clear()
    out = stylize(gradient_image(60, 40), stripes_image(40, 40), scales=(24, 36), iters=(5, 5), vgg=vgg,
                  callback=lambda rec, _: steps.append(rec["step"]) or rec["step"] >= 2, **FAST)
    assert steps == [1, 2] and out.size == (36, 24), "stopping in stage 1 ends the run at the output size"


def test_ctrl_c_in_an_early_stage_keeps_the_best_image_at_the_output_size(vgg):
    def interrupt(rec, _):
        if rec["step"] == 2:
            raise KeyboardInterrupt
    with pytest.raises(StylizeInterrupted) as exc:
        stylize(gradient_image(60, 40), stripes_image(40, 40), scales=(24, 48), iters=(5, 5), vgg=vgg,
                callback=interrupt, **FAST)
    assert exc.value.image.size == (48, 32) and exc.value.iteration == 2
    assert "stage 1 of 2" in exc.value.message


def test_nonfinite_loss_keeps_the_best_image(vgg):
    with pytest.raises(NonFiniteLoss) as exc:
        stylize(gradient_image(60, 40), stripes_image(40, 40), size=32, iters=20, optimizer="adam", lr=1e38,
                bounds=False, vgg=vgg, **FAST)
    assert exc.value.image.size == (32, 21) and "iteration 2" in exc.value.message


def test_luminance_mode_keeps_the_contents_chroma(vgg):
    content = Image.fromarray((np.asarray(gradient_image(40, 40), float) * [1.0, 0.6, 0.3]).astype(np.uint8))
    out = stylize(content, stripes_image(40, 40), size=40, iters=5, style_weight=1e5, original_colors="luminance",
                  vgg=vgg, **FAST)
    iq_out, iq_in = rgb_to_yiq(out)[..., 1:], rgb_to_yiq(content)[..., 1:]
    assert np.abs(iq_out - iq_in).mean() < 2.0


def test_init_from_an_image_or_noise(vgg, tmp_path):
    start = Image.new("RGB", (10, 10), (200, 30, 30))
    out = stylize(gradient_image(40, 40), stripes_image(40, 40), size=32, iters=0, init=start, vgg=vgg, **FAST)
    assert np.abs(np.asarray(out, int) - (200, 30, 30)).max() <= 1, "zero iterations return the start"
    start.save(tmp_path / "start.png")
    same = stylize(gradient_image(40, 40), stripes_image(40, 40), size=32, iters=0, init=tmp_path / "start.png",
                   vgg=vgg, **FAST)
    assert np.array_equal(np.asarray(out), np.asarray(same))
    a = stylize(gradient_image(40, 40), stripes_image(40, 40), size=32, iters=0, init="noise", seed=1, vgg=vgg, **FAST)
    b = stylize(gradient_image(40, 40), stripes_image(40, 40), size=32, iters=0, init="noise", seed=2, vgg=vgg, **FAST)
    assert not np.array_equal(np.asarray(a), np.asarray(b))
