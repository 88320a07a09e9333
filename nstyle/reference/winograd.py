"""Winograd's minimal filtering F(2x2, 3x3): the algebra both fast engines' Winograd convolutions use.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016). In one dimension, F(2, 3)
computes two outputs of a 3-tap correlation, y0 = d0 g0 + d1 g1 + d2 g2 and y1 = d1 g0 + d2 g1 + d3 g2,
from four inputs d0..d3 with four multiplications instead of six:

    m1 = (d0 - d2) g0                  m2 = (d1 + d2) (g0 + g1 + g2) / 2
    m4 = (d1 - d3) g2                  m3 = (d2 - d1) (g0 - g1 + g2) / 2
    y0 = m1 + m2 + m3                  y1 = m2 - m3 - m4

(expand: m2 + m3 = d1 g1 + d2 (g0 + g2), so y0 = d0 g0 + d1 g1 + d2 g2; m2 - m3 = d1 (g0 + g2) + d2 g1,
so y1 = d1 g0 + d2 g1 + d3 g2). In matrices, y = A^T [ (G g) * (B^T d) ] with * element-wise and

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]      (the input transform)
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]        (the filter transform)
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]                                   (the output transform)

Nesting the 1-D algorithm in itself (rows, then columns) gives the 2-D one: a 2x2 output tile Y from the
4x4 input tile d around it and the 3x3 filter g as

    Y = A^T [ (G g G^T) * (B^T d B) ] A

16 multiplications per 2x2 outputs instead of 36. In a convolution layer the sum over input channels
is taken inside the Winograd domain, where it is 16 matrix products U[e] (O, C) @ V[e] (C, tiles), with
U = G g G^T transformed once per weight tensor (:func:`winograd_weights`) and V = B^T d B per tile.
The transforms of d and of the output only add and subtract; G halves. ``nstyle/cpu/winograd.py`` and
``nstyle/gpu/conv.py`` (kernels ``gpu/cuda/winograd.cu``) carry out the tile transforms each in its own
way; both take U from :func:`winograd_weights`.
"""
from fractions import Fraction

import numpy as np

from ..backend import get_xp

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def winograd_weights(w, g=G):
    """U[a*u + v] = (g w[o, c] g^T)[u, v] for every filter: (O, C, 3, 3) -> (a*a, O, C) with a = g's rows
    (16 for F(2x2, 3x3)'s G, 36 for :data:`F4`'s), in w's dtype and on w's device (NumPy or CuPy).

    One float64 matrix product with kron(g, g) -- (g w g^T)[u, v] = sum_ij g[u,i] g[v,j] w[i,j] --
    rounded once, at the end (float32 weights get the float64 result rounded to float32, not the sum of
    float32 roundings).
    """
    xp = get_xp(w)
    o, c = w.shape[:2]
    a = g.shape[0]
    u = xp.asarray(np.kron(g, g)) @ w.reshape(o * c, 9).astype(np.float64).T  # (a*a, O*C), in that order
    return u.astype(w.dtype).reshape(a * a, o, c)


def tile_output(d, g, algorithm=None):
    """Y = A^T [ (G g G^T) * (B^T d B) ] A for one (m+2)x(m+2) input tile d and one 3x3 filter g
    (float64): the m x m correlation outputs, ``Y[a, b] = sum_ij g[i, j] d[a + i, b + j]``. The readable
    statement of what the engines compute in bulk. algorithm: an :class:`Algorithm` (default F(2x2, 3x3)
    with the matrices above)."""
    a_t, g_m, b_t = (A_T, G, B_T) if algorithm is None else (algorithm.A_T, algorithm.G, algorithm.B_T)
    return a_t @ ((g_m @ g @ g_m.T) * (b_t @ d @ b_t.T)) @ a_t.T


# --- larger tiles: F(m x m, 3x3) from any interpolation points --------------------------------------------
#
# F(2, 3) is one member of a family (Toom-Cook): a 3-tap correlation with m outputs is the middle of a
# polynomial product, and a polynomial of degree m + 1 is fixed by its values at m + 2 points. Choose
# m + 1 finite points p_0..p_m and "infinity" (the leading coefficient). Then, for a = m + 2:
#
#   G   (a x 3): row i = (1, p_i, p_i^2) / N_i with N_i = prod_{j != i} (p_i - p_j); last row (0, 0, 1)
#   B^T (a x a): row i = the coefficients (lowest first) of prod_{j != i} (x - p_j); last row those of
#                prod_j (x - p_j)
#   A^T (m x a): row k = (p_0^k, ..., p_m^k, [k == m - 1])
#
# and y = A^T [ (G g) * (B^T d) ] as before: a multiplications for m outputs. F(4, 3) nested in itself
# gives F(4x4, 3x3): 36 multiplications for 16 outputs, 2.25 per output against F(2x2)'s 4 and direct
# convolution's 9. The price is rounding error: the entries of B^T, G and A^T grow with the points, so
# they are chosen for accuracy. Measured in float32 against float64, one 256 -> 256 layer on ReLU-like
# inputs (max error over max output): (0, +-1, +-2) 7.6e-6, (0, +-1, +-1/2) 6.1e-6, (0, +-1, 1/2, -2)
# 3.0e-6 -- the set Barabasz et al. ("Error analysis and improving the accuracy of Winograd
# convolution", 2020) recommend --, F(2x2) 5.2e-7, direct 3e-7.
#
# The input-gradient convolution uses the flipped kernel J g (J reverses the 3 taps). Row i of G J is
# (p_i^2, p_i, 1) / N_i = p_i^2 (1, 1/p_i, 1/p_i^2) / N_i: the row of the point 1/p_i, rescaled (and 0
# and infinity swap). So the algorithm on the inverted points transforms J g into the forward's U,
# permuted and rescaled (:func:`flip_relation`): the backward needs no second weight transform.


class Algorithm:
    """F(m x m, 3x3) on the finite points ``points`` (plus infinity): m, a = m + 2, and the float64
    matrices A_T (m, a), G (a, 3), B_T (a, a)."""

    def __init__(self, m, points):
        if len(points) != m + 1:
            raise ValueError(f"F({m}, 3) needs {m + 1} finite points, got {len(points)}")
        self.m, self.a, self.points = m, m + 2, tuple(Fraction(p) for p in points)
        self.A_T, self.G, self.B_T = (np.array(x, dtype=np.float64) for x in _toom_cook(m, self.points))

    def inverted(self):
        """The algorithm on the points 1/p (0 and infinity swap): the input gradient's."""
        finite = [Fraction(0) if p == 0 else 1 / p for p in self.points]  # 0 stands in for infinity's image
        return Algorithm(self.m, finite)


def _toom_cook(m, points):
    a = m + 2

    def times(p, q):  # product of two coefficient lists (lowest first)
        out = [Fraction(0)] * (len(p) + len(q) - 1)
        for i, x in enumerate(p):
            for j, y in enumerate(q):
                out[i + j] += x * y
        return out

    def vanishing(skip):  # coefficients of prod_{j != skip} (x - p_j), padded to length a
        poly = [Fraction(1)]
        for j, p in enumerate(points):
            if j != skip:
                poly = times(poly, [-p, Fraction(1)])
        return poly + [Fraction(0)] * (a - len(poly))

    norms = [np.prod([p - q for j, q in enumerate(points) if j != i]) for i, p in enumerate(points)]
    g = [[p ** k / n for k in range(3)] for p, n in zip(points, norms)] + [[0, 0, 1]]
    b_t = [vanishing(i) for i in range(len(points))] + [vanishing(None)]
    a_t = [[p ** k for p in points] + [1 if k == m - 1 else 0] for k in range(m)]
    return a_t, g, b_t


def flip_relation(algorithm):
    """(inverse, perm, scale) with inverse.G J = diag(scale) algorithm.G[perm] (J: the tap flip).

    So the inverse algorithm's transform of the flipped filter is U'[u, v] = scale[u] scale[v]
    U[perm[u], perm[v]], U the forward's transform of the filter itself.
    """
    inverse = algorithm.inverted()
    flipped = inverse.G[:, ::-1]
    perm, scale = [], []
    for row in flipped:
        for j, other in enumerate(algorithm.G):
            k = np.flatnonzero(other)[0]
            ratio = row[k] / other[k]
            if ratio != 0 and np.allclose(row, ratio * other, rtol=1e-12, atol=0):
                perm.append(j)
                scale.append(ratio)
                break
        else:
            raise ValueError("the points are not closed under inversion")
    return inverse, perm, np.array(scale)


F2 = Algorithm(2, (0, 1, -1))
F4 = Algorithm(4, (0, 1, -1, Fraction(1, 2), -2))
