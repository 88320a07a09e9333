"""``nstyle batch``: many stylisations as one resumable job on Dask.

    nstyle batch MANIFEST -o OUTDIR [options]                    one job per manifest row
    nstyle batch --contents GLOB... --styles GLOB... -o OUTDIR   every content x every style

Per-job ``stylize`` options are given by their keyword name (``--style-weight``, ``--style-layers``,
...). In the cross-product form a comma list sweeps (``--style-weight 1e3,1e4`` doubles the jobs; for
options whose value is a list, such as ``--style-layers``, the alternatives are separated by ``;``).
With a manifest, an option on the command line applies to every row that does not set it. MANIFEST may
be ``-`` (standard input) or another pipe; it is read a row at a time.

Exit codes: 0 every job done or skipped, 1 some job failed, 2 bad input (nothing was submitted),
130 interrupted (finished jobs kept). The work is in ``app/batch/run_batch.py``; Dask is needed only here, and
its absence is one line (exit 2).
"""
import os

from ..app.batch.cluster import require_dask, scheduler_address
from ..app.batch.jobs import LIST_VALUED, OPTION_KINDS, cross_product, expand_paths, sweep_values
from ..app.batch.manifest import iter_manifest
from ..app.batch.plan import plan_batch
from ..app.batch.progress import JobsProgress
from ..app.batch.run_batch import BatchInterrupted, run_batch
from ..app.files.progress import say
from ..app.run.settings import DEFAULTS, DEVICES
from ..errors import InputError
from ..model.vgg import ENGINES
from .args import count, positive_int, print_path, scheduler
from .checks import check_thread_environment
from .commands import summary

_METAVARS = {"int": "N", "ints": "N", "float": "W", "floats": "W,...", "names": "L,...", "bool": "true|false",
             "init": "content|noise|style|PATH", "path": "FILE", "paths": "FILE,...", "text": "TEXT"}
_NAMED_METAVARS = {"scales": "N,N,...", "style_scale": "F", "lr": "F", "original_colors": "none|luminance|match",
                   "weight_scaling": "invariant|paper", "optimizer": "lbfgs|adam", "lbfgs_impl": "auto|scipy|nstyle", "pooling": "avg|max",
                   "mask_mode": "inside|all|simple", "region_styles": "COLOR=I,...",
                   "region_weights": "COLOR=W,...", "style_loss": "LOSS[:W,...]"}


def _default_text(name):
    value = DEFAULTS.get(name)
    if value is None:
        return "stylize's default"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_parser(sub):
    p = sub.add_parser(
        "batch", help=summary("batch"),
        description="Run many stylisations on Dask (a local cluster sized to this machine, or --scheduler). "
                    "Each job writes OUTDIR/<content>__<style>[__<option>=<value>...].png and a .json "
                    "sidecar; a rerun skips the jobs whose output and sidecar match their settings. "
                    "OUTDIR/summary.csv lists every job. Needs: pip install 'nstyle[batch]'.",
        epilog="exit codes: 0 every job done or skipped, 1 some job failed, 2 bad input (nothing run), "
               "130 interrupted (finished jobs kept)")
    p.add_argument("manifest", nargs="?", help="CSV or JSON-lines file, one job per row: columns content, "
                   "style (several separated by ';'), optional output, and any per-job option by keyword name "
                   "(- reads it from standard input)")
    p.add_argument("-o", "--out-dir", dest="outdir", required=True, metavar="OUTDIR",
                   help="folder for the images, their sidecars and summary.csv (created if missing)")
    p.add_argument("--allow-outside-outdir", dest="allow_outside", action="store_true",
                   help="let a manifest's output column name files outside OUTDIR (.., ~, absolute paths); "
                        "default: refused")
    p.add_argument("--contents", nargs="+", metavar="PATH|GLOB", help="content images (quote globs)")
    p.add_argument("--styles", nargs="+", metavar="PATH|GLOB", help="style images, one per job")
    g = p.add_argument_group("per-job stylize options (as in `nstyle stylize`; a comma list sweeps, "
                             "';' between the values of list options)")
    for name, kind in OPTION_KINDS.items():
        sep = ";" if name in LIST_VALUED else ","
        metavar = _NAMED_METAVARS.get(name, _METAVARS[kind])
        g.add_argument("--" + name.replace("_", "-"), dest="opt_" + name, metavar=metavar,
                       help=f"default: {_default_text(name)}; several values separated by '{sep}' sweep")
    g = p.add_argument_group("network (the whole batch)")
    g.add_argument("--weights", metavar="FILE", help="VGG-19 weights file, at this path on every worker "
                   "(default: $NSTYLE_WEIGHTS, else each machine's cached default weights)")
    g.add_argument("--device", choices=DEVICES, default=DEFAULTS["device"], help="where the workers compute")
    g.add_argument("--engine", choices=ENGINES, default=DEFAULTS["engine"])
    g.add_argument("--max-pixels", type=positive_int, default=DEFAULTS["max_pixels"], metavar="N",
                   help="refuse input images above N pixels")
    g = p.add_argument_group("cluster")
    g.add_argument("--workers", type=positive_int, metavar="N",
                   help="local cluster: worker processes (default: the cores, fewer when memory is short)")
    g.add_argument("--threads-per-worker", type=positive_int, metavar="N",
                   help="nstyle threads in each worker (default: the cores divided among the workers)")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT", type=scheduler,
                   help="use this Dask scheduler instead of a local cluster (default: $DASK_SCHEDULER_ADDRESS)")
    g.add_argument("--retries", type=count, default=1, metavar="N",
                   help="submit a job again when its worker is lost, up to N times (default: 1)")
    g.add_argument("--force", action="store_true", help="redo every job, even those already done")
    g.add_argument("--no-memory-check", dest="check_memory", action="store_false",
                   help="start the local cluster even when the memory estimate says the jobs will not fit")
    g.add_argument("--dry-run", action="store_true", help="check every job, list what would run, and stop")
    g.add_argument("--quiet", "-q", action="store_true", help="print nothing but failures")
    p.set_defaults(run=run)


def _given_options(args):
    """{option: its text} for every per-job option given on the command line."""
    return {name: getattr(args, "opt_" + name) for name in OPTION_KINDS
            if getattr(args, "opt_" + name) is not None}


def jobs_from_args(args):
    """The jobs: the manifest's rows (command-line options fill what a row leaves out) or the cross
    product of --contents, --styles and the swept options."""
    given = _given_options(args)
    if args.manifest and (args.contents or args.styles):
        raise InputError("give a manifest or --contents/--styles, not both")
    if args.manifest:
        fill = {}
        for name, text in given.items():
            values = sweep_values(name, text, os.getcwd())
            if len(values) > 1:
                raise InputError(f"--{name.replace('_', '-')}: sweeps need --contents/--styles; "
                                 "with a manifest give one value (rows override it)")
            fill[name] = values[0]
        return (_filled(job, fill) for job in iter_manifest(args.manifest))  # a row at a time
    if not (args.contents and args.styles):
        raise InputError("no jobs given", hint="give a MANIFEST, or --contents and --styles")
    sweeps = {name: sweep_values(name, text, os.getcwd()) for name, text in given.items()}
    return cross_product(expand_paths(args.contents, "--contents"), expand_paths(args.styles, "--styles"), sweeps)


def _filled(job, fill):
    job.options = {**fill, **job.options} if fill else job.options
    return job


def _dry_run(jobs, args):
    """Plan every job and list it; creates nothing (no OUTDIR, no fetched weights)."""
    remote = bool(scheduler_address(args.scheduler))
    planned, _ = plan_batch(jobs, args.outdir, weights=args.weights, device=args.device, engine=args.engine,
                            max_pixels=args.max_pixels, force=args.force, remote=remote,
                            allow_outside=args.allow_outside, check_memory=args.check_memory, create=False,
                            log=None if args.quiet else say)
    from ..app.run.memory import format_bytes  # noqa: PLC0415
    for p in planned:
        print(f"{'skip' if p.previous else 'run '}  {p.name}  (about {format_bytes(p.memory.total)})")
    todo = sum(p.previous is None for p in planned)
    print(f"{len(planned)} jobs: {todo} to run, {len(planned) - todo} already done")
    return 0


def run(args):
    require_dask()  # without Dask: one line, exit 2
    check_thread_environment()
    scheduler = scheduler_address(args.scheduler)  # checked (flag or $DASK_SCHEDULER_ADDRESS) before the jobs
    jobs = jobs_from_args(args)
    if args.dry_run:
        return _dry_run(jobs, args)
    progress = JobsProgress(mode="quiet" if args.quiet else "auto")
    try:
        result = run_batch(jobs, args.outdir, scheduler=scheduler, workers=args.workers,
                           threads=args.threads_per_worker, retries=args.retries, force=args.force,
                           weights=args.weights, device=args.device, engine=args.engine,
                           max_pixels=args.max_pixels, check_memory=args.check_memory,
                           allow_outside=args.allow_outside, progress=progress, log=progress.log)
    except BatchInterrupted as exc:
        say(exc.message)
        return 130
    if not args.quiet:
        print_path(result.total_line())
    return 0 if result.ok else 1
