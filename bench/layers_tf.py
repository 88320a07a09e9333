"""TensorFlow, one VGG layer at a time, for the per-layer race (bench/bench_layers.py).

    layer(kind, name, params, x, dy) -> layers_common.Op;  losses(taps, P, A) -> layers_common.Op

NHWC (TensorFlow's layout) with HWIO filters, float32, each call a tf.function traced for its fixed
shape (graph mode, as the whole-evaluation rival bench/rival_tf.py runs). The input gradient is the op
TensorFlow's registered gradient runs: ``Conv2DBackpropInput``, ``ReluGrad`` on the ReLU's output,
``AvgPoolGrad``. The losses' gradients come from a GradientTape with respect to the taps. The NCHW
inputs are transposed once while preparing; results are transposed back for the check only.
"""
import numpy as np

from layers_common import CONTENT_LAYERS, STYLE_LAYERS, Op, weight_of


def _nhwc(a):
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _nchw(t):
    return np.ascontiguousarray(t.numpy().transpose(0, 3, 1, 2))


def layer(kind, name, params, x, dy, below_relu=True):
    import tensorflow as tf
    xt, dyt = tf.constant(_nhwc(x)), tf.constant(_nhwc(dy))
    spec = tf.TensorSpec(xt.shape, tf.float32)
    dspec = tf.TensorSpec(dyt.shape, tf.float32)
    in_shape = tf.constant(list(xt.shape), tf.int32)
    if kind == "conv":
        W, b = params[name]
        Wt, bt = tf.constant(W.transpose(2, 3, 1, 0)), tf.constant(b)
        fwd = tf.function(lambda v: tf.nn.bias_add(tf.nn.conv2d(v, Wt, strides=1, padding="SAME"), bt),
                          input_signature=[spec])
        bwd = tf.function(lambda g: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=in_shape, filter=Wt, out_backprop=g, strides=[1, 1, 1, 1], padding="SAME"),
            input_signature=[dspec])
    elif kind == "relu":
        fwd = tf.function(tf.nn.relu, input_signature=[spec])
        y = fwd(xt)
        bwd = tf.function(lambda g: tf.raw_ops.ReluGrad(gradients=g, features=y), input_signature=[dspec])
    else:
        fwd = tf.function(lambda v: tf.nn.avg_pool2d(v, ksize=2, strides=2, padding="VALID"), input_signature=[spec])
        bwd = tf.function(lambda g: tf.raw_ops.AvgPoolGrad(orig_input_shape=in_shape, grad=g, ksize=[1, 2, 2, 1],
                                                           strides=[1, 2, 2, 1], padding="VALID"),
                          input_signature=[dspec])
    last = {}

    def forward():
        last["y"] = fwd(xt)

    def backward():
        last["dx"] = bwd(dyt)
    return Op(forward, backward, lambda: _nchw(last["y"]), lambda: _nchw(last["dx"]))


def losses(taps, P, A):
    import tensorflow as tf
    names = [n for n in taps if n in CONTENT_LAYERS + STYLE_LAYERS]
    feats = [tf.constant(_nhwc(taps[n])) for n in names]
    Pt = {n: tf.constant(_nhwc(v)) for n, v in P.items()}
    At = {n: tf.constant(v) for n, v in A.items()}
    specs = [tf.TensorSpec(f.shape, tf.float32) for f in feats]

    def total(fs):
        out = tf.constant(0.0, tf.float32)
        for n, f in zip(names, fs):
            if n in CONTENT_LAYERS:
                out += weight_of(n) * 0.5 * tf.reduce_sum(tf.square(f - Pt[n]))
            else:
                m = tf.reshape(f, (-1, f.shape[-1]))
                N, M = f.shape[-1], f.shape[1] * f.shape[2]
                G = tf.matmul(m, m, transpose_a=True)
                out += weight_of(n) * tf.reduce_sum(tf.square(G - At[n])) / (4.0 * N ** 2 * M ** 2)
        return out

    values = tf.function(lambda *fs: total(fs), input_signature=specs)

    @tf.function(input_signature=specs)
    def values_and_grads(*fs):
        with tf.GradientTape() as tape:
            for f in fs:
                tape.watch(f)
            t = total(fs)
        return t, tape.gradient(t, list(fs))

    last = {}

    def forward():
        last["total"] = values(*feats)

    def backward():
        last["total"], last["grads"] = values_and_grads(*feats)
    return Op(forward, backward, lambda: float(last["total"].numpy()),
              lambda: {n: _nchw(g) for n, g in zip(names, last["grads"])})
