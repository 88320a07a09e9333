"""The memory estimate: it grows with the image, counts what it claims, and the machine's free memory
is read without psutil."""
import tracemalloc

import numpy as np
import pytest

from nstyle.app import memory
from nstyle.model.gradcheck import random_image, random_vgg_params
from nstyle.cpu.threads import num_threads
from nstyle.app.memory import (available_bytes, cpu_network_bytes, cpu_weight_form_bytes, estimate, format_bytes, largest_fitting_size, network_bytes)
from nstyle.model.objective import StyleObjective
from nstyle.model.arch import CONV_LAYERS, CONV_SHAPES
from nstyle.model.vgg import VGG19

STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def test_estimate_grows_with_size_and_layers():
    small = estimate(256, 256, ("relu4_2",), STYLE)
    big = estimate(512, 512, ("relu4_2",), STYLE)
    assert big.parts["network"] > 3.5 * small.parts["network"], "activations scale with the pixel count"
    history = big.parts["optimizer"] - memory.LBFGS_IMPORT_BYTES
    assert history == pytest.approx(4 * (small.parts["optimizer"] - memory.LBFGS_IMPORT_BYTES))
    shallow = estimate(512, 512, ("relu2_1",), ("relu1_1", "relu2_1"))
    # the first blocks hold most of the activations (64 channels at full size), so stopping at relu2_1
    # saves less than one might think -- but it saves
    assert shallow.parts["network"] < 0.9 * big.parts["network"]
    assert shallow.parts["weights"] == big.parts["weights"], "the whole file is read either way"
    assert big.total == sum(big.parts.values())
    assert big.parts["other"] == pytest.approx(memory.OTHER_FRACTION * (big.total - big.parts["other"]), rel=1e-6)


def test_lbfgs_history_is_counted_in_float64():
    lb = estimate(100, 100, ("relu4_2",), STYLE, optimizer="lbfgs", history_size=10)
    adam = estimate(100, 100, ("relu4_2",), STYLE, optimizer="adam")
    vectors = memory.LBFGS_VECTORS_PER_PAIR * 10 + memory.LBFGS_EXTRA_VECTORS
    assert lb.parts["optimizer"] == memory.LBFGS_IMPORT_BYTES + vectors * 3 * 100 * 100 * 8
    assert adam.parts["optimizer"] < lb.parts["optimizer"] / 5


def test_network_bytes_counts_masks_and_taps():
    # conv1_1 at 10x10: relu1_1's mask (64*100 bytes) plus the tap and its gradient (2 * 64*100*4)
    only = network_bytes(10, 10, ("relu1_1",))
    assert only >= 64 * 100 + 2 * 64 * 100 * 4
    assert network_bytes(10, 10, ()) == 0
    assert network_bytes(64, 64, ("relu5_1",), pooling="max") > network_bytes(64, 64, ("relu5_1",))


def test_cpu_model_bounds_a_measured_evaluation(rng):
    """VGG-19's real widths up to conv5_1, one 96x128 evaluation traced by tracemalloc (NumPy reports
    its allocations to it): what the network work holds at its peak -- live buffers, the pool's idle
    ones and the threads' band buffers -- stays under the model and not far below it; the kernels'
    weight forms are exactly what cpu_weight_form_bytes counts."""
    layers = CONV_LAYERS[:13]  # conv1_1 .. conv5_1
    widths = tuple(CONV_SHAPES[name][0] for name in layers)
    params = {k: (w.astype(np.float32), b.astype(np.float32))
              for k, (w, b) in random_vgg_params(rng, widths=widths).items() if k in layers}
    h, w = 96, 128
    x = random_image(rng, h, w).astype(np.float32)

    def forms(vgg):
        return sum(a.nbytes for p in vgg.engine._prepared.values() for a in p._forms.values())

    tracemalloc.start()
    try:
        vgg = VGG19(params)
        obj = StyleObjective(vgg, x, [x[:, :, :64, :96]])  # a style image of another size, as in real runs
        before, forms_before = tracemalloc.get_traced_memory()[0], forms(vgg)
        obj.value_and_grad(x)  # the first evaluation fills the pool and makes the backward's weight forms
        tracemalloc.reset_peak()
        obj.value_and_grad(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    measured = peak - before - (forms(vgg) - forms_before)
    model = cpu_network_bytes(h, w, ("relu4_2",) + STYLE)
    scratch = memory.CPU_SCRATCH_BYTES_PER_THREAD * num_threads() + memory.CPU_SCRATCH_BYTES_MAIN
    assert 0.6 * model < measured < model + scratch, (measured, model, scratch)
    assert forms(vgg) == cpu_weight_form_bytes("relu5_1")


def test_network_model_follows_the_engine():
    taps = ("relu4_2",) + STYLE
    assert network_bytes(256, 256, taps) == cpu_network_bytes(256, 256, taps)
    assert network_bytes(256, 256, taps, device="gpu") == memory.layer_path_network_bytes(256, 256, taps)
    cpu, gpu = estimate(256, 256, ("relu4_2",), STYLE), estimate(256, 256, ("relu4_2",), STYLE, device="gpu")
    assert cpu.parts["kernel weights"] > 0 and cpu.parts["thread buffers"] > 0
    assert "kernel weights" not in gpu.parts and "thread buffers" not in gpu.parts


def test_largest_fitting_size_bisects():
    make = lambda s: estimate(s, s, ("relu4_2",), STYLE)  # noqa: E731
    budget = make(700).total
    found = largest_fitting_size(budget, make)
    assert 690 <= found <= 700 and make(found).total <= budget
    assert largest_fitting_size(1, make) is None


def test_available_bytes_reads_the_system(monkeypatch):
    free, source = available_bytes()
    assert free is None or (free > 0 and source)
    real_open = open

    def no_proc(path, *a, **k):
        if str(path).startswith(("/proc/meminfo", "/sys/fs/cgroup")):
            raise OSError("not here")
        return real_open(path, *a, **k)
    monkeypatch.setattr("builtins.open", no_proc)
    free, source = available_bytes()  # falls back to sysconf, or says it does not know
    assert (free is None and "not" in source) or (free > 0 and source == "free physical pages")


def test_format_bytes():
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 2**30) == "3.0 GiB"
