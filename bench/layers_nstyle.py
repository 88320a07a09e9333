"""nstyle's two CPU engines, one VGG layer at a time, for the per-layer race (bench/bench_layers.py)
and asv's per-layer benchmarks (bench/asv_benchmarks/).

    layer(engine, kind, name, params, x, dy) -> layers_common.Op
    losses(engine, taps, P, A) -> layers_common.Op

engine "cpu" is the fast engine's kernels (``nstyle/cpu``) on its zero-bordered buffers, "reference"
the reference engine's ops (``nstyle/reference``) on plain arrays. Both run the code the engines run
inside a network, the fast engine's with the BLAS held on one thread as an evaluation holds it
(:func:`_as_in_the_network`); what a network adds around them (the buffer pool, the trace) is left out.

The fast engine fuses work across layers, so each of its convolutions and pools also gets a ``fused``
Op, the layer as the network runs it:

- forward, every convolution applies its ReLU (and records the ReLU's bit-packed mask) in the
  kernel's epilogue, band by band; the ReLU layer then costs nothing of its own;
- backward, a convolution whose input is a ReLU's output applies that ReLU's mask in its epilogue,
  and so does a pool; only the last ReLU (relu5_1) runs a mask pass of its own.

The fast engine's internals are imported here and nowhere else in bench/: when they move, this is
the file to update.
"""
import numpy as np
from layers_common import CONTENT_LAYERS, STYLE_LAYERS, Op, weight_of


def _interior(buf, h, w):
    return np.array(buf[None, :, 1:h + 1, 1:w + 1])


def _fast_conv(W, b, x, dy, below_relu):
    from nstyle.cpu import padded
    from nstyle.cpu.fastconv import PreparedConv3x3
    from nstyle.cpu.steps import grad_mask_epilogue, mask_shape, relu_epilogue

    _, c, h, w = x.shape
    o = W.shape[0]
    prep = PreparedConv3x3(W, b)
    xb, dyb = padded.to_padded(x[0]), padded.to_padded(dy[0])
    out, dx = padded.empty_padded(o, h, w, x.dtype), padded.empty_padded(c, h, w, x.dtype)
    plain = Op(lambda: prep.run(xb, out, h, w, bias=True), lambda: prep.run(dyb, dx, h, w, transposed=True),
               lambda: _interior(out, h, w), lambda: _interior(dx, h, w))
    out_f, dx_f = padded.empty_padded(o, h, w, x.dtype), padded.empty_padded(c, h, w, x.dtype)
    mask = np.zeros(mask_shape(o, h, w), np.uint8)
    forward_epilogue = relu_epilogue(out_f, mask, w)
    if below_relu:  # the mask of the ReLU whose output x is (x > 0 where that ReLU passed its input on)
        below = np.packbits(xb > 0, axis=-1)
        backward_epilogue = grad_mask_epilogue(dx_f, None, below, w)
    else:
        backward_epilogue = None
    plain.fused = Op(lambda: prep.run(xb, out_f, h, w, epilogue=forward_epilogue, bias=True),
                     lambda: prep.run(dyb, dx_f, h, w, transposed=True, epilogue=backward_epilogue),
                     lambda: _interior(out_f, h, w), lambda: _interior(dx_f, h, w))
    return plain


def _fast_relu(x, dy):
    from nstyle.cpu import padded
    from nstyle.cpu.steps import apply_mask, mask_shape, relu_with_mask

    _, c, h, w = x.shape
    xb, dyb = padded.to_padded(x[0]), padded.to_padded(dy[0])
    mask = np.zeros(mask_shape(c, h, w), np.uint8)
    # Both in place, as in the engine; repeated calls see rectified data and masked gradients, which
    # cost the same passes.
    return Op(lambda: relu_with_mask(xb, h, mask), lambda: apply_mask(dyb, mask, h, w),
              lambda: _interior(xb, h, w), lambda: _interior(dyb, h, w))


def _fast_pool(x, dy):
    from nstyle.cpu import padded
    from nstyle.cpu.steps import avg_pool, pool_backward

    _, c, h, w = x.shape
    ho, wo = h // 2, w // 2
    xb, dyb = padded.to_padded(x[0]), padded.to_padded(dy[0])
    out, dx, dx_f = (padded.empty_padded(c, ho, wo, x.dtype), padded.empty_padded(c, h, w, x.dtype),
                     padded.empty_padded(c, h, w, x.dtype))
    below = np.packbits(xb > 0, axis=-1)

    def forward():
        padded.zero_border(out, ho, wo)  # the engine's forward does this on every pooled buffer
        avg_pool(xb, h, w, out)

    op = Op(forward, lambda: pool_backward(dyb, h, w, None, dx),
            lambda: _interior(out, ho, wo), lambda: _interior(dx, h, w))
    op.fused = Op(forward, lambda: pool_backward(dyb, h, w, None, dx_f, mask=below),
                  op.out_forward, lambda: _interior(dx_f, h, w))
    return op


def _reference_layer(kind, W, b, x, dy):
    from nstyle.reference.conv import conv2d_backward, conv2d_forward
    from nstyle.reference.pool import avg_pool2d_backward, avg_pool2d_forward
    from nstyle.reference.relu import relu_backward, relu_forward

    last = {}
    if kind == "conv":
        def forward():
            last["y"], last["cache"] = conv2d_forward(x, W, b, stride=1, padding=1, keep_input=False)

        def backward():
            last["dx"] = conv2d_backward(dy, last["cache"])
    elif kind == "relu":
        xr, dyr = x.copy(), dy.copy()

        def forward():  # in place, as the engine runs it
            last["y"], last["cache"] = relu_forward(xr, inplace=True)

        def backward():
            last["dx"] = relu_backward(dyr, last["cache"], inplace=True)
    else:
        def forward():
            last["y"], last["cache"] = avg_pool2d_forward(x, 2, 2)

        def backward():
            last["dx"] = avg_pool2d_backward(dy, last["cache"])
    forward()  # the backward needs a cache from the start
    return Op(forward, backward, lambda: np.array(last["y"]), lambda: np.array(last["dx"]))


def _as_in_the_network(op):
    """The fast engine's Op (and its fused twin) timed as an evaluation runs it: with the BLAS held on
    one thread (``threads.pool_owns_cores``, which ``CpuEngine.evaluation`` holds from the forward's
    start to the backward's end). Without the hold OpenBLAS's own threads wake for the few products
    made outside the pool's regions and then poll the cores the pool needs: at 128 px, 2 threads,
    conv5_1 took 2.6-3.9 ms alone against 1.5-1.7 ms held, conv3_2's forward 5.4 against 3.0-3.2."""
    from nstyle.cpu.threads import pool_owns_cores

    def held(fn):
        def run():
            with pool_owns_cores():
                return fn()
        return run

    for o in (op, op.fused):
        if o is not None:
            o.forward, o.backward = held(o.forward), held(o.backward)
    return op


def layer(engine, kind, name, params, x, dy, below_relu=True):
    """The Op of one layer. params: {conv name: (W, b)} float32; x, dy: float32 NCHW (see
    layers_common.layer_inputs). below_relu: whether x is a ReLU's output (all but conv1_1)."""
    W, b = params.get(name, (None, None))
    if engine == "reference":
        return _reference_layer(kind, W, b, x, dy)
    if kind == "conv":
        return _as_in_the_network(_fast_conv(W, b, x, dy, below_relu))
    return _as_in_the_network(_fast_relu(x, dy) if kind == "relu" else _fast_pool(x, dy))


def losses(engine, taps, P, A):
    """The content and Gram losses and their gradients with respect to the taps, as the objective
    computes them (``model/objective.py``), weighted. forward(): the total only; backward(): the total
    and every tap's gradient (the fast engine's style gradient is kept factored, S F, and multiplied
    out in the backward's epilogues: here it is multiplied out whole)."""
    from nstyle.reference.losses import (
        content_loss,
        gram_difference_loss,
        gram_matrix,
        style_layer_loss,
    )
    names = [n for n in taps if n in CONTENT_LAYERS + STYLE_LAYERS]
    last = {}
    if engine == "reference":
        def values():
            total = sum(weight_of(n) * content_loss(taps[n], P[n])[0] for n in names if n in CONTENT_LAYERS)
            for n in (n for n in names if n in STYLE_LAYERS):
                F = taps[n]
                D = gram_matrix(F) - A[n]
                total += weight_of(n) * gram_difference_loss(D, F.shape[1], F.shape[2] * F.shape[3])[0]
            last["total"] = total

        def values_and_grads():
            total, grads = 0.0, {}
            for n in names:
                v, g = (content_loss(taps[n], P[n]) if n in CONTENT_LAYERS else style_layer_loss(taps[n], A[n]))
                total += weight_of(n) * v
                grads[n] = g * g.dtype.type(weight_of(n))
            last["total"], last["grads"] = total, grads
        return Op(values, values_and_grads, lambda: last["total"], lambda: last["grads"])

    from nstyle.cpu import padded
    from nstyle.cpu.losses import bordered_style_loss
    whole = {n: padded.to_padded(taps[n][0])[None] for n in names}
    inner = {n: whole[n][:, :, 1:taps[n].shape[2] + 1, 1:taps[n].shape[3] + 1] for n in names}

    def terms():
        total, grads = 0.0, {}
        for n in names:
            if n in CONTENT_LAYERS:
                v, g = content_loss(inner[n], P[n])
            else:
                v, g = bordered_style_loss(whole[n], A[n], taps[n].shape[2] * taps[n].shape[3])
            total += weight_of(n) * v
            grads[n] = g
        return total, grads

    def values():
        last["total"] = terms()[0]

    def values_and_grads():
        total, grads = terms()
        for n, g in grads.items():
            if n in CONTENT_LAYERS:
                grads[n] = g * g.dtype.type(weight_of(n))
            else:
                g *= weight_of(n)
                grads[n] = np.asarray(g)  # S F multiplied out, border included
        last["total"], last["grads"] = total, grads

    def out_grads():
        return {n: (g if n in CONTENT_LAYERS else g[:, :, 1:taps[n].shape[2] + 1, 1:taps[n].shape[3] + 1])
                for n, g in last["grads"].items()}
    return _as_in_the_network(Op(values, values_and_grads, lambda: last["total"], out_grads))
