"""Many stylisations as one resumable job on Dask: ``run_batch(jobs, outdir, ...)``.

A batch goes through three steps:

1. Plan (:func:`plan_batch`), on this machine, before any task is submitted: every job goes through
   ``stylize.prepare`` -- the checks ``stylize`` makes: every image opens, every option is valid, every
   image is large enough for the layers -- and gets its output path, its memory estimate and its
   settings (the SHA-256 of every input file's bytes, the options that shape the picture, the weights
   file's SHA-256) and their hash. The output folder must be writable, no output may be an input or
   another job's output. Any problem is an InputError naming the job's manifest row.
2. Skip: a job whose output and sidecar say it was made with the same settings hash is not run again
   (``worker.is_current``); ``force`` runs every job.
3. Run the rest on a cluster (``cluster.py``, ``submit.py``): a LocalCluster sized to this machine, or
   the scheduler at ``scheduler``. Each job is one task (``worker.run_job``).

At the end ``OUTDIR/summary.csv`` has one row per job (done, skipped, failed or cancelled) and the
caller gets a :class:`BatchResult`; on Ctrl-C the jobs already finished stay, the summary is written
and :class:`BatchInterrupted` is raised.
"""
import csv
import functools
import os
import time
from dataclasses import dataclass, field

from PIL import Image

from ...atomic import atomic_write
from ...errors import InputError, RunError
from ..figures.cells import image_fingerprint
from ..files.imageio import DEFAULT_MAX_PIXELS
from .jobs import OPTION_KINDS, Job, output_name
from ..files.outputs import check_output_path
from ..run.plan import as_image
from ..run.settings import DEFAULTS
from ..run.stylize import prepare
from .worker import file_sha256, is_current, settings_hash, sidecar_path

SUMMARY_FILE = "summary.csv"
SUMMARY_COLUMNS = ("job", "status", "seconds", "final_loss", "iterations", "attempts", "error", "row")


@dataclass
class PlannedJob:
    """A job checked and named, with what the cluster needs to run it."""
    job: object                   # jobs.Job
    name: str                     # the output's file name: the job's name in the summary
    output: str                   # absolute path
    settings: dict                # what makes the picture (recorded in the sidecar)
    settings_hash: str
    memory: object                # the largest stage's MemoryEstimate
    options: dict                 # every stylize keyword the worker passes (per-job and batch-wide)
    previous: dict = None         # the sidecar of an up-to-date output: the job is skipped
    result: dict = field(default_factory=dict)   # status, seconds, final_loss, ..., error
    attempts: int = 0


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


def _clock(seconds):
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# ---------------------------------------------------------------------------------------------------
# Step 1: plan and check.

class _Inputs:
    """Decodes each input image once (a photo shared by a hundred jobs is read once) and fingerprints
    each input once, by the bytes of its file (or the pixels of an in-memory image)."""

    def __init__(self, max_pixels):
        self.max_pixels = max_pixels
        self.paths = []            # every input file, for the output checks
        self._sha = {}
        self.image = functools.lru_cache(maxsize=16)(self._decode)

    def _decode(self, item, what):
        return as_image(item, what, self.max_pixels)

    def load(self, item, what):
        if isinstance(item, (str, os.PathLike)):
            return self.image(os.fspath(item), what)
        return as_image(item, what, self.max_pixels)

    def fingerprint(self, item):
        if isinstance(item, (str, os.PathLike)):
            path = os.fspath(item)
            if path not in self._sha:
                self._sha[path] = "sha256:" + file_sha256(path)
                self.paths.append(path)
            return self._sha[path]
        return "pixels:" + image_fingerprint(as_image(item, "image"))


def weights_identity(weights, remote):
    """(path the workers open or None for their default, SHA-256 or None, identity for the settings).

    On this machine's cluster the weights are found here (fetched once, now, if they are the default and
    missing). A remote cluster's workers find their own: the file is hashed when it is visible here too.
    """
    from ...weights.paths import default_weights_path  # noqa: PLC0415
    path = weights or os.environ.get("NSTYLE_WEIGHTS") or None
    if path is None and not remote:
        from ...weights.store import ensure_default_weights  # noqa: PLC0415
        path = os.fspath(ensure_default_weights())
    visible = path or (os.fspath(default_weights_path()) if default_weights_path().is_file() else None)
    if visible and os.path.isfile(visible):
        sha = file_sha256(visible)
        return (os.path.abspath(path) if path else None), sha, "sha256:" + sha
    if not remote:
        raise InputError(f"weights file not found: {path}",
                         hint="run `nstyle weights fetch` for the default weights, or give another --weights")
    return path, None, f"path:{path or 'default'}"


def _picture_settings(plan, inputs, content, styles, weights_id):
    """What a job's sidecar keys on: the settings that change the picture (input images by their bytes),
    the inputs' bytes and the weights' identity."""
    options = plan.settings.picture(inputs.fingerprint)
    return {"content": inputs.fingerprint(content), "styles": [inputs.fingerprint(s) for s in styles],
            "options": options, "weights": weights_id}


def _plan_one(job, inputs, outdir, batch_options, weights_id, defaults):
    try:
        content = inputs.load(job.content, "content image")
        styles = [inputs.load(s, "style image" if len(job.styles) == 1 else f"style image {i}")
                  for i, s in enumerate(job.styles, 1)]
        plan = prepare(content, styles, **{**job.options, **batch_options})
        settings = _picture_settings(plan, inputs, job.content, job.styles, weights_id)
    except InputError as exc:
        raise InputError(f"{job.where}: {exc.message}", hint=exc.hint) from None
    name = job.output or output_name(job, defaults)
    output = os.path.abspath(os.path.join(outdir, os.path.expanduser(name)))
    return PlannedJob(job, os.path.relpath(output, outdir) if job.output else name, output, settings,
                      settings_hash(settings), plan.memory, {**job.options, **batch_options})


def check_batch_outputs(planned, inputs):
    """Every output (and its sidecar) may be written (``outputs.check_output_path``), none is an input,
    and no two jobs write the same file. One stat per file, so a thousand jobs check in a moment."""
    by_inode = {}
    for path in inputs:
        try:
            st = os.stat(path)
            by_inode[(st.st_dev, st.st_ino)] = path
        except OSError:
            pass
    seen = {}
    for p in planned:
        for path, image in ((p.output, True), (sidecar_path(p.output), False)):
            try:
                st = os.stat(path)
                clash = [by_inode[(st.st_dev, st.st_ino)]] if (st.st_dev, st.st_ino) in by_inode else []
            except OSError:
                clash = []
            try:
                check_output_path(path, "output", clash, image=image)
            except InputError as exc:
                raise InputError(f"{p.job.where}: {exc.message}", hint=exc.hint) from None
        key = os.path.normcase(os.path.realpath(p.output))
        if key in seen:
            raise InputError(f"{seen[key].job.where} and {p.job.where} would both write {p.output}",
                             hint="give one of them an output column, or rename one of the inputs")
        seen[key] = p


def plan_batch(jobs, outdir, *, weights=None, device="cpu", engine="auto", max_pixels=DEFAULT_MAX_PIXELS,
               force=False, remote=False):
    """Check, name and hash every job (step 1) and find the ones already done (step 2).

    Returns ([PlannedJob], the weights file's SHA-256 or None when it is not visible here). Creates
    ``outdir``.
    """
    if not jobs:
        raise InputError("no jobs to run")
    outdir = os.path.abspath(outdir)
    worker_weights, weights_sha, weights_id = weights_identity(weights, remote)
    batch_options = {"weights": worker_weights, "device": device, "engine": engine, "max_pixels": max_pixels,
                     "check_memory": False}
    inputs = _Inputs(max_pixels)
    planned = [_plan_one(job, inputs, outdir, batch_options, weights_id, DEFAULTS) for job in jobs]
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise InputError(f"output folder {outdir}: exists and is not a folder")
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as exc:
        raise InputError(f"output folder {outdir}: cannot create it ({exc.strerror or exc})") from None
    reads = inputs.paths + ([worker_weights] if worker_weights else [])
    check_batch_outputs(planned, reads)
    check_output_path(os.path.join(outdir, SUMMARY_FILE), "summary", reads, image=False)
    for p in planned:
        p.previous = None if force else is_current(p.output, p.settings_hash)
        if p.previous is not None:
            p.result = {"status": "skipped", "seconds": p.previous.get("seconds"),
                        "final_loss": p.previous.get("final_loss"), "iterations": p.previous.get("iterations")}
    return planned, weights_sha


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
              progress=None, log=None):
    """Plan, skip and run ``jobs`` (``jobs.Job``) writing into ``outdir``; returns a BatchResult.

    client: a ``distributed.Client`` to run on; else scheduler: a Dask scheduler address; else a new
    LocalCluster (``workers``/``threads`` size it, else it is sized to the machine). threads: nstyle's
    threads per worker. retries: resubmissions of a job whose worker was lost. progress: a
    ``batch.progress.JobsProgress`` (None: silent). log(message): notices (the cluster, retries).
    Raises InputError before anything runs when a job or an output is bad; BatchInterrupted on Ctrl-C.
    """
    from . import submit  # noqa: PLC0415
    from .cluster import require_dask  # noqa: PLC0415
    require_dask()
    start, started = time.perf_counter(), time.time()
    remote = client is not None or scheduler is not None
    planned, weights_sha = plan_batch(jobs, outdir, weights=weights, device=device, engine=engine,
                                      max_pixels=max_pixels, force=force, remote=remote)
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
