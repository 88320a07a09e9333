"""How many CPU threads nstyle's own kernels use, and a small pool that splits element-wise work.

NumPy's element-wise operations (add, maximum, comparisons, strided copies) run on one core; only the
matrix products go through the multi-threaded BLAS. The CPU fast paths (``conv3x3.py``, ``winograd.py``,
``vgg.py``) therefore cut their large element-wise steps into channel ranges and run the ranges on a pool
of Python threads: NumPy releases the GIL inside those loops, so the ranges really run side by side.

The thread count is the first of these that is set: ``nstyle.layers.threads.set_num_threads(n)``, the
environment variables ``NSTYLE_NUM_THREADS``, ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS``; otherwise every core this process may run on. (OpenBLAS reads the same variables
for the matrix products, so one setting governs both.) The environment is read once, at first use.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

ENV_VARS = ("NSTYLE_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Below this many elements a step runs on the calling thread: handing work to the pool costs tens of
# microseconds, about what one core needs for this many float32 elements.
MIN_PARALLEL_ELEMENTS = 1 << 16

_lock = threading.Lock()
_pool = None
_pool_size = 0
_override = None
_default = None  # the environment's (or the cores') count, read once: os.environ lookups are slow


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
    """Fix the thread count for nstyle's element-wise kernels (None: read the environment/cores again)."""
    global _override, _default
    _default = None
    if n is not None and int(n) < 1:
        raise ValueError(f"thread count must be >= 1 (got {n})")
    _override = None if n is None else int(n)


def _get_pool(workers):
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nstyle")
            _pool_size = workers
        return _pool


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


def parallel_ranges(fn, n, work=None):
    """Call ``fn(lo, hi)`` over pieces of range(n), on the pool when that pays.

    work: total elements the call touches (decides whether threads are worth starting; default n).
    The calling thread runs the first piece itself; exceptions from any piece are re-raised.
    """
    threads = num_threads()
    if threads <= 1 or n <= 1 or (work if work is not None else n) < MIN_PARALLEL_ELEMENTS:
        fn(0, n)
        return
    pieces = split(n, threads)
    pool = _get_pool(len(pieces) - 1)
    futures = [pool.submit(fn, lo, hi) for lo, hi in pieces[1:]]
    try:
        fn(*pieces[0])
    finally:
        for f in futures:
            f.result()
