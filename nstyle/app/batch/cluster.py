"""Where a batch runs: a Dask ``LocalCluster`` sized to this machine, or an existing cluster by address.

Dask is an optional extra (``pip install 'nstyle[batch]'``): nothing outside the batch modules imports
it, and :func:`require_dask` turns its absence into one line.

Sizing a local cluster (:func:`size_local_cluster`). Each Dask worker is a process that runs one job
at a time (one Dask thread); inside it nstyle's own kernels use ``threads`` threads, so that
workers x threads = the cores. Several single-threaded workers keep the cores busier than one wide
one (no synchronisation per layer, no idle threads in the small layers), so by default there are as
many workers as cores -- but never more than jobs, and only as many as fit in memory: each needs the
largest job's memory estimate (``memory.py``, with its own thread count) plus what a Dask worker and its
nanny hold. When fewer fit, each one gets more threads. A worker's Dask memory limit is that need with
a margin; above 95% of it Dask restarts the worker, and the batch sees a lost worker.

Everything listens on 127.0.0.1 only (scheduler, workers, nannies, and the dashboard, on a free port).
A scheduler given by address is reached through ``connect.py`` (address checks, a bounded handshake).
"""
import contextlib
import logging

from ...errors import InputError
from ..run.memory import CPU_SCRATCH_BYTES_PER_THREAD, available_bytes, format_bytes
from .connect import remote_client, scheduler_address  # noqa: F401 -- the one way to a scheduler

# A Dask worker process and its nanny, beyond what nstyle's estimate counts (measured: a worker that
# has imported nstyle and SciPy's optimizer holds 125 MiB, of which the estimate's base and
# scipy.optimize parts cover 93; a nanny holds about 60 MiB).
WORKER_OVERHEAD_BYTES = 128 * 2**20
# The worker's Dask memory limit, as a multiple of what the job is estimated to need: Dask pauses a
# worker at 80% of its limit and restarts it at 95%.
MEMORY_LIMIT_MARGIN = 1.3
MISSING = ("nstyle batch needs Dask's distributed scheduler, which is not installed",
           "pip install 'nstyle[batch]'")


def require_dask():
    """InputError (exit 2) unless ``dask.distributed`` can be imported."""
    try:
        import distributed  # noqa: F401,PLC0415
    except ImportError:
        raise InputError(*MISSING) from None


def job_bytes(estimate, threads):
    """A job's estimated peak (a ``MemoryEstimate``, made with this process's thread count) when
    nstyle runs ``threads`` threads: the per-thread band buffers change, nothing else does."""
    parts = dict(estimate.parts)
    if "thread buffers" in parts:
        from ...cpu.threads import num_threads  # noqa: PLC0415
        parts["thread buffers"] += (threads - num_threads()) * (estimate.per_thread or CPU_SCRATCH_BYTES_PER_THREAD)
    return sum(parts.values())


def size_local_cluster(estimate, n_jobs, cores, workers=None, threads=None, free=None, check_memory=True):
    """(workers, threads per worker, Dask memory limit per worker in bytes) for a LocalCluster.

    estimate: the largest job's MemoryEstimate (None: nothing to size by). workers, threads: what the
    user asked for (None: choose). free: bytes available (None: unknown, no memory limit applied).
    Raises InputError when even one worker (or the ``workers`` asked for) would not fit.
    """
    cores = max(1, cores)
    n = workers or max(1, min(cores // (threads or 1), n_jobs))

    def per_worker(n):
        t = threads or max(1, cores // n)
        need = (job_bytes(estimate, t) if estimate else 0) + WORKER_OVERHEAD_BYTES
        return t, need

    t, need = per_worker(n)
    if check_memory and free is not None:
        while workers is None and n > 1 and n * need > free:  # fewer workers, more threads each
            n -= 1
            t, need = per_worker(n)
        if n * need > free:
            fits = max(0, int(free // need))
            hint = (f"at most {fits} worker(s) fit: try --workers {fits}" if workers and fits
                    else "use a smaller --size, or close other programs")
            raise InputError(f"{n} worker(s) need about {format_bytes(n * need)} of memory for the largest "
                             f"job, but only {format_bytes(free)} is free",
                             hint=hint + " (or --no-memory-check to try anyway)")
    limit = int(need * MEMORY_LIMIT_MARGIN) if check_memory and free is not None else None
    return n, t, limit


def free_memory():
    return available_bytes()[0]


@contextlib.contextmanager
def quiet_dask_logs(level=logging.CRITICAL):
    """Dask's own loggers keep quiet while the batch shows its progress: what they would say (a worker
    lost, a task failed) the batch reports itself, job by job."""
    loggers = [logging.getLogger(name) for name in ("distributed", "distributed.scheduler",
                                                     "distributed.nanny", "distributed.worker")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, saved):
            lg.setLevel(old)


@contextlib.contextmanager
def local_client(workers, threads, memory_limit):
    """A Client on a fresh LocalCluster of ``workers`` processes (one Dask thread each), on 127.0.0.1;
    the cluster is closed -- its workers stopped, running jobs with them -- when the block ends."""
    import dask  # noqa: PLC0415
    from distributed import Client, LocalCluster  # noqa: PLC0415
    settings = {
        # A lost worker fails its task at once: the batch resubmits it (--retries), the same way on a
        # local cluster as on the user's own, and counts the attempts.
        "distributed.scheduler.allowed-failures": 0,
        # One job per worker at a time: none waits on a worker that might be lost, none queues behind
        # a long one while another worker is idle.
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with dask.config.set(settings):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", memory_limit=memory_limit or 0,
                               silence_logs=logging.CRITICAL, preload=["nstyle.app.batch.worker"])
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def dashboard_link(client, local):
    """The dashboard's address when the scheduler serves one (on a local cluster: when Bokeh is
    installed; without it the page only says to install Bokeh), else None."""
    if local:
        try:
            import bokeh  # noqa: F401,PLC0415
        except ImportError:
            return None
    try:
        if "dashboard" not in client.scheduler_info().get("services", {}):
            return None
        return client.dashboard_link
    except Exception:  # noqa: BLE001 -- a missing link is no reason to stop a batch
        return None


def worker_slots(client):
    """How many jobs the cluster can run at once now (its workers' Dask threads; at least 1)."""
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # noqa: BLE001
        return 1


WAIT_SECONDS = 0.25   # how long a driver loop waits for a task before it redraws progress and checks Ctrl-C


def finished_futures(running, timeout=WAIT_SECONDS):
    """The futures of ``running`` that are done, after waiting up to ``timeout`` seconds for one.

    A timeout, or a future that failed or was cancelled, is not an error here: each driver looks at its
    finished futures one by one."""
    from distributed import wait  # noqa: PLC0415
    try:
        wait(list(running), timeout=timeout, return_when="FIRST_COMPLETED")
    except Exception:  # noqa: BLE001 -- TimeoutError, FuturesCancelledError
        pass
    return [f for f in running if f.done()]
