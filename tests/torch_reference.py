"""The same objective written with torch.nn.functional and autograd: the oracle for tests and benchmarks.

Nothing in the nstyle package imports this (or torch).
"""
import numpy as np

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


def torch_guides(torch, mask, taps, mode):
    """A mask (H, W) carried to every tap's resolution, then normalised: {tap: guide or None}.

    Written independently of nstyle/reference/guides.py with torch's pooling: a 3x3 max pool with stride
    1 and padding 1 is a dilation that ignores the outside (torch pads max pooling with -inf), and
    -maxpool(-g) the matching erosion; 2x2 pools (min, max or mean) follow each pooling layer."""
    F = torch.nn.functional
    g = mask[None, None]
    if mode != "simple":
        g = (g >= 0.5).to(mask.dtype)
    out, last = {}, max(LAYER_NAMES.index(t) for t in taps)
    for name in LAYER_NAMES[:last + 1]:
        if name.startswith("conv") and mode == "inside":
            g = -F.max_pool2d(-g, 3, stride=1, padding=1)
        elif name.startswith("conv") and mode == "all":
            g = F.max_pool2d(g, 3, stride=1, padding=1)
        elif name.startswith("pool"):
            g = {"inside": lambda a: -F.max_pool2d(-a, 2), "all": lambda a: F.max_pool2d(a, 2),
                 "simple": lambda a: F.avg_pool2d(a, 2)}[mode](g)
        if name in taps:
            power = (g ** 2).mean()
            out[name] = None if power.item() <= 0 else (g / power.sqrt())[0, 0]
    return out


def torch_objective(torch, params, content, styles, blend, content_layers, style_layers, style_layer_weights,
                    alpha, beta, gamma, pooling="avg", inplace=False, masks=None, mask_mode="inside",
                    region_weights=None):
    """Returns loss(x) -> scalar tensor, with the style statistics computed once (the definitions of
    nstyle/reference/losses.py and nstyle/model/objective.py).

    Style targets: A_l = M_l * sum_s b_s G_s / M_s,l for an output of M_l positions at layer l.
    masks: None, or (content_masks {region: (H, W) tensor}, style_masks [{region: tensor or None}, ...])
    for the guided loss, with region_weights {region: w} (default equal, normalised to sum to 1).
    inplace: see :func:`torch_taps`."""
    grams = {n: [] for n in style_layers}  # (region or None, G, M_s, b_s)
    with torch.no_grad():
        P = torch_taps(torch, params, content, content_layers, pooling, inplace) if content_layers else {}
        for i, (s, b) in enumerate(zip(styles, blend)):
            feats = torch_taps(torch, params, s, style_layers, pooling, inplace)
            regions = {None: None} if masks is None else masks[1][i]
            for t, m in regions.items():
                if masks is not None:
                    m = torch.ones(s.shape[2:], dtype=s.dtype) if m is None else m
                    guides = torch_guides(torch, m, style_layers, mask_mode)
                for n in style_layers:
                    f = feats[n]
                    if masks is not None:
                        if guides[n] is None:
                            continue
                        f = f * guides[n]
                    grams[n].append((t, torch_gram(f), f.shape[2] * f.shape[3], b))
    if masks is not None:
        names = list(masks[0])
        w = [(region_weights or {}).get(t, 1.0) for t in names]
        w = dict(zip(names, [v / sum(w) for v in w]))
        out_guides = {t: torch_guides(torch, m, style_layers, mask_mode) for t, m in masks[0].items()}

    def target(n, region, M):
        parts = [(G, Ms, b) for t, G, Ms, b in grams[n] if t == region]
        total = sum(b for _, _, b in parts)
        return sum((b / total) * (M / Ms) * G for G, Ms, b in parts) if parts else None

    def loss(x):
        feats = torch_taps(torch, params, x, tuple(content_layers) + tuple(style_layers), pooling, inplace)
        total = x.new_zeros(())
        for n in content_layers:
            total = total + alpha * 0.5 * ((feats[n] - P[n]) ** 2).sum()
        for n, wl in zip(style_layers, style_layer_weights):
            N, M = feats[n].shape[1], feats[n].shape[2] * feats[n].shape[3]
            if masks is None:
                E = ((torch_gram(feats[n]) - target(n, None, M)) ** 2).sum() / (4.0 * N ** 2 * M ** 2)
            else:
                E = x.new_zeros(())
                for t in names:
                    g, A = out_guides[t][n], target(n, t, M)
                    if g is None or A is None:
                        continue
                    E = E + w[t] * ((torch_gram(feats[n] * g) - A) ** 2).sum() / (4.0 * N ** 2 * M ** 2)
            total = total + beta * wl * E
        if gamma:
            total = total + gamma * (((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum()
                                     + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).sum())
        return total
    return loss


# ---------------------------------------------------------------------------------------------------
# Every registered loss term, written from its definition in torch: name -> loss(torch, term, t), with
# t the tensor the term's ``loss`` reads (F of its layer, or the pixels) and the term's own targets
# read off the term. tests/test_torch_oracle.py fails for a registered term missing here.

def _t(torch, a, like):
    return torch.as_tensor(a, dtype=like.dtype)


def _gram_term(torch, term, F):
    N, M = F.shape[1], F.shape[2] * F.shape[3]
    A = sum(b * (M / Ms) * _t(torch, G, F) for G, Ms, b in zip(term.grams, term.positions, term.blend))
    return ((torch_gram(F) - A) ** 2).sum() / (4.0 * N ** 2 * M ** 2)


def _guided_gram_term(torch, term, F):
    N, M = F.shape[1], F.shape[2] * F.shape[3]
    return sum(w * ((torch_gram(F * _t(torch, g, F)) - _t(torch, A, F)) ** 2).sum() / (4.0 * N ** 2 * M ** 2)
               for g, A, w in term.regions)


def _tv_term(torch, term, x):
    return ((x[:, :, 1:] - x[:, :, :-1]) ** 2).sum() + ((x[:, :, :, 1:] - x[:, :, :, :-1]) ** 2).sum()


def _temporal_term(torch, term, x):
    return (_t(torch, term.c, x) * (x - _t(torch, term.omega, x)) ** 2).sum() / x.numel()


def _distribution_term(name):
    """The twin of a style loss term built with its sources (as every check case is): the loss written
    afresh in torch (``tests/test_style_losses_oracle.py: torch_loss``) from the style features, with the
    term's own random draws."""
    def twin(torch, term, F):
        from nstyle.backend import to_host  # noqa: PLC0415

        from .test_style_losses_oracle import torch_loss  # noqa: PLC0415 -- that module imports this one

        features, blend = term.sources
        params = dict(term.draws)
        if "directions" in params:
            params["directions"] = np.asarray(to_host(params["directions"]))
        rule = getattr(term.target, "rule", "midpoint")
        label = name + ("_bin_mean" if rule == "bin_mean" else "")
        return torch_loss(torch, label, [torch.as_tensor(S, dtype=F.dtype) for S in features], blend, params)(F)
    return twin


def _style_sum_term(torch, term, F):
    return sum(c * TORCH_TERMS[name](torch, part, F) for name, part, c in term.parts)


TORCH_TERMS = {
    "content": lambda torch, term, F: 0.5 * ((F - _t(torch, term.target, F)) ** 2).sum(),
    "gram": _gram_term,
    "guided_gram": _guided_gram_term,
    "tv": _tv_term,
    "temporal": _temporal_term,
    **{name: _distribution_term(name) for name in ("mean_std", "histogram", "sliced_wasserstein", "mmd_linear",
                                                   "mmd_polynomial", "mmd_gaussian")},
    "style_sum": _style_sum_term,
    # the example term of docs/backprop.md ("Adding a loss"), registered by tests/test_terms.py
    "channel_mean": lambda torch, term, F: ((F.mean(dim=(0, 2, 3)) - _t(torch, term.target, F)) ** 2).sum()
    / F.shape[1],
}
