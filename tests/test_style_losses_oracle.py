"""PyTorch autograd as the oracle for the style losses: each written afresh in torch (targets too, by
other routes where one exists), its gradient by autograd, compared with the hand-derived one.

The random draws (directions, Fourier features, the bandwidth's sample) are shared: the oracle checks
the function of those draws, which is what one L-BFGS-B run optimises."""
import numpy as np
import pytest

from nstyle.reference import style_losses as sl

from .conftest import require_torch
from .style_loss_cases import LOSS_NAMES, setup_loss, styles
from .test_torch_oracle import assert_matches_torch

SIZES, BLEND = [(5, 6), (3, 4)], [0.35, 0.65]


def torch_rows_quantiles(torch, rows, weights, m, rule):
    """q (R, m) from samples rows [(R, M_s)] of weights b_s / M_s, written with torch.sort/searchsorted
    (midpoint) or as an explicit overlap sum of the step quantile function with each bin (bin_mean)."""
    values = torch.cat(rows, dim=1)
    w = torch.cat([torch.full((r.shape[1],), b / r.shape[1], dtype=torch.float64) for r, b in zip(rows, weights)])
    values, order = torch.sort(values, dim=1, stable=True)
    w = w[order]
    upper = torch.cumsum(w, dim=1)
    upper = upper / upper[:, -1:]
    lower = torch.cat([torch.zeros_like(upper[:, :1]), upper[:, :-1]], dim=1)
    if rule == "bin_mean":
        a = torch.arange(m, dtype=torch.float64) / m
        overlap = (torch.minimum(upper[:, :, None], a + 1.0 / m) - torch.maximum(lower[:, :, None], a)).clamp(min=0)
        return m * (values.to(torch.float64)[:, :, None] * overlap).sum(dim=1).to(values.dtype)
    mids = (lower + upper) / 2
    t = ((torch.arange(m, dtype=torch.float64) + 0.5) / m).expand(values.shape[0], m).contiguous()
    hi = torch.searchsorted(mids, t, right=True).clamp(max=values.shape[1] - 1)
    lo = (hi - 1).clamp(min=0)
    x0, x1 = mids.gather(1, lo), mids.gather(1, hi)
    frac = torch.where(x1 > x0, (t - x0) / torch.where(x1 > x0, x1 - x0, torch.ones_like(x0)), torch.zeros_like(t))
    frac = frac.clamp(0, 1)
    v0, v1 = values.gather(1, lo).to(torch.float64), values.gather(1, hi).to(torch.float64)
    return (v0 + frac * (v1 - v0)).to(values.dtype)


def torch_loss(torch, name, feats, blend, params):
    """loss(F) -> scalar tensor, for the loss ``name`` on torch style features."""
    mats = [S.reshape(S.shape[1], -1) for S in feats]
    n = mats[0].shape[0]
    if name == "mean_std":
        pooled = torch.cat(mats, dim=1)
        w = torch.cat([torch.full((S.shape[1],), b / S.shape[1], dtype=S.dtype) for S, b in zip(mats, blend)])
        mean_t = pooled @ w
        std_t = torch.sqrt(((pooled - mean_t[:, None]) ** 2) @ w + 1e-5)

        def loss(F):
            X = F.reshape(n, -1)
            return (((X.mean(dim=1) - mean_t) ** 2).sum()
                    + ((torch.sqrt(X.var(dim=1, unbiased=False) + 1e-5) - std_t) ** 2).sum()) / n
        return loss
    if name.startswith(("histogram", "sliced")):
        rule = "bin_mean" if name.endswith("bin_mean") else "midpoint"
        V = torch.tensor(params["directions"], dtype=mats[0].dtype) if name.startswith("sliced") else None
        rows = [V.T @ S for S in mats] if V is not None else mats

        def loss(F):
            P = F.reshape(n, -1) if V is None else V.T @ F.reshape(n, -1)
            q = torch_rows_quantiles(torch, rows, blend, P.shape[1], rule)
            return ((torch.sort(P, dim=1).values - q) ** 2).mean()
        return loss
    kernel = name[len("mmd_"):]
    Y = torch.cat(mats, dim=1)
    wy = torch.cat([torch.full((S.shape[1],), b / S.shape[1], dtype=S.dtype) for S, b in zip(mats, blend)])
    if kernel == "gaussian":
        W = torch.tensor(params["features"].normal / params["bandwidth"], dtype=Y.dtype)
        c = torch.tensor(params["features"].phases, dtype=Y.dtype)
        d = W.shape[1]

        def phi(A):
            return np.sqrt(2.0 / d) * torch.cos(W.T @ A + c[:, None])

        def k(A, B):
            return phi(A).T @ phi(B)
    else:
        def k(A, B):
            return A.T @ B if kernel == "linear" else (A.T @ B) ** 2

    def loss(F):
        X = F.reshape(n, -1)
        wx = torch.full((X.shape[1],), 1.0 / X.shape[1], dtype=X.dtype)
        return wx @ k(X, X) @ wx + wy @ k(Y, Y) @ wy - 2 * wx @ k(X, Y) @ wy
    return loss


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("precision,tol", [("float64", 1e-10), ("float32", 1e-4)])
@pytest.mark.parametrize("shape", [(1, 4, 5, 5), (1, 4, 3, 7)])
def test_loss_and_gradient_match_torch(rng, name, precision, tol, shape):
    torch = require_torch()
    dtype, tdtype = np.dtype(precision), getattr(torch, precision)
    feats = [S.astype(dtype) for S in styles(rng, shape[1], SIZES)]
    F = rng.standard_normal(shape).astype(dtype)
    _, loss, _, params = setup_loss(name, feats, BLEND, seed=13, n_features=48)
    value, grad = loss(F)
    oracle = torch_loss(torch, name, [torch.tensor(S) for S in feats], BLEND, params)
    x = torch.tensor(F, dtype=tdtype, requires_grad=True)
    want = oracle(x)
    want.backward()
    label = f"{name} ({precision}, F {shape})"
    assert_matches_torch(f"{label} value", value, want.item(), tol)
    assert_matches_torch(f"{label} gradient", grad, x.grad.numpy(), tol, shape=shape, dtype=dtype)


def test_median_bandwidth_matches_torch(rng):
    torch = require_torch()
    feats = styles(rng, 5, SIZES)
    points, ids = sl.mixture_sample(feats, BLEND, 300, rng=4)
    P = torch.tensor(points.T)
    a, b = torch.triu_indices(300, 300, 1)
    keep = torch.tensor(ids)[a] != torch.tensor(ids)[b]
    dist = torch.cdist(P, P)[a[keep], b[keep]]
    want = torch.quantile(dist, 0.5).item()   # the average of the two middle values, as numpy's median
    assert sl.median_bandwidth(feats, BLEND, rng=4, max_points=300) == pytest.approx(want, rel=1e-10)
