"""CUDA kernels of the GPU path, and a NumPy transcription of each one's index arithmetic.

The kernels (one CuPy ``RawModule``, templated on the float type so float64 gradient checks run on the
device too):

  im2col_band    a band of output rows' receptive fields -> a column matrix (one launch per band)
  col2im_band    its adjoint, written as a gather: each input pixel sums the taps that read it
  avg_pool_fwd / avg_pool_bwd, max_pool_fwd / max_pool_bwd   (the backwards are gathers too)
  relu_fwd       rectify and record the mask (1 byte per element) in one pass, in place or not
  winograd_input_f2 / winograd_output_f2   the tile transforms of Winograd F(2x2, 3x3) (see conv_gpu.py)

Every kernel is a gather -- one thread per output element, reading whatever it needs -- so no kernel
needs atomics and the results do not depend on thread scheduling.

Thread layout, the same for all but relu: ``blockIdx.x * blockDim.x + threadIdx.x`` runs over the
positions of one plane (or one band), ``blockIdx.y`` over planes/channels (a grid-stride loop when there
are more than 65535 of them). Positions and in-plane offsets are ``int``; offsets into whole tensors are
``long long``. The Python wrappers check the int ranges before launching.

Each wrapper takes CuPy arrays (launches the kernel) or NumPy arrays (runs ``_emulate_<kernel>``: the
kernel body transcribed line by line into NumPy, evaluated for every thread of the same grid at once,
with bounds checks on every load and store and a check that no two threads of a launch write the same
address). The CPU tests compare the emulations with the naive layers, which is how the kernels' index
arithmetic is tested on a machine without a GPU.
"""
import numpy as np

from ..backend import cupy_module, is_gpu_array

BLOCK = 256
MAX_GRID_Y = 65535
INT_MAX = 2 ** 31 - 1

_SOURCE = r"""
// Offsets into whole tensors are long long; positions within a plane or band are int (checked on the host).

template<typename T>
__global__ void im2col_band(const T* __restrict__ x, T* __restrict__ cols,
                            int C, int H, int W, int kh, int kw, int stride, int pad,
                            int r0, int nrows, int wo) {
    // cols[k][p], k = (c*kh + ki)*kw + kj, p = rr*wo + s over output rows r0 .. r0+nrows-1.
    const int P = nrows * wo;
    const int K = C * kh * kw;
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= P) return;
    const int rr = p / wo;
    const int s = p - rr * wo;
    const int y_base = (r0 + rr) * stride - pad;
    const int x_base = s * stride - pad;
    for (int k = blockIdx.y; k < K; k += gridDim.y) {
        const int c = k / (kh * kw);
        const int t = k - c * (kh * kw);
        const int ki = t / kw;
        const int kj = t - ki * kw;
        const int y = y_base + ki;
        const int xc = x_base + kj;
        T v = T(0);
        if (y >= 0 && y < H && xc >= 0 && xc < W) v = x[((long long)c * H + y) * W + xc];
        cols[(long long)k * P + p] = v;
    }
}

template<typename T>
__global__ void col2im_band(const T* __restrict__ cols, T* __restrict__ dx,
                            int C, int H, int W, int kh, int kw, int stride, int pad,
                            int r0, int nrows, int wo, int y0, int ny) {
    // dx[c][y][x] += sum over the taps (ki, kj) of this band that read (y, x) of cols[k][p].
    // Input (y, x) is read by tap ki of output row r when r*stride - pad + ki == y.
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= ny * W) return;
    const int yy = q / W;
    const int xx = q - yy * W;
    const int y = y0 + yy;
    const int P = nrows * wo;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        T acc = T(0);
        for (int ki = 0; ki < kh; ++ki) {
            const int ty = y + pad - ki;
            if (ty < 0 || ty % stride != 0) continue;
            const int r = ty / stride - r0;
            if (r < 0 || r >= nrows) continue;
            for (int kj = 0; kj < kw; ++kj) {
                const int tx = xx + pad - kj;
                if (tx < 0 || tx % stride != 0) continue;
                const int s = tx / stride;
                if (s >= wo) continue;
                acc += cols[(long long)((c * kh + ki) * kw + kj) * P + r * wo + s];
            }
        }
        dx[((long long)c * H + y) * W + xx] += acc;
    }
}

template<typename T>
__global__ void avg_pool_fwd(const T* __restrict__ x, T* __restrict__ out, int planes,
                             int H, int W, int k, int s, int ho, int wo, T inv_area) {
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= ho * wo) return;
    const int r = q / wo;
    const int cc = q - r * wo;
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const T* src = x + (long long)plane * H * W + (long long)(r * s) * W + cc * s;
        T acc = T(0);
        for (int di = 0; di < k; ++di)
            for (int dj = 0; dj < k; ++dj)
                acc += src[di * W + dj];
        out[(long long)plane * ho * wo + q] = acc * inv_area;
    }
}

// The windows lo..hi (n_out of them, size k, stride s) that contain input index i along one axis;
// none (lo > hi) for the floored-off border. _pool_window_range transcribes it.
__device__ inline void pool_window_range(int i, int k, int s, int n_out, int& lo, int& hi) {
    lo = (i >= k) ? (i - k) / s + 1 : 0;
    hi = min(i / s, n_out - 1);
}

template<typename T>
__global__ void avg_pool_bwd(const T* __restrict__ dout, T* __restrict__ dx, int planes,
                             int H, int W, int k, int s, int ho, int wo, T inv_area) {
    // Input (y, x) lies in the windows r = r_lo..r_hi (rows) and c = c_lo..c_hi (columns):
    // r*s <= y <= r*s + k - 1; none of them for the floored-off border, which gets 0.
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= H * W) return;
    const int y = q / W;
    const int xx = q - y * W;
    int r_lo, r_hi, c_lo, c_hi;
    pool_window_range(y, k, s, ho, r_lo, r_hi);
    pool_window_range(xx, k, s, wo, c_lo, c_hi);
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const T* g = dout + (long long)plane * ho * wo;
        T acc = T(0);
        for (int r = r_lo; r <= r_hi; ++r)
            for (int c = c_lo; c <= c_hi; ++c)
                acc += g[r * wo + c];
        dx[(long long)plane * H * W + q] = acc * inv_area;
    }
}

template<typename T, typename I>
__global__ void max_pool_fwd(const T* __restrict__ x, T* __restrict__ out, I* __restrict__ winner,
                             int planes, int H, int W, int k, int s, int ho, int wo) {
    // Strict '>' keeps the first maximum on ties, as the CPU path does.
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= ho * wo) return;
    const int r = q / wo;
    const int cc = q - r * wo;
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const T* src = x + (long long)plane * H * W + (long long)(r * s) * W + cc * s;
        T best = src[0];
        int arg = 0;
        for (int idx = 1; idx < k * k; ++idx) {
            const int di = idx / k;
            const int dj = idx - di * k;
            const T v = src[di * W + dj];
            if (v > best) { best = v; arg = idx; }
        }
        out[(long long)plane * ho * wo + q] = best;
        winner[(long long)plane * ho * wo + q] = (I)arg;
    }
}

template<typename T, typename I>
__global__ void max_pool_bwd(const T* __restrict__ dout, const I* __restrict__ winner, T* __restrict__ dx,
                             int planes, int H, int W, int k, int s, int ho, int wo) {
    // Input (y, x) receives dout of every window that contains it and chose it as its winner.
    const int q = blockIdx.x * blockDim.x + threadIdx.x;
    if (q >= H * W) return;
    const int y = q / W;
    const int xx = q - y * W;
    int r_lo, r_hi, c_lo, c_hi;
    pool_window_range(y, k, s, ho, r_lo, r_hi);
    pool_window_range(xx, k, s, wo, c_lo, c_hi);
    for (int plane = blockIdx.y; plane < planes; plane += gridDim.y) {
        const long long base = (long long)plane * ho * wo;
        T acc = T(0);
        for (int r = r_lo; r <= r_hi; ++r)
            for (int c = c_lo; c <= c_hi; ++c)
                if ((int)winner[base + r * wo + c] == (y - r * s) * k + (xx - c * s))
                    acc += dout[base + r * wo + c];
        dx[(long long)plane * H * W + q] = acc;
    }
}

template<typename T>
__global__ void relu_fwd(const T* x, T* y, bool* __restrict__ mask, long long n) {
    // x and y may be the same array (in place): each thread reads its element before writing it.
    // 'v <= 0 ? 0 : v' passes NaN through, like NumPy's maximum, so a NaN still reaches the loss.
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const T v = x[i];
        mask[i] = v > T(0);
        y[i] = (v <= T(0)) ? T(0) : v;
    }
}

// Winograd F(2x2, 3x3) (Lavin & Gray, 2016): a 3x3 stride-1 convolution computed per 2x2 output tile from a
// 4x4 input tile as Y = A^T [ (G g G^T) . (B^T d B) ] A, summed over input channels by 16 matrix products.
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  A^T = [1 1 1 0; 0 1 -1 -1]  (G is applied on the host).

template<typename T>
__global__ void winograd_input_f2(const T* __restrict__ x, T* __restrict__ v,
                                  int C, int H, int W, int pad, int ty0, int nty, int tw) {
    // v[e][c][t], e = 4*i + j the entry of B^T d B, t = (ty - ty0)*tw + tx a tile of tile rows ty0..ty0+nty-1;
    // tile (ty, tx) reads input rows 2*ty - pad .. +3 and columns 2*tx - pad .. +3 (zero outside).
    const int nt = nty * tw;
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= nt) return;
    const int r = t / tw;
    const int tx = t - r * tw;
    const int y0 = 2 * (ty0 + r) - pad;
    const int x0 = 2 * tx - pad;
    const long long step = (long long)C * nt;
    for (int c = blockIdx.y; c < C; c += gridDim.y) {
        const T* src = x + (long long)c * H * W;
        T d[4][4];
        for (int i = 0; i < 4; ++i) {
            const int y = y0 + i;
            for (int j = 0; j < 4; ++j) {
                const int xc = x0 + j;
                d[i][j] = (y >= 0 && y < H && xc >= 0 && xc < W) ? src[(long long)y * W + xc] : T(0);
            }
        }
        T b[4][4];
        for (int j = 0; j < 4; ++j) {          // B^T d
            b[0][j] = d[0][j] - d[2][j];
            b[1][j] = d[1][j] + d[2][j];
            b[2][j] = d[2][j] - d[1][j];
            b[3][j] = d[1][j] - d[3][j];
        }
        T* dst = v + (long long)c * nt + t;
        for (int i = 0; i < 4; ++i) {          // (B^T d) B
            dst[(4 * i + 0) * step] = b[i][0] - b[i][2];
            dst[(4 * i + 1) * step] = b[i][1] + b[i][2];
            dst[(4 * i + 2) * step] = b[i][2] - b[i][1];
            dst[(4 * i + 3) * step] = b[i][1] - b[i][3];
        }
    }
}

template<typename T>
__global__ void winograd_output_f2(const T* __restrict__ m, const T* __restrict__ bias, T* __restrict__ out,
                                   int O, int Ho, int Wo, int ty0, int nty, int tw, int has_bias) {
    // out[o][2*ty + a][2*tx + b] = (A^T m A)[a][b] (+ bias[o]) for the tiles of this band, m[e][o][t].
    const int nt = nty * tw;
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= nt) return;
    const int r = t / tw;
    const int tx = t - r * tw;
    const int oy = 2 * (ty0 + r);
    const int ox = 2 * tx;
    const long long step = (long long)O * nt;
    for (int o = blockIdx.y; o < O; o += gridDim.y) {
        const T* src = m + (long long)o * nt + t;
        T q[4][4];
        for (int e = 0; e < 16; ++e) q[e / 4][e % 4] = src[e * step];
        T a[2][4];
        for (int j = 0; j < 4; ++j) {          // A^T q
            a[0][j] = q[0][j] + q[1][j] + q[2][j];
            a[1][j] = q[1][j] - q[2][j] - q[3][j];
        }
        const T b0 = has_bias ? bias[o] : T(0);
        T* dst = out + (long long)o * Ho * Wo;
        for (int i = 0; i < 2; ++i) {          // (A^T q) A
            const T y[2] = {a[i][0] + a[i][1] + a[i][2], a[i][1] - a[i][2] - a[i][3]};
            for (int j = 0; j < 2; ++j)
                if (oy + i < Ho && ox + j < Wo) dst[(long long)(oy + i) * Wo + ox + j] = y[j] + b0;
        }
    }
}
"""

_FLOATS = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
_INDICES = {np.dtype(np.uint8): "unsigned char", np.dtype(np.int32): "int"}


def _name_expressions():
    names = []
    for t in _FLOATS.values():
        names += [f"im2col_band<{t}>", f"col2im_band<{t}>", f"avg_pool_fwd<{t}>", f"avg_pool_bwd<{t}>",
                  f"relu_fwd<{t}>", f"winograd_input_f2<{t}>", f"winograd_output_f2<{t}>"]
        for i in _INDICES.values():
            names += [f"max_pool_fwd<{t}, {i}>", f"max_pool_bwd<{t}, {i}>"]
    return tuple(names)


_module = None


def _function(name):
    """The compiled kernel ``name`` (a template instantiation), compiling the module on first use."""
    global _module
    if _module is None:
        # No -std option: the source is plain C++11, and NVRTC's default dialect (C++17) accepts it.
        _module = cupy_module().RawModule(code=_SOURCE, name_expressions=_name_expressions())
    return _module.get_function(name)


def compile_all():
    """Compile every kernel now (the first call takes a second or two; later processes hit CuPy's cache)."""
    for name in _name_expressions():
        _function(name)


def supported_dtype(dtype):
    return np.dtype(dtype) in _FLOATS


def _grid(n_positions, n_planes):
    _check_int("positions per plane", n_positions)
    return (max(1, -(-n_positions // BLOCK)), max(1, min(n_planes, MAX_GRID_Y))), (BLOCK,)


def _check_int(what, value):
    if not 0 <= value <= INT_MAX:
        raise ValueError(f"GPU kernel: {what} = {value} does not fit a 32-bit int")


# Tests may set this to a function (name, grid, block, args) that runs the kernel source itself on the
# host (tests/cuda_on_host.py compiles it as C++); otherwise NumPy arrays go to the emulations.
host_runner = None


def _launch(name, grid, block, args, emulation):
    """Launch on the GPU when the arrays are CuPy arrays, else run the NumPy emulation on the same grid.

    Python ints become 32-bit ``int`` arguments (np.int32 raises if one does not fit); np.int64 stays
    ``long long``; float scalars arrive already typed as the kernel's T."""
    if any(is_gpu_array(a) for a in args):
        cuda_args = tuple(np.int32(a) if isinstance(a, (int, np.integer)) and not isinstance(a, np.int64)
                          else a for a in args)
        _function(name)(grid, block, cuda_args)
    elif host_runner is not None:
        host_runner(name, grid, block, args)
    else:
        emulation(grid, block, *args)


def _contiguous(*arrays):
    for a in arrays:
        if not a.flags.c_contiguous:
            raise ValueError("GPU kernel: arrays must be C-contiguous")


# ---------------------------------------------------------------------------------------------------
# The wrappers: shapes in, one launch out.

def im2col_band(x, cols, kh, kw, stride, pad, r0, nrows, wo):
    """Fill ``cols`` (C*kh*kw*nrows*wo elements, row order (c, ki, kj), then (row, column)) with the
    receptive fields of output rows [r0, r0+nrows). x: (C, H, W), one unpadded image; padding is read as 0."""
    c, h, w = x.shape
    _contiguous(x, cols)
    if cols.size != c * kh * kw * nrows * wo or cols.dtype != x.dtype:
        raise ValueError("im2col_band: column buffer has the wrong size or dtype")
    _check_int("band size", nrows * wo)
    _check_int("rows of the column matrix", c * kh * kw)
    grid, block = _grid(nrows * wo, c * kh * kw)
    _launch(f"im2col_band<{_FLOATS[x.dtype]}>", grid, block,
            (x, cols, c, h, w, kh, kw, stride, pad, r0, nrows, wo), _emulate_im2col_band)


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
    grid, block = _grid(ny * w, c)
    _launch(f"col2im_band<{_FLOATS[dx.dtype]}>", grid, block,
            (cols, dx, c, h, w, kh, kw, stride, pad, r0, nrows, wo, y0, ny), _emulate_col2im_band)


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
    grid, block = _grid(ho * wo, planes)
    _launch(f"avg_pool_fwd<{_FLOATS[x.dtype]}>", grid, block,
            (x, out, planes, h, w, k, s, ho, wo, x.dtype.type(1.0 / (k * k))), _emulate_avg_pool_fwd)


def avg_pool_backward(dout, dx, k, s):
    """dx (N, C, H, W) = sum of dout / k^2 over the windows containing each element (0 outside all)."""
    _contiguous(dout, dx)
    planes, h, w, ho, wo = _pool_args(dx.shape, dout.shape)
    grid, block = _grid(h * w, planes)
    _launch(f"avg_pool_bwd<{_FLOATS[dx.dtype]}>", grid, block,
            (dout, dx, planes, h, w, k, s, ho, wo, dx.dtype.type(1.0 / (k * k))), _emulate_avg_pool_bwd)


def max_pool_forward(x, out, winner, k, s):
    """out = max of each window; winner = offset (di*k + dj) of its first maximum."""
    _contiguous(x, out, winner)
    planes, h, w, ho, wo = _pool_args(x.shape, out.shape)
    grid, block = _grid(ho * wo, planes)
    _launch(f"max_pool_fwd<{_FLOATS[x.dtype]}, {_INDICES[winner.dtype]}>", grid, block,
            (x, out, winner, planes, h, w, k, s, ho, wo), _emulate_max_pool_fwd)


def max_pool_backward(dout, winner, dx, k, s):
    """dx = dout routed to each window's winner (summed where windows overlap)."""
    _contiguous(dout, winner, dx)
    planes, h, w, ho, wo = _pool_args(dx.shape, dout.shape)
    grid, block = _grid(h * w, planes)
    _launch(f"max_pool_bwd<{_FLOATS[dx.dtype]}, {_INDICES[winner.dtype]}>", grid, block,
            (dout, winner, dx, planes, h, w, k, s, ho, wo), _emulate_max_pool_bwd)


def relu_forward(x, out, mask):
    """out = max(x, 0) (NaN passes), mask = x > 0; out may be x itself."""
    _contiguous(x, out, mask)
    n = x.size
    blocks = max(1, min(-(-n // BLOCK), 8 * 65535))  # grid-stride loop beyond that
    _launch(f"relu_fwd<{_FLOATS[x.dtype]}>", (blocks, 1), (BLOCK,), (x, out, mask, np.int64(n)),
            _emulate_relu_fwd)


def winograd_input(x, v, pad, ty0, nty, tw):
    """Fill ``v`` (16, C, nty*tw) with B^T d B for the 4x4 input tiles of tile rows [ty0, ty0+nty).
    x: (C, H, W), one unpadded image; tile (ty, tx) starts at input row 2*ty - pad, column 2*tx - pad."""
    c, h, w = x.shape
    _contiguous(x, v)
    nt = nty * tw
    if v.size != 16 * c * nt or v.dtype != x.dtype:
        raise ValueError("winograd_input: tile buffer has the wrong size or dtype")
    _check_int("tiles per band", nt)
    grid, block = _grid(nt, c)
    _launch(f"winograd_input_f2<{_FLOATS[x.dtype]}>", grid, block, (x, v, c, h, w, pad, ty0, nty, tw),
            _emulate_winograd_input_f2)


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
    grid, block = _grid(nt, o)
    _launch(f"winograd_output_f2<{_FLOATS[out.dtype]}>", grid, block,
            (m, bias if has_bias else m, out, o, ho, wo, ty0, nty, tw, int(has_bias)), _emulate_winograd_output_f2)


# ---------------------------------------------------------------------------------------------------
# NumPy transcriptions. Each runs the kernel body for all threads of the grid at once: ``p``/``q`` hold
# every thread's blockIdx.x * blockDim.x + threadIdx.x, the loop over ``by`` plays blockIdx.y.

class _Memory:
    """One array as a kernel sees it: a flat buffer with bounds-checked loads and stores, and a record
    of the addresses written during the launch (two threads writing one address would be a race)."""

    def __init__(self, array):
        self.flat = array.reshape(-1)
        if not np.shares_memory(self.flat, array) and array.size:
            raise AssertionError("emulated kernel needs a contiguous array")
        self.written = []

    def _check(self, idx):
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self.flat.size):
            raise AssertionError(f"emulated kernel: address {int(idx.min())}..{int(idx.max())} outside "
                                 f"a buffer of {self.flat.size} elements")
        return idx

    def load(self, idx):
        return self.flat[self._check(idx)]

    def store(self, idx, values):
        idx = self._check(idx)
        self.flat[idx] = values
        self.written.append(idx.ravel())

    def add(self, idx, values):
        idx = self._check(idx)
        self.flat[idx] += values
        self.written.append(idx.ravel())

    def check_no_race(self):
        if self.written:
            every = np.concatenate(self.written)
            if every.size and np.bincount(every, minlength=self.flat.size).max() > 1:
                raise AssertionError("emulated kernel: two threads wrote the same address in one launch")


def _threads(grid, block, n_y):
    """The threads of a launch, as two index arrays that broadcast against each other.

    x: every thread's blockIdx.x * blockDim.x + threadIdx.x, shape (1, X).
    y: every value the kernels' loop ``for (v = blockIdx.y; v < n_y; v += gridDim.y)`` takes, over all
       blockIdx.y, shape (Y, 1). Threads are independent (no shared memory, no synchronisation, and no
       two write one address, which the stores check), so evaluating all of them at once is one valid
       schedule."""
    x = np.arange(grid[0] * block[0], dtype=np.int64)[None, :]
    y = np.concatenate([np.arange(by, n_y, grid[1], dtype=np.int64) for by in range(grid[1])])[:, None]
    return x, y


def _as_int32(v):
    """Assert that an int expression of the kernel stays inside 32 bits (as the CUDA code assumes)."""
    v = np.asarray(v)
    if v.size and (v.min() < -INT_MAX - 1 or v.max() > INT_MAX):
        raise AssertionError("emulated kernel: an int expression overflows 32 bits")
    return v


def _cdiv(a, b):
    """C's integer division; every division in these kernels has operands >= 0, where it equals floor."""
    a = np.asarray(a)
    if a.size and a.min() < 0:
        raise AssertionError("emulated kernel: division of a negative int (C truncates, Python floors)")
    return a // b


def _live(x, limit):
    """The threads that pass the kernel's ``if (x >= limit) return;``."""
    return x[:, x[0] < limit]


def _emulate_im2col_band(grid, block, x, cols, C, H, W, kh, kw, stride, pad, r0, nrows, wo):
    xm, cm = _Memory(x), _Memory(cols)
    P = _as_int32(nrows * wo)
    K = _as_int32(C * kh * kw)
    p, k = _threads(grid, block, K)
    p = _live(p, P)
    rr = _cdiv(p, wo)
    s = p - rr * wo
    y_base = _as_int32((r0 + rr) * stride - pad)
    x_base = _as_int32(s * stride - pad)
    c = _cdiv(k, kh * kw)
    t = k - c * (kh * kw)
    ki = _cdiv(t, kw)
    kj = t - ki * kw
    y = y_base + ki
    xc = x_base + kj
    y, xc = np.broadcast_arrays(y, xc)
    v = np.zeros(y.shape, dtype=cols.dtype)
    inside = (y >= 0) & (y < H) & (xc >= 0) & (xc < W)
    c_full = np.broadcast_to(c, y.shape)
    v[inside] = xm.load((c_full[inside] * H + y[inside]) * W + xc[inside])
    cm.store(k * P + p, v)
    cm.check_no_race()


def _emulate_col2im_band(grid, block, cols, dx, C, H, W, kh, kw, stride, pad, r0, nrows, wo, y0, ny):
    cm, dm = _Memory(cols), _Memory(dx)
    q, c = _threads(grid, block, C)
    q = _live(q, _as_int32(ny * W))
    yy = _cdiv(q, W)
    xx = q - yy * W
    y = y0 + yy
    P = _as_int32(nrows * wo)
    acc = np.zeros((c.shape[0], q.shape[1]), dtype=dx.dtype)
    for ki in range(kh):
        ty = y + pad - ki
        live = ty >= 0
        live[live] = ty[live] % stride == 0       # operands >= 0 here, so % agrees with C
        r = np.full(ty.shape, -1, dtype=np.int64)
        r[live] = _cdiv(ty[live], stride) - r0
        live &= (r >= 0) & (r < nrows)
        for kj in range(kw):
            tx = xx + pad - kj
            ok = live & (tx >= 0)
            ok[ok] = tx[ok] % stride == 0
            s = np.full(tx.shape, wo, dtype=np.int64)
            s[ok] = _cdiv(tx[ok], stride)
            ok &= s < wo
            k = _as_int32((c * kh + ki) * kw + kj)          # (C, 1)
            offset = _as_int32(r * wo + s)                  # (1, Q)
            at = np.broadcast_to(ok, acc.shape)
            acc[at] += cm.load(np.broadcast_to(k * P + offset, acc.shape)[at])
    dm.add((c * H + y) * W + xx, acc)
    dm.check_no_race()


def _emulate_avg_pool_fwd(grid, block, x, out, planes, H, W, k, s, ho, wo, inv_area):
    xm, om = _Memory(x), _Memory(out)
    q, plane = _threads(grid, block, planes)
    q = _live(q, _as_int32(ho * wo))
    r = _cdiv(q, wo)
    cc = q - r * wo
    src = plane * H * W + _as_int32(r * s) * W + cc * s
    acc = np.zeros(src.shape, dtype=out.dtype)
    for di in range(k):
        for dj in range(k):
            acc += xm.load(src + di * W + dj)
    om.store(plane * ho * wo + q, acc * inv_area)
    om.check_no_race()


def _pool_window_range(q, W, k, s, ho, wo):
    y = _cdiv(q, W)
    xx = q - y * W
    r_lo = np.where(y >= k, _cdiv(np.maximum(y - k, 0), s) + 1, 0)
    r_hi = np.minimum(_cdiv(y, s), ho - 1)
    c_lo = np.where(xx >= k, _cdiv(np.maximum(xx - k, 0), s) + 1, 0)
    c_hi = np.minimum(_cdiv(xx, s), wo - 1)
    return y, xx, r_lo, r_hi, c_lo, c_hi


def _emulate_avg_pool_bwd(grid, block, dout, dx, planes, H, W, k, s, ho, wo, inv_area):
    gm, dm = _Memory(dout), _Memory(dx)
    q, plane = _threads(grid, block, planes)
    q = _live(q, _as_int32(H * W))
    y, xx, r_lo, r_hi, c_lo, c_hi = _pool_window_range(q, W, k, s, ho, wo)
    # Each thread's loops 'for r in r_lo..r_hi, c in c_lo..c_hi' run here as loops over the offsets from
    # r_lo and c_lo (at most ceil(k/s) each), with the threads whose range is shorter masked off.
    span = -(-k // s)
    acc = np.zeros((plane.shape[0], q.shape[1]), dtype=dx.dtype)
    for dr in range(span):
        for dc in range(span):
            r, c = r_lo + dr, c_lo + dc
            ok = np.broadcast_to((r <= r_hi) & (c <= c_hi), acc.shape)
            acc[ok] += gm.load(np.broadcast_to(plane * ho * wo + r * wo + c, acc.shape)[ok])
    dm.store(plane * H * W + q, acc * inv_area)
    dm.check_no_race()


def _emulate_max_pool_fwd(grid, block, x, out, winner, planes, H, W, k, s, ho, wo):
    xm, om, wm = _Memory(x), _Memory(out), _Memory(winner)
    q, plane = _threads(grid, block, planes)
    q = _live(q, _as_int32(ho * wo))
    r = _cdiv(q, wo)
    cc = q - r * wo
    src = plane * H * W + _as_int32(r * s) * W + cc * s
    best = xm.load(src)
    arg = np.zeros(src.shape, dtype=np.int64)
    for idx in range(1, k * k):
        di = idx // k
        dj = idx - di * k
        v = xm.load(src + di * W + dj)
        better = v > best
        best = np.where(better, v, best)
        arg = np.where(better, idx, arg)
    om.store(plane * ho * wo + q, best)
    wm.store(plane * ho * wo + q, arg.astype(winner.dtype))
    om.check_no_race()
    wm.check_no_race()


def _emulate_max_pool_bwd(grid, block, dout, winner, dx, planes, H, W, k, s, ho, wo):
    gm, wm, dm = _Memory(dout), _Memory(winner), _Memory(dx)
    q, plane = _threads(grid, block, planes)
    q = _live(q, _as_int32(H * W))
    y, xx, r_lo, r_hi, c_lo, c_hi = _pool_window_range(q, W, k, s, ho, wo)
    span = -(-k // s)
    shape = (plane.shape[0], q.shape[1])
    acc = np.zeros(shape, dtype=dx.dtype)
    for dr in range(span):
        for dc in range(span):
            r, c = r_lo + dr, c_lo + dc
            ok = np.broadcast_to((r <= r_hi) & (c <= c_hi), shape)
            at = np.broadcast_to(plane * ho * wo + r * wo + c, shape)[ok]
            offset = np.broadcast_to((y - r * s) * k + (xx - c * s), shape)[ok]
            chosen = wm.load(at).astype(np.int64) == offset
            acc[np.nonzero(ok)[0][chosen], np.nonzero(ok)[1][chosen]] += gm.load(at[chosen])
    dm.store(plane * H * W + q, acc)
    dm.check_no_race()


def _emulate_relu_fwd(grid, block, x, y, mask, n):
    xm, ym, mm = _Memory(x), _Memory(y), _Memory(mask)
    first = np.arange(grid[0] * block[0], dtype=np.int64)
    stride = grid[0] * block[0]
    for start in range(0, int(n), stride):        # the grid-stride loop
        i = first + start
        i = i[i < n]
        v = xm.load(i)
        mm.store(i, v > 0)
        ym.store(i, np.where(v <= 0, np.zeros((), dtype=y.dtype), v))
    ym.check_no_race()
    mm.check_no_race()


def _emulate_winograd_input_f2(grid, block, x, v, C, H, W, pad, ty0, nty, tw):
    xm, vm = _Memory(x), _Memory(v)
    nt = _as_int32(nty * tw)
    t, c = _threads(grid, block, C)
    t = _live(t, nt)
    r = _cdiv(t, tw)
    tx = t - r * tw
    y0 = _as_int32(2 * (ty0 + r) - pad)
    x0 = _as_int32(2 * tx - pad)
    step = C * nt
    shape = (c.shape[0], t.shape[1])
    d = [[None] * 4 for _ in range(4)]
    for i in range(4):
        y = np.broadcast_to(y0 + i, shape)
        for j in range(4):
            xc = np.broadcast_to(x0 + j, shape)
            val = np.zeros(shape, dtype=v.dtype)
            inside = (y >= 0) & (y < H) & (xc >= 0) & (xc < W)
            val[inside] = xm.load((np.broadcast_to(c, shape)[inside] * H + y[inside]) * W + xc[inside])
            d[i][j] = val
    b = [[None] * 4 for _ in range(4)]
    for j in range(4):
        b[0][j] = d[0][j] - d[2][j]
        b[1][j] = d[1][j] + d[2][j]
        b[2][j] = d[2][j] - d[1][j]
        b[3][j] = d[1][j] - d[3][j]
    dst = c * nt + t
    for i in range(4):
        vm.store((4 * i + 0) * step + dst, b[i][0] - b[i][2])
        vm.store((4 * i + 1) * step + dst, b[i][1] + b[i][2])
        vm.store((4 * i + 2) * step + dst, b[i][2] - b[i][1])
        vm.store((4 * i + 3) * step + dst, b[i][1] - b[i][3])
    vm.check_no_race()


def _emulate_winograd_output_f2(grid, block, m, bias, out, O, Ho, Wo, ty0, nty, tw, has_bias):
    mm, bm, om = _Memory(m), _Memory(bias), _Memory(out)
    nt = _as_int32(nty * tw)
    t, o = _threads(grid, block, O)
    t = _live(t, nt)
    r = _cdiv(t, tw)
    tx = t - r * tw
    oy = _as_int32(2 * (ty0 + r))
    ox = _as_int32(2 * tx)
    step = O * nt
    src = o * nt + t
    q = [[mm.load(src + (4 * i + j) * step) for j in range(4)] for i in range(4)]
    a = [[q[0][j] + q[1][j] + q[2][j] for j in range(4)], [q[1][j] - q[2][j] - q[3][j] for j in range(4)]]
    b0 = bm.load(o) if has_bias else np.zeros((), dtype=out.dtype)
    shape = src.shape
    for i in range(2):
        y = [a[i][0] + a[i][1] + a[i][2], a[i][1] - a[i][2] - a[i][3]]
        for j in range(2):
            inside = np.broadcast_to((oy + i < Ho) & (ox + j < Wo), shape)
            at = np.broadcast_to(o * Ho * Wo + (oy + i) * Wo + ox + j, shape)
            om.store(at[inside], (y[j] + b0)[inside])
    om.check_no_race()
