"""``nstyle video INPUT STYLE [STYLE ...] -o OUTPUT``: stylised video without flicker (Ruder et al. 2016).

Every ``stylize`` option applies per frame (the parser borrows them from ``stylize``'s, so the two never
drift apart), except ``--save-every`` and ``--plot`` -- a video keeps every finished frame instead
(``OUTPUT.frames/``, or the output folder itself), and a rerun with the same settings continues -- and
the tiles options (a frame is stylised in one piece).
The work is in ``app/video``; PyAV and OpenCV are needed only there, and their absence is one line
(exit 2). Exit codes as every command: 0 done, 2 bad input (before any frame is stylised), 1 failure,
130 interrupted (the frames done are written as a playable file).
"""
import argparse
import sys

from ..app.files.progress import say
from ..app.files.runlog import write_log
from ..app.run.stops import NonFiniteLoss
from ..app.video.driver import DEFAULT_BLEND, DEFAULT_TEMPORAL_WEIGHT, VideoInterrupted, prepare_video
from ..app.video.flow import FLOWS
from ..app.video.progress import VideoProgress
from ..app.video.run import run_video
from ..errors import InputError
from . import stylize as stylize_command
from .args import frame_rate, positive_int, print_path, scheduler, weight
from .checks import check_run
from .commands import summary

_NOT_FOR_VIDEO = {"content", "styles", "output", "save_every", "plot", "help"}


def _stylize_groups():
    """The stylize command's option groups (the parser it builds), to lend their options to this one."""
    sub = argparse.ArgumentParser(add_help=False).add_subparsers()
    stylize_command.add_parser(sub)
    return sub.choices["stylize"]._action_groups


def add_parser(sub):
    p = sub.add_parser(
        "video", help=summary("video"),
        description="Stylise every frame of INPUT (a video file or a folder of numbered frames) in the style of "
                    "STYLE, each frame tied to the previous one by a temporal loss along the optical flow, so "
                    "that the result does not flicker. Every stylize option applies per frame. Needs: pip "
                    "install 'nstyle[video]' (PyAV and OpenCV).",
        epilog="exit codes: 0 success, 2 bad usage or input (nothing stylised), 1 failure while running, "
               "130 interrupted (the frames done are written; run the same command again to continue)")
    p.add_argument("input", help="video file (MP4, WebM, GIF, MKV, ...) or folder of numbered frames (with "
                   "--clips: the first style image)")
    p.add_argument("styles", nargs="*", metavar="style", help="style image(s) (the paintings)")
    p.add_argument("-o", "--output", metavar="OUT", help="output video (.mp4, .webm, .gif; the input's audio "
                   "is copied through) or folder (numbered PNG frames); required unless --dry-run")
    g = p.add_argument_group("video")
    g.add_argument("--temporal-weight", type=weight, default=DEFAULT_TEMPORAL_WEIGHT, metavar="W",
                   help=f"lambda of the temporal loss (default: {DEFAULT_TEMPORAL_WEIGHT:g}, chosen by measurement: "
                        "bench/bench_video.py, bench/bench_video_still.py); 0 stylises every frame on its own")
    g.add_argument("--flow", choices=FLOWS, default="medium",
                   help="optical flow: OpenCV's DIS at its medium or fast preset, or Farneback (default: medium)")
    g.add_argument("--passes", type=positive_int, default=1, metavar="N",
                   help="Ruder et al.'s multi-pass: after the forward pass, N - 1 more passes backward and "
                        "forward in turn, each of --iters per frame (default: 1)")
    g.add_argument("--blend", type=weight, default=DEFAULT_BLEND, metavar="D",
                   help=f"multi-pass: how much of the warped neighbour a frame starts from (default: {DEFAULT_BLEND:g})")
    g.add_argument("--fps", type=frame_rate, default=None, metavar="F",
                   help="frames per second of the output (frames repeated or dropped; default: the input's; "
                        "for a folder: its rate, default 25)")
    g.add_argument("--start", type=weight, default=0.0, metavar="SECONDS", help="start this far into the input")
    g.add_argument("--frames", type=positive_int, default=None, metavar="N", help="stylise at most N frames")
    g.add_argument("--keep-frames", action="store_true",
                   help="keep a video output's frames folder (OUT.frames) after the container is written")
    g = p.add_argument_group("several clips on Dask (pip install 'nstyle[batch]'): nstyle video STYLE [STYLE ...] "
                             "--clips CLIP [CLIP ...] -o OUTDIR")
    g.add_argument("--clips", nargs="+", metavar="CLIP", help="stylise these clips, one Dask task each, into "
                   "OUTDIR/<clip name><--clip-suffix>; every positional argument is then a style image")
    g.add_argument("--clip-suffix", choices=(".mp4", ".webm", ".gif", ""), default=".mp4",
                   help="the clips' output format; '' writes a folder of frames per clip (default: .mp4)")
    g.add_argument("--workers", type=positive_int, default=None, metavar="N", help="local Dask workers "
                   "(default: as many as fit in the cores and the memory, at most one per clip)")
    g.add_argument("--threads", type=positive_int, default=None, metavar="N",
                   help="nstyle threads per worker (default: the cores shared among the workers)")
    g.add_argument("--scheduler", metavar="ADDRESS", type=scheduler,
                   help="run on this Dask scheduler (tcp://HOST:PORT; default: "
                   "$DASK_SCHEDULER_ADDRESS, else a local cluster)")
    for group in _stylize_groups():
        actions = [a for a in group._group_actions
                   if a.dest not in _NOT_FOR_VIDEO and not a.dest.startswith(("tile", "keep_tiles"))]
        if not actions:
            continue
        mine = p.add_argument_group(group.title, group.description)
        for action in actions:
            mine._add_action(action)
    p.set_defaults(run=run)


def _reads(args):
    return [args.input, *stylize_command.input_paths(argparse.Namespace(**{**vars(args), "content": args.input}))]


def run(args):
    if args.clips:
        return run_clips(args)
    if not args.styles:
        raise InputError("no style image given", hint="nstyle video INPUT STYLE [STYLE ...] -o OUT")
    if args.output is None and not args.dry_run:
        raise InputError("no output given", hint="add -o OUT.mp4 (or a folder, or --dry-run to only check)")
    if args.start < 0:
        raise InputError(f"--start must be >= 0 seconds (got {args.start:g})")
    options = stylize_command.options_from_args(args)
    vplan = prepare_video(args.input, args.styles, args.output, temporal_weight=args.temporal_weight,
                          flow=args.flow, passes=args.passes, blend=args.blend, fps=args.fps, start=args.start,
                          frames=args.frames, keep_frames=args.keep_frames, **options)
    check_run(reads=_reads(args), weights=args.weights, device=args.device,
              outputs=[] if args.dry_run else [(args.log_json, "log file", False)], plans=[vplan.plan],
              check_memory=args.check_memory and not args.dry_run)
    if args.dry_run:
        for line in vplan.describe():
            print(line)
        if args.check_memory:
            vplan.plan.check_memory()
        return 0
    progress = VideoProgress(vplan.frames, vplan.passes, mode="quiet" if args.quiet else "auto",
                             breakdown_every=args.print_every)
    settings = {"input": args.input, "styles": args.styles, "output": args.output, **vplan.plan.settings,
                "engine": vplan.plan.engine, "lbfgs_impl": vplan.plan.lbfgs_impl,
                "temporal_weight": vplan.temporal_weight, "flow": vplan.flow,
                "passes": vplan.passes, "fps": str(vplan.source.fps), "start": vplan.source.start,
                "frames": vplan.frames}

    def write_side_outputs(result, status, message=""):
        if args.log_json:
            summary = {"frames": result.records, "temporal_error": result.temporal_error,
                       "style_loss": result.style_loss, "seconds": result.seconds} if result else {}
            write_log(args.log_json, {**settings, "result": summary}, result.iterations if result else [],
                      status, message, args.output)

    try:
        result = run_video(vplan, log=progress.log, progress=progress)
    except VideoInterrupted as exc:
        progress.close()
        write_side_outputs(exc.result, "interrupted", exc.message)
        print(f"nstyle: {exc.message}", file=sys.stderr)
        return 130
    except NonFiniteLoss as exc:
        progress.close()
        exc.message += f"; the frames done are kept in {vplan.store.folder} (run again to continue)"
        write_side_outputs(None, "nonfinite", exc.message)
        raise
    write_side_outputs(result, "done")
    if not args.quiet:
        say(summary_line(result))
        print_path(args.output)
    return 0


def summary_line(result):
    """'10 frames in 1:23 (8.3 s per frame); temporal error 12.3, style loss 4.5e+04'."""
    m, s = divmod(int(round(result.seconds)), 60)
    parts = [f"{result.frames} frames in {m}:{s:02d}"]
    if result.seconds_per_frame:
        parts[0] += f" ({result.seconds_per_frame:.1f} s per frame)"
    if result.temporal_error is not None:
        parts.append(f"temporal error {result.temporal_error:.2f}")
    if result.style_loss is not None:
        parts.append(f"style loss {result.style_loss:.4g}")
    return "; ".join(parts)


def run_clips(args):
    """``--clips``: every clip a Dask task (``app/video/batch.py``)."""
    from ..app.batch.cluster import scheduler_address  # noqa: PLC0415
    from ..app.batch.progress import JobsProgress  # noqa: PLC0415
    from ..app.video.batch import run_video_batch  # noqa: PLC0415
    styles = [args.input, *args.styles]
    if args.output is None:
        raise InputError("no output folder given", hint="add -o OUTDIR")
    options = stylize_command.options_from_args(args)
    check_memory = options.pop("check_memory", True)
    reads = [*args.clips, *stylize_command.input_paths(argparse.Namespace(**{**vars(args), "content": args.input}))]
    check_run(reads=reads, weights=args.weights, device=args.device, check_memory=False)
    video_options = dict(temporal_weight=args.temporal_weight, flow=args.flow, passes=args.passes, blend=args.blend,
                         fps=args.fps, start=args.start, frames=args.frames, keep_frames=args.keep_frames, **options)
    if args.dry_run:  # every clip checked, nothing created or run
        from ..app.run.memory import format_bytes  # noqa: PLC0415
        from ..app.video.batch import plan_clips  # noqa: PLC0415
        for job in plan_clips(args.clips, styles, args.output, args.clip_suffix, create=False, **video_options):
            s, (w, h) = job.plan.source, job.plan.plan.output_size
            print(f"{job.name}: {s.count} frames at {w}x{h} (about {format_bytes(job.plan.plan.memory.total)}) "
                  f"-> {job.output}")
        return 0
    progress = JobsProgress(mode="quiet" if args.quiet else "auto")
    try:
        jobs = run_video_batch(args.clips, styles, args.output, suffix=args.clip_suffix, workers=args.workers,
                               threads=args.threads, scheduler=scheduler_address(args.scheduler),
                               check_memory=check_memory, progress=progress, log=progress.log, **video_options)
    except KeyboardInterrupt:
        print("nstyle: interrupted; each clip keeps the frames it finished: run the same command again to "
              "continue", file=sys.stderr)
        return 130
    failed = [j for j in jobs if j.result.get("status") != "done"]
    if not args.quiet:
        for j in jobs:
            error = j.result.get("temporal_error")
            say(f"{j.name}: {j.result.get('status')}" + (f", temporal error {error:.2f}" if error is not None else "")
                + (f" ({j.result['error']})" if j.result.get("error") else ""))
        for j in jobs:
            if j.result.get("status") == "done":
                print_path(j.output)
    return 1 if failed else 0
