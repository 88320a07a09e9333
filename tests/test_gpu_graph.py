"""CUDA graph capture (``nstyle/gpu/graph.py``) and the GPU engine's kept Winograd transforms, as far as a
machine without a device can see them: the capture itself, its replay and the check of the replay run
only on a device (bench/gpu_check.py's ``graphs`` section measures them there). Here: the wrapper falls
back to plain evaluation for NumPy arrays, saying why; the evaluation it captures -- loss terms kept as
arrays, packed, read back in one copy -- gives the plain evaluation's numbers; the losses' floats come
back after it, in every thread; and the engine transforms each layer's weights once."""
import threading

import numpy as np
import pytest

from nstyle.gpu import engine as gpu_engine
from nstyle.gpu.graph import GraphedObjective, device_scalars, evaluate_packed, unpack
from nstyle.model.arch import LAYER_INDEX
from nstyle.model.gradcheck import random_image, random_vgg_params
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19
from nstyle.reference import losses


def _objective(rng, engine="gpu", tv_weight=0.0, size=(24, 28)):
    params = random_vgg_params(rng)
    content, style, x = (random_image(rng, *size) for _ in range(3))
    obj = StyleObjective(VGG19(params, engine=engine), content=content, styles=[style], tv_weight=tv_weight)
    return obj, x


def test_graphs_fall_back_to_plain_evaluation_without_a_device(rng):
    obj, x = _objective(rng)
    f, g = obj.value_and_grad(x)
    breakdown, count = dict(obj.last_breakdown), obj.evaluations
    graphed = GraphedObjective(obj)
    f2, g2 = graphed.value_and_grad(x)
    assert "CuPy" in graphed.fallback and graphed.captures == 0
    assert f2 == f and np.array_equal(g2, g)
    assert graphed.last_breakdown == breakdown and graphed.evaluations == count + 1
    assert graphed.vgg is obj.vgg and graphed.value(x) == f  # the objective's attributes pass through


@pytest.mark.parametrize("engine", ["gpu", "reference"])
@pytest.mark.parametrize("tv_weight", [0.0, 1e-2])
def test_the_captured_evaluation_gives_the_plain_numbers(rng, engine, tv_weight):
    """What a graph records: the loss terms left as arrays and packed; unpacked, they are the plain
    evaluation's breakdown, in its order, and the gradient is the same."""
    obj, x = _objective(rng, engine, tv_weight)
    f, g = obj.value_and_grad(x)
    plain = dict(obj.last_breakdown)
    terms, grad = evaluate_packed(obj, x)
    order, keys, packed, constants = terms
    assert keys and packed.shape == (len(keys),) and set(keys) | set(constants) == set(plain)
    breakdown = unpack(terms)
    assert list(breakdown) == list(plain)
    assert all(type(v) is float for v in breakdown.values())
    for key, value in plain.items():
        assert breakdown[key] == pytest.approx(value, rel=1e-12, abs=1e-300), key
    np.testing.assert_array_equal(grad, g)


def test_device_scalars_restore_the_floats_in_every_thread(rng):
    original = losses._sum_squares
    seen = {}
    a = rng.standard_normal(10).astype(np.float32)

    def other_thread():
        seen["other"] = losses._sum_squares(a)

    with pytest.raises(RuntimeError):
        with device_scalars():
            seen["here"] = losses._sum_squares(a)
            t = threading.Thread(target=other_thread)
            t.start()
            t.join()
            raise RuntimeError("an evaluation that fails")
    assert losses._sum_squares is original
    assert type(seen["other"]) is float and type(seen["here"]) is not float
    assert float(seen["here"]) == pytest.approx(seen["other"], rel=1e-7)


def test_the_engine_transforms_each_layers_weights_once(rng, monkeypatch):
    made = []
    real = gpu_engine.transformed_weights
    monkeypatch.setattr(gpu_engine, "transformed_weights", lambda w: made.append(w.shape) or real(w))
    obj, x = _objective(rng)
    made.clear()  # the targets' forward passes made them already
    f1, g1 = obj.value_and_grad(x)
    f2, g2 = obj.value_and_grad(x)
    assert made == [] and f1 == f2 and np.array_equal(g1, g2)
    fresh, _ = _objective(np.random.default_rng(1))
    layers = len(fresh.vgg.engine._transforms)
    deepest = LAYER_INDEX["relu5_1"]  # the default taps' deepest layer
    assert layers == len([n for n in fresh.vgg.params if LAYER_INDEX[n] < deepest]) > 0
