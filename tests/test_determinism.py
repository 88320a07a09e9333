"""Same inputs, same bits on the CPU, whatever else the machine is doing (DESIGN.md, "Determinism").

Which pool thread takes which band depends on timing. What must not depend on it is the rounding, and
the one thing that made it so was the BLAS's thread count: OpenBLAS rounds a product differently on
one thread and on two, and that count is one setting for the whole process. These tests load the
cores (busy processes, and a thread of this process running products of its own) while nstyle
evaluates, and compare bits.
"""
import contextlib
import ctypes
import hashlib
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from nstyle import stylize
from nstyle.cpu import blas, threads
from nstyle.model.arch import CONV_LAYERS, CONV_SHAPES
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19

from .clitools import gradient_image, stripes_image


def _blas_getter():
    """OpenBLAS's thread-count getter in NumPy's library (plain or as NumPy's wheels name it), or None."""
    for path in blas.openblas_paths():
        lib = ctypes.CDLL(path)
        for name in ("openblas_get_num_threads", "scipy_openblas_get_num_threads64_",
                     "scipy_openblas_get_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.restype = ctypes.c_int
                return fn
    return None


@contextlib.contextmanager
def blas_threads(n):
    """The BLAS's own thread count set to n for the block: a fresh process on two cores starts with 2,
    while earlier tests in this one may have left another value."""
    control = threads.blas_thread_control()
    if control is None:
        pytest.skip("no OpenBLAS thread control in this NumPy: the kernels run on the calling thread")
    previous = control(n)
    try:
        yield
    finally:
        control(previous)


@contextlib.contextmanager
def busy_machine(processes=2):
    """Cores kept busy by spinning processes, and a thread of this process multiplying matrices."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    stop = threading.Event()

    def products():
        a = np.random.default_rng(1).standard_normal((256, 256)).astype(np.float32)
        while not stop.is_set():
            a @ a

    loader = threading.Thread(target=products, daemon=True)
    loader.start()
    try:
        yield
    finally:
        stop.set()
        loader.join()
        for p in spinners:
            p.kill()
            p.wait()


@pytest.fixture
def two_threads():
    threads.set_num_threads(2)
    try:
        yield
    finally:
        threads.set_num_threads(None)


def full_width_params(rng):
    """VGG-19's real shapes (64..512 channels) with random weights: the products at real widths are the
    ones whose rounding depends on the BLAS's thread count."""
    params, c = {}, 3
    for name in CONV_LAYERS:
        o = CONV_SHAPES[name][0]
        params[name] = (rng.standard_normal((o, c, 3, 3), dtype=np.float32) * np.float32(np.sqrt(2 / (9 * c))),
                        rng.standard_normal(o, dtype=np.float32) * np.float32(0.1))
        c = o
    return params


def test_every_task_runs_with_a_single_threaded_blas(two_threads):
    """The mechanism: the BLAS is single-threaded from before the first task is handed out until the
    last has finished, whichever thread is slow, and has its count back afterwards."""
    getter = _blas_getter()
    if getter is None:
        pytest.skip("no OpenBLAS thread-count getter to read")
    main = threading.main_thread()
    seen = []

    def task(i):
        # the pool's thread is the slow one: it reads the count long after the caller's tasks are done
        time.sleep(0.3 if threading.current_thread() is not main else 0.02)
        seen.append(getter())

    with blas_threads(2):
        threads.for_each_task(task, 6)
        assert getter() == 2, "the caller's BLAS thread count is restored"
        threads.parallel_ranges(lambda lo, hi: task(lo), 6, work=1 << 20)
        assert getter() == 2
    assert len(seen) == 8 and set(seen) == {1}, seen  # six tasks, then two ranges


def _fingerprint(value, grad):
    return hashlib.sha256(np.float64(value).tobytes() + np.ascontiguousarray(grad).tobytes()).hexdigest()


def test_gradient_bits_do_not_change_under_load(rng, two_threads):
    """One x, evaluated again and again while the machine is busy: one value, one gradient."""
    blas._gemms.clear()  # the style gradient's GEMM is bound on first use, inside the pool's tasks
    vgg = VGG19(full_width_params(rng))
    h, w = 48, 64
    content = rng.uniform(-100, 100, (1, 3, h, w)).astype(np.float32)
    style = rng.uniform(-100, 100, (1, 3, w, w)).astype(np.float32)  # another size: other buffers
    x = rng.uniform(-100, 100, (1, 3, h, w)).astype(np.float32)
    prints = []
    with blas_threads(2), busy_machine():
        objective = StyleObjective(vgg, content, [style])
        for _ in range(10):
            prints.append(_fingerprint(*objective.value_and_grad(x)))
    assert len(set(prints)) == 1, [prints.index(p) for p in prints]


def test_seeded_stylisation_gives_the_same_bytes_under_load(rng, two_threads):
    """Two seeded runs from a noise start, each on a network of its own, under load: the same bytes --
    and the same loss at every iteration (a gradient one bit off moves the optimiser's path, which the
    8-bit output of a short run may not show)."""
    params = full_width_params(rng)
    content, style = gradient_image(48, 36), stripes_image(40, 40)
    runs = []
    with busy_machine():
        for _ in range(2):
            blas._gemms.clear()
            losses = []
            with blas_threads(2):
                image = stylize(content, style, size=48, iters=5, init="noise", seed=5, vgg=VGG19(params),
                                callback=lambda rec, _, losses=losses: losses.append(rec["loss"]))
            runs.append((np.asarray(image).tobytes(), losses))
    assert len(runs[0][1]) == 5
    assert runs[0][1] == runs[1][1], "the loss at each iteration"
    assert runs[0][0] == runs[1][0], "the output's bytes"
