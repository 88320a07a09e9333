"""PyTorch, one VGG layer at a time, for the per-layer race (bench/bench_layers.py).

    layer(kind, name, params, x, dy) -> layers_common.Op;  losses(taps, P, A) -> layers_common.Op

NCHW, float32, the calls autograd makes in the whole-evaluation rival (bench/rival_torch.py): the
forward is torch.nn.functional's (ReLU in place, as there); the input gradient is the backward
kernel autograd would run -- ``convolution_backward`` for the input only (``torch.nn.grad.conv2d_input``:
the weights need no gradient), ``threshold_backward`` on the ReLU's output, ``avg_pool2d_backward``.
The losses run through autograd, with respect to the taps.
"""

from layers_common import CONTENT_LAYERS, STYLE_LAYERS, Op, weight_of


def layer(kind, name, params, x, dy, below_relu=True):
    import torch
    F = torch.nn.functional
    xt, dyt = torch.from_numpy(x.copy()), torch.from_numpy(dy.copy())
    last = {}
    if kind == "conv":
        W, b = (torch.from_numpy(a) for a in params[name])

        def forward():
            last["y"] = F.conv2d(xt, W, b, padding=1)

        def backward():
            last["dx"] = torch.nn.grad.conv2d_input(xt.shape, W, dyt, padding=1)
    elif kind == "relu":
        def forward():
            last["y"] = F.relu(xt, inplace=True)

        def backward():
            last["dx"] = torch.ops.aten.threshold_backward(dyt, last["y"], 0.0)
    else:
        def forward():
            last["y"] = F.avg_pool2d(xt, 2)

        def backward():
            last["dx"] = torch.ops.aten.avg_pool2d_backward(dyt, xt, [2, 2], [2, 2], [0, 0], False, True, None)
    with torch.no_grad():
        forward()  # a ReLU's backward reads the forward's output
    return Op(_no_grad(forward), _no_grad(backward), lambda: last["y"].numpy().copy(),
              lambda: last["dx"].numpy().copy())


def _no_grad(fn):
    import torch

    def run():
        with torch.no_grad():
            fn()
    return run


def losses(taps, P, A):
    import torch
    names = [n for n in taps if n in CONTENT_LAYERS + STYLE_LAYERS]
    feats = {n: torch.from_numpy(taps[n].copy()).requires_grad_(True) for n in names}
    Pt = {n: torch.from_numpy(v) for n, v in P.items()}
    At = {n: torch.from_numpy(v) for n, v in A.items()}
    last = {}

    def gram(f):
        m = f.reshape(f.shape[1], -1)
        return m @ m.T

    def total():
        out = feats[names[0]].new_zeros(())
        for n in names:
            f = feats[n]
            if n in CONTENT_LAYERS:
                out = out + weight_of(n) * 0.5 * ((f - Pt[n]) ** 2).sum()
            else:
                N, M = f.shape[1], f.shape[2] * f.shape[3]
                out = out + weight_of(n) * ((gram(f) - At[n]) ** 2).sum() / (4.0 * N ** 2 * M ** 2)
        return out

    def forward():
        with torch.no_grad():
            last["total"] = total()

    def backward():
        t = total()
        grads = torch.autograd.grad(t, [feats[n] for n in names])
        last["total"], last["grads"] = t.detach(), dict(zip(names, grads))

    return Op(forward, backward, lambda: float(last["total"]),
              lambda: {n: g.numpy().copy() for n, g in last["grads"].items()})
