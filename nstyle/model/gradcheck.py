"""Numerical gradient checks: central differences in float64, and the relative errors they give.

``numerical_gradient`` perturbs one element at a time (two evaluations each) -- for small inputs.
``directional_check`` compares the derivative along one random unit direction with <grad, v> -- two
evaluations in all, so it scales to whole networks. ``run_all`` checks every op, every loss and the
whole objective on random data and returns the table that ``nstyle gradcheck`` prints.
"""
import numpy as np


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


def directional_check(f, grad, x, rng, eps=1e-4):
    """Relative error between (f(x + eps v) - f(x - eps v)) / (2 eps) and <grad, v>, v a random unit vector."""
    v = rng.standard_normal(x.shape)
    v /= np.linalg.norm(v)
    numeric = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    analytic = float(np.sum(np.asarray(grad, dtype=np.float64) * v))
    return abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-300)


# ---------------------------------------------------------------------------------------------------
# The table behind `nstyle gradcheck`.

def _row(op, shape, err, tol):
    return {"op": op, "shape": "x".join(map(str, shape)), "rel_error": err, "tol": tol, "ok": bool(err < tol)}


def _check_layers(rng, rows, tol=1e-7):
    from ..reference import (avg_pool2d_backward, avg_pool2d_forward, conv2d_backward, conv2d_forward,
                         max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward)

    for (n, c, h, w, o, k, s, p) in [(1, 3, 7, 9, 4, 3, 1, 1), (2, 2, 6, 5, 3, 3, 2, 2), (1, 1, 5, 5, 2, 2, 1, 0)]:
        x = rng.standard_normal((n, c, h, w))
        wt = rng.standard_normal((o, c, k, k))
        b = rng.standard_normal(o)
        out, cache = conv2d_forward(x, wt, b, s, p)
        dout = rng.standard_normal(out.shape)
        dx, dw, db = conv2d_backward(dout, cache, weight_grads=True)
        tag = f"conv2d k{k} s{s} p{p}"
        rows.append(_row(tag + " dx", x.shape, rel_error(dx, numerical_vjp(
            lambda z: conv2d_forward(z, wt, b, s, p)[0], x, dout)), tol))
        rows.append(_row(tag + " dw", wt.shape, rel_error(dw, numerical_vjp(
            lambda z: conv2d_forward(x, z, b, s, p)[0], wt, dout)), tol))
        rows.append(_row(tag + " db", b.shape, rel_error(db, numerical_vjp(
            lambda z: conv2d_forward(x, wt, z, s, p)[0], b, dout)), tol))
    x = rng.standard_normal((2, 3, 5, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink, where a finite difference straddles it
    out, cache = relu_forward(x)
    dout = rng.standard_normal(out.shape)
    rows.append(_row("relu", x.shape, rel_error(relu_backward(dout, cache),
                                                numerical_vjp(lambda z: relu_forward(z)[0], x, dout)), tol))
    for name, fwd, bwd in [("avg_pool2d", avg_pool2d_forward, avg_pool2d_backward),
                           ("max_pool2d", max_pool2d_forward, max_pool2d_backward)]:
        for k, s in [(2, 2), (3, 2)]:
            x = rng.permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9) * 0.01  # distinct values: no ties
            out, cache = fwd(x, k, s)
            dout = rng.standard_normal(out.shape)
            rows.append(_row(f"{name} k{k} s{s}", x.shape, rel_error(
                bwd(dout, cache), numerical_vjp(lambda z: fwd(z, k, s)[0], x, dout)), tol))


def _check_losses(rng, rows, tol=1e-7):
    from ..reference.losses import content_loss, style_layer_loss, tv_loss, gram_matrix

    F = rng.standard_normal((1, 4, 5, 6))
    P = rng.standard_normal(F.shape)
    rows.append(_row("content_loss", F.shape, rel_error(
        content_loss(F, P)[1], numerical_gradient(lambda z: content_loss(z, P)[0], F)), tol))
    A = gram_matrix(rng.standard_normal((1, 4, 3, 3)))
    rows.append(_row("style_layer_loss", F.shape, rel_error(
        style_layer_loss(F, A)[1], numerical_gradient(lambda z: style_layer_loss(z, A)[0], F)), tol))
    x = rng.standard_normal((1, 3, 5, 4))
    rows.append(_row("tv_loss", x.shape, rel_error(tv_loss(x)[1], numerical_gradient(lambda z: tv_loss(z)[0], x)), tol))


def random_vgg_params(rng, widths=(8, 8, 12, 12, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16), scale=1.0):
    """Small random VGG-19-shaped parameters (He-style scale) for tests and checks."""
    from .vgg import CONV_LAYERS

    params, c = {}, 3
    for name, o in zip(CONV_LAYERS, widths):
        std = scale * np.sqrt(2.0 / (9 * c))
        params[name] = (rng.standard_normal((o, c, 3, 3)) * std, rng.standard_normal(o) * 0.1)
        c = o
    return params


def random_image(rng, h, w):
    """A random (1, 3, h, w) network-space image with pixel-like values."""
    return rng.uniform(-110, 130, size=(1, 3, h, w))


def _check_objective(rng, rows, tol=1e-6):
    from .objective import StyleObjective
    from .vgg import VGG19

    params = random_vgg_params(rng)
    for pooling in ("avg", "max"):
        vgg = VGG19(params, pooling=pooling, dtype=np.float64)
        h, w = 40, 52
        obj = StyleObjective(vgg, content=random_image(rng, h, w),
                             styles=[random_image(rng, 36, 44), random_image(rng, 44, 30)],
                             style_blend=[0.3, 0.7], content_weight=1.0, style_weight=1e3, tv_weight=1e-2)
        x = random_image(rng, h, w)
        _, g = obj.value_and_grad(x)
        err = directional_check(obj.value, g, x, rng, eps=1e-3)
        rows.append(_row(f"objective ({pooling} pool, directional)", x.shape, err, tol))


def run_all(seed=0):
    """Run every check; returns a list of rows {op, shape, rel_error, tol, ok}."""
    rng = np.random.default_rng(seed)
    rows = []
    _check_layers(rng, rows)
    _check_losses(rng, rows)
    _check_objective(rng, rows)
    return rows


def format_table(rows):
    width = max(len(r["op"]) for r in rows)
    lines = [f"{'op':<{width}}  {'shape':<12}  {'rel. error':>10}  {'tolerance':>9}  result"]
    for r in rows:
        lines.append(f"{r['op']:<{width}}  {r['shape']:<12}  {r['rel_error']:>10.2e}  {r['tol']:>9.0e}  "
                     f"{'pass' if r['ok'] else 'FAIL'}")
    return "\n".join(lines)
