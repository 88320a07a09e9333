"""Running a batch's jobs on a Dask cluster, from the client's side: submitting, retrying, cancelling.

The client keeps no more jobs in flight than the cluster has free Dask threads, and submits the next one
as each finishes. So every worker holds at most the job it runs: a lost worker takes one job with it,
not a queue, and Ctrl-C has little to cancel.

Each finished task returns a result dict (``worker.run_job``): done, failed (the job's own problem,
not retried: an unreadable image stays unreadable) or cancelled. A task whose worker was lost (killed,
out of memory, its machine gone) ends with Dask's ``KilledWorker``; it is submitted again, up to
``retries`` times, and then recorded as failed. On a local cluster the scheduler gives up on such a task
at the first loss (``cluster.local_client``); the user's own scheduler first retries it on its own, as
its ``distributed.scheduler.allowed-failures`` says.

Ctrl-C (KeyboardInterrupt in the main thread) sets a Dask Event that running jobs check every few
seconds (they stop without writing anything), cancels the futures, marks those jobs cancelled and
re-raises; what finished before stays finished.
"""
import collections
import uuid

from ...cpu.threads import available_cores
from ..run.memory import format_bytes
from .cluster import (
    dashboard_link,
    finished_futures,
    free_memory,
    local_client,
    quiet_dask_logs,
    remote_client,
    size_local_cluster,
    worker_slots,
)


def run_on_cluster(todo, *, client=None, scheduler=None, workers=None, threads=None, retries=1,
                   check_memory=True, weights_sha=None, progress=None, log=None, skipped=0):
    """Run ``todo`` (batch.PlannedJob) through ``client``, else on the scheduler at ``scheduler``, else on
    a new local cluster; fills in each job's ``result`` and ``attempts``. Returns a one-line
    description of the cluster."""
    say = log or (lambda message: None)
    with quiet_dask_logs():
        if client is not None:
            _drive(client, todo, threads, retries, weights_sha, progress, say, skipped)
            return f"Dask client {client}"
        if scheduler:
            with remote_client(scheduler) as client:
                described = f"Dask scheduler at {scheduler}"
                _announce(client, described, False, say)
                _drive(client, todo, threads, retries, weights_sha, progress, say, skipped)
            return described
        largest = max(todo, key=lambda p: p.memory.total).memory
        n, t, limit = size_local_cluster(largest, len(todo), available_cores(), workers, threads,
                                         free_memory(), check_memory)
        described = (f"local cluster: {n} worker{'s' if n > 1 else ''} x {t} thread{'s' if t > 1 else ''}"
                     + (f", memory limit {format_bytes(limit)} each" if limit else ""))
        with local_client(n, t, limit) as client:
            _announce(client, described, True, say)
            _drive(client, todo, t, retries, weights_sha, progress, say, skipped)
        return described


def _announce(client, described, local, say):
    say(described)
    link = dashboard_link(client, local)
    if link:
        say(f"Dask dashboard: {link}")


def _drive(client, todo, threads, retries, weights_sha, progress, say, skipped):
    from distributed import Event  # noqa: PLC0415
    cancel_name = f"nstyle-batch-cancel-{uuid.uuid4().hex}"
    event = Event(cancel_name, client=client)
    queue, running = collections.deque(todo), {}
    if progress is not None:
        progress.start(len(todo) + skipped, skipped)
    try:
        while queue or running:
            free = worker_slots(client) - len(running)
            while queue and free > 0:
                p = queue.popleft()
                p.attempts += 1
                spec = job_spec(p, weights_sha, threads, cancel_name)
                running[client.submit(_task(), spec, pure=False)] = p
                free -= 1
            for future in finished_futures(running):
                p = running.pop(future)
                if _collect(future, p, retries, say):
                    queue.appendleft(p)  # its worker was lost: run it again first
                elif progress is not None:
                    progress.finished(p)
                future.release()
            if progress is not None:
                progress.tick()
    except KeyboardInterrupt:
        _cancel(client, event, running)
        raise
    finally:
        if progress is not None:
            progress.close()


def job_spec(p, weights_sha, threads, cancel_event):
    """The plain dict a worker gets for one job (see ``worker.run_job``): no images are decoded here,
    the worker opens the files itself (in-memory images, from the API, travel as they are)."""
    return {"name": p.name, "content": p.job.content, "styles": list(p.job.styles), "options": p.options,
            "output": p.output, "settings": p.settings, "settings_hash": p.settings_hash,
            "weights_sha256": weights_sha, "threads": threads, "cancel_event": cancel_event}


def _task():
    from .worker import run_job  # noqa: PLC0415 -- pickled by name: workers import nstyle.app.batch.worker
    return run_job


def _collect(future, p, retries, say):
    """Record a finished future's outcome on ``p``; True when the job should be submitted again."""
    from distributed import KilledWorker  # noqa: PLC0415
    if future.status == "finished":
        p.result = future.result()
        return False
    lost = future.cancelled()  # cancelled by someone else (a scheduler restart): try again as if lost
    error = None if lost else future.exception()
    lost = lost or isinstance(error, KilledWorker)
    if lost and p.attempts <= retries:
        say(f"{p.name}: the worker running it was lost; submitting it again "
            f"(attempt {p.attempts + 1} of {retries + 1})")
        return True
    if lost:
        message = (f"the worker running it was lost {p.attempts} time{'s' if p.attempts > 1 else ''} (out of "
                   "memory? the worker's log says why)")
    else:
        message = f"could not run on the cluster: {type(error).__name__}: {error}"
    p.result = {"status": "failed", "error": message}
    return False


def _cancel(client, event, running):
    """Ctrl-C: stop the running jobs (they poll the event), forget their futures, mark them cancelled."""
    try:
        event.set()
        client.cancel(list(running), force=True)
    except Exception:  # noqa: BLE001 -- a scheduler already gone: nothing left to cancel
        pass
    for p in running.values():
        p.result = {"status": "cancelled"}
