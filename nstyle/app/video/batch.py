"""Several clips in one go on Dask: one task per clip, its frames in order within it (they depend on each
other through the temporal term), the clips side by side on the workers.

It uses ``nstyle batch``'s machinery: the cluster (``cluster.py``: a LocalCluster sized to this machine
by the largest clip's memory estimate, or the scheduler at ``scheduler``), the network each worker keeps
(``worker.worker_network``), the batch's cancel event and thread sharing, and its progress over jobs
(``batch.progress.JobsProgress``). Every clip is checked here, before anything is submitted
(``driver.prepare_video``: one InputError naming the clip). Resuming is each clip's own: its frames
folder keeps the frames done, so a rerun after Ctrl-C or a lost worker continues every clip where it
stopped (a clip whose output folder or video is complete redoes nothing but the container).
"""
import os
import time
from dataclasses import dataclass, field

from ...errors import InputError, NStyleError
from ..batch.cluster import (finished_futures, free_memory, local_client, quiet_dask_logs, remote_client, require_dask,
                       size_local_cluster)
from ..files.outputs import same_file
from .driver import prepare_video


@dataclass
class ClipJob:
    """One clip of a video batch, as ``batch.progress.JobsProgress`` shows jobs."""
    name: str
    input: str
    output: str
    plan: object = None
    result: dict = field(default_factory=dict)


def clip_output(outdir, clip, suffix):
    stem = os.path.splitext(os.path.basename(os.fspath(clip).rstrip("/\\")))[0]
    return os.path.join(os.fspath(outdir), stem + suffix)


def plan_clips(clips, style, outdir, suffix=".mp4", **video_options):
    """A ClipJob per clip, each checked completely (``prepare_video``); InputError names the clip."""
    if not clips:
        raise InputError("no clips to run")
    os.makedirs(outdir, exist_ok=True)
    jobs = []
    for clip in clips:
        job = ClipJob(os.path.basename(os.fspath(clip).rstrip("/\\")), os.fspath(clip), clip_output(outdir, clip, suffix))
        if any(same_file(job.output, other.output) for other in jobs):
            raise InputError(f"clip {clip}: its output {job.output} is another clip's too", hint="rename one of them")
        try:
            job.plan = prepare_video(clip, style, job.output, **video_options)
        except InputError as exc:
            raise InputError(f"clip {clip}: {exc.message}", hint=exc.hint) from None
        jobs.append(job)
    return jobs


def run_clip(spec):
    """The task (on a worker): stylise one clip; returns {"job", "status", "seconds", ...}, never raises."""
    from ..batch.worker import _stop_check, _worker_threads, worker_network  # noqa: PLC0415
    from ...cpu.threads import set_num_threads  # noqa: PLC0415
    from .driver import VideoInterrupted  # noqa: PLC0415
    from .run import run_video  # noqa: PLC0415
    start = time.perf_counter()
    try:
        set_num_threads(_worker_threads(spec.get("threads")))
        vplan = prepare_video(spec["input"], spec["styles"], spec["output"], **spec["options"])
        o = vplan.plan.settings
        vgg, _ = worker_network(o.weights, o.pooling, o.device, o.engine)
        cancelled = _stop_check(spec.get("cancel_event"))
        result = run_video(vplan, vgg=vgg, callback=lambda rec, get: cancelled())
    except VideoInterrupted as exc:
        return {"job": spec["name"], "status": "cancelled", "seconds": time.perf_counter() - start,
                "frames": exc.result.frames}
    except (NStyleError, MemoryError, OSError) as exc:
        message = getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc) or "out of memory"
        return {"job": spec["name"], "status": "failed", "error": " ".join(str(message).split()),
                "seconds": time.perf_counter() - start}
    except Exception as exc:  # noqa: BLE001 -- a bug: recorded, the other clips go on
        return {"job": spec["name"], "status": "failed", "error": f"internal error: {type(exc).__name__}: {exc}",
                "seconds": time.perf_counter() - start}
    return {"job": spec["name"], "status": "done", "seconds": time.perf_counter() - start, "frames": result.frames,
            "temporal_error": result.temporal_error, "final_loss": result.style_loss}


def run_video_batch(clips, style, outdir, *, suffix=".mp4", client=None, scheduler=None, workers=None,
                    threads=None, check_memory=True, progress=None, log=None, **video_options):
    """Stylise ``clips`` (paths) into ``outdir`` (``<clip stem><suffix>`` each), one Dask task per clip.

    video_options: ``stylize_video``'s keywords (every stylize option too). client / scheduler / workers /
    threads: as ``run_batch``. progress: a ``batch.progress.JobsProgress`` (None: silent). Returns the
    ClipJobs with their results; raises InputError before anything runs, KeyboardInterrupt on Ctrl-C (the
    running clips stop after their current frame, keeping the frames done)."""
    require_dask()
    from distributed import Event, wait  # noqa: PLC0415
    import uuid  # noqa: PLC0415
    jobs = plan_clips(clips, style, outdir, suffix, **video_options)
    options = {**video_options, "check_memory": False}
    say = log or (lambda message: None)
    with quiet_dask_logs():
        if client is None and scheduler:
            context = remote_client(scheduler)
        elif client is None:
            largest = max((j.plan.plan.memory for j in jobs), key=lambda m: m.total)
            n, t, limit = size_local_cluster(largest, len(jobs), os.cpu_count() or 1, workers, threads,
                                             free_memory(), check_memory)
            threads = t
            say(f"local cluster: {n} worker{'s' if n > 1 else ''} x {t} thread{'s' if t > 1 else ''}")
            context = local_client(n, t, limit)
        else:
            context = _given(client)
        with context as c:
            event_name = f"nstyle-video-cancel-{uuid.uuid4().hex}"
            event = Event(event_name, client=c)
            if progress is not None:
                progress.start(len(jobs), 0)
            futures = {c.submit(run_clip, {"name": j.name, "input": j.input, "styles": style, "output": j.output,
                                           "options": options, "threads": threads, "cancel_event": event_name},
                                pure=False): j for j in jobs}
            pending = dict(futures)
            try:
                while pending:
                    for future in finished_futures(pending):
                        job = pending.pop(future)
                        job.result = future.result() if future.status == "finished" else {
                            "status": "failed", "error": f"could not run on the cluster: {future.exception()}"}
                        if progress is not None:
                            progress.finished(job)
                    if progress is not None:
                        progress.tick()
            except KeyboardInterrupt:
                event.set()  # the running clips stop after their current iteration, keeping whole frames
                try:
                    wait(list(pending), timeout=30)
                except Exception:  # noqa: BLE001 -- what has not stopped by then goes with the cluster
                    pass
                raise
            finally:
                if progress is not None:
                    progress.close()
    return jobs


class _given:
    """A context manager around a client the caller owns (not closed here)."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        return False
