"""The work of a tiled run (``tiles/run.py`` drives it): the shared style targets, each tile's term scales,
one tile's optimisation (:func:`refine_tile`, the same here and on a Dask worker) and the tiles as
tasks on a Dask cluster -- the batch's ``cluster.py`` (a LocalCluster sized to the machine, or a
scheduler) and, on each worker, the network loaded once (as the batch's workers keep theirs).
"""
import collections
import math
import time
import types
import uuid

import numpy as np
from PIL import Image

from ... import interrupts
from ...backend import set_tf32, to_device, to_host
from ...errors import NStyleError, RunError
from ...model.arch import pools_before
from ...model.objective import StyleObjective, layer_positions
from ...model.terms import ContentTerm, GramTerm
from ...optim.optimize import STOP_NONFINITE, STOP_REQUESTED
from ..files.imageio import deprocess, preprocess
from ..run import color
from ..run.settings import Settings
from ..run.stages import optimize
from ..run.weighting import network_normalization, normalization_factors, term_scales
from .plan import STATS_MARGIN

# ---------------------------------------------------------------------------------------------------
# Style targets and term scales, computed once.

def _layers(o):
    return tuple(o.style_layers) if o.style_weight > 0 else ()


def style_grams(vgg, images, layers, blend, block):
    """{layer: sum_s b_s F_s F_s^T / M_s} (host float64) for PIL ``images``, each at the size given.

    An image with more pixels than a ``block``-sided square plus its margins goes through the network
    in blocks: interiors of ``block`` pixels (a multiple of the deepest layer's stride, so every block
    lands on the same pooling grid as the whole image) with STATS_MARGIN pixels of context each side,
    each block adding the Gram matrix of its interior's positions. Exact up to the context the margin
    leaves out (none when the image is one block)."""
    stride = 2 ** max(pools_before(name) for name in layers)
    margin = stride * math.ceil(STATS_MARGIN / stride)
    inner = max(stride, block // stride * stride)
    total = {name: 0.0 for name in layers}
    shape = None
    for img, b in zip(images, blend):
        w, h = img.size
        one = w * h <= (block + 2 * margin) ** 2
        sums = {name: 0.0 for name in layers}
        for y0 in ([0] if one else range(0, h, inner)):
            y1 = h if one else min(h, y0 + inner)
            for x0 in ([0] if one else range(0, w, inner)):
                x1 = w if one else min(w, x0 + inner)
                ax, ay = max(0, x0 - margin), max(0, y0 - margin)
                crop = img.crop((ax, ay, min(w, x1 + margin), min(h, y1 + margin)))
                if crop.size != shape:  # let the pool go: its blocks fit the last block size, maybe not this one
                    vgg.release_buffers()
                    shape = crop.size
                x = to_device(preprocess(crop).astype(vgg.dtype, copy=False), vgg.device)
                feats, _ = vgg.forward(x, layers)
                for name in layers:
                    f = 2 ** pools_before(name)
                    F = feats[name][0, :, y0 // f - ay // f:y1 // f - ay // f, x0 // f - ax // f:x1 // f - ax // f]
                    F = F.reshape(F.shape[0], -1)
                    sums[name] = sums[name] + np.asarray(to_host(F @ F.T), dtype=np.float64)
                del feats
        for name in layers:
            total[name] = total[name] + b * sums[name] / layer_positions(h, w, name)
    vgg.release_buffers()
    return total


def net_styles(plan):
    """The style images as the network sees them (colour option applied) at the output's scale."""
    o, tp = plan.settings, plan.tiles
    reference = plan.content.resize(tp.base_size, Image.Resampling.LANCZOS)
    out = []
    for s, size in zip(plan.styles, tp.style_sizes):
        if o.original_colors == "luminance":
            s = color.match_luminance(s, reference)
        elif o.original_colors == "match":
            s = color.match_colors(s, reference)
        out.append(s.resize(size, Image.Resampling.LANCZOS))
    return out, reference


def tile_term_scales(plan, width, height, extra=None):
    """A tile's term scales: the full-size run's, with each term grown from the tile to the full size
    as it declares (``weighting.term_scales``'s ``whole``): the content and TV terms times the full
    size's positions over the tile's. Every term's gradient per pixel is then the full-size run's times
    the same factor (the style terms are per-position statistics already), so a tile keeps the balance
    of the run it is a piece of. extra: factors to multiply in (a normalised network's)."""
    o = plan.settings
    content = tuple(o.content_layers) if o.content_weight > 0 else ()
    scales = term_scales(width, height, content, _layers(o), o.weight_scaling, whole=plan.tiles.size)
    for key, factor in (extra or {}).items():
        scales[key] = scales.get(key, 1.0) * factor
    return scales


def normalization(plan, vgg, grams, reference):
    """A normalised network's term factors (``weighting.normalization_factors``), measured once on the
    content at the base size and the shared style targets, so every tile gets the same ones."""
    scales = network_normalization(vgg)
    if not scales:
        return {}
    o = plan.settings
    targets = {}
    if o.content_weight > 0:
        img = color.grey_image(color.luminance(reference)) if o.original_colors == "luminance" else reference
        targets, _ = vgg.forward(to_device(preprocess(img).astype(vgg.dtype), vgg.device), tuple(o.content_layers))
        vgg.release_buffers()
    terms = [ContentTerm(layer, P) for layer, P in targets.items()]
    terms += [GramTerm.from_statistic(layer, grams[layer]) for layer in _layers(o)]
    return normalization_factors(terms, scales)


# ---------------------------------------------------------------------------------------------------
# One tile: the same function here and on a Dask worker.

def refine_tile(spec, grams, vgg, callback=None):
    """Optimise one tile; returns ((h, w, 3) uint8 image, OptimizeResult). spec: ``content`` and
    ``init`` (uint8 crops), ``settings`` (the run's, as ``Settings.to_dict(client=False)`` gives them:
    the L-BFGS-B implementation already resolved), ``iters``, ``term_scales``."""
    o = Settings.from_dict(spec["settings"])
    if spec["iters"] == 0:  # nothing to refine (an optimiser asked for 0 iterations may still step)
        return spec["init"], types.SimpleNamespace(stop="done", loss=float("nan"), iterations=0, history=[],
                                                   impl=None)
    content, init = Image.fromarray(spec["content"], "RGB"), Image.fromarray(spec["init"], "RGB")
    luminance = o.original_colors == "luminance"

    def net(img):
        return preprocess(color.grey_image(color.luminance(img)) if luminance else img)

    objective = StyleObjective(
        vgg, content=net(content) if o.content_weight > 0 else None, style_grams=grams,
        content_weight=o.content_weight, style_weight=o.style_weight, tv_weight=o.tv_weight,
        content_layers=o.content_layers, style_layers=o.style_layers,
        style_layer_weights=o.style_layer_weights, term_scales=spec["term_scales"],
        style_loss=o.style_loss)  # the Gram loss alone (settings refuse others), at its weight
    result = optimize(o, objective, net(init), spec["iters"], callback)
    img = deprocess(result.x)
    if luminance:
        img = color.restore_colors(img, content)
    return np.asarray(img), result


_NETWORK = {}                # a Dask worker's network: (weights file, size, mtime, pooling, device, engine) -> VGG19


def _worker_network(o):
    """The network a tile task runs on (o: the run's settings as a dict), loaded once per worker process
    (the weights file found as the batch's workers find it: ``weighting.weights_file``) and the file's
    SHA-256."""
    import os  # noqa: PLC0415

    from ..run.network import load_network  # noqa: PLC0415
    from ..run.weighting import attach_normalization, weights_file  # noqa: PLC0415
    path = os.fspath(weights_file(o["weights"]))
    if o["weights"] is None and not os.path.isfile(path):
        from ...weights.store import ensure_default_weights  # noqa: PLC0415
        path = os.fspath(ensure_default_weights())
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns, o["pooling"], o["device"], o["engine"])
    if key not in _NETWORK:
        _NETWORK.clear()
        vgg = load_network(path, pooling=o["pooling"], device=o["device"], engine=o["engine"])
        _NETWORK[key] = (attach_normalization(vgg, path), _sha256(path))
    return _NETWORK[key]


def _sha256(path):
    import hashlib  # noqa: PLC0415
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cancel_check(event_name, every=2.0):
    """A function telling whether the client cancelled the tiles (a Dask Event), asked every few seconds."""
    state = {"next": time.monotonic() + every, "event": None}

    def cancelled():
        if not event_name or time.monotonic() < state["next"]:
            return False
        state["next"] = time.monotonic() + every
        from distributed import Event  # noqa: PLC0415 -- only ever called on a Dask worker
        state["event"] = state["event"] or Event(event_name)
        return state["event"].is_set()

    return cancelled


def tile_task(spec, grams):
    """A tile as a Dask task (on the worker's cached network); returns {"status": "done", "image",
    "record", ...}, or "failed" with the error, or "cancelled"."""
    from ...cpu.threads import available_cores, set_num_threads  # noqa: PLC0415
    start = time.perf_counter()
    try:
        set_num_threads(spec.get("threads") or available_cores())
        vgg, sha = _worker_network(spec["settings"])
        if spec.get("weights_sha256") and spec["weights_sha256"] != sha:
            return {"status": "failed", "error": "the weights file on this worker differs from the client's"}
        cancelled = _cancel_check(spec.get("cancel_event"))
        before = set_tf32(bool(spec["settings"]["tf32"]))
        try:
            image, result = refine_tile(spec, grams, vgg, callback=lambda rec, _get: cancelled())
        finally:
            set_tf32(before)
    except NStyleError as exc:
        return {"status": "failed", "error": exc.message}
    except MemoryError:
        return {"status": "failed", "error": "out of memory"}
    except Exception as exc:  # noqa: BLE001 -- reported by the client with the tile's name
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    if result.stop == STOP_REQUESTED:
        return {"status": "cancelled"}
    if result.stop == STOP_NONFINITE:
        return {"status": "failed", "error": result.message}
    last = result.history[-1] if result.history else {"loss": result.loss}
    return {"status": "done", "image": image, "record": {**last, "lbfgs_impl": result.impl},
            "iterations": result.iterations,
            "seconds": time.perf_counter() - start}


def cluster_run(tiles, make_spec, grams, plan, on_done, say, state):
    """Run ``tiles`` as Dask tasks (``tile_cluster``: client, scheduler or a local cluster of
    workers x threads), each one's spec made as it is submitted (``make_spec(tile)``); on_done(tile,
    result) for each finished one. A lost worker's tile is submitted again once; Ctrl-C (or any
    error) cancels the running tiles (they poll an Event) and re-raises."""
    from ...cpu.threads import available_cores  # noqa: PLC0415
    from ..batch.cluster import (  # noqa: PLC0415
        free_memory,
        local_client,
        quiet_dask_logs,
        remote_client,
        require_dask,
        scheduler_address,
        size_local_cluster,
    )
    require_dask()
    c = dict(plan.settings.tile_cluster)
    run = (lambda client: _drive(client, tiles, make_spec, grams, on_done, state, c.get("retries", 1)))
    with quiet_dask_logs():
        if c.get("client") is not None:
            return run(c["client"])
        address = scheduler_address(c.get("scheduler"), "tile scheduler")
        if address:
            with remote_client(address) as client:
                say(f"tiles on the Dask scheduler at {address}")
                return run(client)
        n, t, limit = size_local_cluster(plan.tiles.memory, len(tiles), available_cores(), c.get("workers"),
                                         c.get("threads"), free_memory(), plan.settings.check_memory)
        with local_client(n, t, limit) as client:
            say(f"tiles on a local cluster: {n} worker{'s' * (n > 1)} x {t} thread{'s' * (t > 1)}")
            state["threads"] = t
            return run(client)


def _drive(client, tiles, make_spec, grams, on_done, state, retries):
    from distributed import Event, KilledWorker  # noqa: PLC0415

    from ..batch.cluster import finished_futures, worker_slots  # noqa: PLC0415
    name = f"nstyle-tiles-cancel-{uuid.uuid4().hex}"
    event = Event(name, client=client)
    shared = client.scatter([grams], broadcast=True)[0]
    queue, running, attempts = collections.deque(tiles), {}, collections.Counter()
    try:
        with interrupts.interruptible():
            while queue or running:
                free = worker_slots(client) - len(running)
                while queue and free > 0:
                    tile = queue.popleft()
                    attempts[tile.name] += 1
                    spec = {**make_spec(tile), "cancel_event": name, "threads": state.get("threads"),
                            "weights_sha256": state.get("weights_sha256")}
                    running[client.submit(tile_task, spec, shared, pure=False)] = tile
                    free -= 1
                for future in finished_futures(running):
                    tile = running.pop(future)
                    error = None if future.status == "finished" or future.cancelled() else future.exception()
                    if future.cancelled() or isinstance(error, KilledWorker):
                        if attempts[tile.name] > retries:
                            raise RunError(f"tile {tile.name}: the worker running it was lost "
                                           f"{attempts[tile.name]} times (out of memory?)")
                        queue.appendleft(tile)
                    elif error is not None:
                        raise RunError(f"tile {tile.name} could not run: {type(error).__name__}: {error}")
                    else:
                        result = future.result()
                        if result["status"] != "done":
                            raise RunError(f"tile {tile.name}: {result.get('error', result['status'])}")
                        on_done(tile, result)
                    future.release()
                interrupts.check()
    except BaseException:
        try:
            event.set()
            client.cancel(list(running), force=True)
        except Exception:  # noqa: BLE001 -- a scheduler already gone
            pass
        raise
