"""VGG19 by layer name and the whole StyleObjective, checked by directional derivatives in float64."""
import numpy as np
import pytest

import nstyle
from nstyle.errors import InputError, WeightsError
from nstyle.model.arch import CONV_LAYERS, LAYER_NAMES
from nstyle.model.gradcheck import directional_check, random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19

from .conftest import BACKENDS, host, on


def test_layer_names_follow_the_paper():
    assert LAYER_NAMES[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert LAYER_NAMES[-3:] == ("conv5_4", "relu5_4", "pool5")
    assert len(CONV_LAYERS) == 16 and len(LAYER_NAMES) == 16 * 2 + 5


def test_forward_stops_at_deepest_tap(rng):
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64)
    feats, trace = vgg.forward(random_image(rng, 20, 24), ["relu2_1", "conv1_2"])
    assert [name for name, _ in trace][-1] == "relu2_1"
    assert feats["relu2_1"].shape == (1, 12, 10, 12) and feats["conv1_2"].shape == (1, 8, 20, 24)
    assert (feats["conv1_2"] < 0).any(), "a conv tap must be the pre-ReLU output, not rectified in place"


def test_unknown_layer_and_missing_weights_are_clear(rng):
    vgg = VGG19({k: v for k, v in random_vgg_params(rng).items() if k in ("conv1_1", "conv1_2")})
    with pytest.raises(InputError, match="relu9_9"):
        vgg.forward(random_image(rng, 8, 8), ["relu9_9"])
    with pytest.raises(WeightsError, match="relu2_1"):
        vgg.forward(random_image(rng, 8, 8), ["relu2_1"])
    assert vgg.forward(random_image(rng, 8, 8), ["pool1"])[0]["pool1"].shape[2:] == (4, 4)
    with pytest.raises(WeightsError):
        VGG19({"conv1_1": (np.zeros((4, 2, 3, 3)), np.zeros(4))})


def test_backward_sums_gradients_from_several_taps(rng):
    """Backward with grads at two taps equals the sum of the two single-tap backwards."""
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64)
    x = random_image(rng, 16, 20)
    feats, trace = vgg.forward(x, ["relu1_1", "relu3_1"])
    g1, g3 = (rng.standard_normal(feats[n].shape) for n in ("relu1_1", "relu3_1"))
    both = vgg.backward(trace, {"relu1_1": g1, "relu3_1": g3})
    _, trace = vgg.forward(x, ["relu1_1", "relu3_1"])
    only1 = vgg.backward(trace, {"relu1_1": g1})
    _, trace = vgg.forward(x, ["relu1_1", "relu3_1"])
    only3 = vgg.backward(trace, {"relu3_1": g3})
    assert rel_error(both, only1 + only3) < 1e-12


def make_objective(rng, pooling, dtype=np.float64, h=40, w=52, device="cpu"):
    vgg = VGG19(random_vgg_params(rng), pooling=pooling, dtype=dtype, device=device)
    return StyleObjective(vgg, content=random_image(rng, h, w),
                          styles=[random_image(rng, 36, 44), random_image(rng, 44, 30)], style_blend=[0.3, 0.7],
                          content_weight=1.0, style_weight=1e3, tv_weight=1e-2)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_objective_directional_derivative(rng, pooling):
    """Content + five default style layers + TV + two blended styles, through all of VGG-19's shape."""
    obj = make_objective(rng, pooling)
    assert obj.style_layers == ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    assert obj.content_layers == ("relu4_2",)
    for trial in range(3):
        x = random_image(rng, 40, 52)
        f, g = obj.value_and_grad(x)
        assert g.shape == x.shape and g.dtype == np.float64
        err = directional_check(obj.value, g, x, rng, eps=1e-3)
        assert err < 1e-6, f"pooling={pooling} trial={trial} rel. error {err:.2e}"


def test_breakdown_adds_up_and_names_every_layer(rng):
    obj = make_objective(rng, "avg")
    f, _ = obj.value_and_grad(random_image(rng, 40, 52))
    b = obj.last_breakdown
    assert b["total"] == pytest.approx(f)
    assert b["content"] + b["style"] + b["tv"] == pytest.approx(f, rel=1e-12)
    assert b["style"] == pytest.approx(sum(b[f"style/{n}"] for n in obj.style_layers), rel=1e-12)
    assert b["content/relu4_2"] == pytest.approx(b["content"]) and b["tv"] > 0


def test_objective_at_the_content_has_zero_content_loss(rng):
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64)
    c = random_image(rng, 24, 24)
    obj = StyleObjective(vgg, content=c, styles=[c], content_weight=1.0, style_weight=1.0)
    f, g = obj.value_and_grad(c)
    assert f == pytest.approx(0.0, abs=1e-9) and np.abs(g).max() < 1e-6


def check_objective_float32_matches_float64(backend, rng):
    obj64 = make_objective(np.random.default_rng(7), "avg")
    obj32 = make_objective(np.random.default_rng(7), "avg", dtype=np.float32, device=backend)
    x = random_image(rng, 40, 52)
    f64, g64 = obj64.value_and_grad(x)
    f32, g32 = obj32.value_and_grad(on(backend, x.astype(np.float32)))
    assert f32 == pytest.approx(f64, rel=1e-4)
    assert g32.dtype == np.float32 and rel_error(host(g32), g64) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_objective_float32_matches_float64(backend, rng):
    check_objective_float32_matches_float64(backend, rng)


def test_objective_validates_its_inputs(rng):
    vgg = VGG19(random_vgg_params(rng))
    c = random_image(rng, 16, 16)
    with pytest.raises(InputError, match="style blend"):
        StyleObjective(vgg, content=c, styles=[c, c], style_blend=[1.0])
    with pytest.raises(InputError, match="content weight"):
        StyleObjective(vgg, content=c, styles=[c], content_weight=float("nan"))
    with pytest.raises(InputError, match="style layer"):
        StyleObjective(vgg, content=c, styles=[c], style_layers=("relu1_1", "nope"))
    with pytest.raises(InputError, match="style image"):
        StyleObjective(vgg, content=c, styles=[])


def test_public_api_keeps_its_stable_signatures():
    """The names and keywords users and outside checks rely on (the README's API section)."""
    import inspect
    assert set(nstyle.__all__) <= set(dir(nstyle))
    assert list(inspect.signature(nstyle.VGG19).parameters) == ["params", "pooling", "device", "dtype", "engine"]
    assert list(inspect.signature(nstyle.VGG19.load).parameters)[:3] == ["path", "pooling", "device"]
    objective = inspect.signature(nstyle.StyleObjective).parameters
    for name in ("vgg", "content", "styles", "style_blend", "content_weight", "style_weight", "tv_weight",
                 "content_layers", "style_layers", "style_layer_weights"):
        assert name in objective, name
    stylize = inspect.signature(nstyle.stylize).parameters
    assert list(stylize)[:2] == ["content", "style"]
    assert all(p.kind == p.KEYWORD_ONLY for p in list(stylize.values())[2:])
    x = nstyle.preprocess(np.zeros((4, 6, 3), np.uint8))
    assert x.shape == (1, 3, 4, 6) and x.dtype == np.float32
    assert nstyle.deprocess(x).size == (6, 4)
