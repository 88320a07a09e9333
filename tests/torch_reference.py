"""The same objective written with torch.nn.functional and autograd: the oracle for tests and benchmarks.

Nothing in the nstyle package imports this (or torch).
"""
from nstyle.model.arch import LAYER_NAMES


def torch_taps(torch, params, x, taps, pooling="avg", inplace=False):
    """Run VGG-19 in torch up to the deepest tap; returns {name: tensor}.

    inplace: ReLU in place, as a memory-minded PyTorch user writes it (the benchmarks); only when no
    convolution is a tap, since the ReLU would overwrite that tap."""
    F = torch.nn.functional
    want, out, h = set(taps), {}, x
    last = max(LAYER_NAMES.index(t) for t in taps)
    for name in LAYER_NAMES[:last + 1]:
        if name.startswith("conv"):
            w, b = params[name]
            h = F.conv2d(h, w, b, padding=1)
        elif name.startswith("relu"):
            h = F.relu(h, inplace=inplace)
        else:
            h = F.avg_pool2d(h, 2) if pooling == "avg" else F.max_pool2d(h, 2)
        if name in want:
            out[name] = h
    return out


def torch_gram(F):
    m = F.reshape(F.shape[1], -1)
    return m @ m.T


def torch_objective(torch, params, content, styles, blend, content_layers, style_layers, style_layer_weights,
                    alpha, beta, gamma, pooling="avg", inplace=False):
    """Returns loss(x) -> scalar tensor, with targets computed once (the paper's definitions, as in
    nstyle/reference/losses.py and nstyle/model/objective.py).
    inplace: see :func:`torch_taps`."""
    with torch.no_grad():
        P = torch_taps(torch, params, content, content_layers, pooling, inplace) if content_layers else {}
        A = {}
        for s, b in zip(styles, blend):
            feats = torch_taps(torch, params, s, style_layers, pooling, inplace)
            for n in style_layers:
                A[n] = A.get(n, 0) + b * torch_gram(feats[n])

    def loss(x):
        feats = torch_taps(torch, params, x, tuple(content_layers) + tuple(style_layers), pooling, inplace)
        total = x.new_zeros(())
        for n in content_layers:
            total = total + alpha * 0.5 * ((feats[n] - P[n]) ** 2).sum()
        for n, w in zip(style_layers, style_layer_weights):
            N, M = feats[n].shape[1], feats[n].shape[2] * feats[n].shape[3]
            total = total + beta * w * ((torch_gram(feats[n]) - A[n]) ** 2).sum() / (4.0 * N ** 2 * M ** 2)
        if gamma:
            total = total + gamma * (((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum()
                                     + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).sum())
        return total
    return loss
