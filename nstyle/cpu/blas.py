"""The OpenBLAS that NumPy uses, called directly for what ``np.matmul`` cannot say: C += A @ B.

``np.matmul`` already hands BLAS any 2-D view whose rows are contiguous (a window of a padded buffer,
rows one channel pitch apart) without copying it, and writes into such a view given as ``out``. What
it cannot do is *accumulate*: every product overwrites its output, so a sum of products costs a
temporary and one more pass over memory per term. BLAS's GEMM computes C = alpha A B + beta C, and
with beta = 1 the sum is free. The style gradient uses it to add S F into the gradient rows
(``losses.py``).

The library is found the way ``threads.blas_thread_control`` finds it (NumPy's copy, among the shared
objects this process has loaded), and its CBLAS ``?gemm`` under the names NumPy's wheels give it
(``scipy_cblas_sgemm64_``: 64-bit integers) or plain ones. A binding is trusted only after it has
reproduced ``np.matmul`` on a small strided product; where there is none (another BLAS, another OS),
:func:`accumulate` falls back to NumPy, with the temporary: same result, one more pass.

And one thing about speed, :func:`small_product_rows`: OpenBLAS copies ("packs") both operands of a
product into blocks before it multiplies, which a thin product -- the Winograd kernel's on small maps,
(O, C) @ (C, a few tens of tiles) -- barely amortises. Its AVX-512 cores (SkylakeX and later) also have
kernels that multiply in place, which it takes for products of at most a million multiply-adds; cut
into row blocks of that size, such a product runs 20-65% faster (bench/NOTES.md, section 17).
"""
import ctypes
import threading

import numpy as np

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
# CBLAS names to try, with their integer width: NumPy >= 2 wheels prefix and suffix the ILP64 build.
_NAMES = (("scipy_cblas_{}gemm64_", ctypes.c_int64), ("cblas_{}gemm64_", ctypes.c_int64),
          ("scipy_cblas_{}gemm", ctypes.c_int), ("cblas_{}gemm", ctypes.c_int))
_SCALARS = {np.dtype(np.float32): ("s", ctypes.c_float), np.dtype(np.float64): ("d", ctypes.c_double)}

_gemms = {}
_bind_lock = threading.Lock()

# OpenBLAS cores whose kernels include the in-place ones for small products (its SMALL_MATRIX_OPT
# kernels for AVX-512), and the size up to which it takes them: measured, one thread, a (rows, 512) @
# (512, 64) float32 product on an AMD EPYC with AVX-512 -- 30 rows (0.98 M multiply-adds) ran at 93
# GFLOP/s in other bits than the whole product, 31 rows (1.02 M) at 63 in the whole product's bits.
SMALL_PRODUCT_CORES = ("skylakex", "cooperlake", "sapphirerapids")
SMALL_PRODUCT_MULADDS = 1_000_000
# Fewer rows per block lose more to the calls than the kernels win (8 rows: 73 GFLOP/s, the whole 80).
SMALL_PRODUCT_MIN_ROWS = 16
_CORENAMES = ("openblas_get_corename", "scipy_openblas_get_corename64_", "openblas_get_corename64_",
              "scipy_openblas_get_corename")
_corename = "unknown"


def openblas_paths():
    """Paths of the OpenBLAS libraries this process has loaded, NumPy's own first (Linux only)."""
    np.ones(2) @ np.ones(2)  # make sure NumPy's BLAS is loaded
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        paths = set()
    return sorted(paths, key=lambda p: ("numpy" not in p, p))


def _bind(dtype):
    letter, scalar = _SCALARS[dtype]
    for path in openblas_paths():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pattern, integer in _NAMES:
            fn = getattr(lib, pattern.format(letter), None)
            if fn is None:
                continue
            fn.argtypes = [ctypes.c_int] * 3 + [integer] * 3 + [scalar, ctypes.c_void_p, integer,
                                                                 ctypes.c_void_p, integer, scalar,
                                                                 ctypes.c_void_p, integer]
            fn.restype = None
            if _reproduces_matmul(fn, dtype):
                return fn
    return None


def corename():
    """The name of the core OpenBLAS chose its kernels for in NumPy's copy ("skylakex", "haswell", ...,
    lower case), or "" where that cannot be asked (another BLAS). OPENBLAS_CORETYPE can change it."""
    global _corename
    if _corename == "unknown":
        found, paths = "", openblas_paths()
        try:
            lib = ctypes.CDLL(paths[0]) if paths else None  # NumPy's own: the one np.matmul calls
        except OSError:
            lib = None
        fn = next((getattr(lib, name) for name in _CORENAMES if hasattr(lib, name)), None)
        if fn is not None:
            fn.restype = ctypes.c_char_p
            found = (fn() or b"").decode("ascii", "replace").strip().lower()
        _corename = found
    return _corename


def small_product_rows(k, n, dtype):
    """Rows per block for a float32 product (rows, k) @ (k, n) to take OpenBLAS's in-place kernels
    (see the module docstring), or None where it should run whole: another core or dtype, or blocks
    that would be thinner than SMALL_PRODUCT_MIN_ROWS.

    Depends on the shapes and the BLAS alone, never on timing: the blocks decide the rounding (the
    in-place kernels' bits differ from the packed ones', and do not depend on the rows per block).
    """
    if np.dtype(dtype) != np.float32 or corename() not in SMALL_PRODUCT_CORES:
        return None
    rows = SMALL_PRODUCT_MULADDS // max(1, k * n)
    return rows if rows >= SMALL_PRODUCT_MIN_ROWS else None


def _gemm(dtype):
    """The checked CBLAS GEMM for this dtype, or None.

    Bound on first use, under a lock: the first use is often inside the tasks of ``threads.py``, and
    a task that found the binding half made would take NumPy's path, which rounds the sum differently
    (a product, then an add) -- the same gradient would come out in other bits.
    """
    dtype = np.dtype(dtype)
    if dtype not in _SCALARS:
        return None
    if dtype not in _gemms:
        with _bind_lock:
            if dtype not in _gemms:
                _gemms[dtype] = _bind(dtype)  # None for good if no binding passes the check
    return _gemms[dtype]


def _operand(x):
    """(transpose flag, leading dimension) of a 2-D view for row-major CBLAS, or None if it has no
    unit stride (then BLAS cannot read it in place)."""
    size = x.itemsize
    rows, cols = x.strides
    if cols == size and rows % size == 0 and rows // size >= max(1, x.shape[1]):
        return NO_TRANS, rows // size
    if rows == size and cols % size == 0 and cols // size >= max(1, x.shape[0]):
        return TRANS, cols // size
    return None


def _call(fn, a, b, c, beta):
    (ta, lda), (tb, ldb) = _operand(a), _operand(b)
    m, k = a.shape
    fn(ROW_MAJOR, ta, tb, m, b.shape[1], k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb, beta,
       c.ctypes.data, c.strides[0] // c.itemsize)


def _reproduces_matmul(fn, dtype):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 8)).astype(dtype)[:, 1:6]  # (7, 5) with a row pitch of 8
    b = rng.standard_normal((9, 5)).astype(dtype).T        # (5, 9), transposed
    c0 = rng.standard_normal((7, 11)).astype(dtype)
    c = c0.copy()
    _call(fn, a, b, c[:, 1:10], 1.0)
    expected = c0.copy()
    expected[:, 1:10] += np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    return bool(np.allclose(c, expected, rtol=1e-4, atol=1e-4))


def available(dtype):
    """Whether :func:`accumulate` runs in BLAS (no temporary) for this dtype."""
    return _gemm(dtype) is not None


def accumulate(a, b, c):
    """c += a @ b for 2-D arrays of one float dtype, c a view that may be a window of a larger array.

    In BLAS (beta = 1) when it can read the operands in place; otherwise with NumPy's temporary.
    c must not overlap a or b.
    """
    fn = _gemm(c.dtype)
    if (fn is not None and a.dtype == b.dtype == c.dtype and c.ndim == a.ndim == b.ndim == 2
            and a.shape[1] == b.shape[0] and c.shape == (a.shape[0], b.shape[1])
            and c.strides[1] == c.itemsize and c.strides[0] % c.itemsize == 0
            and c.strides[0] >= c.shape[1] * c.itemsize
            and _operand(a) and _operand(b) and c.size and a.shape[1]):
        _call(fn, a, b, c, 1.0)
        return c
    c += a @ b
    return c
