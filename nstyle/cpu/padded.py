"""The zero-bordered layout that the CPU 3x3 kernels read and write (NumPy only).

A map of C channels and H x W pixels is stored as a C-contiguous ``(C, H + 3, W + 2)`` buffer: the pixels
sit at rows 1..H, columns 1..W; row 0, rows H+1 and H+2, column 0 and column W+1 are zero. In a 3x3,
stride-1, zero-padding-1 convolution, output pixel (r, s) reads buffer rows r..r+2 and columns s..s+2.
Flattening each channel, that is flat positions ``q + di*(W+2) + dj`` around ``q = r*(W+2) + s``: every
kernel tap reads one *contiguous* shifted slice of the flat buffer. Letting s run over all W+2 columns
computes two extra ("garbage") outputs per row, which wrap around the row end; the extra row H+2 keeps
their reads inside the buffer. Those garbage outputs land exactly on the border columns of the output
buffer (see :func:`out_flat_offset`) and are set back to zero there.

Keeping every activation of the network in this layout means no padding copies between layers, and
the ReLU mask of a buffer is ``False`` on the border, so multiplying a gradient buffer by it also
clears the border.
"""
import numpy as np


def padded_shape(c, h, w):
    return (c, h + 3, w + 2)


def empty_padded(c, h, w, dtype=np.float32):
    """A buffer with its border rows zeroed and its border columns zeroed; the interior is undefined."""
    buf = np.empty(padded_shape(c, h, w), dtype=dtype)
    zero_border(buf, h, w)
    return buf


def zero_border(buf, h, w):
    buf[:, 0] = 0
    buf[:, h + 1:] = 0
    buf[:, 1:h + 1, 0] = 0
    buf[:, 1:h + 1, w + 1] = 0


def zero_border_columns(buf, r_lo, r_hi, w):
    """Zero columns 0 and W+1 of buffer rows [r_lo, r_hi)."""
    buf[:, r_lo:r_hi, 0] = 0
    buf[:, r_lo:r_hi, w + 1] = 0


def interior(buf, h, w):
    """The (C, H, W) view of the pixels."""
    return buf[:, 1:h + 1, 1:w + 1]


def to_padded(x, dtype=None):
    """Copy a (C, H, W) map into a new padded buffer."""
    c, h, w = x.shape
    buf = empty_padded(c, h, w, dtype or x.dtype)
    buf[:, 1:h + 1, 1:w + 1] = x
    return buf


def out_flat_offset(w):
    """Where output position q = r*(W+2) + s lands in the flat output buffer: at q + W + 3.

    That is buffer row r+1, column s+1: the pixel for s < W, column W+1 (right border) for s = W and
    column 0 of row r+2 (left border) for s = W+1 -- the garbage outputs fall on the border.
    """
    return w + 3


def tap_offsets(w):
    """Flat offset of each of the 9 taps (di, dj), in row-major tap order."""
    wp = w + 2
    return [di * wp + dj for di in range(3) for dj in range(3)]
