"""VGG19's CPU hot path (vgg_cpu.py) against the generic layer-by-layer path, and float32 against float64."""
import numpy as np
import pytest

import nstyle.layers.conv as conv
import nstyle.layers.fastconv as fastconv
from nstyle.gradcheck import random_image, random_vgg_params, rel_error
from nstyle.layers import threads
from nstyle.objective import StyleObjective
from nstyle.vgg import LAYER_NAMES, VGG19

TAPS = ("conv1_1", "relu1_1", "relu1_2", "pool1", "relu2_1", "conv3_1", "relu3_1", "pool3", "relu4_1",
        "relu4_2", "relu5_1")


@pytest.fixture
def winograd_everywhere(monkeypatch):
    """Small test networks: let Winograd run on every layer with an even map (not just wide ones)."""
    monkeypatch.setattr(fastconv, "WINOGRAD_MIN_CHANNELS", 1)
    monkeypatch.setattr(fastconv, "WINOGRAD_MIN_PRODUCT", 1)


def both_paths(vgg, x, taps, grads):
    """Fast path, then the reference: the generic layer-by-layer path with im2col convolutions."""
    vgg.fast_cpu = True
    feats_fast, trace_fast = vgg.forward(x, taps)
    feats_fast = {k: v.copy() for k, v in feats_fast.items()}
    dx_fast = vgg.backward(trace_fast, grads)
    vgg.fast_cpu = False
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(conv, "_fast_case", lambda *args: False)
        feats_ref, trace_ref = vgg.forward(x, taps)
        dx_ref = vgg.backward(trace_ref, grads)
    vgg.fast_cpu = True
    return feats_fast, dx_fast, feats_ref, dx_ref


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("size", [(32, 40), (29, 35), (16, 16)], ids=str)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fast_path_matches_generic_float64(rng, winograd_everywhere, pooling, size, n_threads):
    threads.set_num_threads(n_threads)
    try:
        vgg = VGG19(random_vgg_params(rng), pooling=pooling, dtype=np.float64)
        x = random_image(rng, *size)
        taps = TAPS
        feats, _ = vgg.forward(x, taps)
        grads = {t: rng.standard_normal(feats[t].shape) for t in taps}
        feats_fast, dx_fast, feats_ref, dx_ref = both_paths(vgg, x, taps, grads)
    finally:
        threads.set_num_threads(None)
    for t in taps:
        assert feats_fast[t].shape == feats_ref[t].shape, (t, pooling, size)
        assert rel_error(feats_fast[t], feats_ref[t]) < 1e-12, (t, pooling, size)
    assert dx_fast.shape == x.shape and dx_fast.flags.c_contiguous
    assert rel_error(dx_fast, dx_ref) < 1e-12, (pooling, size, n_threads)


def test_fast_path_without_per_thread_blas_control(rng, winograd_everywhere, monkeypatch):
    """Where OpenBLAS's per-thread setting is missing, bands run in order and element-wise steps split."""
    monkeypatch.setattr(threads, "_blas_control", None)
    threads.set_num_threads(2)
    try:
        vgg = VGG19(random_vgg_params(rng), dtype=np.float64)
        x = random_image(rng, 32, 24)
        feats, _ = vgg.forward(x, ["relu2_1", "relu4_1"])
        grads = {t: rng.standard_normal(feats[t].shape) for t in feats}
        _, dx_fast, _, dx_ref = both_paths(vgg, x, ["relu2_1", "relu4_1"], grads)
    finally:
        threads.set_num_threads(None)
    assert rel_error(dx_fast, dx_ref) < 1e-12


def test_fast_path_leaves_inputs_alone(rng):
    vgg = VGG19(random_vgg_params(rng), dtype=np.float32)
    x = random_image(rng, 16, 20).astype(np.float32)
    x0 = x.copy()
    feats, trace = vgg.forward(x, ["relu2_1", "relu1_1"])
    g = {n: np.ones(feats[n].shape, np.float32) for n in feats}
    g0 = {n: v.copy() for n, v in g.items()}
    vgg.backward(trace, g)
    np.testing.assert_array_equal(x, x0)
    for n in g:
        np.testing.assert_array_equal(g[n], g0[n])


def test_trace_serves_one_backward_and_buffers_are_recycled(rng):
    vgg = VGG19(random_vgg_params(rng), dtype=np.float32)
    x = random_image(rng, 16, 20).astype(np.float32)
    feats, trace = vgg.forward(x, ["relu1_1", "relu2_1"])
    kept = feats["relu1_1"].copy()
    g = {"relu2_1": np.ones(feats["relu2_1"].shape, np.float32)}
    vgg.backward(trace, g)
    with pytest.raises(ValueError, match="already used"):
        vgg.backward(trace, g)
    assert vgg.buffers.nbytes() > 0, "the backward gives its buffers back to the pool"
    # relu1_1's buffer is still viewed by feats: it must not be reused by the next forward
    vgg.forward(x + 1, ["relu1_1", "relu2_1"])
    np.testing.assert_array_equal(feats["relu1_1"], kept)


def test_gradient_taps_only_on_some_layers(rng):
    """A gradient at a shallow tap only: deeper layers of the trace pass nothing back."""
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64)
    x = random_image(rng, 16, 16)
    feats, _ = vgg.forward(x, ["relu1_1", "relu3_1"])
    grads = {"relu1_1": rng.standard_normal(feats["relu1_1"].shape)}
    _, dx_fast, _, dx_ref = both_paths(vgg, x, ["relu1_1", "relu3_1"], grads)
    assert rel_error(dx_fast, dx_ref) < 1e-12


def mask_flips(vgg32, vgg64, x):
    """ReLU units whose float32 and float64 pre-activations have different signs."""
    convs = [n for n in LAYER_NAMES[:LAYER_NAMES.index("relu5_1")] if n.startswith("conv")]
    f32, _ = vgg32.forward(x.astype(np.float32), convs)
    f64, _ = vgg64.forward(x, convs)
    return sum(int(((f32[n] > 0) != (f64[n] > 0)).sum()) for n in convs)


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_float32_objective_gradient_within_1e4_of_float64(rng, winograd_everywhere, pooling):
    """The whole float32 gradient (fast path, Winograd on) against the float64 reference.

    Float rounding moves a pre-activation that sits within ~1e-7 of zero to the other side of the ReLU
    now and then; the gradient there then legitimately differs by a whole term (any float32 code,
    PyTorch's included, does this). The test asserts no unit flipped, so what it measures is the
    arithmetic error of the kernels.
    """
    params = random_vgg_params(rng, widths=(16, 16, 24, 24, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32))
    vgg32 = VGG19(params, pooling=pooling, dtype=np.float32)
    vgg64 = VGG19(params, pooling=pooling, dtype=np.float64)
    content, style, x = (random_image(rng, 48, 64) for _ in range(3))
    assert mask_flips(vgg32, vgg64, x) == 0, "choose another seed: a ReLU flipped"
    kwargs = dict(content_weight=1.0, style_weight=1e3, tv_weight=1e-3)
    obj32 = StyleObjective(vgg32, content=content.astype(np.float32), styles=[style.astype(np.float32)], **kwargs)
    obj64 = StyleObjective(vgg64, content=content, styles=[style], **kwargs)
    f32, g32 = obj32.value_and_grad(x.astype(np.float32))
    f64, g64 = obj64.value_and_grad(x)
    assert g32.dtype == np.float32
    assert abs(f32 - f64) / abs(f64) < 1e-5, (pooling, f32, f64)
    err = rel_error(g32, g64)
    assert err < 1e-4, f"{pooling}: float32 gradient relative error {err:.1e}"


def test_buffers_pooled_for_the_target_images_are_let_go(rng):
    """The style image's forward pools buffers of its own size; once the targets exist they are freed,
    and evaluations then keep only buffers of the image being optimised."""
    vgg = VGG19(random_vgg_params(rng), dtype=np.float32)
    content = random_image(rng, 24, 16).astype(np.float32)
    style = random_image(rng, 40, 32).astype(np.float32)
    vgg.forward(style, ["relu3_1"])
    assert vgg.buffers.nbytes() > 0  # the premise: a forward leaves pooled buffers behind
    obj = StyleObjective(vgg, content, [style], style_layers=["relu1_1", "relu3_1"])
    assert vgg.buffers.nbytes() == 0
    obj.value_and_grad(content)
    kept_sizes = {shape[1:] for shape, _ in vgg.buffers._free}
    assert kept_sizes and all(s[0] <= 24 + 3 for s in kept_sizes), kept_sizes
