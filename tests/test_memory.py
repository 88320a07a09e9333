"""The memory estimate: it grows with the image, counts what it claims, and the machine's free memory
is read without psutil."""
import pytest

from nstyle import memory
from nstyle.memory import available_bytes, estimate, format_bytes, largest_fitting_size, network_bytes

STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def test_estimate_grows_with_size_and_layers():
    small = estimate(256, 256, ("relu4_2",), STYLE)
    big = estimate(512, 512, ("relu4_2",), STYLE)
    assert big.parts["network"] > 3.5 * small.parts["network"], "activations scale with the pixel count"
    assert big.parts["optimizer"] == pytest.approx(4 * small.parts["optimizer"])
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
    assert lb.parts["optimizer"] == vectors * 3 * 100 * 100 * 8
    assert adam.parts["optimizer"] < lb.parts["optimizer"] / 5


def test_network_bytes_counts_masks_and_taps():
    # conv1_1 at 10x10: relu1_1's mask (64*100 bytes) plus the tap and its gradient (2 * 64*100*4)
    only = network_bytes(10, 10, ("relu1_1",))
    assert only >= 64 * 100 + 2 * 64 * 100 * 4
    assert network_bytes(10, 10, ()) == 0
    assert network_bytes(64, 64, ("relu5_1",), pooling="max") > network_bytes(64, 64, ("relu5_1",))


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
