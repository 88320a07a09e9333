"""A batch's first two steps, before anything is submitted: plan (check, name and hash every job) and
find the jobs already done. ``run_batch.py`` runs the rest.

1. Plan (:func:`plan_batch`), on this machine: every job goes through ``stylize.prepare`` -- the checks
   ``stylize`` makes: every image opens, every option is valid, every image is large enough for the
   layers -- and gets its output path, its memory estimate and its settings (the SHA-256 of every input
   file's bytes, the options that shape the picture, the weights file's SHA-256) and their hash. The
   output folder must be writable; no output (nor its sidecar, nor the summary) may be a file the batch
   reads -- an image, a mask, the manifest, the weights; through a symlink or a hard link neither -- or
   another job's output; an ``output`` column may not lead out of the output folder (``..``, ``~``, an
   absolute path, a symlinked folder) unless ``allow_outside``; on this machine's cluster no job may need
   more memory than is free. Any problem is an InputError naming the job's manifest row.
   The jobs are taken one at a time (a manifest is read as a stream); each planned job keeps about a
   kilobyte (:class:`PlannedJob`), and a plan that takes seconds says how far it has got.
2. Skip: a job whose output and sidecar say it was made with the same settings hash is not run again
   (``worker.is_current``); ``force`` runs every job.
"""
import functools
import hashlib
import json
import os
import time
import zlib
from dataclasses import dataclass, field

from ...errors import InputError
from ..figures.cells import image_fingerprint
from ..files.imageio import DEFAULT_MAX_PIXELS
from ..files.outputs import check_output_path
from ..run.plan import as_image
from ..run.settings import DEFAULTS
from ..run.stylize import prepare
from .jobs import output_name
from .worker import file_sha256, is_current, sidecar_path

SUMMARY_FILE = "summary.csv"


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
    """What a job's sidecar keys on: the settings that change the picture (input images by their bytes),
    the inputs' bytes and the weights' identity."""
    options = plan.settings.picture(inputs.fingerprint)
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
    from ..run.memory import format_bytes  # noqa: PLC0415
    from .cluster import WORKER_OVERHEAD_BYTES, job_bytes  # noqa: PLC0415
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
        p = _plan_one(job, inputs, outdir, batch_options, weights_id, DEFAULTS, allow_outside,
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
