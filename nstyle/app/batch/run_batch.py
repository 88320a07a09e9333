"""Many stylisations as one resumable job on Dask: ``run_batch(jobs, outdir, ...)``.

A batch goes through three steps:

1. Plan (:func:`plan_batch`), on this machine, before any task is submitted: every job goes through
   ``stylize.prepare`` -- the checks ``stylize`` makes: every image opens, every option is valid, every
   image is large enough for the layers -- and gets its output path, its memory estimate and its
   settings (the SHA-256 of every input file's bytes, the options that shape the picture, the weights
   file's SHA-256) and their hash. The output folder must be writable; no output (nor its sidecar, nor
   the summary) may be a file the batch reads -- an image, a mask, the manifest, the weights; through a
   symlink or a hard link neither -- or another job's output; an ``output`` column may not lead out of
   the output folder (``..``, ``~``, an absolute path, a symlinked folder) unless ``allow_outside``; on
   this machine's cluster no job may need more memory than is free. Any problem is an InputError naming
   the job's manifest row. The jobs are taken one at a time (a manifest is read as a stream), each
   planned job keeps a few hundred bytes, and a long plan says how far it has got.
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
import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass, field

from PIL import Image

from ...atomic import atomic_write
from ...errors import InputError, RunError
from ..figures.cells import image_fingerprint
from ..files.imageio import DEFAULT_MAX_PIXELS
from .jobs import OPTION_KINDS, Job, output_name
from ..files.outputs import check_output_path
from ..run.plan import INITS, as_image
from ..run.stylize import prepare, stylize
from .worker import file_sha256, is_current, sidecar_path

SUMMARY_FILE = "summary.csv"
SUMMARY_COLUMNS = ("job", "status", "seconds", "final_loss", "iterations", "attempts", "error", "row")
# plan.options entries that do not change the picture (or belong to the batch's identity elsewhere)
_NOT_PICTURE = ("weights", "max_pixels", "check_memory", "tile_dir", "tile_cluster")


class SettingsPacker:
    """Settings kept small: their canonical JSON text compressed with zlib, with the batch's first
    settings as the preset dictionary. The jobs of a batch differ in a few values (a seed, a weight, an
    input's hash), so each packs into a few dozen bytes instead of a kilobyte."""

    def __init__(self):
        self.zdict = None

    def pack(self, text):
        data = text.encode()
        if self.zdict is None:
            self.zdict = data
        c = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, self.zdict)
        return c.compress(data) + c.flush()

    def unpack(self, blob):
        d = zlib.decompressobj(15, self.zdict)
        return (d.decompress(blob) + d.flush()).decode()


@dataclass(slots=True)
class PlannedJob:
    """A job checked and named, with what the cluster needs to run it.

    A batch of a million rows keeps a million of these, so they hold little: the settings as packed
    canonical JSON (what the sidecar records and the hash is taken of: ``SettingsPacker``), the
    estimate shared with every job of the same shape, the batch-wide options shared by all
    (``options`` merges them in)."""
    job: object                   # jobs.Job
    name: str                     # the output's file name: the job's name in the summary
    output: str                   # absolute path
    settings_text: object         # what makes the picture: canonical JSON, or (packer, packed bytes)
    settings_hash: str
    memory: object                # the largest stage's MemoryEstimate (shared: do not change it)
    batch_options: dict           # the batch-wide stylize keywords (one dict for every job)
    previous: dict = None         # the sidecar of an up-to-date output: the job is skipped
    result: dict = field(default_factory=dict)   # status, seconds, final_loss, ..., error
    attempts: int = 0

    @property
    def settings(self):
        """What makes the picture (recorded in the sidecar), as a dict."""
        text = self.settings_text
        if isinstance(text, tuple):
            packer, blob = text
            text = packer.unpack(blob)
        return json.loads(text)

    @property
    def options(self):
        """Every stylize keyword the worker passes (per-job and batch-wide)."""
        return {**self.job.options, **self.batch_options}


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


def weights_identity(weights, remote, fetch=True):
    """(path the workers open or None for their default, SHA-256 or None, identity for the settings).

    On this machine's cluster the weights are found here (fetched once, now, if they are the default and
    missing -- unless not ``fetch``: a dry run creates nothing). A remote cluster's workers find their
    own: the file is hashed when it is visible here too.
    """
    from ...weights.paths import default_weights_path  # noqa: PLC0415
    path = weights or os.environ.get("NSTYLE_WEIGHTS") or None
    if path is None and not remote and not fetch and not default_weights_path().is_file():
        return None, None, "path:default (not fetched yet)"
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
    options = {k: v for k, v in plan.options.items() if k not in _NOT_PICTURE}
    if not (isinstance(options["init"], str) and options["init"] in INITS):
        options["init"] = inputs.fingerprint(options["init"])
    if options.get("content_mask") is not None:
        options["content_mask"] = inputs.fingerprint(options["content_mask"])
    if options.get("style_masks") is not None:
        options["style_masks"] = [inputs.fingerprint(m) for m in options["style_masks"]]
    return {"content": inputs.fingerprint(content), "styles": [inputs.fingerprint(s) for s in styles],
            "options": options, "weights": weights_id}


def _canonical(settings):
    """The settings as canonical JSON, and its SHA-256 (``worker.settings_hash``'s, from the same text)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return text, hashlib.sha256(text.encode()).hexdigest()


def _inside(path, folder):
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def job_output(job, outdir, defaults, allow_outside=False):
    """(absolute output path, the job's name): its ``output`` column (relative to ``outdir``) or the
    name :func:`jobs.output_name` gives it. InputError when the column leads out of ``outdir`` -- by
    ``..``, ``~``, an absolute path or a symlinked folder -- and ``allow_outside`` is not set."""
    if job.output is None:
        name = output_name(job, defaults)
        return os.path.join(outdir, name), name
    output = os.path.abspath(os.path.join(outdir, os.path.expanduser(job.output)))
    if not allow_outside:
        real_out = os.path.realpath(outdir)
        if not _inside(os.path.realpath(os.path.dirname(output)), real_out) or output == outdir:
            raise InputError(f"output {job.output!r}: leads out of the output folder {outdir}",
                             hint="name a file inside OUTDIR, or add --allow-outside-outdir")
    return output, os.path.relpath(output, outdir)


def _plan_one(job, inputs, outdir, batch_options, weights_id, defaults, allow_outside, shared, packer):
    try:
        content = inputs.load(job.content, "content image")
        styles = [inputs.load(s, "style image" if len(job.styles) == 1 else f"style image {i}")
                  for i, s in enumerate(job.styles, 1)]
        plan = prepare(content, styles, **{**job.options, **batch_options})
        settings = _picture_settings(plan, inputs, job.content, job.styles, weights_id)
        output, name = job_output(job, outdir, defaults, allow_outside)
    except InputError as exc:
        raise InputError(f"{job.where}: {exc.message}", hint=exc.hint) from None
    text, digest = _canonical(settings)
    memory = shared.setdefault(tuple(plan.memory.parts.items()), plan.memory)  # one object per shape
    return PlannedJob(job, name, output, (packer, packer.pack(text)), digest, memory, batch_options)


class _Planning:
    """What a long plan says while it runs: nothing for the first seconds (a small batch plans in
    one), then a line every so often with the jobs checked so far, and one at the end."""

    FIRST, EVERY = 2.0, 10.0

    def __init__(self, log):
        self.log, self.began, self.said = log, time.monotonic(), False
        self.next = self.FIRST

    def tick(self, count):
        if self.log is None or count % 64:
            return
        seconds = time.monotonic() - self.began
        if seconds >= self.next:
            self.log(f"planning: {count:,} jobs checked so far ({_clock(seconds)})")
            self.next, self.said = seconds + self.EVERY, True

    def done(self, count):
        if self.said:
            self.log(f"planning: {count:,} jobs checked in {_clock(time.monotonic() - self.began)}")


def _check_memory(p, free, source):
    """InputError naming the job when it alone needs more memory than is free (with one thread)."""
    from .cluster import WORKER_OVERHEAD_BYTES, job_bytes  # noqa: PLC0415
    from ..run.memory import format_bytes  # noqa: PLC0415
    need = job_bytes(p.memory, 1) + WORKER_OVERHEAD_BYTES
    if need > free:
        raise InputError(f"{p.job.where}: needs about {format_bytes(need)} of memory, but only "
                         f"{format_bytes(free)} is free ({source})",
                         hint="give it a smaller size, or add --no-memory-check to try anyway")


def _folder_check(folder, outdir, checked):
    """Once per folder: InputError unless outputs can be written there (``outdir`` itself may not exist
    yet: it is created when the batch runs, so the nearest folder above it is tried instead)."""
    if folder in checked:
        return
    probe = folder
    if not os.path.isdir(folder):
        if folder != outdir:
            raise InputError(f"the folder {folder} does not exist", hint="create it first")
        while not os.path.isdir(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
    try:  # os.access can be wrong (read-only mounts, ACLs): try it for real
        import tempfile  # noqa: PLC0415
        with tempfile.TemporaryFile(dir=probe, prefix=".nstyle-check-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write in {probe} ({exc.strerror or exc})") from None
    checked.add(folder)


def check_batch_outputs(planned, inputs, outdir=None):
    """Every output (and its sidecar) may be written (``outputs.check_output_path``), none is an input,
    and no two jobs write the same file. One stat per file and one write test per folder, so a thousand
    jobs check in a moment."""
    by_inode = {}
    for path in inputs:
        try:
            st = os.stat(path)
            by_inode[(st.st_dev, st.st_ino)] = path
        except OSError:
            pass
    seen, folders, real = {}, set(), {}
    for p in planned:
        folder = os.path.dirname(p.output)
        for path, image in ((p.output, True), (sidecar_path(p.output), False)):
            try:
                st = os.stat(path)
                clash = [by_inode[(st.st_dev, st.st_ino)]] if (st.st_dev, st.st_ino) in by_inode else []
            except OSError:
                clash = []
            try:
                check_output_path(path, "output", clash, image=image, probe_folder=False)
                _folder_check(folder, outdir, folders)
            except InputError as exc:
                raise InputError(f"{p.job.where}: {exc.message}", hint=exc.hint) from None
        if folder not in real:
            real[folder] = os.path.normcase(os.path.realpath(folder))
        key = (real[folder], os.path.normcase(os.path.basename(p.output)))
        if key in seen:
            raise InputError(f"{seen[key].job.where} and {p.job.where} would both write {p.output}",
                             hint="give one of them an output column, or rename one of the inputs")
        seen[key] = p


def _read_files(inputs, worker_weights, manifests):
    """Every file the batch reads: its images and masks, its manifests, and the weights file when it is
    visible here (the named one, $NSTYLE_WEIGHTS, or the cached default)."""
    from ...weights.paths import default_weights_path  # noqa: PLC0415
    weights = worker_weights or os.environ.get("NSTYLE_WEIGHTS") or os.fspath(default_weights_path())
    return inputs.paths + sorted(manifests) + [weights]


def plan_batch(jobs, outdir, *, weights=None, device="cpu", engine="auto", max_pixels=DEFAULT_MAX_PIXELS,
               force=False, remote=False, allow_outside=False, check_memory=False, create=True, log=None):
    """Check, name and hash every job (step 1) and find the ones already done (step 2).

    jobs: any iterable of Jobs (taken one at a time: a manifest's rows as they are read). allow_outside:
    let ``output`` columns name files outside ``outdir``. check_memory: refuse a job that alone needs
    more memory than this machine has free (not on a ``remote`` cluster). create: make ``outdir`` (and
    fetch the default weights when missing); a dry run creates nothing. log(message): progress while
    planning takes long. Returns ([PlannedJob], the weights file's SHA-256 or None when it is not
    visible here).
    """
    outdir = os.path.abspath(outdir)
    if os.path.exists(outdir) and not os.path.isdir(outdir):
        raise InputError(f"output folder {outdir}: exists and is not a folder")
    worker_weights, weights_sha, weights_id = weights_identity(weights, remote, fetch=create)
    batch_options = {"weights": worker_weights, "device": device, "engine": engine, "max_pixels": max_pixels,
                     "check_memory": False}
    free, source = (None, None)
    if check_memory and not remote:
        from ..run.memory import available_bytes  # noqa: PLC0415
        free, source = available_bytes()
    inputs, shared, manifests, packer = _Inputs(max_pixels), {}, set(), SettingsPacker()
    planning, planned = _Planning(log), []
    for job in jobs:
        p = _plan_one(job, inputs, outdir, batch_options, weights_id, stylize.__kwdefaults__, allow_outside,
                      shared, packer)
        if free is not None:
            _check_memory(p, free, source)
        if job.manifest:
            manifests.add(job.manifest)
        planned.append(p)
        planning.tick(len(planned))
    if not planned:
        raise InputError("no jobs to run")
    planning.done(len(planned))
    reads = _read_files(inputs, worker_weights, manifests)
    check_batch_outputs(planned, reads, outdir)
    check_output_path(os.path.join(outdir, SUMMARY_FILE), "summary", reads, image=False, probe_folder=False)
    if create:
        try:
            os.makedirs(outdir, exist_ok=True)
        except OSError as exc:
            raise InputError(f"output folder {outdir}: cannot create it ({exc.strerror or exc})") from None
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
    require_dask()
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
    options = {k: v for k, v in plan.options.items() if k in OPTION_KINDS}
    return Job(f"cell {cell.label}", content, styles, options, output=os.path.abspath(store.path(cell.name)))


def cells_via_batch(cells, plans, store, size, log=None, **batch_options):
    """Make the cells ``store`` does not hold yet (``cells.Cell``; plans: {cell name: Plan}) as batch
    jobs, all at once on a cluster (``run_batch``'s options: scheduler, workers, threads, retries), and
    return the ``make(cell)`` that ``cells.fill_cells`` calls: it picks up each cell's image, or raises
    RunError with the job's error."""
    todo = [cell for cell in cells if store.load(cell.name, size) is None]
    done = {}
    if todo:
        o = plans[todo[0].name].options
        jobs = [_cell_job(cell, plans[cell.name], store) for cell in todo]
        result = run_batch(jobs, os.path.abspath(store.folder), weights=o["weights"], device=o["device"],
                           engine=o["engine"], log=log, **batch_options)
        done = {cell.name: p for cell, p in zip(todo, result.jobs)}

    def make(cell):
        p = done[cell.name]
        if p.result.get("status") not in ("done", "skipped"):
            raise RunError(p.result.get("error") or "the job did not finish")
        with Image.open(p.output) as im:
            return im.convert("RGB")

    return make
