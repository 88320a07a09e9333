"""The GPU engine's kernel launches: shapes in, one launch out.

Each wrapper checks its arrays (contiguous, matching sizes and dtypes), works out the launch grid and the
kernel's int arguments from the shapes, and makes one launch of a kernel of ``cuda/*.cu``
(``program.py``): on the device for CuPy arrays; for NumPy arrays, the kernel's NumPy emulation
(``emulation.py``, same name), or -- when a host runner is set (:func:`set_host_runner`; the tests'
``cuda_on_host.py``) -- the CUDA source itself compiled for the host.

Thread layout, the same for all but relu: ``blockIdx.x * blockDim.x + threadIdx.x`` runs over the
positions of one plane (or one band), ``blockIdx.y`` over planes/channels (a grid-stride loop when there
are more than 65535 of them). Positions and in-plane offsets are ``int``; offsets into whole tensors are
``long long``. The wrappers check the int ranges before launching.
"""
import numpy as np

from ..backend import is_gpu_array
from . import emulation, program
from .program import FLOATS, INDICES, INT_MAX, compile_all  # noqa: F401 -- compile_all: part of this API

BLOCK = 256
MAX_GRID_Y = 65535


def supported_dtype(dtype):
    return np.dtype(dtype) in FLOATS


def launch_grid(n_positions, n_planes):
    """(grid, block) for ``n_positions`` threads along x per plane and ``n_planes`` planes along y."""
    _check_int("positions per plane", n_positions)
    return (max(1, -(-n_positions // BLOCK)), max(1, min(n_planes, MAX_GRID_Y))), (BLOCK,)


def _check_int(what, value):
    if not 0 <= value <= INT_MAX:
        raise ValueError(f"GPU kernel: {what} = {value} does not fit a 32-bit int")


_host_runner = None


def set_host_runner(runner):
    """Run the kernels of NumPy launches with ``runner(name, grid, block, args)`` instead of their NumPy
    emulation (None: back to the emulation); returns the previous runner. ``tests/cuda_on_host.py``
    passes one that runs the CUDA source compiled as C++."""
    global _host_runner
    before, _host_runner = _host_runner, runner
    return before


def _launch(name, grid, block, args):
    """Launch kernel instance ``name`` on the GPU when the arrays are CuPy arrays; else run it on the host,
    on the same grid: the host runner if one is set, the kernel's NumPy emulation otherwise.

    Python ints become 32-bit ``int`` arguments (np.int32 raises if one does not fit); np.int64 stays
    ``long long``; float scalars arrive already typed as the kernel's T."""
    if any(is_gpu_array(a) for a in args):
        cuda_args = tuple(np.int32(a) if isinstance(a, (int, np.integer)) and not isinstance(a, np.int64)
                          else a for a in args)
        program.function(name)(grid, block, cuda_args)
    elif _host_runner is not None:
        _host_runner(name, grid, block, args)
    else:
        getattr(emulation, name.split("<")[0])(grid, block, *args)


def _contiguous(*arrays):
    for a in arrays:
        if not a.flags.c_contiguous:
            raise ValueError("GPU kernel: arrays must be C-contiguous")


def im2col_band(x, cols, kh, kw, stride, pad, r0, nrows, wo):
    """Fill ``cols`` (C*kh*kw*nrows*wo elements, row order (c, ki, kj), then (row, column)) with the
    receptive fields of output rows [r0, r0+nrows). x: (C, H, W), one unpadded image; padding is read as 0."""
    c, h, w = x.shape
    _contiguous(x, cols)
    if cols.size != c * kh * kw * nrows * wo or cols.dtype != x.dtype:
        raise ValueError("im2col_band: column buffer has the wrong size or dtype")
    _check_int("band size", nrows * wo)
    _check_int("rows of the column matrix", c * kh * kw)
    grid, block = launch_grid(nrows * wo, c * kh * kw)
    _launch(f"im2col_band<{FLOATS[x.dtype]}>", grid, block,
            (x, cols, c, h, w, kh, kw, stride, pad, r0, nrows, wo))


def col2im_rows(h, kh, stride, pad, r0, nrows):
    """The input rows [y0, y0+ny) that output rows [r0, r0+nrows) read (ny may be 0: all padding)."""
    y0 = max(0, r0 * stride - pad)
    y1 = min(h, (r0 + nrows - 1) * stride - pad + kh)
    return y0, max(0, y1 - y0)


def col2im_band(cols, dx, kh, kw, stride, pad, r0, nrows, wo):
    """Add the band's column-matrix gradient ``cols`` into ``dx`` (C, H, W): the adjoint of im2col_band."""
    c, h, w = dx.shape
    _contiguous(cols, dx)
    if cols.size != c * kh * kw * nrows * wo or cols.dtype != dx.dtype:
        raise ValueError("col2im_band: column buffer has the wrong size or dtype")
    y0, ny = col2im_rows(h, kh, stride, pad, r0, nrows)
    if ny == 0:
        return
    _check_int("band size", nrows * wo)
    _check_int("rows of the column matrix", c * kh * kw)
    grid, block = launch_grid(ny * w, c)
    _launch(f"col2im_band<{FLOATS[dx.dtype]}>", grid, block,
            (cols, dx, c, h, w, kh, kw, stride, pad, r0, nrows, wo, y0, ny))


def _pool_args(x_shape, out_shape):
    n, c, h, w = x_shape
    ho, wo = out_shape[2], out_shape[3]
    _check_int("plane size", h * w)
    _check_int("planes", n * c)
    return n * c, h, w, ho, wo


def avg_pool_forward(x, out, k, s):
    """out (N, C, Ho, Wo) = mean of each k x k window of x (N, C, H, W), stride s."""
    _contiguous(x, out)
    planes, h, w, ho, wo = _pool_args(x.shape, out.shape)
    grid, block = launch_grid(ho * wo, planes)
    _launch(f"avg_pool_fwd<{FLOATS[x.dtype]}>", grid, block,
            (x, out, planes, h, w, k, s, ho, wo, x.dtype.type(1.0 / (k * k))))


def avg_pool_backward(dout, dx, k, s):
    """dx (N, C, H, W) = sum of dout / k^2 over the windows containing each element (0 outside all)."""
    _contiguous(dout, dx)
    planes, h, w, ho, wo = _pool_args(dx.shape, dout.shape)
    grid, block = launch_grid(h * w, planes)
    _launch(f"avg_pool_bwd<{FLOATS[dx.dtype]}>", grid, block,
            (dout, dx, planes, h, w, k, s, ho, wo, dx.dtype.type(1.0 / (k * k))))


def max_pool_forward(x, out, winner, k, s):
    """out = max of each window; winner = offset (di*k + dj) of its first maximum."""
    _contiguous(x, out, winner)
    planes, h, w, ho, wo = _pool_args(x.shape, out.shape)
    grid, block = launch_grid(ho * wo, planes)
    _launch(f"max_pool_fwd<{FLOATS[x.dtype]}, {INDICES[winner.dtype]}>", grid, block,
            (x, out, winner, planes, h, w, k, s, ho, wo))


def max_pool_backward(dout, winner, dx, k, s):
    """dx = dout routed to each window's winner (summed where windows overlap)."""
    _contiguous(dout, winner, dx)
    planes, h, w, ho, wo = _pool_args(dx.shape, dout.shape)
    grid, block = launch_grid(h * w, planes)
    _launch(f"max_pool_bwd<{FLOATS[dx.dtype]}, {INDICES[winner.dtype]}>", grid, block,
            (dout, winner, dx, planes, h, w, k, s, ho, wo))


def relu_forward(x, out, mask):
    """out = max(x, 0) (NaN passes), mask = x > 0; out may be x itself."""
    _contiguous(x, out, mask)
    n = x.size
    blocks = max(1, min(-(-n // BLOCK), 8 * 65535))  # grid-stride loop beyond that
    _launch(f"relu_fwd<{FLOATS[x.dtype]}>", (blocks, 1), (BLOCK,), (x, out, mask, np.int64(n)))


def winograd_input(x, v, pad, ty0, nty, tw):
    """Fill ``v`` (16, C, nty*tw) with B^T d B for the 4x4 input tiles of tile rows [ty0, ty0+nty).
    x: (C, H, W), one unpadded image; tile (ty, tx) starts at input row 2*ty - pad, column 2*tx - pad."""
    c, h, w = x.shape
    _contiguous(x, v)
    nt = nty * tw
    if v.size != 16 * c * nt or v.dtype != x.dtype:
        raise ValueError("winograd_input: tile buffer has the wrong size or dtype")
    _check_int("tiles per band", nt)
    grid, block = launch_grid(nt, c)
    _launch(f"winograd_input_f2<{FLOATS[x.dtype]}>", grid, block, (x, v, c, h, w, pad, ty0, nty, tw))


def winograd_output(m, bias, out, ty0, nty, tw):
    """Write A^T m A (+ bias) for the band's tiles into ``out`` (O, Ho, Wo); m: (16, O, nty*tw).
    bias: (O,) or None. Tiles that stick out past Ho or Wo write only their inside part."""
    o, ho, wo = out.shape
    _contiguous(m, out)
    nt = nty * tw
    if m.size != 16 * o * nt or m.dtype != out.dtype:
        raise ValueError("winograd_output: tile buffer has the wrong size or dtype")
    has_bias = bias is not None
    if has_bias:
        _contiguous(bias)
    grid, block = launch_grid(nt, o)
    _launch(f"winograd_output_f2<{FLOATS[out.dtype]}>", grid, block,
            (m, bias if has_bias else m, out, o, ho, wo, ty0, nty, tw, int(has_bias)))
