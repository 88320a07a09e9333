"""The NumPy emulation of every CUDA kernel in ``cuda/*.cu``: how the GPU engine runs on NumPy arrays.

Each function here is one kernel's body transcribed line by line into NumPy and evaluated for every
thread of the same launch grid at once: ``p``/``q``/``t`` hold every thread's ``blockIdx.x * blockDim.x
+ threadIdx.x``, and the rows of the second index array play the kernel's grid-stride loop over
``blockIdx.y``. Every load and store is bounds-checked, every int expression the CUDA code keeps in 32
bits is checked to fit, every division checked to have operands >= 0 (where C's truncation equals
Python's floor), and no two threads of a launch may write the same address. The tests compare these
emulations with the reference ops, which is how the kernels' index arithmetic is tested without a GPU.

Same names and arguments as the kernels, after ``(grid, block)``; ``kernels.py`` calls them.
"""
import numpy as np

from .program import INT_MAX


class Memory:
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


def im2col_band(grid, block, x, cols, C, H, W, kh, kw, stride, pad, r0, nrows, wo):
    xm, cm = Memory(x), Memory(cols)
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


def col2im_band(grid, block, cols, dx, C, H, W, kh, kw, stride, pad, r0, nrows, wo, y0, ny):
    cm, dm = Memory(cols), Memory(dx)
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


def avg_pool_fwd(grid, block, x, out, planes, H, W, k, s, ho, wo, inv_area):
    xm, om = Memory(x), Memory(out)
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


def pool_window_range(q, W, k, s, ho, wo):
    """Input position q = y*W + x -> (y, x, r_lo, r_hi, c_lo, c_hi): pool.cu's ``pool_window_range``
    for the rows and for the columns (``np.maximum`` only keeps the untaken branch from dividing < 0)."""
    y = _cdiv(q, W)
    xx = q - y * W
    r_lo = np.where(y >= k, _cdiv(np.maximum(y - k, 0), s) + 1, 0)
    r_hi = np.minimum(_cdiv(y, s), ho - 1)
    c_lo = np.where(xx >= k, _cdiv(np.maximum(xx - k, 0), s) + 1, 0)
    c_hi = np.minimum(_cdiv(xx, s), wo - 1)
    return y, xx, r_lo, r_hi, c_lo, c_hi


def avg_pool_bwd(grid, block, dout, dx, planes, H, W, k, s, ho, wo, inv_area):
    gm, dm = Memory(dout), Memory(dx)
    q, plane = _threads(grid, block, planes)
    q = _live(q, _as_int32(H * W))
    y, xx, r_lo, r_hi, c_lo, c_hi = pool_window_range(q, W, k, s, ho, wo)
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


def max_pool_fwd(grid, block, x, out, winner, planes, H, W, k, s, ho, wo):
    xm, om, wm = Memory(x), Memory(out), Memory(winner)
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


def max_pool_bwd(grid, block, dout, winner, dx, planes, H, W, k, s, ho, wo):
    gm, wm, dm = Memory(dout), Memory(winner), Memory(dx)
    q, plane = _threads(grid, block, planes)
    q = _live(q, _as_int32(H * W))
    y, xx, r_lo, r_hi, c_lo, c_hi = pool_window_range(q, W, k, s, ho, wo)
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


def relu_fwd(grid, block, x, y, mask, n):
    xm, ym, mm = Memory(x), Memory(y), Memory(mask)
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


def winograd_input_f2(grid, block, x, v, C, H, W, pad, ty0, nty, tw):
    xm, vm = Memory(x), Memory(v)
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


def winograd_output_f2(grid, block, m, bias, out, O, Ho, Wo, ty0, nty, tw, has_bias):
    mm, bm, om = Memory(m), Memory(bias), Memory(out)
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
