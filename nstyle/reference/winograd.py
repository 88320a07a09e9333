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
import numpy as np

from ..backend import get_xp

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=np.float64)


def winograd_weights(w):
    """U[4*u + v] = (G g G^T)[u, v] for every filter g = w[o, c]: (O, C, 3, 3) -> (16, O, C), in w's dtype
    and on w's device (NumPy or CuPy).

    One float64 matrix product with kron(G, G) -- (G g G^T)[u, v] = sum_ij G[u,i] G[v,j] g[i,j] --
    rounded once, at the end (float32 weights get the float64 result rounded to float32, not the sum of
    float32 roundings).
    """
    xp = get_xp(w)
    o, c = w.shape[:2]
    u = xp.asarray(np.kron(G, G)) @ w.reshape(o * c, 9).astype(np.float64).T  # (16, O*C), in that order
    return u.astype(w.dtype).reshape(16, o, c)


def tile_output(d, g):
    """Y = A^T [ (G g G^T) * (B^T d B) ] A for one 4x4 input tile d and one 3x3 filter g (float64): the
    2x2 correlation outputs, ``Y[a, b] = sum_ij g[i, j] d[a + i, b + j]``. The readable statement of what
    the engines compute in bulk."""
    return A_T @ ((G @ g @ G.T) * (B_T @ d @ B_T.T)) @ A_T.T
