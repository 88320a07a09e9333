"""The style mixture every style loss compares against, and the small helpers the losses share.

A layer's features for one image, shape (1, N, H, W), are read as the N x M matrix F of N channels by
M = H * W positions; each column f_j is one position's feature vector. Several style images s with
blend weights b_s (summing to 1) form one *mixture* distribution over feature vectors: each of style
s's M_s positions weighs b_s / M_s. Every style target is a statistic of that distribution, so a style
image of any size (and an output or tile of any size) is compared on the same footing -- a style image
tiled 2 x 2 is the same distribution as the image itself.
"""
from dataclasses import dataclass

from ...backend import get_xp


def feature_matrix(F):
    """(1, N, H, W) -> the N x M matrix (a view when F is contiguous)."""
    if F.ndim != 4 or F.shape[0] != 1:
        raise ValueError(f"expected features of shape (1, N, H, W); got {F.shape}")
    return F.reshape(F.shape[1], F.shape[2] * F.shape[3])


@dataclass(frozen=True, eq=False)
class Mixture:
    """The style images of one layer as matrices with their weights.

    parts: [(S_s, b_s)], S_s an N x M_s matrix, b_s > 0 (styles blended with weight 0 are left out).
    """

    parts: tuple

    @property
    def channels(self):
        return self.parts[0][0].shape[0]

    @property
    def positions(self):
        """T = sum_s M_s: how many samples the mixture has."""
        return sum(S.shape[1] for S, _ in self.parts)


def mixture(style_feats, blend=None):
    """Check the style features and blend weights, and pair them up as a :class:`Mixture`.

    style_feats: list of (1, N, h_s, w_s) arrays (N shared, sizes free); blend: weights >= 0 summing to
    1, or None for equal weights. Raises ValueError on anything else (the command line validates user
    input before it gets here; these are programming errors).
    """
    feats = list(style_feats)
    if not feats:
        raise ValueError("no style features")
    if blend is None:
        blend = [1.0 / len(feats)] * len(feats)
    blend = [float(b) for b in blend]
    if len(blend) != len(feats):
        raise ValueError(f"{len(feats)} style feature maps but {len(blend)} blend weights")
    if min(blend) < 0 or abs(sum(blend) - 1.0) > 1e-6:
        raise ValueError(f"blend weights must be >= 0 and sum to 1; got {blend}")
    mats = [feature_matrix(S) for S in feats]
    if len({S.shape[0] for S in mats}) != 1:
        raise ValueError(f"style features disagree on channels: {[S.shape[0] for S in mats]}")
    if len({S.dtype for S in mats}) != 1:
        raise ValueError(f"style features disagree on dtype: {[str(S.dtype) for S in mats]}")
    return Mixture(tuple((S, b) for S, b in zip(mats, blend) if b > 0))


def mixture_mean(mix):
    """mu*_i = sum_s b_s mean_j S_s[i, j], in float64: the mixture's mean feature vector (N,)."""
    xp = get_xp(mix.parts[0][0])
    return sum(b * S.mean(axis=1, dtype=xp.float64) for S, b in mix.parts)


def mixture_second_moment(mix):
    """C = sum_s b_s S_s S_s^T / M_s (N x N): the mixture's mean of f f^T, in the features' dtype."""
    total = None
    for S, b in mix.parts:
        part = S @ S.T
        part *= part.dtype.type(b / S.shape[1])
        total = part if total is None else total + part
    return total


def sum_squares(a):
    """sum(a * a) as a Python float, accumulated by BLAS (a dot product, no temporary array)."""
    xp = get_xp(a)
    flat = a.reshape(-1)
    return float(xp.dot(flat, flat))


def row_dots(A, B):
    """(sum_j A[i, j] B[i, j])_i as one batched matrix product: no N x M temporary, BLAS accumulation."""
    return (A[:, None, :] @ B[:, :, None])[:, 0, 0]


def positions_chunks(m, chunk):
    """The slices [a, b) that cut m positions into chunks of at most ``chunk`` (fixed, so sums are too)."""
    chunk = max(1, int(chunk))
    return [slice(a, min(a + chunk, m)) for a in range(0, m, chunk)]
