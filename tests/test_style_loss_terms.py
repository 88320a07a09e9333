"""The style losses beyond the Gram matrix inside the objective: the choice as written, each loss (and a
weighted sum) differentiated through the network, the breakdown's keys, the seeded draws (fixed within
a stage, new between stages), every engine held to the reference, and the combinations refused."""
import numpy as np
import pytest

from nstyle.errors import InputError
from nstyle.model.gradcheck import directional_check, random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.style_loss import format_style_loss, parse_style_loss, style_losses
from nstyle.model.terms import TERMS, StyleSumTerm
from nstyle.model.vgg import VGG19
from nstyle.reference import style_losses as sl

from .conftest import host, on
from .gpu_paths import GPU_PATHS, gpu_path

LOSSES = ("mean_std", "histogram", "sliced_wasserstein", "mmd_linear", "mmd_polynomial", "mmd_gaussian")
LAYERS = ("relu1_1", "relu2_1")
OPTIONS = {"fourier_features": 64}


def objective(rng, style_loss, engine="reference", params=None, styles=None, **kw):
    params = random_vgg_params(rng) if params is None else params
    vgg = VGG19(params, dtype=np.float64, engine=engine)
    if styles is None:
        styles = [random_image(rng, 20, 28), random_image(rng, 16, 24)]
    kw.setdefault("style_blend", [0.4, 0.6][:len(styles)])
    return StyleObjective(vgg, content=random_image(rng, 24, 32), styles=styles, content_layers=("relu2_1",),
                          style_layers=LAYERS, style_loss=style_loss, style_loss_options=OPTIONS, **kw)


# --- the choice ------------------------------------------------------------------------------------

def test_the_choice_as_written():
    assert parse_style_loss(None) == {"gram": 1.0} and parse_style_loss("histogram") == {"histogram": 1.0}
    assert parse_style_loss("gram:1, histogram:0.5") == {"gram": 1.0, "histogram": 0.5}
    assert parse_style_loss({"mmd_gaussian": 2, "gram": 0}) == {"mmd_gaussian": 2.0}  # zero weights drop out
    assert list(parse_style_loss("histogram:1,gram:3")) == ["histogram", "gram"]  # the order written
    assert format_style_loss(parse_style_loss("gram")) == "gram"
    assert parse_style_loss(format_style_loss({"gram": 1.0, "sliced_wasserstein": 0.25})) == {
        "gram": 1.0, "sliced_wasserstein": 0.25}
    assert set(style_losses()) == {"gram", *LOSSES}  # not guided_gram, style_sum, content, ...


@pytest.mark.parametrize("spec,match", [("wasserstein", "unknown style loss 'wasserstein'"),
                                        ("gram:1,gram:2", "named twice"), ("histogram:-1", ">= 0"),
                                        ("histogram:x", "must be a number"), ("gram:0", "all zero"),
                                        ("guided_gram", "unknown style loss"), (3, "a style loss is a name")])
def test_a_wrong_choice_is_one_input_error(spec, match):
    with pytest.raises(InputError, match=match) as exc:
        parse_style_loss(spec)
    assert "\n" not in str(exc.value)


def test_the_weights_scale_by_the_calibrated_defaults(rng):
    obj = objective(rng, {"histogram": 2.0}, style_weight=10.0)
    kappa = TERMS["histogram"].default_weight
    assert all(obj.term_weights[f"style/{layer}"] == pytest.approx(10.0 * 2.0 * kappa) for layer in LAYERS)
    obj = objective(rng, "gram:1,mmd_linear:0.5", style_weight=10.0)
    term = obj.term("style/relu1_1")
    assert isinstance(term, StyleSumTerm) and obj.term_weights["style/relu1_1"] == 10.0
    assert [(name, c) for name, _, c in term.parts] == [("gram", 1.0), ("mmd_linear", 0.5 * TERMS["mmd_linear"].default_weight)]


# --- through the network ---------------------------------------------------------------------------

@pytest.mark.parametrize("style_loss", [*LOSSES, "gram:1,histogram:0.5,mmd_gaussian:0.3"])
def test_the_objective_with_each_loss_is_differentiable(rng, style_loss):
    obj = objective(rng, style_loss, tv_weight=1e-3)
    x = random_image(rng, 24, 32)
    _, g = obj.value_and_grad(x)
    # Steps of 1e-4 pixels: a sorting loss is smooth only between changes of a channel's order, and the
    # network's 1e-3 steps cross enough of them (768 close values per channel at relu1_1) to bend the
    # differences at the 1e-6 level; float64 rounding stays far below the tolerance either way.
    err = directional_check(obj.value, g, x, rng, eps=1e-4, directions=3)
    assert err < 1e-6, f"{style_loss}: {err:.2e}"


def test_one_loss_reports_as_the_layer_style_term(rng):
    obj = objective(rng, "sliced_wasserstein")
    x = random_image(rng, 24, 32)
    obj.value_and_grad(x)
    b = obj.last_breakdown
    feats, _ = obj.vgg.forward(x, LAYERS)
    for layer in LAYERS:
        term = obj.term(f"style/{layer}")
        want, _ = sl.sliced_wasserstein_loss(feats[layer], term.target)
        assert b[f"paper/style/{layer}"] == pytest.approx(want, rel=1e-12)
        assert b[f"style/{layer}"] == pytest.approx(obj.term_weights[f"style/{layer}"] * term.layer_weight * want)
    assert not any(k.count("/") > 2 for k in b)  # no per-loss keys for a single loss


def test_a_sum_reports_each_loss_beside_it(rng):
    obj = objective(rng, "gram:1,histogram:0.5", style_weight=100.0)
    x = random_image(rng, 24, 32)
    total, _ = obj.value_and_grad(x)
    b = obj.last_breakdown
    feats, _ = obj.vgg.forward(x, LAYERS)
    for layer in LAYERS:
        parts = {name: (t, c) for name, t, c in obj.term(f"style/{layer}").parts}
        e = {name: t.loss(feats[layer])[0] for name, (t, _) in parts.items()}
        assert b[f"paper/style/{layer}/gram"] == pytest.approx(e["gram"], rel=1e-12)
        assert b[f"paper/style/{layer}/histogram"] == pytest.approx(e["histogram"], rel=1e-12)
        assert b[f"paper/style/{layer}"] == pytest.approx(sum(c * e[n] for n, (_, c) in parts.items()), rel=1e-12)
        assert b[f"style/{layer}"] == pytest.approx(b[f"style/{layer}/gram"] + b[f"style/{layer}/histogram"])
    assert total == pytest.approx(b["content"] + b["style"], rel=1e-12)
    assert type(b["paper/style/relu1_1"]) is float


@pytest.mark.parametrize("engine,device,path", [pytest.param("cpu", "cpu", None, id="cpu")] + [
    pytest.param("gpu", "gpu" if p.values[0] == "gpu" else "cpu", p.values[0], marks=p.marks, id=f"gpu-{p.values[0]}")
    for p in GPU_PATHS])
def test_every_engine_gives_the_reference_loss_and_gradient(rng, engine, device, path):
    """The losses are xp-generic: on the CPU engine (a sum with the factored Gram gradient), and on the
    GPU engine (its kernels emulated, compiled as C++, or on a device) they give the reference's numbers."""
    params = random_vgg_params(rng)
    styles = [random_image(rng, 20, 28), random_image(rng, 16, 24)]
    x = random_image(rng, 24, 32)
    spec = "gram:1,mean_std:1,histogram:0.5,sliced_wasserstein:1,mmd_polynomial:1,mmd_gaussian:0.3"
    ref = objective(np.random.default_rng(1), spec, params=params, styles=styles, seed=5)
    f_ref, g_ref = ref.value_and_grad(x)
    backend = "gpu" if device == "gpu" else "cpu"
    with gpu_path(path) if path else _nothing():
        obj = StyleObjective(VGG19(params, dtype=np.float64, device=device, engine=engine),
                             content=on(backend, random_image(np.random.default_rng(1), 24, 32)),
                             styles=[on(backend, s) for s in styles], style_blend=[0.4, 0.6],
                             content_layers=("relu2_1",), style_layers=LAYERS, style_loss=spec,
                             style_loss_options=OPTIONS, seed=5)
        f, g = obj.value_and_grad(on(backend, x))
    assert f == pytest.approx(f_ref, rel=1e-10)
    assert rel_error(host(g), g_ref) < 1e-10
    for key, value in ref.last_breakdown.items():
        assert obj.last_breakdown[key] == pytest.approx(value, rel=1e-9, abs=1e-300), key


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- randomness --------------------------------------------------------------------------------------

def _directions(obj, layer="relu2_1"):
    return np.asarray(obj.term(f"style/{layer}").target.directions)


def test_the_draws_are_fixed_by_seed_stage_layer_and_loss(rng):
    params = random_vgg_params(rng)
    styles = [random_image(rng, 20, 28)]
    a = objective(rng, "sliced_wasserstein", params=params, styles=styles, seed=7, stage=0)
    b = objective(rng, "sliced_wasserstein", params=params, styles=styles, seed=7, stage=0)
    c = objective(rng, "sliced_wasserstein", params=params, styles=styles, seed=7, stage=1)
    d = objective(rng, "sliced_wasserstein", params=params, styles=styles, seed=8, stage=0)
    assert np.array_equal(_directions(a), _directions(b))
    assert not np.allclose(_directions(a), _directions(c)) and not np.allclose(_directions(a), _directions(d))
    assert not np.allclose(_directions(a, "relu1_1")[:, :8], _directions(a)[:8, :8])
    x = random_image(rng, 24, 32)
    a.value(x), b.value(x)
    assert a.last_breakdown["paper/style"] == b.last_breakdown["paper/style"]  # same draw: the same bits
    # a loss's draw does not depend on which other losses run beside it
    mix = objective(rng, "sliced_wasserstein:1,mmd_gaussian:1", params=params, styles=styles, seed=7)
    sw = dict((n, t) for n, t, _ in mix.term("style/relu2_1").parts)["sliced_wasserstein"]
    assert np.array_equal(np.asarray(sw.target.directions), _directions(a))


def test_the_draws_are_recorded(rng):
    obj = objective(rng, "gram:1,sliced_wasserstein:1,mmd_gaussian:1,histogram:1", seed=3, stage=2)
    draws = obj.style_draws
    assert set(draws) == set(LAYERS)
    for layer in LAYERS:
        rec = draws[layer]
        assert set(rec) == {"sliced_wasserstein", "mmd_gaussian", "histogram"}
        assert rec["sliced_wasserstein"]["seed"][:2] == [3, 2] and rec["sliced_wasserstein"]["directions"] > 0
        assert rec["mmd_gaussian"]["bandwidth"] > 0 and rec["mmd_gaussian"]["fourier_features"] == 64
        assert rec["histogram"] == {"quantile_rule": "midpoint"}  # no draw, no seed
        assert rec["sliced_wasserstein"]["seed"] != rec["mmd_gaussian"]["seed"]
    assert objective(rng, "gram").style_draws == {}


# --- targets, blends, normalisation --------------------------------------------------------------------

@pytest.mark.parametrize("name", LOSSES)
def test_the_targets_are_the_mixture_of_the_blended_styles(rng, name):
    """The term's target is the reference function's on each style image's features with the blend: the
    loss the objective evaluates equals the plain function pair on the same features."""
    styles = [random_image(rng, 20, 28), random_image(rng, 16, 24)]
    obj = objective(rng, name, styles=styles, seed=4)
    x = random_image(rng, 24, 32)
    feats, _ = obj.vgg.forward(x, LAYERS)
    F = feats["relu2_1"].copy()
    style_feats = [obj.vgg.forward(s, ["relu2_1"])[0]["relu2_1"].copy() for s in styles]
    term = obj.term("style/relu2_1")
    rng2 = np.random.default_rng(term.record.get("seed", 0))
    target, _, _ = type(term).make_target(style_feats, [0.4, 0.6], rng2, OPTIONS)
    value, grad = type(term)(term.layer, target).loss(F)
    v, g = term.loss(F)
    assert v == pytest.approx(value, rel=1e-12) and rel_error(g, grad) < 1e-12


@pytest.mark.parametrize("name", [n for n in LOSSES if n != "mmd_gaussian"])
def test_normalization_factor_of_a_uniform_scale(name, rng):
    """Every channel times s: each of these losses is a sum of squares of feature-scale differences (mean_std
    up to its eps, the polynomial MMD of products: s^4), so the factor is s^2 (s^4)."""
    term, F = TERMS[name].check_case(rng)
    s = np.full(F.shape[1], 3.0)
    want = 81.0 if name == "mmd_polynomial" else 9.0
    assert term.normalization_factor(s) == pytest.approx(want, rel=1e-12)
    assert TERMS["mmd_gaussian"].check_case(rng)[0].normalization_factor(s) is None


# --- refused combinations ------------------------------------------------------------------------------

def test_masks_and_shared_statistics_take_the_gram_loss_only(rng):
    left = (np.arange(32) < 16)[None, :] * np.ones((24, 1))
    with pytest.raises(InputError, match="content masks work with the gram style loss only") as exc:
        objective(rng, "gram:1,histogram:1", content_masks={"a": left, "b": 1 - left})
    assert "\n" not in str(exc.value)
    masked = objective(rng, "gram:2", content_masks={"a": left, "b": 1 - left}, styles=[random_image(rng, 20, 28)],
                       style_masks=[{"a": None, "b": None}])
    assert masked.term_weights["style/relu1_1"] == pytest.approx(2e3)
    grams = {"relu1_1": np.eye(8), "relu2_1": np.eye(12)}
    with pytest.raises(InputError, match="shared Gram statistics"):
        StyleObjective(VGG19(random_vgg_params(rng), dtype=np.float64), content=random_image(rng, 24, 32),
                       style_layers=LAYERS, style_grams=grams, style_loss="mean_std")
