"""Many stylisations as one resumable job on Dask: ``run_batch(jobs, outdir, ...)``.

A batch goes through three steps:

1. Plan (``plan.plan_batch``), on this machine, before any task is submitted: every job goes through
   ``stylize.prepare`` -- the checks ``stylize`` makes -- and gets its output path, its memory estimate
   and its settings hash; no output may be a file the batch reads (images, masks, the manifest, the
   weights) or another job's, nor lead out of the output folder unless asked. Any problem is an
   InputError naming the job's manifest row.
2. Skip: a job whose output and sidecar say it was made with the same settings hash is not run again
   (``worker.is_current``); ``force`` runs every job.
3. Run the rest on a cluster (``cluster.py``, ``submit.py``): a LocalCluster sized to this machine, or
   the scheduler at ``scheduler``. Each job is one task (``worker.run_job``).

At the end ``OUTDIR/summary.csv`` has one row per job (done, skipped, failed or cancelled) and the
caller gets a :class:`BatchResult`; on Ctrl-C the jobs already finished stay, the summary is written
and :class:`BatchInterrupted` is raised.
"""
import csv
import os
import time
from dataclasses import dataclass

from PIL import Image

from ...atomic import atomic_write
from ...errors import RunError
from ..files.imageio import DEFAULT_MAX_PIXELS
from .jobs import OPTION_KINDS, Job
from .plan import SUMMARY_FILE, PlannedJob, _clock, check_batch_outputs, job_output, plan_batch, weights_identity  # noqa: F401
from .worker import file_sha256, is_current, sidecar_path  # noqa: F401 -- file_sha256 re-exported

SUMMARY_COLUMNS = ("job", "status", "seconds", "final_loss", "iterations", "attempts", "error", "row")


@dataclass
class BatchResult:
    jobs: list                    # PlannedJob, in the order given
    summary: str                  # the summary file's path
    seconds: float
    cluster: str = ""             # where the jobs ran ("local cluster: 2 workers x 1 thread, ...")

    def count(self, status):
        return sum(p.result.get("status") == status for p in self.jobs)

    @property
    def ok(self):
        return all(p.result.get("status") in ("done", "skipped") for p in self.jobs)

    def total_line(self):
        counts = ", ".join(f"{self.count(s)} {s}" for s in ("done", "skipped", "failed", "cancelled")
                           if s != "cancelled" or self.count(s))
        return f"{len(self.jobs)} jobs: {counts} in {_clock(self.seconds)}; summary: {self.summary}"


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch: the finished jobs are kept and the summary written (``result``)."""

    def __init__(self, result):
        finished = result.count("done") + result.count("skipped")
        self.message = (f"interrupted with {finished} of {len(result.jobs)} jobs finished; their outputs are "
                        f"kept: run the same command again to do the rest (summary: {result.summary})")
        super().__init__(self.message)
        self.result = result


# ---------------------------------------------------------------------------------------------------
# The summary.

def write_summary(planned, outdir):
    path = os.path.join(os.path.abspath(outdir), SUMMARY_FILE)

    def cell(value):
        if isinstance(value, float):
            return f"{value:.6g}"
        return "" if value is None else str(value)

    def write(fh):
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(SUMMARY_COLUMNS)
        for p in planned:
            r = {**p.result, "job": p.name, "attempts": p.attempts, "row": p.job.where}
            r.setdefault("status", "cancelled")
            out.writerow([cell(r.get(c)) for c in SUMMARY_COLUMNS])

    atomic_write(path, write, binary=False)
    return path


def _finished_while_stopping(todo, since):
    """After Ctrl-C: a job that was cancelled but completed its writes (after ``since``, a time.time())
    while the cluster stopped is done -- its image and sidecar are whole, thanks to the atomic writes --
    and the summary says so."""
    for p in todo:
        if p.result.get("status") in (None, "cancelled"):
            previous = is_current(p.output, p.settings_hash)
            written = os.path.getmtime(sidecar_path(p.output)) if previous is not None else 0
            if previous is not None and written >= since:
                p.result = {"status": "done", "seconds": previous.get("seconds"),
                            "final_loss": previous.get("final_loss"), "iterations": previous.get("iterations")}


def run_batch(jobs, outdir, *, client=None, scheduler=None, workers=None, threads=None, retries=1, force=False,
              weights=None, device="cpu", engine="auto", max_pixels=DEFAULT_MAX_PIXELS, check_memory=True,
              allow_outside=False, progress=None, log=None):
    """Plan, skip and run ``jobs`` (``jobs.Job``, any iterable) writing into ``outdir``; returns a BatchResult.

    client: a ``distributed.Client`` to run on; else scheduler: a Dask scheduler address; else a new
    LocalCluster (``workers``/``threads`` size it, else it is sized to the machine). threads: nstyle's
    threads per worker. retries: resubmissions of a job whose worker was lost. allow_outside: let an
    ``output`` column name a file outside ``outdir``. progress: a
    ``batch.progress.JobsProgress`` (None: silent). log(message): notices (the cluster, retries).
    Raises InputError before anything runs when a job or an output is bad; BatchInterrupted on Ctrl-C.
    """
    from . import submit  # noqa: PLC0415
    from .cluster import require_dask  # noqa: PLC0415
    from .connect import parse_address  # noqa: PLC0415
    require_dask()
    scheduler = None if scheduler is None else parse_address(scheduler, "scheduler")  # before any work
    start, started = time.perf_counter(), time.time()
    remote = client is not None or scheduler is not None
    planned, weights_sha = plan_batch(jobs, outdir, weights=weights, device=device, engine=engine,
                                      max_pixels=max_pixels, force=force, remote=remote, allow_outside=allow_outside,
                                      check_memory=check_memory, log=log)
    todo = [p for p in planned if p.previous is None]
    interrupted = False
    described = ""
    try:
        if todo:
            described = submit.run_on_cluster(todo, client=client, scheduler=scheduler, workers=workers,
                                              threads=threads, retries=retries, check_memory=check_memory,
                                              weights_sha=weights_sha, progress=progress, log=log,
                                              skipped=len(planned) - len(todo))
    except KeyboardInterrupt:
        interrupted = True
        _finished_while_stopping(todo, started)
    result = BatchResult(planned, write_summary(planned, outdir), time.perf_counter() - start, described)
    if interrupted:
        raise BatchInterrupted(result)
    return result


# ---------------------------------------------------------------------------------------------------
# Sheets of cells (``grid``) through the same mechanism.

def _cell_job(cell, plan, store):
    """A batch job for one cell's prepared plan. A one-stage plan's images travel at the size its run
    uses (the worker's resize to that size is then an exact copy), not as the full-size originals."""
    content, styles = plan.content, list(plan.styles)
    if len(plan.stages) == 1:
        stage = plan.stages[0]
        content = content.resize(stage.content_size, Image.Resampling.LANCZOS)
        styles = [s.resize(size, Image.Resampling.LANCZOS) for s, size in zip(styles, stage.style_sizes)]
    options = {name: plan.settings[name] for name in OPTION_KINDS}
    return Job(f"cell {cell.label}", content, styles, options, output=os.path.abspath(store.path(cell.name)))


def cells_via_batch(cells, plans, store, size, log=None, **batch_options):
    """Make the cells ``store`` does not hold yet (``cells.Cell``; plans: {cell name: Plan}) as batch
    jobs, all at once on a cluster (``run_batch``'s options: scheduler, workers, threads, retries), and
    return the ``make(cell)`` that ``cells.fill_cells`` calls: it picks up each cell's image, or raises
    RunError with the job's error."""
    todo = [cell for cell in cells if store.load(cell.name, size) is None]
    done = {}
    if todo:
        o = plans[todo[0].name].settings
        jobs = [_cell_job(cell, plans[cell.name], store) for cell in todo]
        result = run_batch(jobs, os.path.abspath(store.folder), weights=o.weights, device=o.device,
                           engine=o.engine, log=log, **batch_options)
        done = {cell.name: p for cell, p in zip(todo, result.jobs)}

    def make(cell):
        p = done[cell.name]
        if p.result.get("status") not in ("done", "skipped"):
            raise RunError(p.result.get("error") or "the job did not finish")
        with Image.open(p.output) as im:
            return im.convert("RGB")

    return make
