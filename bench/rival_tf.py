"""The TensorFlow rival: nstyle's objective as a tf.function, CPU, float32, NHWC (TensorFlow's layout).

    build(params, content, style, x_shape) -> fn(x) -> (loss float, gradient ndarray (1, 3, H, W) float32)

tf.nn.conv2d / bias_add / relu / avg_pool2d in NHWC with HWIO filters (nstyle's OIHW weights
transposed once), a GradientTape inside one tf.function traced for the fixed input shape (graph mode,
Grappler and oneDNN as TensorFlow ships them; no XLA jit), targets computed once. fn takes and returns
nstyle's NCHW arrays; the two small layout transposes of the 3-channel image are part of its time.
Used by bench/bench_rivals.py in a fresh child process (install: pip install 'tensorflow-cpu==2.21.*');
``configure`` sets TensorFlow's intra-op threads to the benchmark's count and inter-op threads to 1.
"""
import os

import numpy as np
import rivals_common as rc

KEY = "tf"


def configure(threads):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    return {"version": tf.__version__,
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
            "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"), "threads": threads}


def build(params, content, style, x_shape):
    import tensorflow as tf
    weights = {k: (tf.constant(w.transpose(2, 3, 1, 0)), tf.constant(b)) for k, (w, b) in params.items()}
    plan = rc.layer_plan(rc.STYLE_LAYERS[-1])
    taps = set(rc.CONTENT_LAYERS) | set(rc.STYLE_LAYERS)

    def features(x):
        out, h = {}, x
        for kind, name, _ in plan:
            if kind == "conv":
                w, b = weights[name]
                h = tf.nn.bias_add(tf.nn.conv2d(h, w, strides=1, padding="SAME"), b)
            elif kind == "relu":
                h = tf.nn.relu(h)
            else:
                h = tf.nn.avg_pool2d(h, ksize=2, strides=2, padding="VALID")
            if name in taps:
                out[name] = h
        return out

    def gram(f):
        m = tf.reshape(f, (-1, f.shape[-1]))
        return tf.matmul(m, m, transpose_a=True)

    def nhwc(x):
        return tf.constant(np.ascontiguousarray(np.asarray(x, np.float32).transpose(0, 2, 3, 1)))

    P = {n: t for n, t in features(nhwc(content)).items() if n in rc.CONTENT_LAYERS}
    A = {n: gram(t) for n, t in features(nhwc(style)).items() if n in rc.STYLE_LAYERS}
    n_, c_, h_, w_ = x_shape

    @tf.function(input_signature=[tf.TensorSpec((n_, h_, w_, c_), tf.float32)])
    def value_and_grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            feats = features(x)
            total = tf.constant(0.0, tf.float32)
            for n in rc.CONTENT_LAYERS:
                total += rc.CONTENT_WEIGHT * 0.5 * tf.reduce_sum(tf.square(feats[n] - P[n]))
            for n in rc.STYLE_LAYERS:
                f = feats[n]
                N, M = f.shape[-1], f.shape[1] * f.shape[2]
                E = tf.reduce_sum(tf.square(gram(f) - A[n])) / (4.0 * N ** 2 * M ** 2)
                total += rc.STYLE_WEIGHT * rc.STYLE_LAYER_WEIGHT * E
        return total, tape.gradient(total, x)

    def fn(x):
        total, g = value_and_grad(nhwc(x))
        return float(total.numpy()), np.ascontiguousarray(g.numpy().transpose(0, 3, 1, 2))

    return fn
