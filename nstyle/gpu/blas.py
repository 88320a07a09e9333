"""One cuBLAS matrix product on sub-matrices that live inside bigger arrays (a band of an output map).

``cupy.matmul`` copies any operand that is neither C- nor F-contiguous, and a band of output rows of a
(O, Ho*Wo) map is neither: each of its O rows is contiguous, but the rows are Ho*Wo apart. BLAS calls
that gap the *leading dimension*, so calling cuBLAS directly reads and writes such bands in place, with
no copy per band.

BLAS is column-major: a matrix M with leading dimension ld has M(i, j) at ``ptr[i + j*ld]``. A row-major
(R, S) block whose rows are ``ld`` apart is therefore the column-major (S, R) matrix with that ld -- its
transpose -- and ``C = A @ B`` in row-major terms is ``C^T = B^T @ A^T`` in column-major terms. The
callers in ``conv.py`` spell out each product in these terms.

With NumPy arrays the same call is carried out by ``_emulate_gemm``, which follows the BLAS definition
and checks that every address the call would touch lies inside the arrays given -- so the CPU tests
check the leading dimensions and offsets.
"""
import numpy as np

from .. import backend

OP_N, OP_T = "N", "T"

# How CuPy arrays are multiplied: "cublas" (cublasGemmEx on the sub-matrices in place) or "matmul" (the
# same product through strided views and cupy.matmul, which copies the operands it cannot hand to cuBLAS
# directly: slower, but it relies only on CuPy's public API). bench/gpu_check.py falls back to "matmul"
# if its smoke test finds the direct call failing on the device.
MODE = "cublas"
MODES = ("cublas", "matmul")


def set_mode(mode):
    """Choose how CuPy GEMMs run (see MODE); returns the previous mode."""
    global MODE
    if mode not in MODES:
        raise ValueError(f"unknown gemm mode {mode!r}; choose one of {MODES}")
    before, MODE = MODE, mode
    return before


def gemm(transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta=0.0):
    """C(m x n) = op(A)(m x k) @ op(B)(k x n) + beta * C, column-major with leading dimensions.

    a, b, c: contiguous 1-D views whose first element is the matrix's first element (views into bigger
    arrays are fine: the call reaches past the view's start by the leading dimensions only, and the
    view must cover every element it reaches). op(X) is X for "N" and X^T for "T"; stored shapes are
    (m x k) or (k x m) for A, (k x n) or (n x k) for B. All three arrays share one float dtype.
    """
    if not (a.dtype == b.dtype == c.dtype) or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"gemm: operands must share float32 or float64 (got {a.dtype}, {b.dtype}, {c.dtype})")
    if min(m, n, k) <= 0:
        raise ValueError(f"gemm: empty product m={m} n={n} k={k}")
    _check_ld("A", transa, m, k, lda)
    _check_ld("B", transb, k, n, ldb)
    if ldc < m:
        raise ValueError(f"gemm: ldc={ldc} < m={m}")
    if not backend.is_gpu_array(c):
        _emulate_gemm(transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta)
    elif MODE == "cublas":
        _cublas_gemm(transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta)
    else:
        strided_gemm(backend.cupy_module(), transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta)


def strided_gemm(xp, transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta):
    """The same product through strided views and ``xp.matmul`` (NumPy or CuPy): the "matmul" mode.

    A column-major (rows x cols) matrix with leading dimension ld is the view with strides
    (itemsize, ld*itemsize). No bounds checks here: the emulation's tests cover the same arguments.
    """
    def stored(flat, rows, cols, ld):
        return xp.lib.stride_tricks.as_strided(flat, shape=(rows, cols),
                                               strides=(flat.itemsize, ld * flat.itemsize))

    op_a = stored(a, m, k, lda) if transa == OP_N else stored(a, k, m, lda).T
    op_b = stored(b, k, n, ldb) if transb == OP_N else stored(b, n, k, ldb).T
    c_view = stored(c, m, n, ldc)
    result = xp.matmul(op_a, op_b)
    if beta != 0:
        result += c_view * c.dtype.type(beta)
    c_view[...] = result


def _check_ld(name, trans, rows, cols, ld):
    stored_rows = rows if trans == OP_N else cols
    if trans not in (OP_N, OP_T) or ld < max(1, stored_rows):
        raise ValueError(f"gemm: {name} with op {trans!r} stores {stored_rows} rows but ld={ld}")


def _cublas_gemm(transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta):
    cupy = backend.cupy_module()
    cublas = backend.cublas_module()

    for name, arr in (("A", a), ("B", b), ("C", c)):
        if not isinstance(arr, cupy.ndarray) or not arr.flags.c_contiguous:
            raise TypeError(f"gemm: {name} must be a contiguous CuPy array")
    if a.dtype == np.float64:
        data_type, compute = cupy.cuda.runtime.CUDA_R_64F, cublas.CUBLAS_COMPUTE_64F
    else:
        data_type = cupy.cuda.runtime.CUDA_R_32F
        compute = cublas.CUBLAS_COMPUTE_32F_FAST_TF32 if backend.tf32_enabled() else cublas.CUBLAS_COMPUTE_32F
    # alpha and beta are host scalars of the compute type (float for the 32F types, double for 64F);
    # cuBLAS reads them during the call (host pointer mode), so these arrays only need to outlive it.
    alpha_h = np.array(1.0, dtype=a.dtype)
    beta_h = np.array(beta, dtype=a.dtype)
    handle = cupy.cuda.device.get_cublas_handle()
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    op = {OP_N: cublas.CUBLAS_OP_N, OP_T: cublas.CUBLAS_OP_T}
    cublas.gemmEx(handle, op[transa], op[transb], m, n, k,
                  alpha_h.ctypes.data, a.data.ptr, data_type, lda,
                  b.data.ptr, data_type, ldb,
                  beta_h.ctypes.data, c.data.ptr, data_type, ldc,
                  compute, cublas.CUBLAS_GEMM_DEFAULT)


def _matrix(flat, trans, rows, cols, ld, name):
    """The (rows x cols) matrix op(X) read from a column-major buffer, as a NumPy array (bounds-checked)."""
    stored_rows, stored_cols = (rows, cols) if trans == OP_N else (cols, rows)
    idx = np.arange(stored_rows)[:, None] + np.arange(stored_cols)[None, :] * ld
    if idx.max() >= flat.size:
        raise AssertionError(f"emulated gemm: {name} reaches element {int(idx.max())} of a {flat.size}-element view")
    stored = flat[idx]
    return stored if trans == OP_N else stored.T


def _emulate_gemm(transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta):
    for name, arr in (("A", a), ("B", b), ("C", c)):
        if arr.ndim != 1 or not arr.flags.c_contiguous:
            raise AssertionError(f"emulated gemm: {name} must be a contiguous 1-D view")
    op_a = _matrix(a, transa, m, k, lda, "A")
    op_b = _matrix(b, transb, k, n, ldb, "B")
    idx = np.arange(m)[:, None] + np.arange(n)[None, :] * ldc
    if idx.max() >= c.size:
        raise AssertionError(f"emulated gemm: C reaches element {int(idx.max())} of a {c.size}-element view")
    result = op_a @ op_b
    if beta != 0:  # BLAS: with beta == 0, C is not read (it may hold garbage or NaN)
        result = result + beta * c[idx]
    c[idx] = result
