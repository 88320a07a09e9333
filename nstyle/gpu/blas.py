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

:func:`gemm_batched` is the strided-batched form (one call for Winograd's 16 products). With TF32 allowed
(``backend.set_tf32``) both ask cuBLAS for CUBLAS_COMPUTE_32F_FAST_TF32 on float32 operands: the tensor
cores read each input rounded to TF32 (10 mantissa bits) and accumulate in float32. The emulation does
the same rounding (:func:`round_to_tf32`), so the CPU sees the precision TF32 costs.
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


def gemm_batched(transa, transb, m, n, k, a, lda, stride_a, b, ldb, stride_b, c, ldc, stride_c, batch, beta=0.0):
    """C_i = op(A_i) @ op(B_i) + beta * C_i for i < batch: :func:`gemm` on ``batch`` triples whose i-th
    matrices start ``i * stride_*`` elements after the first (cublasGemmStridedBatchedEx).

    a, b, c: contiguous 1-D arrays holding every matrix of the batch (the emulation checks that each
    product stays inside them). Same operand rules and TF32 behaviour as :func:`gemm`.
    """
    if not (a.dtype == b.dtype == c.dtype) or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"gemm_batched: operands must share float32 or float64 (got {a.dtype}, {b.dtype}, {c.dtype})")
    if min(m, n, k, batch) <= 0:
        raise ValueError(f"gemm_batched: empty product m={m} n={n} k={k} batch={batch}")
    _check_ld("A", transa, m, k, lda)
    _check_ld("B", transb, k, n, ldb)
    if ldc < m or stride_c < ldc * (n - 1) + m:
        raise ValueError(f"gemm_batched: ldc={ldc} / stride_c={stride_c} overlap the {m}x{n} results")
    if not backend.is_gpu_array(c):
        for i in range(batch):  # the emulation of each product checks its own addresses
            _emulate_gemm(transa, transb, m, n, k, a[i * stride_a:], lda, b[i * stride_b:], ldb,
                          c[i * stride_c:], ldc, beta)
    elif MODE == "cublas":
        _cublas_gemm(transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta, batch=(stride_a, stride_b, stride_c, batch))
    else:
        strided_gemm(backend.cupy_module(), transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta,
                     batch=(stride_a, stride_b, stride_c, batch))


def round_to_tf32(x):
    """float32 values rounded to TF32 (float32's 8 exponent bits, 10 of its 23 mantissa bits; to nearest,
    ties away from zero, as ``cvt.rna.tf32.f32``): what tensor cores read under FAST_TF32. NaN and
    infinity pass unchanged. NumPy only (the emulation's)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).view(np.float32)
    return np.where(np.isfinite(x), rounded, x).astype(np.float32)


def _tf32_applies(dtype):
    return dtype == np.float32 and backend.tf32_enabled()


def strided_gemm(xp, transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta, batch=None):
    """The same product through strided views and ``xp.matmul`` (NumPy or CuPy): the "matmul" mode.

    A column-major (rows x cols) matrix with leading dimension ld is the view with strides
    (itemsize, ld*itemsize); batch=(stride_a, stride_b, stride_c, count) adds a leading batch axis. No
    bounds checks here: the emulation's tests cover the same arguments.
    """
    strides = (None,) * 3 if batch is None else batch

    def stored(flat, rows, cols, ld, stride):
        size = flat.itemsize
        shape, steps = ((rows, cols), (size, ld * size)) if batch is None else \
            ((batch[3], rows, cols), (stride * size, size, ld * size))
        return xp.lib.stride_tricks.as_strided(flat, shape=shape, strides=steps)

    def op(flat, trans, rows, cols, ld, stride):
        return stored(flat, rows, cols, ld, stride) if trans == OP_N else \
            xp.swapaxes(stored(flat, cols, rows, ld, stride), -1, -2)

    op_a = op(a, transa, m, k, lda, strides[0])
    op_b = op(b, transb, k, n, ldb, strides[1])
    c_view = stored(c, m, n, ldc, strides[2])
    result = xp.matmul(op_a, op_b)
    if beta != 0:
        result += c_view * c.dtype.type(beta)
    c_view[...] = result


def _check_ld(name, trans, rows, cols, ld):
    stored_rows = rows if trans == OP_N else cols
    if trans not in (OP_N, OP_T) or ld < max(1, stored_rows):
        raise ValueError(f"gemm: {name} with op {trans!r} stores {stored_rows} rows but ld={ld}")


def _cublas_gemm(transa, transb, m, n, k, a, lda, b, ldb, c, ldc, beta, batch=None):
    """cublasGemmEx, or with batch=(stride_a, stride_b, stride_c, count) cublasGemmStridedBatchedEx."""
    cupy = backend.cupy_module()
    cublas = backend.cublas_module()

    for name, arr in (("A", a), ("B", b), ("C", c)):
        if not isinstance(arr, cupy.ndarray) or not arr.flags.c_contiguous:
            raise TypeError(f"gemm: {name} must be a contiguous CuPy array")
    if a.dtype == np.float64:
        data_type, compute = cupy.cuda.runtime.CUDA_R_64F, cublas.CUBLAS_COMPUTE_64F
    else:
        data_type = cupy.cuda.runtime.CUDA_R_32F
        compute = (getattr(cublas, "CUBLAS_COMPUTE_32F_FAST_TF32", 77) if backend.tf32_enabled()  # cublas_api.h
                   else cublas.CUBLAS_COMPUTE_32F)
    # alpha and beta are host scalars of the compute type (float for the 32F types, double for 64F);
    # cuBLAS reads them during the call (host pointer mode), so these arrays only need to outlive it.
    alpha_h = np.array(1.0, dtype=a.dtype)
    beta_h = np.array(beta, dtype=a.dtype)
    handle = cupy.cuda.device.get_cublas_handle()
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    op = {OP_N: cublas.CUBLAS_OP_N, OP_T: cublas.CUBLAS_OP_T}
    if batch is None:
        cublas.gemmEx(handle, op[transa], op[transb], m, n, k,
                      alpha_h.ctypes.data, a.data.ptr, data_type, lda,
                      b.data.ptr, data_type, ldb,
                      beta_h.ctypes.data, c.data.ptr, data_type, ldc,
                      compute, cublas.CUBLAS_GEMM_DEFAULT)
        return
    stride_a, stride_b, stride_c, count = batch
    cublas.gemmStridedBatchedEx(handle, op[transa], op[transb], m, n, k,
                                alpha_h.ctypes.data, a.data.ptr, data_type, lda, stride_a,
                                b.data.ptr, data_type, ldb, stride_b,
                                beta_h.ctypes.data, c.data.ptr, data_type, ldc, stride_c,
                                count, compute, cublas.CUBLAS_GEMM_DEFAULT)


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
    if _tf32_applies(c.dtype):  # FAST_TF32: inputs rounded to TF32, products accumulated in float32
        op_a, op_b = round_to_tf32(op_a), round_to_tf32(op_b)
    result = op_a @ op_b
    if beta != 0:  # BLAS: with beta == 0, C is not read (it may hold garbage or NaN)
        result = result + beta * c[idx]
    c[idx] = result
