"""Numerical gradient checks: central differences in float64, and the relative errors they give.

``numerical_gradient`` perturbs one element at a time (two evaluations each) -- for small inputs.
``directional_check`` compares derivatives along a few random unit directions v with <grad, v> -- a
handful of evaluations whatever the size of x, so it scales to whole networks.

``OPS`` is the table behind ``nstyle gradcheck [--op NAME] [--engine ENGINE]``: one check per op, in the
order ``docs/backprop.md`` reads them: the layers (relu, avg_pool, max_pool, conv), every loss term in
the registry (``terms.TERMS``: content, gram, guided_gram, tv, temporal, and any term registered
later, each differentiated on its own ``check_case``), the backward sweep (vgg) and the whole
objective. ``run_all`` runs some or all of them and returns the rows the command prints. Each
check draws its data from its own generator (seeded by the seed and the op's name), so ``--op X`` gives
the very rows that X has in the full table.

The checks look the functions they test up in their modules when they run (``losses.tv_loss``, not a
name bound at import; the terms call theirs the same way), so the one place to swap an op -- say, to
watch a check catch a broken gradient -- is the module that defines it
(``nstyle.reference.losses.tv_loss``). The network-level
checks (vgg, objective) run on an engine, which binds its ops when its class is made: to break one of
those, patch the engine (``ReferenceEngine.relu_backward``).
"""
import zlib

import numpy as np

from .terms import TERMS


def rel_error(a, b):
    """max|a - b| / max(max|a|, max|b|): a relative error that ignores single tiny entries."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0))
    if scale == 0.0:
        return 0.0
    return float(np.abs(a - b).max() / scale)


def numerical_gradient(f, x, eps=1e-5):
    """d f / d x by central differences, one element at a time. f: array -> float; x: float64 array."""
    x = np.array(x, dtype=np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f(x)
        flat[i] = old - eps
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def numerical_vjp(f, x, dout, eps=1e-5):
    """Numerical gradient of sum(f(x) * dout) with respect to x: checks a backward that takes dout."""
    return numerical_gradient(lambda z: float(np.sum(f(z) * dout)), x, eps)


def directional_check(f, grad, x, rng, eps=1e-4, directions=1):
    """Relative error of <grad, v> against finite differences of f along random unit directions v.

    For each of ``directions`` random unit vectors v, the analytic derivative <grad, v> is compared with
    finite differences of f along v, keeping the closest of: the central differences
    (f(x + h v) - f(x - h v)) / (2h) at h = eps and h = eps/10, and the one-sided ones at h = eps/10.
    Why several: f is smooth only piecewise. A ReLU or a max-pool that switches between x and x + eps v
    bends f inside the larger step only; and when x itself lies (within rounding) on such a kink, f has
    two one-sided derivatives there and the backward returns one of them (the side the forward's mask
    or winner picked; a central difference across the kink gives their mean). Every candidate estimates
    a derivative of f at x, so a wrong gradient misses them all.

    Returns rel_error over the directions -- the largest discrepancy over the largest derivative -- so
    that with several directions one that is nearly orthogonal to grad, whose derivative is too small to
    measure against rounding, does not decide alone. Costs 1 + 4 * directions evaluations of f.
    """
    grad = np.asarray(grad, dtype=np.float64)
    f0 = f(x)
    numeric, analytic = [], []
    for _ in range(directions):
        v = rng.standard_normal(x.shape)
        v /= np.linalg.norm(v)
        exact = float(np.sum(grad * v))
        h1, h2 = eps, eps / 10
        fp1, fm1, fp2, fm2 = f(x + h1 * v), f(x - h1 * v), f(x + h2 * v), f(x - h2 * v)
        estimates = [(fp1 - fm1) / (2 * h1), (fp2 - fm2) / (2 * h2), (fp2 - f0) / h2, (f0 - fm2) / h2]
        numeric.append(min(estimates, key=lambda d: abs(d - exact)))
        analytic.append(exact)
    scale = max(max(map(abs, numeric)), max(map(abs, analytic)), 1e-300)
    return max(abs(a - b) for a, b in zip(numeric, analytic)) / scale


# ---------------------------------------------------------------------------------------------------
# The table behind `nstyle gradcheck`.

LAYER_TOL = 1e-7    # element-by-element central differences on small float64 inputs
NETWORK_TOL = 1e-6  # directional derivatives through the whole network
DIRECTIONS = 3     # random directions per network-level check


def _row(group, label, shape, err, tol):
    """One line of the table. group: the op's name in OPS; label: what was checked (starts with it)."""
    return {"op": label, "group": group, "shape": "x".join(map(str, shape)), "rel_error": float(err),
            "tol": tol, "ok": bool(err < tol)}


def check_relu(rng, engine=None):
    """relu_backward against the vjp of relu_forward (inputs kept away from the kink at 0)."""
    from ..reference import relu  # noqa: PLC0415 -- looked up at run time: see the module docstring

    x = rng.standard_normal((2, 3, 5, 7))
    x[np.abs(x) < 1e-3] = 0.5  # a finite difference across the kink would measure neither side
    out, cache = relu.relu_forward(x)
    dout = rng.standard_normal(out.shape)
    dx = relu.relu_backward(dout, cache)
    return [_row("relu", "relu", x.shape, rel_error(
        dx, numerical_vjp(lambda z: relu.relu_forward(z)[0], x, dout)), LAYER_TOL)]


def _check_pool(group, kind, rng):
    from ..reference import pool  # noqa: PLC0415

    fwd, bwd = getattr(pool, f"{kind}_pool2d_forward"), getattr(pool, f"{kind}_pool2d_backward")
    rows = []
    for k, s in [(2, 2), (3, 2)]:  # VGG's 2x2/2, and overlapping windows; 7x9 leaves a floored-off border
        x = rng.permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9) * 0.01  # distinct values: no ties
        out, cache = fwd(x, k, s)
        dout = rng.standard_normal(out.shape)
        rows.append(_row(group, f"{group} k{k} s{s}", x.shape, rel_error(
            bwd(dout, cache), numerical_vjp(lambda z: fwd(z, k, s)[0], x, dout)), LAYER_TOL))
    return rows


def check_avg_pool(rng, engine=None):
    """avg_pool2d_backward against the vjp of avg_pool2d_forward."""
    return _check_pool("avg_pool", "avg", rng)


def check_max_pool(rng, engine=None):
    """max_pool2d_backward against the vjp of max_pool2d_forward (distinct values: no ties)."""
    return _check_pool("max_pool", "max", rng)


def check_conv(rng, engine=None):
    """conv2d_backward's dx, dW and db against the vjp of conv2d_forward, for three geometries."""
    from ..reference import conv  # noqa: PLC0415

    rows = []
    for (n, c, h, w, o, k, s, p) in [(1, 3, 7, 9, 4, 3, 1, 1), (2, 2, 6, 5, 3, 3, 2, 2), (1, 1, 5, 5, 2, 2, 1, 0)]:
        x = rng.standard_normal((n, c, h, w))
        wt = rng.standard_normal((o, c, k, k))
        b = rng.standard_normal(o)
        out, cache = conv.conv2d_forward(x, wt, b, s, p)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = conv.conv2d_backward(dout, cache, weight_grads=True)
        tag = f"conv k{k} s{s} p{p}"
        rows.append(_row("conv", tag + " dx", x.shape, rel_error(dx, numerical_vjp(
            lambda z: conv.conv2d_forward(z, wt, b, s, p)[0], x, dout)), LAYER_TOL))
        rows.append(_row("conv", tag + " dw", wt.shape, rel_error(dw, numerical_vjp(
            lambda z: conv.conv2d_forward(x, z, b, s, p)[0], wt, dout)), LAYER_TOL))
        rows.append(_row("conv", tag + " db", b.shape, rel_error(db, numerical_vjp(
            lambda z: conv.conv2d_forward(x, wt, z, s, p)[0], b, dout)), LAYER_TOL))
    return rows


def term_check(cls):
    """The check of a registered term: its ``check_case`` (a small float64 instance and input), its
    ``loss`` gradient against central differences of its value, element by element."""

    def check(rng, engine=None):
        term, inputs = cls.check_case(rng)
        _, grad = term.loss(inputs)
        numeric = numerical_gradient(lambda z: term.loss(z)[0], inputs)
        return [_row(cls.name, cls.name, inputs.shape, rel_error(grad, numeric), LAYER_TOL)]

    check.__doc__ = f"{cls.__name__}.loss's gradient against central differences of its value."
    return check


def random_vgg_params(rng, widths=(8, 8, 12, 12, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16), scale=1.0):
    """Small random VGG-19-shaped parameters (He-style scale) for tests and checks."""
    from .arch import CONV_LAYERS  # noqa: PLC0415

    params, c = {}, 3
    for name, o in zip(CONV_LAYERS, widths):
        std = scale * np.sqrt(2.0 / (9 * c))
        params[name] = (rng.standard_normal((o, c, 3, 3)) * std, rng.standard_normal(o) * 0.1)
        c = o
    return params


def random_image(rng, h, w):
    """A random (1, 3, h, w) network-space image with pixel-like values."""
    return rng.uniform(-110, 130, size=(1, 3, h, w))


def engine_variants(engine):
    """[(label, engine for VGG19)] that the network-level checks run for ``--engine engine``.

    "reference": the reference layer loop. "auto" / "fast": this machine's fast engine for NumPy
    arrays, the CPU engine -- three times: as it chooses its kernels (the narrow random networks here get
    the direct and multiply-then-shift kernels), and with Winograd F(4x4, 3x3), then F(2x2, 3x3), on
    every layer, so that the Winograd forwards and their transposed use for the input gradient are
    checked too.
    """
    from .vgg import resolve_engine  # noqa: PLC0415

    name = resolve_engine(engine, "cpu")
    if name != "cpu":
        return [(f"{name} engine", name)]

    def winograd(policy):
        def make(params, pooling):
            from ..cpu.engine import CpuEngine  # noqa: PLC0415
            return CpuEngine(params, pooling, winograd=policy)
        return make

    return [("cpu engine", "cpu"), ("cpu engine, winograd F(4x4)", winograd("always")),
            ("cpu engine, winograd F(2x2)", winograd("f2"))]


# Taps for the sweep: a conv output (before its ReLU), relu and pool outputs, one deep tap per block.
SWEEP_TAPS = ("conv1_1", "relu1_2", "pool1", "relu2_1", "conv3_1", "relu3_1", "pool3", "relu4_2", "relu5_1")


def check_vgg(rng, engine="auto"):
    """The backward sweep: dL/dx for L = sum_l <G_l, F_l(x)> over taps at every depth, G_l random.

    L is linear in the taps, so its gradient is exactly what ``VGG19.backward`` returns for the tap
    gradients G_l; directional derivatives of L check the whole sweep -- every layer's backward and the
    adding of each tap's gradient to the one flowing down from deeper taps. relu3_1's gradient is
    handed over as two halves, as the objective does for a layer that is a content and a style tap.
    """
    from .vgg import VGG19  # noqa: PLC0415

    params = random_vgg_params(rng)
    rows = []
    for pooling in ("avg", "max"):
        for label, eng in engine_variants(engine):
            vgg = VGG19(params, pooling=pooling, dtype=np.float64, engine=eng)
            x = random_image(rng, 32, 48)  # even down to pool4, so Winograd can run on four blocks
            feats, trace = vgg.forward(x, SWEEP_TAPS)
            G = {name: rng.standard_normal(f.shape) for name, f in feats.items()}
            del feats

            def f(z):
                feats, _ = vgg.forward(z, SWEEP_TAPS)
                return sum(float(np.sum(feats[name] * G[name])) for name in SWEEP_TAPS)

            grads = {name: [g] for name, g in G.items()}
            grads["relu3_1"] = [0.5 * G["relu3_1"], 0.5 * G["relu3_1"]]
            dx = vgg.backward(trace, grads)
            err = directional_check(f, dx, x, rng, eps=1e-3, directions=DIRECTIONS)
            rows.append(_row("vgg", f"vgg sweep ({pooling} pool, {label})", x.shape, err, NETWORK_TOL))
    return rows


def check_objective(rng, engine="auto"):
    """StyleObjective.value_and_grad: directional derivatives of the whole loss (content, blended
    style from two images of other sizes, TV), relu3_1 both a content and a style layer; then with
    spatial control (two regions) and an added temporal term. On the fast engine it runs as the
    engine chooses its kernels only (the vgg check covers forced Winograd)."""
    from .objective import StyleObjective  # noqa: PLC0415
    from .terms import TemporalTerm  # noqa: PLC0415
    from .vgg import VGG19  # noqa: PLC0415

    params = random_vgg_params(rng)
    rows = []
    for pooling in ("avg", "max"):
        for label, eng in engine_variants(engine)[:1]:
            vgg = VGG19(params, pooling=pooling, dtype=np.float64, engine=eng)
            h, w = 40, 52
            obj = StyleObjective(vgg, content=random_image(rng, h, w),
                                 styles=[random_image(rng, 36, 44), random_image(rng, 44, 30)],
                                 style_blend=[0.3, 0.7], content_weight=1.0, style_weight=1e3, tv_weight=1e-2,
                                 content_layers=("relu3_1", "relu4_2"))
            x = random_image(rng, h, w)
            _, g = obj.value_and_grad(x)
            err = directional_check(obj.value, g, x, rng, eps=1e-3, directions=DIRECTIONS)
            rows.append(_row("objective", f"objective ({pooling} pool, {label})", x.shape, err, NETWORK_TOL))
    label, eng = engine_variants(engine)[0]
    h, w = 32, 40
    left = (np.arange(w) < 17)[None, :] * np.ones((h, 1))
    obj = StyleObjective(VGG19(params, dtype=np.float64, engine=eng), content=random_image(rng, h, w),
                         styles=[random_image(rng, 28, 36)], content_layers=("relu2_1",),
                         style_layers=("relu1_1", "relu2_1", "relu3_1"),
                         content_masks={"left": left, "right": 1 - left}, style_masks=[{"left": None, "right": None}])
    obj.add_term(TemporalTerm(random_image(rng, h, w), (rng.uniform(0, 1, (h, w)) > 0.3).astype(float)), 10.0)
    x = random_image(rng, h, w)
    _, g = obj.value_and_grad(x)
    err = directional_check(obj.value, g, x, rng, eps=1e-3, directions=DIRECTIONS)
    rows.append(_row("objective", f"objective, guided + temporal (avg pool, {label})", x.shape, err, NETWORK_TOL))
    return rows


def checks():
    """name -> check(rng, engine) -> rows, in reading order: the layers' ops, every loss term registered
    now (``terms.TERMS``: a term cannot be registered without its check case), then the network-level
    checks, which use the engine."""
    return {"relu": check_relu, "avg_pool": check_avg_pool, "max_pool": check_max_pool, "conv": check_conv,
            **{name: term_check(cls) for name, cls in TERMS.items()},
            "vgg": check_vgg, "objective": check_objective}


OPS = checks()  # the table as the package registers it (the command's choices)
OP_NAMES = tuple(OPS)
ENGINE_OPS = ("vgg", "objective")
# Earlier names of two checks, still accepted by --op: the content and Gram terms.
ALIASES = {"content_loss": "content", "style_loss": "gram"}


def op_rng(seed, name):
    """The generator of one op's check: the same for that op whichever others run with it."""
    return np.random.default_rng([int(seed) % 2 ** 64, zlib.crc32(name.encode())])


def run_all(seed=0, ops=None, engine="auto"):
    """Run the checks of ``ops`` (names in OPS; None: all), the network-level ones on ``engine``
    ("auto", "reference" or "fast"). Returns a list of rows {op, group, shape, rel_error, tol, ok}."""
    table = checks()  # a term registered since import (a learner's, in a test) has its row too
    ops = tuple(table) if ops is None else tuple(dict.fromkeys(ALIASES.get(name, name) for name in ops))
    unknown = [name for name in ops if name not in table]
    if unknown:
        raise ValueError(f"unknown op(s) {', '.join(unknown)}; valid: {', '.join(table)}")
    rows = []
    for name, check in table.items():  # table order, whatever order they were asked in
        if name in ops:
            rows += check(op_rng(seed, name), engine)
    return rows


def format_table(rows):
    width = max(len(r["op"]) for r in rows)
    lines = [f"{'op':<{width}}  {'shape':<12}  {'rel. error':>10}  {'tolerance':>9}  result"]
    for r in rows:
        lines.append(f"{r['op']:<{width}}  {r['shape']:<12}  {r['rel_error']:>10.2e}  {r['tol']:>9.0e}  "
                     f"{'pass' if r['ok'] else 'FAIL'}")
    return "\n".join(lines)
