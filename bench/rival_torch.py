"""The PyTorch rival: nstyle's objective written as a careful PyTorch user would, CPU, float32.

    build(params, content, style, x_shape) -> fn(x) -> (loss float, gradient ndarray (1, 3, H, W) float32)

torch.nn.functional in NCHW (PyTorch's native layout), ReLU in place (safe: every tap is a ReLU output
and the layer after it, a conv or a pool, never writes into its input), targets
computed once under no_grad, autograd for the gradient with respect to the pixels only. Used by
bench/bench_rivals.py in a fresh child process; ``configure`` sets torch's thread count.
"""
import numpy as np
import rivals_common as rc

KEY = "torch"


def configure(threads):
    import torch
    torch.set_num_threads(threads)
    return {"version": torch.__version__, "num_threads": torch.get_num_threads(),
            "num_interop_threads": torch.get_num_interop_threads(),
            "mkldnn": bool(torch.backends.mkldnn.is_available()), "threads": threads}


def build(params, content, style, x_shape):
    import torch
    F = torch.nn.functional
    weights = {k: (torch.from_numpy(w), torch.from_numpy(b)) for k, (w, b) in params.items()}
    plan = rc.layer_plan(rc.STYLE_LAYERS[-1])
    taps = set(rc.CONTENT_LAYERS) | set(rc.STYLE_LAYERS)

    def features(x):
        out, h = {}, x
        for kind, name, _ in plan:
            if kind == "conv":
                h = F.conv2d(h, *weights[name], padding=1)
            elif kind == "relu":
                h = F.relu(h, inplace=True)
            else:
                h = F.avg_pool2d(h, 2)
            if name in taps:
                out[name] = h
        return out

    def gram(f):
        m = f.reshape(f.shape[1], -1)
        return m @ m.T

    with torch.no_grad():
        P = {n: t.clone() for n, t in features(torch.from_numpy(content)).items() if n in rc.CONTENT_LAYERS}
        A = {n: gram(t) for n, t in features(torch.from_numpy(style)).items() if n in rc.STYLE_LAYERS}

    def loss_of(x):
        feats = features(x)
        total = x.new_zeros(())
        for n in rc.CONTENT_LAYERS:
            total = total + rc.CONTENT_WEIGHT * 0.5 * ((feats[n] - P[n]) ** 2).sum()
        for n in rc.STYLE_LAYERS:
            N, M = feats[n].shape[1], feats[n].shape[2] * feats[n].shape[3]
            E = ((gram(feats[n]) - A[n]) ** 2).sum() / (4.0 * N ** 2 * M ** 2)
            total = total + rc.STYLE_WEIGHT * rc.STYLE_LAYER_WEIGHT * E
        return total

    def fn(x):
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).requires_grad_(True)
        total = loss_of(xt)
        total.backward()
        return float(total.detach()), xt.grad.numpy()

    return fn
