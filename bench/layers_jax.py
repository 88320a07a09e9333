"""JAX, one VGG layer at a time, for the per-layer race (bench/bench_layers.py).

    layer(kind, name, params, x, dy) -> layers_common.Op;  losses(taps, P, A) -> layers_common.Op

NHWC with HWIO filters, float32, as the whole-evaluation rival (bench/rival_jax.py) writes the layers:
lax.conv_general_dilated, jnp.maximum, 2x2 average pooling as reshape-and-mean. The input gradient is
``jax.vjp`` of the layer with respect to its input, jitted (XLA drops the forward work the gradient
does not need); the losses' gradients are jax.value_and_grad with respect to the taps. Weights and
targets are jit arguments, not constants; every timed call waits for its result
(``block_until_ready``). Thread settings: rival_jax.configure.
"""
import numpy as np
from layers_common import CONTENT_LAYERS, STYLE_LAYERS, Op, weight_of


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _nchw(a):
    return np.ascontiguousarray(np.asarray(a).transpose(0, 3, 1, 2))


def _layer_fn(kind):
    import jax
    from jax import lax
    if kind == "conv":
        return lambda v, w, b: lax.conv_general_dilated(v, w, (1, 1), "SAME",
                                                        dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
    if kind == "relu":
        return lambda v, w, b: jax.nn.relu(v)  # derivative 0 at 0, as every other side's

    def pool(v, w, b):
        n, h, wd, c = v.shape
        return v[:, :h // 2 * 2, :wd // 2 * 2].reshape(n, h // 2, 2, wd // 2, 2, c).mean(axis=(2, 4))
    return pool


def layer(kind, name, params, x, dy, below_relu=True):
    import jax
    import jax.numpy as jnp
    f = _layer_fn(kind)
    if kind == "conv":
        W, b = params[name]
        w, bias = jnp.asarray(W.transpose(2, 3, 1, 0)), jnp.asarray(b)
    else:
        w = bias = jnp.zeros(())
    xt, dyt = jnp.asarray(_nhwc(x)), jnp.asarray(_nhwc(dy))
    fwd = jax.jit(f)
    bwd = jax.jit(lambda v, g, w, b: jax.vjp(lambda u: f(u, w, b), v)[1](g)[0])
    last = {}

    def forward():
        last["y"] = fwd(xt, w, bias).block_until_ready()

    def backward():
        last["dx"] = bwd(xt, dyt, w, bias).block_until_ready()
    return Op(forward, backward, lambda: _nchw(last["y"]), lambda: _nchw(last["dx"]))


def losses(taps, P, A):
    import jax
    import jax.numpy as jnp
    names = [n for n in taps if n in CONTENT_LAYERS + STYLE_LAYERS]
    feats = {n: jnp.asarray(_nhwc(taps[n])) for n in names}
    Pt = {n: jnp.asarray(_nhwc(v)) for n, v in P.items()}
    At = {n: jnp.asarray(v) for n, v in A.items()}

    def total(fs, Pt, At):
        out = jnp.float32(0)
        for n in names:
            f = fs[n]
            if n in CONTENT_LAYERS:
                out += weight_of(n) * 0.5 * jnp.sum((f - Pt[n]) ** 2)
            else:
                m = f.reshape(-1, f.shape[-1])
                N, M = f.shape[-1], f.shape[1] * f.shape[2]
                out += weight_of(n) * jnp.sum((m.T @ m - At[n]) ** 2) / (4.0 * N ** 2 * M ** 2)
        return out

    values, values_and_grads = jax.jit(total), jax.jit(jax.value_and_grad(total))
    last = {}

    def forward():
        last["total"] = values(feats, Pt, At).block_until_ready()

    def backward():
        last["total"], last["grads"] = jax.block_until_ready(values_and_grads(feats, Pt, At))
    return Op(forward, backward, lambda: float(last["total"]),
              lambda: {n: _nchw(g) for n, g in last["grads"].items()})
