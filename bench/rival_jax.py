"""The JAX rival: nstyle's objective under jax.jit(jax.value_and_grad(...)), CPU, float32.

    build(params, content, style, x_shape) -> fn(x) -> (loss float, gradient ndarray (1, 3, H, W) float32)

lax.conv_general_dilated in NHWC with HWIO filters (nstyle's OIHW weights transposed once; NHWC measured
about 15% faster than NCHW with XLA's CPU backend at 256 here), 2x2 average
pooling as a reshape-and-mean, Gram matrices as F^T F. Weights and targets are jit arguments, not
closed-over constants (so XLA does not fold 80 MB of constants at compile time). fn takes and returns
nstyle's NCHW arrays; the image transposes happen inside the jitted function. Used by
bench/bench_rivals.py in a fresh child process (install: pip install 'jax[cpu]==0.10.2'). XLA sizes its
thread pool from the CPU affinity mask, which the benchmark pins to its thread count; ``configure``
records that and the XLA_FLAGS in force (set before jax is imported).
"""
import os

import numpy as np
import rivals_common as rc

KEY = "jax"


def configure(threads):
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}")
    import jax
    import jaxlib
    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {"version": jax.__version__, "jaxlib": jaxlib.__version__, "xla_flags": os.environ.get("XLA_FLAGS"),
            "cpu_affinity": affinity, "devices": [str(d) for d in jax.devices()], "threads": threads}


def build(params, content, style, x_shape):
    import jax
    import jax.numpy as jnp
    from jax import lax
    plan = rc.layer_plan(rc.STYLE_LAYERS[-1])
    taps = set(rc.CONTENT_LAYERS) | set(rc.STYLE_LAYERS)
    weights = {k: (jnp.asarray(w.transpose(2, 3, 1, 0)), jnp.asarray(b)) for k, (w, b) in params.items()}

    def features(x, weights):
        out, h = {}, x
        for kind, name, _ in plan:
            if kind == "conv":
                w, b = weights[name]
                h = lax.conv_general_dilated(h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + b
            elif kind == "relu":
                h = jax.nn.relu(h)  # derivative 0 at 0, as every other side's
            else:
                n, hh, ww, c = h.shape
                h = h[:, :hh // 2 * 2, :ww // 2 * 2].reshape(n, hh // 2, 2, ww // 2, 2, c).mean(axis=(2, 4))
            if name in taps:
                out[name] = h
        return out

    def gram(f):
        m = f.reshape(-1, f.shape[-1])
        return m.T @ m

    def to_nhwc(x):
        return jnp.transpose(x, (0, 2, 3, 1))

    @jax.jit
    def targets(content, style, weights):
        fc, fs = features(to_nhwc(content), weights), features(to_nhwc(style), weights)
        return ({n: fc[n] for n in rc.CONTENT_LAYERS}, {n: gram(fs[n]) for n in rc.STYLE_LAYERS})

    def loss(x, weights, P, A):
        feats = features(to_nhwc(x), weights)
        total = jnp.float32(0)
        for n in rc.CONTENT_LAYERS:
            total += rc.CONTENT_WEIGHT * 0.5 * jnp.sum((feats[n] - P[n]) ** 2)
        for n in rc.STYLE_LAYERS:
            f = feats[n]
            N, M = f.shape[-1], f.shape[1] * f.shape[2]
            total += rc.STYLE_WEIGHT * rc.STYLE_LAYER_WEIGHT * jnp.sum((gram(f) - A[n]) ** 2) / (4.0 * N ** 2 * M ** 2)
        return total

    P, A = targets(jnp.asarray(content), jnp.asarray(style), weights)
    value_and_grad = jax.jit(jax.value_and_grad(loss))

    def fn(x):
        total, g = value_and_grad(jnp.asarray(np.asarray(x, np.float32)), weights, P, A)
        return float(total), np.asarray(g, np.float32)

    return fn
