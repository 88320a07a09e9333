"""The memory estimate: it grows with the image, counts what it claims, and the machine's free memory
is read without psutil."""
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from nstyle.app.run import memory
from nstyle.app.run.memory import (
    available_bytes,
    cpu_network_bytes,
    cpu_weight_form_bytes,
    estimate,
    format_bytes,
    largest_fitting_size,
    network_bytes,
)
from nstyle.cpu.threads import num_threads
from nstyle.model.arch import CONV_LAYERS, CONV_SHAPES
from nstyle.model.gradcheck import random_image, random_vgg_params
from nstyle.model.objective import StyleObjective
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
    per_thread, main = memory.cpu_winograd_scratch_bytes("relu5_1", sizes=[(h, w)], threads=num_threads())
    scratch = (memory.CPU_SCRATCH_BYTES_PER_THREAD + per_thread) * num_threads() + memory.CPU_SCRATCH_BYTES_MAIN + main
    assert 0.6 * model < measured < model + scratch, (measured, model, scratch)
    assert forms(vgg) == cpu_weight_form_bytes("relu5_1", sizes=[(h, w)], forward_sizes=[(64, 96)])


def test_network_model_follows_the_engine():
    taps = ("relu4_2",) + STYLE
    assert network_bytes(256, 256, taps) == cpu_network_bytes(256, 256, taps)
    for engine in ("gpu", "reference"):
        assert network_bytes(256, 256, taps, engine=engine) == memory.layer_path_network_bytes(256, 256, taps)
    cpu, gpu = estimate(256, 256, ("relu4_2",), STYLE), estimate(256, 256, ("relu4_2",), STYLE, device="gpu")
    ref = estimate(256, 256, ("relu4_2",), STYLE, engine="reference")
    assert cpu.parts["kernel weights"] > 0 and cpu.parts["thread buffers"] > 0
    for other in (gpu, ref):
        assert "kernel weights" not in other.parts and "thread buffers" not in other.parts
    assert ref.parts["network"] == gpu.parts["network"] != cpu.parts["network"]


def test_largest_fitting_size_bisects():
    make = lambda s: estimate(s, s, ("relu4_2",), STYLE)  # noqa: E731
    budget = make(700).total
    found = largest_fitting_size(budget, make)
    assert 690 <= found <= 700 and make(found).total <= budget
    assert largest_fitting_size(1, make) is None


def fake_system(root, meminfo_kb=8 * 2**20, cgroup="0::/job/step\n", files=None):
    """A folder laid out like /proc and /sys, for available_bytes(root=...)."""
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    if meminfo_kb is not None:
        (root / "proc/meminfo").write_text(f"MemTotal: {2 * meminfo_kb} kB\nMemAvailable: {meminfo_kb} kB\n")
    (root / "proc/self/cgroup").write_text(cgroup)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return str(root)


def test_available_bytes_reads_meminfo(tmp_path):
    free, source = available_bytes(fake_system(tmp_path))
    assert (free, source) == (8 * 2**30, "MemAvailable")


@pytest.mark.parametrize("where", ["sys/fs/cgroup/job/step", "sys/fs/cgroup/job", "sys/fs/cgroup"])
def test_a_cgroup_v2_limit_on_the_process_or_an_ancestor_binds(tmp_path, where):
    """A limit set on this process's own cgroup, on a parent (a Slurm job, a systemd slice) or at the
    root is found, and the room under it counts when it is tighter than the machine's free memory."""
    files = {"sys/fs/cgroup/job/step/memory.max": "max"}  # no limit of its own...
    files.update({f"{where}/memory.max": str(3 * 2**30), f"{where}/memory.current": str(2**30)})
    root = fake_system(tmp_path, files=files)
    assert available_bytes(root) == (2 * 2**30, "cgroup memory limit")


def test_the_tightest_of_several_cgroup_limits_wins(tmp_path):
    root = fake_system(tmp_path, files={"sys/fs/cgroup/job/memory.max": str(5 * 2**30),
                                         "sys/fs/cgroup/job/memory.current": "0",
                                         "sys/fs/cgroup/job/step/memory.max": str(4 * 2**30),
                                         "sys/fs/cgroup/job/step/memory.current": str(2**30)})
    assert available_bytes(root)[0] == 3 * 2**30


def test_a_cgroup_v1_memory_controller_limit_binds(tmp_path):
    root = fake_system(tmp_path, cgroup="12:cpu,cpuacct:/x\n4:memory:/pod7\n",
                       files={"sys/fs/cgroup/memory/pod7/memory.limit_in_bytes": str(2**30),
                              "sys/fs/cgroup/memory/pod7/memory.usage_in_bytes": str(2**28),
                              "sys/fs/cgroup/memory/memory.limit_in_bytes": str(2**63 - 4096)})
    assert available_bytes(root) == (2**30 - 2**28, "cgroup memory limit")


def test_a_limit_larger_than_free_memory_changes_nothing(tmp_path):
    root = fake_system(tmp_path, meminfo_kb=2**20, files={"sys/fs/cgroup/job/step/memory.max": str(2**40),
                                                           "sys/fs/cgroup/job/step/memory.current": "0"})
    assert available_bytes(root) == (2**30, "MemAvailable")


def test_an_address_space_limit_binds(tmp_path):
    """ulimit -v, set in a child process so that the test's own process keeps its limits."""
    code = ("import resource, nstyle.app.run.memory as m; resource.setrlimit(resource.RLIMIT_AS, (2**34, 2**34)); "
            "free, source = m.available_bytes(); print(free, source)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    free, source = int(out[0]), out[1].strip()
    assert source == "address-space limit (ulimit -v)" and 0 < free < 2**34


def test_unknown_memory_is_said(tmp_path):
    assert available_bytes(fake_system(tmp_path, meminfo_kb=None))[0] is None


def test_format_bytes():
    assert format_bytes(512) == "512 B" and format_bytes(1536) == "1.5 KiB" and format_bytes(3 * 2**30) == "3.0 GiB"
