"""The losses of Gatys et al., each with its gradient derived by hand.

F is the feature map of one layer for one image, shape (1, N_l, H_l, W_l): N_l channels ("filters")
and M_l = H_l * W_l positions. Every function returns ``(value, gradient)``; the value is a Python float,
the gradient has the shape and dtype of the input. Each loss has a ``*_naive`` twin at the end of the
file, the same formula as loops over single elements.
"""
import numpy as np

from ..backend import get_xp


def _as_matrix(F):
    if F.ndim != 4 or F.shape[0] != 1:
        raise ValueError(f"expected features of shape (1, N, H, W); got {F.shape}")
    return F.reshape(F.shape[1], F.shape[2] * F.shape[3])  # a copy only when F is a strided view


def _sum_squares(a):
    """sum(a*a) as a Python float, accumulated by BLAS (a dot product, no temporary array)."""
    xp = get_xp(a)
    flat = a.reshape(-1)
    return float(xp.dot(flat, flat))


def content_loss(F, P):
    """Lc = 1/2 * sum((F - P)^2); dLc/dF = F - P.  (Paper, eq. 1 and 2.)"""
    diff = F - P
    return 0.5 * _sum_squares(diff), diff


def gram_matrix(F):
    """G = F F^T with F reshaped to (N_l, M_l): G[i, j] is the inner product of channels i and j."""
    Fm = _as_matrix(F)
    return Fm @ Fm.T


def style_layer_loss(F, A):
    """E_l = 1/(4 N^2 M^2) * sum((G - A)^2) with G = gram_matrix(F); A is the target Gram matrix.

    Gradient (paper, eq. 6, before the ReLU's mask): with D = G - A (symmetric, since G and A are),
    dE = 1/(4N^2M^2) * 2 <D, dG> and dG = dF F^T + F dF^T, so <D, dG> = 2 <D F, dF>; hence
    dE/dF = (D F) / (N^2 M^2).
    """
    Fm = _as_matrix(F)
    n, m = Fm.shape
    D = Fm @ Fm.T - A
    value, S = gram_difference_loss(D, n, m)
    return value, (S @ Fm).reshape(F.shape)


def gram_difference_loss(D, n, m):
    """E_l from D = G - A for N = n channels and M = m positions, and S = D / (N^2 M^2).

    The gradient is S F; returning the small N x N factor S lets a caller multiply it out in whatever
    layout it keeps F in (scaling S rather than S F saves a pass over N x M).
    """
    scale = 1.0 / (float(n) ** 2 * float(m) ** 2)
    value = 0.25 * scale * _sum_squares(D)
    return value, D * D.dtype.type(scale)


def blended_gram(grams, blend):
    """A = sum_s b_s A(s): the target Gram matrix for several style images (blend weights sum to 1)."""
    if len(grams) != len(blend):
        raise ValueError(f"{len(grams)} Gram matrices but {len(blend)} blend weights")
    total = grams[0] * grams[0].dtype.type(blend[0])
    for g, b in zip(grams[1:], blend[1:]):
        total += g * g.dtype.type(b)
    return total


def scaled_blended_gram(grams, positions, blend, m):
    """A = m * sum_s b_s G_s / M_s: the target for an output with m positions at this layer.

    grams[s] = F_s F_s^T is a sum over style image s's M_s = positions[s] positions, while the output's
    G = F F^T sums over its own m; the target must be a sum over m positions too. So each style image
    enters as its per-position average scaled to the output's positions (a style image twice as large
    gives the same statistics, not four times the Gram). With m == M_s the factor is exactly 1 and this
    is :func:`blended_gram` bit for bit -- the paper's A = F_s F_s^T.
    """
    if len(positions) != len(grams):
        raise ValueError(f"{len(grams)} Gram matrices but {len(positions)} position counts")
    return blended_gram(grams, [b * (float(m) / float(ms)) for b, ms in zip(blend, positions)])


def guided_gram(F, g):
    """G_t = (F o g)(F o g)^T: the Gram matrix of F with every position m weighted by the guide g[m].

    F: (1, N, H, W); g: (H, W), the region's normalised guidance channel at this layer.
    """
    Fm = _as_matrix(F)
    Ft = Fm * g.reshape(1, -1).astype(Fm.dtype, copy=False)
    return Ft @ Ft.T


def guided_style_loss(F, guides, targets, weights):
    """The guided style loss of one layer (Gatys et al., CVPR 2017), and its gradient.

    E_l = sum_t w_t / (4 N^2 M^2) * sum((G_t - A_t)^2),  G_t = (F o g_t)(F o g_t)^T

    F: (1, N, H, W); guides[t]: (H, W) normalised guidance channel g_t of region t (mean(g_t^2) = 1);
    targets[t]: A_t (N, N); weights[t]: w_t. o multiplies each channel's positions by g_t.

    Gradient: write F_t = F o g_t, so (F_t)[i, m] = F[i, m] g_t[m], and D_t = G_t - A_t (symmetric).
    As for the unguided loss, dE_t = 1/(4N^2M^2) * 2 <D_t, dG_t> and dG_t = dF_t F_t^T + F_t dF_t^T, so
    <D_t, dG_t> = 2 <D_t F_t, dF_t>. Now dF_t = dF o g_t (the guide is a constant: it depends on the
    masks, not on the pixels), and <X, dF o g_t> = <X o g_t, dF>. Hence

        dE_l/dF = sum_t w_t / (N^2 M^2) * ((G_t - A_t)(F o g_t)) o g_t

    which is the unguided (D F) / (N^2 M^2) with F replaced by F o g_t, times g_t once more. With one
    region whose guide is 1 everywhere and w = 1, both value and gradient are the unguided ones exactly.
    Returns (E_l, dE_l/dF) with the gradient shaped like F.
    """
    xp = get_xp(F)
    Fm = _as_matrix(F)
    n, m = Fm.shape
    value, grad = 0.0, None
    for g, A, w in zip(guides, targets, weights):
        gm = g.reshape(1, -1).astype(Fm.dtype, copy=False)
        Ft = Fm * gm
        D = Ft @ Ft.T - A
        e, S = gram_difference_loss(D, n, m)
        value += float(w) * e
        part = (S * S.dtype.type(w)) @ Ft
        part *= gm
        grad = part if grad is None else grad + part
    if grad is None:
        grad = xp.zeros_like(Fm)
    return value, grad.reshape(F.shape)


def tv_loss(x):
    """TV = sum of squared differences between vertically and horizontally neighbouring pixels.

    x: (N, C, H, W). Each difference d = x[i+1] - x[i] contributes d^2, so it adds 2d to x[i+1] and
    -2d to x[i]: the gradient is exact (unlike the absolute-value variant, which is not smooth at 0).
    """
    xp = get_xp(x)
    dv = x[:, :, 1:, :] - x[:, :, :-1, :]
    dh = x[:, :, :, 1:] - x[:, :, :, :-1]
    value = _sum_squares(dv) + _sum_squares(dh)
    grad = xp.zeros_like(x)
    grad[:, :, 1:, :] += 2 * dv
    grad[:, :, :-1, :] -= 2 * dv
    grad[:, :, :, 1:] += 2 * dh
    grad[:, :, :, :-1] -= 2 * dh
    return value, grad


# ---------------------------------------------------------------------------------------------------
# The naive twins: each loss above written as loops over single elements, straight from its formula
# (NumPy only, for small inputs). The tests hold every loss to its twin (tests/test_terms.py).

def content_loss_naive(F, P):
    """:func:`content_loss` element by element."""
    F, P = np.asarray(F), np.asarray(P)
    value, grad = 0.0, np.zeros_like(F)
    for k in np.ndindex(F.shape):
        d = float(F[k]) - float(P[k])
        value += 0.5 * d * d
        grad[k] = d
    return value, grad


def _gram_naive(Fm):
    n, m = Fm.shape
    return np.array([[sum(float(Fm[i, k]) * float(Fm[j, k]) for k in range(m)) for j in range(n)]
                     for i in range(n)])


def gram_difference_loss_naive(D, n, m):
    """:func:`gram_difference_loss` element by element."""
    D = np.asarray(D)
    scale = 1.0 / (float(n) ** 2 * float(m) ** 2)
    value = sum(0.25 * scale * float(D[i, j]) ** 2 for i in range(D.shape[0]) for j in range(D.shape[1]))
    S = np.zeros_like(D)
    for i, j in np.ndindex(D.shape):
        S[i, j] = float(D[i, j]) * scale
    return value, S


def _guided_term_naive(Fm, g, A, w):
    """One region's w/(4 N^2 M^2) sum (G_t - A)^2 and its gradient, by loops (g: M guide values)."""
    n, m = Fm.shape
    Ft = np.array([[float(Fm[i, k]) * float(g[k]) for k in range(m)] for i in range(n)])
    D = _gram_naive(Ft) - np.asarray(A, dtype=np.float64)
    value, S = gram_difference_loss_naive(D, n, m)
    grad = np.zeros((n, m))
    for i, k in np.ndindex(n, m):  # dE/dF[i, k] = w * sum_j S[i, j] Ft[j, k] * g[k]
        grad[i, k] = float(w) * sum(S[i, j] * Ft[j, k] for j in range(n)) * float(g[k])
    return float(w) * value, grad


def style_layer_loss_naive(F, A):
    """:func:`style_layer_loss` element by element: G, D = G - A, E and (D F) / (N^2 M^2)."""
    F = np.asarray(F)
    Fm = F.reshape(F.shape[1], -1)
    value, grad = _guided_term_naive(Fm, np.ones(Fm.shape[1]), A, 1.0)
    return value, grad.reshape(F.shape).astype(F.dtype)


def guided_style_loss_naive(F, guides, targets, weights):
    """:func:`guided_style_loss` element by element, one region after another."""
    F = np.asarray(F)
    Fm = F.reshape(F.shape[1], -1)
    value, grad = 0.0, np.zeros(Fm.shape)
    for g, A, w in zip(guides, targets, weights):
        v, part = _guided_term_naive(Fm, np.asarray(g).reshape(-1), A, w)
        value += v
        grad += part
    return value, grad.reshape(F.shape).astype(F.dtype)


def tv_loss_naive(x):
    """:func:`tv_loss` pixel by pixel: each neighbour pair (down, right) adds d^2, and 2d / -2d."""
    x = np.asarray(x)
    value, grad = 0.0, np.zeros_like(x)
    n, c, h, w = x.shape
    for b, ch, i, j in np.ndindex(n, c, h, w):
        for di, dj in ((1, 0), (0, 1)):
            if i + di < h and j + dj < w:
                d = float(x[b, ch, i + di, j + dj]) - float(x[b, ch, i, j])
                value += d * d
                grad[b, ch, i + di, j + dj] += 2 * d
                grad[b, ch, i, j] -= 2 * d
    return value, grad
