"""No BLAS thread polls on a core nstyle's own threads need (cpu/threads.py, bench/NOTES.md section 15).

An OpenBLAS worker thread, once woken by a multi-threaded call, polls for about 0.1 s before it
sleeps. So with nstyle's threads in use an evaluation keeps NumPy's BLAS on one thread from its
forward to its backward (the pool spreads the work), and SciPy's L-BFGS-B driver keeps SciPy's own
copy of OpenBLAS on one thread. These tests read the counts where it matters and after.
"""
import ctypes

import numpy as np
import pytest

from nstyle.cpu import threads
from nstyle.cpu.blas import openblas_paths
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19
from nstyle.optim.optimize import lbfgs


def _count(fn):
    """The thread count an ``openblas_set_num_threads_local`` sets, read without changing it."""
    n = fn(1)
    fn(n)
    return n


def _numpy_control():
    control = threads.blas_thread_control()
    if control is None:
        pytest.skip("no OpenBLAS thread control in this NumPy")
    return control


def _other_controls():
    import scipy.optimize  # noqa: F401 -- loads SciPy's own BLAS
    _numpy_control()
    found = []
    for path in openblas_paths():
        if path == threads._blas_path:
            continue
        fn = getattr(ctypes.CDLL(path), "openblas_set_num_threads_local", None)
        if fn is not None:
            fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
            found.append(fn)
    if not found:
        pytest.skip("no second OpenBLAS loaded (SciPy shares NumPy's here)")
    return found


class _Spy:
    """A term stand-in's hook: the BLAS counts seen while the objective runs its layer terms."""

    def __init__(self, term, control):
        self.seen, self.term, self.control = [], term, control
        self.evaluate = term.evaluate
        term.evaluate = self

    def __call__(self, taps):
        self.seen.append(_count(self.control))
        return self.evaluate(taps)


def _objective(rng):
    params, c = {}, 3
    for name, o in (("conv1_1", 8), ("conv1_2", 8), ("conv2_1", 16)):
        params[name] = (rng.standard_normal((o, c, 3, 3)).astype(np.float32) * np.float32(0.3),
                        rng.standard_normal(o).astype(np.float32) * np.float32(0.1))
        c = o
    vgg = VGG19(params)
    content = rng.uniform(-100, 100, (1, 3, 16, 16)).astype(np.float32)
    style = rng.uniform(-100, 100, (1, 3, 16, 16)).astype(np.float32)
    return StyleObjective(vgg, content, [style], content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"))


@pytest.mark.parametrize("n_threads, inside", [(2, 1), (1, 3)])
def test_an_evaluation_holds_numpys_blas_on_one_thread(rng, n_threads, inside):
    """With two threads the count is 1 between the forward and the backward (where the losses run),
    and back after; with one thread nstyle leaves it alone (one-thread bits do not depend on it)."""
    control = _numpy_control()
    previous = control(3)
    threads.set_num_threads(n_threads)
    try:
        objective = _objective(rng)
        spy = _Spy(objective.terms[0], control)
        objective.value_and_grad(rng.uniform(-100, 100, (1, 3, 16, 16)).astype(np.float32))
        assert spy.seen == [inside]
        assert _count(control) == 3, "the count is restored after the evaluation"
    finally:
        threads.set_num_threads(None)
        control(previous)


def test_scipys_blas_is_single_threaded_while_its_lbfgsb_runs(rng):
    others = _other_controls()
    previous = [fn(2) for fn in others]
    seen = []
    try:
        objective = _objective(rng)
        x0 = rng.uniform(-100, 100, (1, 3, 16, 16)).astype(np.float32)
        lbfgs(objective, x0, iters=2, impl="scipy",
              callback=lambda record, get_x: seen.append([_count(fn) for fn in others]))
        assert seen and all(counts == [1] * len(others) for counts in seen), seen
        assert [_count(fn) for fn in others] == [2] * len(others), "restored after the run"
    finally:
        for fn, n in zip(others, previous):
            fn(n)
