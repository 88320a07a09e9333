"""Opt-in: one evaluation of the objective replayed as a CUDA graph -- ``GraphedObjective(objective)``.

Why: at 512 x 512 an evaluation is a few hundred small kernel launches and cuBLAS calls, each of which
the GPU finishes sooner than Python issues the next, so launch overhead sets the time (on an H200 the
evaluation took 1.53x PyTorch's there, and 0.75x at 1024). A CUDA graph records the launches once and
replays them all with one call.

How, per input shape (one graph at a time; a new shape replaces it):

1. an eager evaluation on a private stream and a private memory pool, with the loss terms kept on the
   device (below); it compiles every kernel, fills the pool, makes the engine's weight transforms and
   the objective's targets -- and its result is returned;
2. the same evaluation captured (CuPy's ``Stream.begin_capture`` / ``end_capture``) reading a fixed
   input buffer; the graph is launched once and checked against step 1 (loss and gradient);
3. from then on an evaluation copies x into the input buffer, launches the graph on the current stream,
   reads the packed loss terms back (one copy) and copies the gradient out.

The losses turn each term into a Python float (``reference.losses._sum_squares``), a host sync that
capture forbids; while this module evaluates, that function returns the device scalar instead, so the
terms are summed on the device and the breakdown is packed into one array. The pool is private because
every replay reuses the addresses captured: nothing else may allocate from it. The arrays the graph
reads but does not own (weights, transforms, the objective's targets) stay referenced by it, and a
changed target forces a new capture.

Falls back to plain evaluation -- silently; ``fallback`` says why -- for NumPy arrays, where CuPy lacks
stream capture, when the capture fails (an op that syncs or that CUDA refuses to capture) and when the
replay disagrees with the eager evaluation. Only a device can exercise steps 2 and 3; off the device the
tests cover the fallback and step 1's device-scalar evaluation.
"""
import contextlib
import threading

import numpy as np

from .. import backend
from ..reference import losses


@contextlib.contextmanager
def device_scalars():
    """Within the block, the losses' sums of squares stay arrays (0-d, float64) instead of Python floats
    -- in this thread; other threads still get floats."""
    original, owner = losses._sum_squares, threading.get_ident()

    def sum_squares(a):
        if threading.get_ident() != owner:
            return original(a)
        flat = a.reshape(-1)
        return backend.get_xp(a).dot(flat, flat).astype(np.float64)

    losses._sum_squares = sum_squares
    try:
        yield
    finally:
        losses._sum_squares = original


def evaluate_packed(objective, x):
    """((order, keys, packed, constants), grad): one evaluation with the loss terms left on x's device --
    ``packed[i]`` is breakdown[keys[i]] (float64), ``constants`` the terms that are plain numbers, order
    the breakdown's keys. :func:`unpack` makes the breakdown of it."""
    xp = backend.get_xp(x)
    with device_scalars():
        _, grad = objective.value_and_grad(x)
    breakdown = objective.last_breakdown
    keys = [k for k, v in breakdown.items() if type(v) not in (int, float)]  # arrays, NumPy scalars
    constants = {k: float(v) for k, v in breakdown.items() if k not in keys}
    packed = xp.stack([xp.asarray(breakdown[k], dtype=np.float64).reshape(()) for k in keys]) if keys else None
    return (list(breakdown), keys, packed, constants), grad


def unpack(terms):
    """The breakdown (Python floats) from :func:`evaluate_packed`'s terms: one copy from the device."""
    order, keys, packed, constants = terms
    values = dict(constants)
    if keys:
        values.update(zip(keys, (float(v) for v in backend.to_host(packed))))
    return {k: values[k] for k in order}


class GraphedObjective:
    """``objective`` with ``value_and_grad`` replayed from a CUDA graph (see the module docstring). Other
    attributes are the objective's; ``last_breakdown`` and ``evaluations`` are kept as it keeps them.
    ``fallback``: None while graphs may run, else why they do not; ``captures``: graphs made so far."""

    def __init__(self, objective):
        self.objective = objective
        self.last_breakdown = None
        self.fallback = None
        self.captures = 0
        self._graph = None  # dict: key, graph, x_in, terms, grad, pool, held

    def __getattr__(self, name):
        return getattr(self.objective, name)

    def value(self, x):
        return self.value_and_grad(x)[0]

    def value_and_grad(self, x):
        if self.fallback is None and not backend.is_gpu_array(x):
            self.fallback = "NumPy arrays: CUDA graphs need CuPy on a device"
        if self.fallback is not None:
            f, g = self.objective.value_and_grad(x)
            self.last_breakdown = self.objective.last_breakdown
            return f, g
        entry = self._graph
        if entry is None or entry["key"] != self._key(x):
            return self._first(x)
        entry["x_in"][...] = x
        entry["graph"].launch()
        return self._done(unpack(entry["terms"]), entry["grad"].copy())

    def _done(self, breakdown, grad):
        self.objective.evaluations += 1
        self.objective.last_breakdown = self.last_breakdown = breakdown
        return breakdown["total"], grad

    def _key(self, x):
        targets = getattr(self.objective, "style_targets", {})
        return tuple(x.shape), x.dtype.str, tuple((k, id(v[1])) for k, v in sorted(targets.items()))

    def _first(self, x):
        """Steps 1 and 2 at a new shape; returns step 1's result (a plain evaluation if anything fails)."""
        self._graph = None
        cp = backend.cupy_module()
        if not (hasattr(cp.cuda.Stream, "begin_capture") and hasattr(cp.cuda, "using_allocator")):
            self.fallback = f"CuPy {cp.__version__} has no stream capture"
            return self.value_and_grad(x)
        cp.cuda.Device().synchronize()
        pool, stream = cp.cuda.MemoryPool(), cp.cuda.Stream(non_blocking=True)
        count = self.objective.evaluations
        try:
            with stream, cp.cuda.using_allocator(pool.malloc):
                x_in = cp.empty(x.shape, dtype=self.objective.vgg.dtype)
                x_in[...] = x
                terms, grad = evaluate_packed(self.objective, x_in)
                eager, eager_grad = unpack(terms), grad.copy()
                del terms, grad
                stream.synchronize()
                stream.begin_capture()
                try:
                    terms, grad = evaluate_packed(self.objective, x_in)
                finally:
                    graph = stream.end_capture()
            stream.synchronize()
            self.objective.evaluations = count
            graph.launch(cp.cuda.get_current_stream())  # a CuPy whose Graph.launch takes no stream raises here
            replay = unpack(terms)
            diff = float(cp.linalg.norm(grad - eager_grad)) / max(float(cp.linalg.norm(eager_grad)), 1e-30)
            if abs(replay["total"] - eager["total"]) > 1e-6 * abs(eager["total"]) or not diff <= 1e-5:
                self.fallback = (f"the graph's replay disagrees with the eager evaluation (loss {replay['total']:.9g}"
                                 f" vs {eager['total']:.9g}, gradient rel. diff. {diff:.2e})")
            else:
                held = (dict(getattr(self.objective, "style_targets", {})),
                        getattr(self.objective, "content_targets", None))
                self._graph = {"key": self._key(x), "graph": graph, "x_in": x_in, "terms": terms, "grad": grad,
                               "pool": pool, "held": held}
                self.captures += 1
        except Exception as exc:  # a sync, or an op CUDA will not capture: evaluate plainly from now on
            self.fallback = f"capture failed ({type(exc).__name__}: {str(exc)[:200]})"
            self.objective.evaluations = count
            cp.cuda.Device().synchronize()
            return self.value_and_grad(x)
        return self._done(eager, eager_grad)
