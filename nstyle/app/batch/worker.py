"""What runs on a Dask worker: one batch job as one task, and the network each worker keeps.

:func:`run_job` receives a plain dict (the job's inputs, options, output path, settings hash -- no
weights, no network), stylises, writes the image atomically and then its JSON sidecar, and returns a
small dict. Failures a job can meet (an unreadable image, a NaN loss, a full disk, running out of
memory) come back as a result with status "failed" instead of an exception, so the scheduler never
retries them: retrying only helps when the worker itself was lost, which the client sees as Dask's
``KilledWorker`` and resubmits (``batch/run_batch.py``).

The VGG-19 weights load once per worker process: :func:`worker_network` keeps the network in a
module-level cache keyed by the weights file (its real path, size and modification time) and the
network's settings. The weights never travel through the scheduler; each worker opens the file the job
names -- so ``--weights PATH`` must be visible on the workers -- or its own default weights.

The sidecar (``<output>.json``) records the settings hash the client computed, the SHA-256 of the
image written, the final loss, the iterations and the seconds. A later run skips the job when both
files are there and agree (:func:`is_current`). The image is written first: a worker lost between the
two writes leaves an image without a sidecar, which the next run redoes.

This module imports Dask only inside :func:`run_job`'s helpers, and only on a worker.
"""
import hashlib
import json
import os
import signal
import socket
import threading
import time

from ...atomic import atomic_write
from ...errors import NStyleError
from ...version import __version__

SIDECAR_FORMAT = 1
STOP_POLL_SECONDS = 2.0   # how often a running job asks whether the batch was cancelled
_NETWORKS = {}            # cache key -> (network, SHA-256 of its weights file)
_NETWORKS_KEPT = 2        # a sweep over pooling needs two networks; more would only hold memory
_lock = threading.Lock()


# ---------------------------------------------------------------------------------------------------
# Fingerprints and sidecars (used by the client too).

def file_sha256(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def settings_hash(settings):
    """SHA-256 of the settings as canonical JSON: equal settings, equal hash, on every machine."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def sidecar_path(output):
    return os.fspath(output) + ".json"


def read_sidecar(output):
    """The sidecar's dict, or None when it is missing or unreadable."""
    try:
        with open(sidecar_path(output), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_current(output, expected_hash):
    """The sidecar when ``output`` and its sidecar say the job is done with these settings, else None."""
    data = read_sidecar(output)
    if not data or data.get("settings_hash") != expected_hash or not os.path.isfile(output):
        return None
    try:
        return data if file_sha256(output) == data.get("output_sha256") else None
    except OSError:
        return None


def _write_sidecar(output, data):
    def write(fh):
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")

    atomic_write(sidecar_path(output), write, binary=False)


# ---------------------------------------------------------------------------------------------------
# The network each worker keeps.

def _resolve_weights(weights):
    """The weights file a job uses on this machine: the named one, $NSTYLE_WEIGHTS, or the cached default
    (fetched if missing: ``fetch`` takes a lock, so several workers fetch it once)."""
    if weights:
        return os.fspath(weights)
    if os.environ.get("NSTYLE_WEIGHTS"):
        return os.environ["NSTYLE_WEIGHTS"]
    from ...weights.store import ensure_default_weights  # noqa: PLC0415
    return os.fspath(ensure_default_weights())


def worker_network(weights, pooling, device, engine):
    """(network, weights SHA-256) for these settings, loaded at most once per worker process."""
    from ..run.network import load_network  # noqa: PLC0415
    from ..run.weighting import attach_normalization  # noqa: PLC0415
    path = _resolve_weights(weights)
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, pooling, device, engine)
    with _lock:  # one task at a time loads; a second thread on the same worker then finds it cached
        if key not in _NETWORKS:
            vgg = attach_normalization(load_network(path, pooling=pooling, device=device, engine=engine), path)
            while len(_NETWORKS) >= _NETWORKS_KEPT:
                _NETWORKS.pop(next(iter(_NETWORKS)))
            _NETWORKS[key] = (vgg, file_sha256(path))
        return _NETWORKS[key]


# ---------------------------------------------------------------------------------------------------
# The task.

def dask_setup(worker):  # noqa: ARG001 -- Dask's preload hook: the batch's local workers load this module
    """Run in each worker process of a batch's local cluster as it starts. Ctrl-C at a terminal reaches
    every process of the group, but the client handles it (cancels, keeps the finished jobs, stops the
    cluster), so the workers ignore it rather than die with a traceback each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _Cancelled(Exception):
    pass


def _stop_check(event_name):
    """A function telling whether the client cancelled the batch (a Dask Event), asked at most every
    STOP_POLL_SECONDS -- a short job never asks, so never opens a connection for it."""
    if not event_name:
        return lambda: False
    state = {"next": time.monotonic() + STOP_POLL_SECONDS, "event": None}

    def cancelled():
        now = time.monotonic()
        if now < state["next"]:
            return False
        state["next"] = now + STOP_POLL_SECONDS
        from distributed import Event  # noqa: PLC0415 -- only ever called on a Dask worker
        if state["event"] is None:
            state["event"] = Event(event_name)
        return state["event"].is_set()

    return cancelled


def _worker_threads(threads):
    """nstyle's threads in this worker: as asked, else this machine's cores shared by the worker's
    Dask threads (each runs one job at a time)."""
    if threads:
        return int(threads)
    from ...cpu.threads import available_cores  # noqa: PLC0415
    try:
        from distributed import get_worker  # noqa: PLC0415
        slots = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        slots = 1
    return max(1, available_cores() // max(1, slots))


def _failed(spec, message, start):
    return {"job": spec["name"], "status": "failed", "error": " ".join(str(message).split()),
            "seconds": time.perf_counter() - start, "worker": socket.gethostname()}


def run_job(spec):
    """Run one job (see the module docstring); returns {"job", "status", "seconds", ...}."""
    start = time.perf_counter()
    try:
        return _run(spec, start)
    except _Cancelled:
        return {"job": spec["name"], "status": "cancelled", "seconds": time.perf_counter() - start}
    except NStyleError as exc:  # bad input, a NaN loss, weights that do not load
        # a stopped run's best image is not this job's result: the batch writes nothing for it
        return _failed(spec, exc.message.replace("kept the best image so far", "nothing written"), start)
    except MemoryError:
        return _failed(spec, "out of memory", start)
    except OSError as exc:  # a full disk, a file gone
        where = f" ({exc.filename})" if exc.filename else ""
        return _failed(spec, f"{exc.strerror or exc}{where}", start)
    except Exception as exc:  # a bug: recorded with its type, the other jobs go on
        return _failed(spec, f"internal error: {type(exc).__name__}: {exc}", start)


def _run(spec, start):
    from ...cpu.threads import set_num_threads  # noqa: PLC0415
    from ..files.imageio import save_image  # noqa: PLC0415
    from ..run.stylize import prepare, run  # noqa: PLC0415
    set_num_threads(_worker_threads(spec.get("threads")))
    plan = prepare(spec["content"], spec["styles"], **spec["options"])
    o = plan.settings
    vgg, weights_sha = worker_network(o.weights, o.pooling, o.device, o.engine)
    plan = plan.on_network(vgg)  # whose L-BFGS-B runs here: resolved once, for this worker's network
    expected = spec.get("weights_sha256")
    if expected and expected != weights_sha:
        raise NStyleError(f"the weights file on {socket.gethostname()} differs from the one the batch "
                          "was planned with", hint="give every machine the same --weights file")
    cancelled, state = _stop_check(spec.get("cancel_event")), {"stopped": False, "stage": 0, "best": None}

    def on_iteration(rec, _get_image):
        if rec["stage"] != state["stage"]:  # the final loss is the last stage's best
            state["stage"], state["best"] = rec["stage"], None
        state["best"] = rec["loss"] if state["best"] is None else min(state["best"], rec["loss"])
        state["iterations"] = rec["step"]
        if cancelled():
            state["stopped"] = True
            return True
        return False

    image = run(plan, vgg=vgg, callback=on_iteration)
    if state["stopped"]:
        raise _Cancelled
    save_image(image, spec["output"])
    seconds = time.perf_counter() - start
    record = {"format": SIDECAR_FORMAT, "job": spec["name"], "settings_hash": spec["settings_hash"],
              "settings": spec["settings"], "output_sha256": file_sha256(spec["output"]),
              "final_loss": state["best"], "iterations": state.get("iterations", 0), "seconds": round(seconds, 3),
              "worker": socket.gethostname(), "weights_sha256": weights_sha, "nstyle": __version__,
              "lbfgs_impl": plan.settings.lbfgs_impl if plan.settings.optimizer == "lbfgs" else None,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_sidecar(spec["output"], record)
    return {"job": spec["name"], "status": "done", "seconds": seconds, "final_loss": state["best"],
            "iterations": record["iterations"], "worker": record["worker"]}
