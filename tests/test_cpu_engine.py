"""What is particular to the CPU engine: thread counts, inputs left alone, traces used once, buffers reused
and let go. Its values and gradients against the reference engine: test_engines.py."""
import numpy as np
import pytest

from nstyle.cpu import blas, threads
from nstyle.cpu.engine import CpuEngine
from nstyle.model.gradcheck import random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19


def cpu_winograd_always(params, pooling):
    return CpuEngine(params, pooling, winograd="always")


@pytest.mark.parametrize("n_threads", [1, 2])
def test_thread_counts_give_the_reference_result(rng, n_threads):
    params = random_vgg_params(rng)
    x = random_image(rng, 32, 24)
    ref = VGG19(params, dtype=np.float64, engine="reference")
    feats, trace = ref.forward(x, ["relu2_1", "relu4_1"])
    grads = {t: rng.standard_normal(feats[t].shape) for t in feats}
    dx_ref = ref.backward(trace, {k: g.copy() for k, g in grads.items()})
    threads.set_num_threads(n_threads)
    try:
        fast = VGG19(params, dtype=np.float64, engine=cpu_winograd_always)
        dx = fast.backward(fast.forward(x, ["relu2_1", "relu4_1"])[1], grads)
    finally:
        threads.set_num_threads(None)
    assert rel_error(dx, dx_ref) < 1e-12


def test_fast_path_without_per_thread_blas_control(rng, monkeypatch):
    """Where OpenBLAS's per-thread setting is missing (simulated: the control handle removed), bands
    run in order and element-wise steps split; the result is the reference's."""
    monkeypatch.setattr(threads, "_blas_control", None)
    test_thread_counts_give_the_reference_result(rng, 2)


def test_fast_path_without_the_blas_binding(rng, monkeypatch):
    """Where no CBLAS GEMM can be called directly (simulated), products add through NumPy's
    temporaries (``cpu/blas.py``); the result is the reference's."""
    monkeypatch.setattr(blas, "_gemms", {np.dtype(np.float32): None, np.dtype(np.float64): None})
    test_thread_counts_give_the_reference_result(rng, 2)


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
    assert vgg.engine.buffers.nbytes() > 0, "the backward gives its buffers back to the pool"
    # relu1_1's buffer is still viewed by feats: it must not be reused by the next forward
    vgg.forward(x + 1, ["relu1_1", "relu2_1"])
    np.testing.assert_array_equal(feats["relu1_1"], kept)


def test_buffers_pooled_for_the_target_images_are_let_go(rng):
    """The style image's forward pools buffers of its own size; once the targets exist they are freed,
    and evaluations then keep only buffers of the image being optimised."""
    vgg = VGG19(random_vgg_params(rng), dtype=np.float32)
    content = random_image(rng, 24, 16).astype(np.float32)
    style = random_image(rng, 40, 32).astype(np.float32)
    vgg.forward(style, ["relu3_1"])
    assert vgg.engine.buffers.nbytes() > 0  # the premise: a forward leaves pooled buffers behind
    obj = StyleObjective(vgg, content, [style], style_layers=["relu1_1", "relu3_1"])
    assert vgg.engine.buffers.nbytes() == 0
    obj.value_and_grad(content)
    kept = vgg.engine.buffers.block_sizes()
    largest_map = 64 * (24 + 3) * (16 + 2) * 4  # conv1's zero-bordered output at the content's size
    assert kept and max(kept) <= largest_map, kept


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("h, w", [(8, 6), (9, 7)])
def test_pool_steps_against_the_reference_and_the_fused_mask(rng, pooling, h, w, monkeypatch):
    """The CPU pooling steps on the padded layout, odd sizes included: forward and backward as the
    reference's, and the backward with the ReLU mask below applied on the way (in chunks of a few
    channels) equal to the mask applied after."""
    from nstyle.cpu import padded, steps  # noqa: PLC0415
    from nstyle.reference import pool as ref_pool  # noqa: PLC0415
    monkeypatch.setattr(steps, "MASK_CHUNK_ELEMS", 2 * (h + 3) * (w + 2))  # two channels per chunk
    c = 5
    x = rng.standard_normal((c, h, w))
    buf = padded.to_padded(x)
    ho, wo = h // 2, w // 2
    out = padded.empty_padded(c, ho, wo, x.dtype)
    winner = None
    if pooling == "avg":
        steps.avg_pool(buf, h, w, out)
        want, cache = ref_pool.avg_pool2d_forward(x[None], 2, 2)
    else:
        winner = np.empty((c, ho, wo), np.uint8)
        steps.max_pool(buf, h, w, out, winner)
        want, cache = ref_pool.max_pool2d_forward(x[None], 2, 2)
    assert rel_error(padded.interior(out, h // 2, w // 2), want[0]) < 1e-14
    g = rng.standard_normal((c, ho, wo))
    backward = ref_pool.avg_pool2d_backward if pooling == "avg" else ref_pool.max_pool2d_backward
    want_dx = backward(g[None], cache)[0]
    mask = np.zeros(steps.mask_shape(c, h, w), np.uint8)
    steps.relu_with_mask(padded.to_padded(rng.standard_normal((c, h, w))), h, mask)
    plain = steps.pool_backward(padded.to_padded(g), h, w, winner, np.full(buf.shape, np.nan))
    assert rel_error(padded.interior(plain, h, w), want_dx) < 1e-14
    fused = steps.pool_backward(padded.to_padded(g), h, w, winner, np.full(buf.shape, np.nan), mask=mask)
    steps.apply_mask(plain, mask, h, w)
    assert np.array_equal(fused, plain)
    assert fused[:, 1:h + 1, 1:w + 1].any() and not np.isnan(fused).any()


@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("taps", [("relu2_1", "relu4_1"), ("conv2_2", "pool2", "relu3_1", "relu4_2")])
def test_chained_steps_give_the_bits_of_the_unchained_engine(rng, pooling, taps, monkeypatch):
    """On small maps with two threads the engine pools and transforms each channel range where the
    range is made (cpu/chain.py): the same calls on the same ranges, so the same bits -- and fewer
    regions. Taps that take gradients in between (a convolution's output, a pool) stop the chain there."""
    from nstyle.cpu import chain, team  # noqa: PLC0415

    regions = []
    run = team.Team.run
    monkeypatch.setattr(team.Team, "run", lambda self, jobs, own: (regions.append(1), run(self, jobs, own))[1])
    params = {k: (w.astype(np.float32), b.astype(np.float32)) for k, (w, b) in random_vgg_params(rng).items()}
    x = random_image(rng, 32, 24).astype(np.float32)
    results = []
    threads.set_num_threads(2)
    try:
        for chained in (False, True):
            monkeypatch.setattr(chain, "CHAIN", chained)
            vgg = VGG19(params, pooling=pooling, engine=cpu_winograd_always)
            regions.clear()
            feats, trace = vgg.forward(x, taps)
            forward_regions = len(regions)
            grads = {t: np.random.default_rng(5).standard_normal(feats[t].shape).astype(np.float32) for t in feats}
            copies = {t: np.array(f) for t, f in feats.items()}
            del feats
            regions.clear()
            dx = vgg.backward(trace, grads)
            results.append((copies, dx, forward_regions, len(regions)))
    finally:
        threads.set_num_threads(None)
    (f0, dx0, fw0, bw0), (f1, dx1, fw1, bw1) = results
    assert all(np.array_equal(f0[t], f1[t]) for t in taps)
    assert np.array_equal(dx0, dx1)
    assert fw1 < fw0 and bw1 < bw0, (fw0, fw1, bw0, bw1)
