"""The temporal loss of Ruder, Dosovitskiy & Brox (2016) for video, with the warping and the reliability
weights it needs -- all in plain NumPy (the loss also on CuPy arrays).

Flows follow OpenCV's convention: a flow ``f`` of shape (H, W, 2) between frames A and B says that the
pixel p = (x, y) of A is at p + f(p) in B (``f[..., 0]`` the x shift, ``f[..., 1]`` the y shift). For
frame i, the *backward* flow ``wb`` goes from frame i to frame i - 1 and the *forward* flow ``wf`` from
frame i - 1 to frame i.

Warping: omega(p) = x_{i-1}(p + wb(p)), the previous stylised frame brought onto frame i by sampling it
bilinearly where each of frame i's pixels came from (:func:`warp`).

Reliability (Ruder et al., section 3.1): c(p) = 0 where the warp cannot be trusted, 1 elsewhere.

    disocclusion     |wf~ + wb|^2 > 0.01 (|wf~|^2 + |wb|^2) + 0.5, with wf~(p) = wf(p + wb(p)) the forward
                     flow warped onto frame i: going back and then forward again should land on p
    motion boundary  |grad ub|^2 + |grad vb|^2 > 0.01 |wb|^2 + 0.002, with wb = (ub, vb), where wb != 0

and, as in Ruder et al.'s consistency checker, where p + wb(p) lies outside frame i - 1 (the content came
in over the border: there is nothing to warp). "Outside" means beyond the border pixels' own area, which
reaches half a pixel past their centres: a still border pixel whose flow is -0.1 px from estimation noise
samples its own value and stays reliable (the strict test lost 5% of the still background of the 64x48
clip of ``bench/bench_video_still.py`` this way).

Disocclusions and the border are *new content*: the pixel shows something frame i - 1 did not, so a
frame's start takes the content there (:func:`new_content`). At a motion boundary the pixel was there
before and only the flow is in doubt: the start keeps the warped previous frame, the loss leaves it free.

Still pixels (:func:`prefer_still`): a patch-based flow such as DIS drags the background a few pixels
around a moving object along with it, and gives a still background flows of a tenth of a pixel from
the codec's noise. Warping the previous stylised frame by either moves paint that should stay: the
first smears it beside the object, the second blurs it a little more every frame. So each estimated
flow vector is tested against the still hypothesis on the input frames, whose motion it describes:
with e_flow(p) and e_zero(p) the squared colour differences between frame A at p and frame B at p + f(p)
or at p, each averaged over the (2r+1)^2 window around p, the flow is set to 0 where e_zero <= e_flow --
where standing still explains the neighbourhood at least as well as the flow does. A moving textured
object keeps its flow (standing still leaves its texture misaligned); inside an untextured region both
explain it equally and the region is taken as still, as its pixel values are. On the still 64x48
background beside a moving square of ``bench/bench_video_still.py`` the flow becomes 0 on over 90% of
the background, where DIS gave 0.15 px on average and nowhere exactly 0.

A pixel whose flow is exactly 0 is exempt from the motion-boundary test: that test is there because
a flow estimate smears across a boundary, and a zero that :func:`prefer_still` kept has been checked
against the frames. The boundary's doubt stays with its moving side.

The loss, for D = C*H*W pixel values and c broadcast over the channels:

    L_t = 1/D * sum_k c_k (x_k - omega_k)^2,      dL_t/dx = 2/D * c o (x - omega)

(omega and c depend on the previous frame and the flows, not on x: they are constants here). The
objective multiplies both by the temporal weight lambda (``app/video/objective.py``).
"""
import numpy as np

from ..backend import get_xp

# Ruder et al.'s thresholds (section 3.1).
DISOCCLUSION_RELATIVE, DISOCCLUSION_ABSOLUTE = 0.01, 0.5
BOUNDARY_RELATIVE, BOUNDARY_ABSOLUTE = 0.01, 0.002
# prefer_still's windows, 3x3: measured on bench_video_still's 64x48 clip, 1x1 followed the codec's noise
# (twice the flicker away from the square) and 5x5 left more of the drag beside it
STILL_RADIUS = 1


def warp(image, flow):
    """Sample ``image`` (C, H, W) at p + flow(p) for every pixel p, bilinearly: (C, H, W) float64.

    Also returns ``inside``, an (H, W) bool array: False where p + flow(p) falls outside the image, more
    than half a pixel beyond the border pixels' centres (the sample is taken at the nearest border point)."""
    image = np.asarray(image, dtype=np.float64)
    _, h, w = image.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    sx, sy = xx + flow[..., 0], yy + flow[..., 1]
    inside = (sx >= -0.5) & (sx <= w - 0.5) & (sy >= -0.5) & (sy <= h - 0.5)
    sx, sy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    # the top-left neighbour, kept one short of the last column/row so that x0 + 1 exists (when it can)
    x0 = np.minimum(np.floor(sx).astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(np.floor(sy).astype(np.intp), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = sx - x0, sy - y0  # weights of the right and bottom neighbours, in 0..1
    top = image[:, y0, x0] * (1 - ax) + image[:, y0, x1] * ax
    bottom = image[:, y1, x0] * (1 - ax) + image[:, y1, x1] * ax
    return top * (1 - ay) + bottom * ay, inside


def box_mean(values, radius):
    """The mean of ``values`` (H, W) over the (2 radius + 1)^2 window around each pixel, the border
    repeated outwards (summed-area table: exact sums, in a fixed order)."""
    k = 2 * radius + 1
    table = np.cumsum(np.cumsum(np.pad(np.asarray(values, dtype=np.float64), radius, mode="edge"), 0), 1)
    table = np.pad(table, ((1, 0), (1, 0)))
    return (table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]) / (k * k)


def prefer_still(flow, frame, other, radius=STILL_RADIUS):
    """``flow`` (H, W, 2) from ``frame`` to ``other`` (both (H, W, C) images), set to 0 wherever standing
    still explains ``frame``'s neighbourhood at least as well (module docstring). Returns a new array."""
    frame = np.asarray(frame, dtype=np.float64).transpose(2, 0, 1)
    other = np.asarray(other, dtype=np.float64).transpose(2, 0, 1)
    flow = np.array(flow, dtype=np.float64)
    moved, _ = warp(other, flow)
    e_flow = box_mean(((frame - moved) ** 2).sum(axis=0), radius)
    e_zero = box_mean(((frame - other) ** 2).sum(axis=0), radius)
    flow[e_zero <= e_flow] = 0.0
    return flow


def _squared_norm(f):
    return f[..., 0] ** 2 + f[..., 1] ** 2


def reliability(forward, backward):
    """c (H, W) float64, 1 where the backward flow can be trusted and 0 where not (module docstring).

    forward: the flow from frame i - 1 to frame i; backward: from frame i to frame i - 1; both (H, W, 2)."""
    new, boundary = _checks(forward, backward)
    return (~new & ~boundary).astype(np.float64)


def new_content(forward, backward):
    """(H, W) bool: True where frame i shows what frame i - 1 did not -- disoccluded, or come in over the
    border (module docstring); motion boundaries are not new."""
    return _checks(forward, backward)[0]


def _checks(forward, backward):
    """(new, boundary): the disocclusion-or-border test and the motion-boundary test, (H, W) bool each."""
    forward = np.asarray(forward, dtype=np.float64)
    backward = np.asarray(backward, dtype=np.float64)
    round_trip, inside = warp(forward.transpose(2, 0, 1), backward)
    round_trip = round_trip.transpose(1, 2, 0)  # wf~(p) = wf(p + wb(p)): forward flow seen from frame i
    disoccluded = (_squared_norm(round_trip + backward)
                   > DISOCCLUSION_RELATIVE * (_squared_norm(round_trip) + _squared_norm(backward))
                   + DISOCCLUSION_ABSOLUTE)
    du_dy, du_dx = np.gradient(backward[..., 0])  # central differences inside, one-sided at the border
    dv_dy, dv_dx = np.gradient(backward[..., 1])
    boundary = (du_dx ** 2 + du_dy ** 2 + dv_dx ** 2 + dv_dy ** 2
                > BOUNDARY_RELATIVE * _squared_norm(backward) + BOUNDARY_ABSOLUTE)
    boundary &= _squared_norm(backward) > 0  # a zero flow is exempt (module docstring)
    return disoccluded | ~inside, boundary


def temporal_loss(x, omega, c):
    """L_t = 1/D * sum c (x - omega)^2 and its gradient 2/D * c (x - omega).

    x, omega: (1, C, H, W) (NumPy or CuPy, same array module); c: (H, W), broadcast over the channels.
    Returns (value as a Python float, gradient shaped and typed like x)."""
    xp = get_xp(x)
    diff = x - omega.astype(x.dtype, copy=False)
    weighted = diff * c.astype(x.dtype, copy=False)  # c o (x - omega)
    d = float(x.size)
    value = float(xp.sum(weighted * diff)) / d
    weighted *= x.dtype.type(2.0 / d)
    return value, weighted


def temporal_error(frame, previous_warped, c):
    """The consistency measure: the mean of (frame - previous_warped)^2 over the reliable pixel values
    (weighted by c), in the units of the images (8-bit values squared for images 0..255).

    frame, previous_warped: (C, H, W); c: (H, W). 0 when no pixel is reliable."""
    diff = np.asarray(frame, dtype=np.float64) - np.asarray(previous_warped, dtype=np.float64)
    total = float(c.sum()) * diff.shape[0]
    return float((diff * diff * c[None]).sum()) / total if total > 0 else 0.0


def temporal_loss_naive(x, omega, c):
    """:func:`temporal_loss` pixel value by pixel value (NumPy, small inputs): the tests' twin."""
    x, omega, c = np.asarray(x), np.asarray(omega), np.asarray(c)
    d = float(x.size)
    value, grad = 0.0, np.zeros_like(x)
    for k in np.ndindex(x.shape):
        diff = float(x[k]) - float(omega[k])
        weight = float(c[k[2], k[3]])
        value += weight * diff * diff / d
        grad[k] = 2.0 / d * weight * diff
    return value, grad
