"""The loss terms behind one protocol: every registered term is checked (gradient, naive twin), the
registry refuses a term without its check, the objective sums terms as the weighting declares, the
engine's faster form of the Gram term stays on the hot path, and the example term of docs/backprop.md
runs as printed."""
import ast
import re
import types
from pathlib import Path

import numpy as np
import pytest

from nstyle.app.run.weighting import normalization_factors, scales_for, term_scales
from nstyle.cpu.losses import GramGradient
from nstyle.model import gradcheck
from nstyle.model.gradcheck import directional_check, numerical_gradient, random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.terms import SCALINGS, TERMS, Taps, Term, register
from nstyle.model.vgg import VGG19

from .conftest import require_torch

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list(TERMS))
def test_every_registered_term_has_a_passing_check(name):
    cls = TERMS[name]
    assert cls.name == name and cls.scaling in SCALINGS and cls.group
    term, inputs = cls.check_case(np.random.default_rng(0))
    assert isinstance(term, cls) and inputs.dtype == np.float64 and inputs.ndim == 4
    rows = gradcheck.run_all(ops=[name])
    assert rows and all(r["group"] == name and r["ok"] for r in rows), rows


@pytest.mark.parametrize("name", list(TERMS))
def test_every_term_matches_its_naive_twin(rng, name):
    term, inputs = TERMS[name].check_case(rng)
    value, grad = term.loss(inputs)
    v_naive, g_naive = term.loss_naive(inputs)
    assert value == pytest.approx(v_naive, rel=1e-12, abs=1e-300), name
    assert rel_error(grad, g_naive) < 1e-12, name


def test_a_term_without_its_check_or_twin_cannot_be_registered():
    class NoCheck(Term):
        name, group, scaling = "no_check", "style", "mean"

        def loss(self, F):
            return 0.0, None

        def loss_naive(self, F):
            return 0.0, None

    with pytest.raises(TypeError, match="check_case"):
        register(NoCheck)
    with pytest.raises(TypeError, match="loss_naive"):
        register(type("NoTwin", (Term,), {"name": "no_twin", "group": "g", "scaling": "mean",
                                          "loss": NoCheck.loss, "check_case": classmethod(lambda cls, rng: None)}))
    with pytest.raises(TypeError, match="scaling"):
        register(type("Odd", (NoCheck,), {"name": "odd", "scaling": "sideways",
                                          "check_case": classmethod(lambda cls, rng: None)}))
    with pytest.raises(ValueError, match="registered already"):
        register(type("Twice", (TERMS["tv"],), {}))
    assert not {"no_check", "no_twin", "odd"} & set(TERMS)


def test_every_op_file_has_its_naive_twins():
    """docs/backprop.md: beside every op and loss of the reference engine, a *_naive twin."""
    checked = []
    for path in sorted((REPO / "nstyle" / "reference").rglob("*.py")):  # style_losses/ included
        names = {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}
        ops = [n for n in names if n.endswith(("_forward", "_backward", "_loss")) and not n.startswith("_")]
        missing = [n for n in ops if f"{n}_naive" not in names]
        assert not missing, f"{path.name}: no naive twin for {missing}"
        checked += ops
    assert {"relu_forward", "conv2d_backward", "style_layer_loss", "guided_style_loss", "temporal_loss",
            "mean_std_loss", "mmd_loss"} <= set(checked)


def test_gram_difference_twin(rng):
    from nstyle.reference import losses
    D = rng.standard_normal((4, 4))
    (v, S), (vn, Sn) = losses.gram_difference_loss(D, 4, 30), losses.gram_difference_loss_naive(D, 4, 30)
    assert v == pytest.approx(vn, rel=1e-12) and rel_error(S, Sn) < 1e-14


# --- the objective as the sum of its terms ---------------------------------------------------------

def small_objective(rng, **kw):
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64, engine=kw.pop("engine", "reference"))
    return StyleObjective(vgg, content=random_image(rng, 24, 32), styles=[random_image(rng, 20, 28)],
                          content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), **kw)


def test_the_objective_is_the_weighted_sum_of_its_terms(rng):
    scales = {"content/relu2_1": 0.5, "style/relu1_1": 3.0, "tv": 2.0}
    obj = small_objective(rng, tv_weight=1e-2, style_layer_weights=[0.25, 0.75], term_scales=scales)
    assert [t.key for t in obj.terms] == ["content/relu2_1", "style/relu1_1", "style/relu2_1", "tv"]
    assert obj.taps == ("relu2_1", "relu1_1")
    x = random_image(rng, 24, 32)
    total, grad = obj.value_and_grad(x)
    b = obj.last_breakdown
    want = 0.0
    feats, _ = obj.vgg.forward(x, obj.taps)
    for term in obj.terms:
        factor = obj.term_weights[term.key] * term.layer_weight * scales.get(term.key, 1.0)
        value, _ = term.loss(x if term.layer is None else feats[term.layer])
        assert b[f"paper/{term.key}"] == pytest.approx(value, rel=1e-12)
        assert b[term.key] == pytest.approx(factor * value, rel=1e-12)
        want += factor * value
    assert total == pytest.approx(want, rel=1e-12) and b["total"] == total
    assert b["style"] == pytest.approx(b["style/relu1_1"] + b["style/relu2_1"], rel=1e-12)
    assert b["paper/style"] == pytest.approx(0.25 * b["paper/style/relu1_1"] + 0.75 * b["paper/style/relu2_1"])
    assert directional_check(obj.value, grad, x, rng, eps=1e-3, directions=2) < 1e-6


def test_added_terms_join_the_sum_and_a_key_is_taken_once(rng):
    obj = small_objective(rng)
    x = random_image(rng, 24, 32)
    before, _ = obj.value_and_grad(x)
    extra = TERMS["tv"]()
    assert obj.add_term(extra, 0.5) is obj and obj.terms[-1] is extra
    after, grad = obj.value_and_grad(x)
    assert after == pytest.approx(before + 0.5 * extra.loss(x)[0], rel=1e-12)
    assert directional_check(obj.value, grad, x, rng, eps=1e-3, directions=2) < 1e-6
    with pytest.raises(Exception, match="tv term already"):
        obj.add_term(TERMS["tv"](), 1.0)


def test_the_cpu_engine_keeps_its_factored_gram_gradient(rng, monkeypatch):
    """The fast path stays: on the CPU engine the Gram term's gradient reaches the sweep as the engine's
    GramGradient (S and F), never as an (N, M) array, and equals the definition."""
    obj = small_objective(rng, engine="cpu")
    seen = []
    real = obj.vgg.backward

    def spy(trace, grads):
        seen.extend((name, type(g)) for name, gs in grads.items() for g in gs)
        return real(trace, grads)

    monkeypatch.setattr(obj.vgg, "backward", spy)
    x = random_image(rng, 24, 32)
    obj.value_and_grad(x)
    assert ("relu1_1", GramGradient) in seen and ("relu2_1", GramGradient) in seen
    feats, trace = obj.vgg.forward(x, obj.taps)
    term = obj.term("style/relu2_1")
    value, g = term.evaluate(Taps(feats, trace, obj.vgg.engine))
    ref_value, ref_g = term.loss(np.array(feats["relu2_1"]))
    bordered = np.asarray(g)  # the engine's (1, N, H+3, W+2) layout: the map at rows 1..H, columns 1..W
    h, w = ref_g.shape[2:]
    inside = bordered[:, :, 1:h + 1, 1:w + 1]
    assert value == pytest.approx(ref_value, rel=1e-12) and rel_error(inside, ref_g) < 1e-12
    assert np.abs(bordered).sum() == pytest.approx(np.abs(inside).sum(), rel=1e-12)  # zero on the border


def test_the_weighting_reads_what_terms_declare():
    class Pixels(Term):
        name, group, scaling = "pixel_thing", "pixel_thing", "pixels"

    class Positions(Term):
        name, group, scaling = "position_thing", "position_thing", "positions"

    declared = [Pixels.declare(), Positions.declare("relu3_1"), TERMS["gram"].declare("relu3_1")]
    scales = scales_for(declared, 128, 64)
    assert scales == {"pixel_thing": (512 * 256) / (128 * 64), "position_thing/relu3_1": (128 * 64) / (32 * 16),
                      "style/relu3_1": 1.0}
    assert scales_for(declared, 128, 64, mode="paper") == {}
    # the objective's own terms declare what term_scales gives them
    assert term_scales(128, 64, ("relu3_1",), ("relu3_1",)) == {
        "content/relu3_1": scales["position_thing/relu3_1"], "style/relu3_1": 1.0, "tv": scales["pixel_thing"]}


def test_normalization_factors_come_from_the_terms(rng):
    obj = small_objective(rng, tv_weight=1.0)
    ones = {name: np.ones(w.shape[0]) for name, (w, _) in obj.vgg.params.items()}
    factors = normalization_factors(obj, ones)
    assert factors == pytest.approx({"content/relu2_1": 1.0, "style/relu1_1": 1.0, "style/relu2_1": 1.0})
    doubled = normalization_factors(obj.terms, {k: 2 * v for k, v in ones.items()})
    assert doubled == pytest.approx({"content/relu2_1": 4.0, "style/relu1_1": 16.0, "style/relu2_1": 16.0})


# --- the example of docs/backprop.md, "Adding a loss" ------------------------------------------------

def docs_example_source():
    text = (REPO / "docs" / "backprop.md").read_text(encoding="utf-8")
    section = text[text.index("## Adding a loss"):]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


@pytest.fixture
def registry():
    """TERMS, put back as it was after the test (which may register terms of its own)."""
    before = dict(TERMS)
    yield TERMS
    TERMS.clear()
    TERMS.update(before)


@pytest.fixture
def example_module(registry):
    module = types.ModuleType("channel_mean")
    exec(compile(docs_example_source(), "docs/backprop.md (Adding a loss)", "exec"), module.__dict__)  # noqa: S102
    return module


def test_the_docs_example_term(example_module, rng):
    cls = example_module.ChannelMeanTerm
    assert TERMS["channel_mean"] is cls  # registered by the module itself
    rows = gradcheck.run_all(ops=["channel_mean"])
    assert [r["op"] for r in rows] == ["channel_mean"] and rows[0]["ok"], rows
    term, F = cls.check_case(rng)
    (v, g), (vn, gn) = term.loss(F), term.loss_naive(F)
    assert v == pytest.approx(vn, rel=1e-12) and rel_error(g, gn) < 1e-12
    assert rel_error(g, numerical_gradient(lambda z: term.loss(z)[0], F)) < 1e-7
    # in an objective: its key, its share of the total, and a gradient through the network
    obj = small_objective(rng)
    style = random_image(rng, 20, 28)
    obj.add_term(cls.from_image(obj.vgg, style, "relu2_1"), weight=1e3)
    x = random_image(rng, 24, 32)
    total, grad = obj.value_and_grad(x)
    b = obj.last_breakdown
    assert b["channel_mean/relu2_1"] == b["channel_mean"] == pytest.approx(1e3 * b["paper/channel_mean/relu2_1"])
    assert b["paper/channel_mean"] == b["paper/channel_mean/relu2_1"]
    assert total == pytest.approx(b["content"] + b["style"] + b["tv"] + b["channel_mean"], rel=1e-12)
    assert directional_check(obj.value, grad, x, rng, eps=1e-3, directions=2) < 1e-6


def test_the_docs_example_term_matches_torch(example_module, rng):
    from .test_torch_oracle import check_term_matches_torch
    check_term_matches_torch(require_torch(), "channel_mean", rng)


def test_a_pair_of_functions_becomes_a_term(rng, registry):
    """FunctionTerm: a target from the style images' features and a loss against it, wrapped as a term
    (the shape in which new style losses arrive): checked by the registry and usable in an objective."""
    from nstyle.model.terms import FunctionTerm

    def energy_target(features, blend):  # the blended mean square of each channel
        return sum(b * (f[0] ** 2).mean(axis=(1, 2)) for f, b in zip(features, blend))

    def energy_loss(F, t):  # E = 1/2 sum_i (e_i - t_i)^2, e_i = mean_j F_ij^2; dE/dF_ij = (e_i - t_i) 2 F_ij / M
        m = F.shape[2] * F.shape[3]
        d = (F[0] ** 2).mean(axis=(1, 2)) - t
        return 0.5 * float(d @ d), F * (2.0 / m * d)[None, :, None, None]

    def energy_loss_naive(F, t):
        _, n, h, w = F.shape
        e = [sum(F[0, i, r, c] ** 2 for r in range(h) for c in range(w)) / (h * w) for i in range(n)]
        grad = np.array([[[[2.0 / (h * w) * (e[i] - t[i]) * F[0, i, r, c] for c in range(w)] for r in range(h)]
                          for i in range(n)]])
        return 0.5 * sum((e[i] - t[i]) ** 2 for i in range(n)), grad

    class EnergyTerm(FunctionTerm):
        name, group, scaling = "energy", "energy", "mean"
        make_target = staticmethod(energy_target)
        loss_function = staticmethod(energy_loss)
        naive_function = energy_loss_naive  # a plain function works as well

        @classmethod
        def check_case(cls, rng):
            return cls("relu1_1", rng.uniform(0.5, 2, 3)), rng.standard_normal((1, 3, 4, 5))

    register(EnergyTerm)
    assert gradcheck.run_all(ops=["energy"])[0]["ok"]
    term, F = EnergyTerm.check_case(rng)
    (v, g), (vn, gn) = term.loss(F), term.loss_naive(F)
    assert v == pytest.approx(vn, rel=1e-12) and rel_error(g, gn) < 1e-12
    obj = small_objective(rng)
    styles = [random_image(rng, 20, 28), random_image(rng, 16, 16)]
    terms = EnergyTerm.from_images(obj.vgg, styles, [0.25, 0.75], ("relu1_1", "relu2_1"), {"relu2_1": 0.5})
    feats = [obj.vgg.forward(s, ["relu1_1"])[0]["relu1_1"] for s in styles]
    assert rel_error(terms[0].target, energy_target(feats, [0.25, 0.75])) < 1e-14 and terms[1].layer_weight == 0.5
    for t in terms:
        obj.add_term(t, 10.0)
    x = random_image(rng, 24, 32)
    _, grad = obj.value_and_grad(x)
    assert set(obj.last_breakdown) >= {"energy/relu1_1", "energy/relu2_1", "energy", "paper/energy"}
    assert directional_check(obj.value, grad, x, rng, eps=1e-3, directions=2) < 1e-6
