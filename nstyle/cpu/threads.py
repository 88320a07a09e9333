"""How many CPU threads nstyle's own kernels use, and how work is shared out between them (the threads
themselves: ``team.py``).

NumPy's element-wise operations run on one core and only the matrix products go through the
multi-threaded BLAS. The CPU fast paths (``conv3x3.py``, ``winograd.py``, ``vgg_cpu.py``) therefore do
their own threading, coarsely, with NumPy releasing the GIL inside each call:

- :func:`for_each_task` hands whole bands of a convolution -- gather or transform, matrix product,
  inverse transform, epilogue -- to the threads, which take the next band as soon as they are free.
  Inside those bands the BLAS runs single-threaded (see :func:`blas_thread_control`), so there is one
  synchronisation per layer instead of one per NumPy call: that keeps the cores busy, and keeps a
  loaded machine (other processes competing for the cores) from stalling every step on the slowest
  thread.
- :func:`parallel_ranges` splits a plain element-wise step (pooling, a mask product) by channels.

Either way the calling thread works too, beside ``num_threads() - 1`` threads of the team.

Which thread takes which task depends on timing; the bits must not (DESIGN.md, "Determinism"). Every
task writes its own part of the result, and the sums cut between tasks (``losses.gram``) are added in
task order, so what remains is the BLAS: OpenBLAS picks its kernel and cuts a product by its thread
count (64 x 577 x 1500 rounds differently on one thread and on two), and that count is one setting for
the whole process (``openblas_set_num_threads_local`` included, in the pthreads builds NumPy ships).
So the calling thread sets it to 1 *before* it hands out the first task and sets it back only *after*
the last one has finished, under a lock (:func:`single_threaded_blas`): every task's products run on
one BLAS thread.

Between pool calls the BLAS should not get its threads back either: an OpenBLAS worker thread, once
woken by a multi-threaded call, polls for more work for about 0.1 s (2^28 cycles) before it sleeps,
on the core the pool's own worker needs. At 128 px a few products on the calling thread between the
forward and the backward (the deepest style tap's Gram matrix and gradient) kept it polling through
most of every evaluation: 159 -> 117 ms per evaluation once they ran single-threaded (bench/NOTES.md,
section 15). So the CPU engine holds :func:`pool_owns_cores` around a whole evaluation: with more than one
thread the BLAS stays single-threaded from the forward's start to the backward's end, and the work
that should use both cores goes through the pool. The same lock serialises two evaluations at once in
one process (threads of one Dask worker), which would otherwise set and restore that one count across
each other; nstyle's own workers run one task per process.

Where the BLAS's thread count cannot be set (not OpenBLAS >= 0.3.27, or not found), bands run one
after another on the calling thread with the BLAS's own threading.

The thread count is the first of these that is set: :func:`set_num_threads`, the environment variables
``NSTYLE_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``; otherwise
every core this process may run on. (OpenBLAS reads the same variables for its own threads, so one
setting governs both.) The environment is read once, at first use.
"""
import contextlib
import contextvars
import ctypes
import itertools
import os
import threading

import numpy as np

from .blas import openblas_paths
from .team import Team

ENV_VARS = ("NSTYLE_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Below this many elements a step runs on the calling thread: handing work to the pool costs tens of
# microseconds, about what one core needs for this many float32 elements.
MIN_PARALLEL_ELEMENTS = 1 << 16

_lock = threading.Lock()
# Held while the BLAS is set single-threaded for the pool: two callers in one process would otherwise
# set and restore that one process-wide setting across each other's tasks.
_blas_lock = threading.RLock()
_team = None
# Held while a region runs on the team: a second caller (only possible without the BLAS lock, i.e.
# without BLAS control) runs its region on its own thread instead.
_team_lock = threading.Lock()
_override = None
_default = None  # the environment's (or the cores') count, read once: os.environ lookups are slow
_in_task = threading.local()
_scratch = threading.local()
_blas_control = "unknown"
_blas_path = None  # the library _blas_control belongs to


def available_cores():
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _from_env():
    for var in ENV_VARS:
        value = os.environ.get(var, "").strip()
        if not value:
            continue
        try:
            n = int(value.split(",")[0])  # OMP_NUM_THREADS may list one count per nesting level
        except ValueError:
            continue
        if n >= 1:
            return n
    return None


def num_threads():
    """The thread count in force (see the module docstring for where it comes from)."""
    global _default
    if _override is not None:
        return _override
    if _default is None:
        _default = _from_env() or available_cores()
    return _default


def set_num_threads(n):
    """Fix the thread count for nstyle's kernels (None: read the environment/cores again)."""
    global _override, _default
    if n is not None and int(n) < 1:
        raise ValueError(f"thread count must be >= 1 (got {n})")
    _default = None
    _override = None if n is None else int(n)


def blas_thread_control():
    """OpenBLAS's ``openblas_set_num_threads_local`` for the library NumPy uses, or None.

    It sets the BLAS thread count and returns the previous one (OpenBLAS >= 0.3.27). Despite its name
    the count is the whole process's in the pthreads builds NumPy's wheels carry (checked with 0.3.31:
    a worker thread's call changes what the main thread gets); :func:`single_threaded_blas` is written
    for either reading. Found by looking through the shared objects this process has loaded (Linux).
    """
    global _blas_control, _blas_path
    if _blas_control != "unknown":
        return _blas_control
    found = None  # published once whole: another thread must never see None while this one looks
    for path in openblas_paths():  # NumPy's own copy first: that is the one np.matmul calls
        try:
            lib = ctypes.CDLL(path)
            fn = lib.openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        found, _blas_path = fn, path
        break
    _blas_control = found
    return _blas_control


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with the BLAS single-threaded, and restore its thread count after.

    Under a lock, so that the count one caller restores is the one it found, never another caller's 1.
    Tasks must be handed to the pool inside the block and joined before it ends: a task that ran
    before the count was set, or after it was restored, would run its products multi-threaded and
    round them differently (see the module docstring).
    """
    control = blas_thread_control()
    if control is None:
        yield
        return
    with _blas_lock:
        previous = control(1)
        try:
            yield
        finally:
            control(previous)


def pool_owns_cores():
    """A context for a whole evaluation on the CPU engine: with more than one thread (and the BLAS's
    count under control) the BLAS is single-threaded throughout -- in the pool's tasks and between
    them -- so that no BLAS thread polls for work on a core the pool needs (see the module docstring).
    With one thread it changes nothing: one-thread bits stay what they were whatever the BLAS's count.
    """
    if num_threads() <= 1 or blas_thread_control() is None:
        return contextlib.nullcontext()
    return single_threaded_blas()


@contextlib.contextmanager
def other_blas_single_threaded():
    """Every OpenBLAS this process has loaded besides NumPy's (SciPy's wheels bundle a copy of their
    own) set to one thread for the block, and back after.

    SciPy's L-BFGS-B does its few passes over the pixels per iteration in SciPy's copy; with two
    threads that copy's worker then polls for about 0.1 s (see the module docstring) -- through most
    of the next evaluation at small sizes, on a core nstyle's threads need. NumPy's BLAS, the one the
    kernels call, is left alone.
    """
    found = []
    numpy_blas = blas_thread_control() and _blas_path
    for path in openblas_paths() if numpy_blas else ():  # (NumPy's not known: nothing is changed)
        if path == numpy_blas:
            continue
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        found.append(fn)
    if not found:
        yield
        return
    previous = [fn(1) for fn in found]
    try:
        yield
    finally:
        for fn, n in zip(found, previous):
            fn(n)


def _worker_init():
    # Where the setting is per thread after all, the pool's threads need it too; where it is the
    # process's (OpenBLAS's pthreads builds), this runs inside single_threaded_blas and changes nothing.
    control = blas_thread_control()
    if control is not None:
        control(1)


def _get_team(workers):
    global _team
    with _lock:
        if _team is None or not _team.usable(workers):
            if _team is not None:
                _team.retire()
            _team = Team(workers, "nstyle", initializer=_worker_init)
        return _team


def split(n, parts):
    """Cut range(n) into at most ``parts`` contiguous (lo, hi) pieces of near-equal length."""
    parts = max(1, min(parts, n))
    step, extra = divmod(n, parts)
    bounds, lo = [], 0
    for i in range(parts):
        hi = lo + step + (1 if i < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _drain(fn, n_tasks, threads):
    """fn(i) for i in range(n_tasks) on this thread and ``threads - 1`` of the team's, each taking the
    next i when it is free; returns once all have finished (re-raising the first error). Each thread
    runs in a copy of the caller's context, so settings such as np.errstate carry over."""
    counter = itertools.count()

    def drain():
        for i in iter(counter.__next__, None):
            if i >= n_tasks:
                break
            fn(i)

    if not _team_lock.acquire(blocking=False):  # another caller's region holds the team
        _as_task(drain)
        return
    try:
        team = _get_team(threads - 1)
        jobs = [lambda ctx=contextvars.copy_context(): ctx.run(_as_task, drain) for _ in range(threads - 1)]  # noqa: B008 -- a copy per job, made here
        team.run(jobs, lambda: _as_task(drain))
    finally:
        _team_lock.release()


def _as_task(fn, *args):
    """fn(*args) marked as running inside a task: the parallel calls it makes run inline."""
    outer = getattr(_in_task, "active", False)
    _in_task.active = True
    try:
        return fn(*args)
    finally:
        _in_task.active = outer


def parallel_ranges(fn, n, work=None):
    """Call ``fn(lo, hi)`` over pieces of range(n), on the pool when that pays.

    For element-wise work. work: total elements the call touches (decides whether threads are worth
    starting; default n). Runs inline when called from inside a task. On the pool the BLAS is
    single-threaded, as in :func:`for_each_task`, should fn use it.
    """
    threads = num_threads()
    if (threads <= 1 or n <= 1 or getattr(_in_task, "active", False)
            or (work if work is not None else n) < MIN_PARALLEL_ELEMENTS):
        fn(0, n)
        return
    pieces = split(n, threads)
    with single_threaded_blas():
        _drain(lambda i: fn(*pieces[i]), len(pieces), len(pieces))


def scratch(key, shape, dtype):
    """A work array private to the calling thread and kept for its next call (contents undefined).

    Kernels take their band buffers here: a fresh large array would cost page faults every time.
    What each thread keeps is bounded by the kernels' band budgets (a few tens of MB).
    """
    store = getattr(_scratch, "arrays", None)
    if store is None:
        store = _scratch.arrays = {}
    n = 1
    for d in shape:
        n *= int(d)
    buf = store.get(key)
    if buf is None or buf.size < n or buf.dtype != np.dtype(dtype):
        buf = store[key] = np.empty(max(n, 1), dtype=dtype)
    return buf[:n].reshape(shape)


def for_each_task(fn, n_tasks):
    """Run ``fn(i)`` for i in range(n_tasks), each thread taking the next i when it is free.

    fn may call the BLAS: inside a task it runs single-threaded when :func:`blas_thread_control` is
    available -- also when the thread count is 1 and the tasks run here, one after another. Without
    that control they run here too, and the BLAS keeps its own threads. Tasks take their work arrays
    from :func:`scratch`.
    """
    threads = min(num_threads(), n_tasks)
    control = blas_thread_control()
    if getattr(_in_task, "active", False) or control is None or threads <= 1:
        # Here, one after another. Inside a task the BLAS is single-threaded already; with one thread
        # asked for it is made so too, so that every product has the shape and the threading it has
        # on a one-thread Dask worker (and gives the same bits); without the control it keeps its own.
        single = control is not None and not getattr(_in_task, "active", False) and num_threads() <= 1
        with single_threaded_blas() if single else contextlib.nullcontext():
            for i in range(n_tasks):
                fn(i)
        return
    # The BLAS goes single-threaded before the first task is handed out and back only once every
    # task has finished (single_threaded_blas).
    with single_threaded_blas():
        _drain(fn, n_tasks, threads)
