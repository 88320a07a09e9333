"""PyTorch (torch.nn.functional + autograd) as the oracle: same random weights, same taps, same loss."""
import numpy as np
import pytest

from nstyle.model.gradcheck import random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.terms import TERMS
from nstyle.model.vgg import VGG19

from .conftest import require_torch
from .torch_reference import TORCH_TERMS, torch_objective, torch_taps

TAPS = ("conv1_1", "relu1_1", "relu2_1", "pool2", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "pool5")


def assert_matches_torch(name, got, want, value_tol, *, shape=None, dtype=None):
    """One helper for every comparison: shape, dtype, then value within its own tolerance."""
    got, want = np.asarray(got), np.asarray(want)
    if shape is not None:
        assert got.shape == tuple(shape), f"{name}: shape {got.shape} != {tuple(shape)}"
    if dtype is not None:
        assert got.dtype == dtype, f"{name}: dtype {got.dtype} != {dtype}"
    err = rel_error(got, want)
    assert err < value_tol, f"{name}: relative error {err:.2e} >= {value_tol:.0e}"


def _setup(torch, rng, dtype, pooling):
    params = random_vgg_params(rng)
    tparams = {k: (torch.tensor(w, dtype=dtype), torch.tensor(b, dtype=dtype)) for k, (w, b) in params.items()}
    return params, tparams


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("precision,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_taps_match_torch(rng, pooling, precision, tol):
    torch = require_torch()
    tdtype, ndtype = getattr(torch, precision), np.dtype(precision)
    params, tparams = _setup(torch, rng, tdtype, pooling)
    x = random_image(rng, 40, 52)
    ours, _ = VGG19(params, pooling=pooling, dtype=ndtype).forward(x.astype(ndtype), TAPS)
    theirs = torch_taps(torch, tparams, torch.tensor(x, dtype=tdtype), TAPS, pooling)
    for name in TAPS:
        assert_matches_torch(f"{name} ({pooling}, {precision})", ours[name], theirs[name].numpy(), tol,
                             shape=theirs[name].shape, dtype=ndtype)


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("precision,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_objective_value_and_gradient_match_torch(rng, pooling, precision, tol):
    torch = require_torch()
    tdtype, ndtype = getattr(torch, precision), np.dtype(precision)
    params, tparams = _setup(torch, rng, tdtype, pooling)
    content = random_image(rng, 40, 52)
    styles = [random_image(rng, 36, 44), random_image(rng, 44, 30)]
    blend = [0.3, 0.7]
    content_layers = ("relu4_2",)
    style_layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    weights = [0.2] * 5
    alpha, beta, gamma = 1.0, 1e3, 1e-2
    obj = StyleObjective(VGG19(params, pooling=pooling, dtype=ndtype), content=content, styles=styles,
                         style_blend=blend, content_weight=alpha, style_weight=beta, tv_weight=gamma)
    tloss = torch_objective(torch, tparams, torch.tensor(content, dtype=tdtype),
                            [torch.tensor(s, dtype=tdtype) for s in styles], blend, content_layers,
                            style_layers, weights, alpha, beta, gamma, pooling)
    x = random_image(rng, 40, 52)
    f, g = obj.value_and_grad(x.astype(ndtype))
    tx = torch.tensor(x, dtype=tdtype, requires_grad=True)
    tf = tloss(tx)
    tf.backward()
    assert_matches_torch(f"loss ({pooling}, {precision})", f, tf.item(), tol)
    assert_matches_torch(f"gradient ({pooling}, {precision})", g, tx.grad.numpy(), tol,
                         shape=x.shape, dtype=ndtype)


def test_every_term_has_a_torch_twin():
    """A term registered without its PyTorch twin fails here (no torch needed to notice)."""
    missing = sorted(set(TERMS) - set(TORCH_TERMS))
    assert not missing, f"add these terms to tests/torch_reference.py TORCH_TERMS: {missing}"


def check_term_matches_torch(torch, name, rng):
    """One registered term on its own check case: value and gradient against autograd (float64)."""
    term, inputs = TERMS[name].check_case(rng)
    value, grad = term.loss(inputs)
    t = torch.tensor(inputs, requires_grad=True)
    tvalue = TORCH_TERMS[name](torch, term, t)
    tvalue.backward()
    assert_matches_torch(f"{name} value", value, tvalue.item(), 1e-12)
    assert_matches_torch(f"{name} gradient", grad, t.grad.numpy(), 1e-12, shape=inputs.shape, dtype=np.float64)


@pytest.mark.parametrize("name", list(TERMS))
def test_every_term_matches_torch(rng, name):
    check_term_matches_torch(require_torch(), name, rng)
