"""The CPU fast kernels (padded layout, direct, multiply-then-shift, Winograd) against the references.

Every kernel is compared in float64 with the naive convolution (exact up to rounding), and in float32
with the float64 result (the accuracy the fast path keeps). Bands are forced small so band edges,
odd sizes and the garbage columns of the padded layout are all exercised.
"""
import numpy as np
import pytest

from nstyle.cpu import padded, threads
from nstyle.cpu.conv3x3 import conv3x3_direct, conv3x3_shift, conv3x3_taps, flip_transpose, shift_matrix, tap_matrix
from nstyle.cpu.fastconv import PreparedConv3x3, choose_kernel
from nstyle.cpu.winograd import conv3x3_winograd, winograd_form
from nstyle.model.gradcheck import rel_error
from nstyle.reference import conv2d_backward, conv2d_forward, conv2d_forward_naive

# (C, O, H, W): 1 and 3 channels, odd and even, wide and tall, and more outputs than inputs
SHAPES = [(1, 2, 5, 7), (3, 4, 8, 6), (5, 3, 9, 9), (4, 6, 6, 10), (2, 1, 4, 3)]
# Winograd also on maps that are not multiples of its tile (partial tiles), and smaller than one tile
WINOGRAD_SHAPES = SHAPES + [(7, 5, 12, 2), (3, 3, 1, 1), (2, 3, 3, 5), (4, 2, 13, 11), (3, 2, 8, 12), (2, 3, 16, 4)]
# float32 against float64 on standard-normal data: F(4x4)'s transforms (entries from 1/15 to 8)
# round about ten times more than direct convolution; on the wide layers, where it runs, the bound of
# test_winograd_float32_accuracy_on_wide_layers holds for both Winograd kernels.
FLOAT32_BOUND = {"direct": 2e-6, "taps": 2e-6, "shift": 2e-6, "winograd2": 2e-6, "winograd4": 1e-5}


def reference(x, w):
    """(C, H, W), (O, C, 3, 3) float64 -> (O, H, W) by the naive loops."""
    return conv2d_forward_naive(x[None], w, None, 1, 1)[0][0]


def assert_border_zero(buf, h, w, what):
    inner = np.zeros(buf.shape, dtype=bool)
    inner[:, 1:h + 1, 1:w + 1] = True
    assert not buf[~inner].any(), f"{what}: the padded border must be zero"


def run_kernel(kind, x, w, rows):
    c, h, wd = x.shape
    o = w.shape[0]
    out = np.full(padded.padded_shape(o, h, wd), np.nan, dtype=x.dtype)  # the kernel must clear it
    seen = []
    epilogue = lambda lo, hi: seen.extend(range(lo, hi))  # noqa: E731
    xbuf = padded.to_padded(x)
    if kind == "direct":
        conv3x3_direct(xbuf, tap_matrix(w), out, h, wd, epilogue, rows=rows)
    elif kind == "taps":
        conv3x3_taps(xbuf, tap_matrix(w), out, h, wd, epilogue, rows=rows)
    elif kind == "shift":
        conv3x3_shift(xbuf, shift_matrix(w), out, h, wd, epilogue, rows=rows)
    else:
        conv3x3_winograd(xbuf, winograd_form(w, int(kind[-1])), out, h, wd, epilogue, rows=rows)
    return out, sorted(seen)


def check_kernel(rng, kind, shape, rows):
    c, o, h, w = shape
    x = rng.standard_normal((c, h, w))
    wt = rng.standard_normal((o, c, 3, 3))
    want = reference(x, wt)
    out, seen = run_kernel(kind, x, wt, rows)
    label = f"{kind} {shape} rows={rows}"
    assert rel_error(padded.interior(out, h, w), want) < 1e-12, label
    assert_border_zero(out, h, w, label)
    assert seen == list(range(1, h + 1)), f"{label}: the epilogue must see every row once, in bands"
    out32, _ = run_kernel(kind, x.astype(np.float32), wt.astype(np.float32), rows)
    assert out32.dtype == np.float32
    assert rel_error(padded.interior(out32, h, w), want) < FLOAT32_BOUND[kind], f"{label} float32"


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("rows", [1, 2, None])
@pytest.mark.parametrize("kind", ["direct", "taps", "shift"])
def test_gemm_kernels_match_naive(rng, kind, shape, rows):
    check_kernel(rng, kind, shape, rows)


@pytest.mark.parametrize("shape", WINOGRAD_SHAPES, ids=str)
@pytest.mark.parametrize("rows", [1, 2, None])  # tile rows per band
@pytest.mark.parametrize("kind", ["winograd2", "winograd4"])
def test_winograd_matches_naive(rng, kind, shape, rows):
    check_kernel(rng, kind, shape, rows)


@pytest.mark.parametrize("kind", ["direct", "taps", "winograd2", "winograd4"])
def test_kernels_add_the_bias(rng, kind):
    c, o, h, w = 3, 5, 10, 8
    x = rng.standard_normal((c, h, w))
    wt = rng.standard_normal((o, c, 3, 3))
    b = rng.standard_normal(o)
    want = conv2d_forward_naive(x[None], wt, b, 1, 1)[0][0]
    out = np.full(padded.padded_shape(o, h, w), np.nan)
    if kind in ("direct", "taps"):
        kernel = conv3x3_direct if kind == "direct" else conv3x3_taps
        kernel(padded.to_padded(x), tap_matrix(wt, b), out, h, w, rows=2)
    else:
        conv3x3_winograd(padded.to_padded(x), winograd_form(wt, int(kind[-1])), out, h, w, rows=1, bias=b)
    assert rel_error(padded.interior(out, h, w), want) < 1e-12, kind
    assert_border_zero(out, h, w, f"{kind} with bias")


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("transposed, bias", [(False, False), (False, True), (True, False)])
def test_winograd_small_map_shares_the_products(rng, transposed, bias, m):
    """Small maps run as one band, each step spread over the threads (rows=None, 2 threads)."""
    c, o, h, w = 6, 4, 9, 10
    wt = rng.standard_normal((o, c, 3, 3))
    x = rng.standard_normal((o if transposed else c, h, w))
    b = rng.standard_normal(o) if bias else None
    want = conv2d_forward_naive(x[None], flip_transpose(wt) if transposed else wt, b, 1, 1)[0][0]
    out = np.full(padded.padded_shape(c if transposed else o, h, w), np.nan)
    seen = []
    threads.set_num_threads(2)
    try:
        conv3x3_winograd(padded.to_padded(x), winograd_form(wt, m), out, h, w,
                         lambda lo, hi: seen.extend(range(lo, hi)), transposed=transposed, bias=b)
    finally:
        threads.set_num_threads(None)
    assert rel_error(padded.interior(out, h, w), want) < 1e-12, transposed
    assert_border_zero(out, h, w, "small-map winograd")
    assert seen == list(range(1, h + 1))


def test_winograd_refuses_a_transform_of_no_known_size(rng):
    x = padded.to_padded(rng.standard_normal((2, 5, 6)))
    with pytest.raises(ValueError, match="25 points"):
        conv3x3_winograd(x, np.zeros((25, 3, 2)), np.empty((3, 8, 8)), 5, 6)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape", [(3, 4, 8, 6), (6, 5, 4, 10), (2, 3, 7, 9)], ids=str)
def test_transposed_winograd_is_the_input_gradient(rng, shape, m):
    """transposed=True with the forward's transform gives dx of that convolution (the im2col backward)."""
    c, o, h, w = shape
    x = rng.standard_normal((1, c, h, w))
    wt = rng.standard_normal((o, c, 3, 3))
    out, cache = conv2d_forward(x, wt, None, 1, 1)
    dout = rng.standard_normal(out.shape)
    dx_ref = conv2d_backward(dout, cache)[0]
    dx = np.empty(padded.padded_shape(c, h, w))
    conv3x3_winograd(padded.to_padded(dout[0]), winograd_form(wt, m), dx, h, w, transposed=True, rows=1)
    assert rel_error(padded.interior(dx, h, w), dx_ref) < 1e-12, shape
    assert_border_zero(dx, h, w, f"transposed winograd {shape}")


def test_flip_transpose_gives_the_input_gradient(rng):
    x = rng.standard_normal((1, 3, 7, 6))
    wt = rng.standard_normal((4, 3, 3, 3))
    out, cache = conv2d_forward(x, wt, None, 1, 1)
    dout = rng.standard_normal(out.shape)
    dx_ref = conv2d_backward(dout, cache)
    dx = conv2d_forward_naive(dout, flip_transpose(wt), None, 1, 1)[0]
    assert rel_error(dx, dx_ref) < 1e-12


@pytest.mark.parametrize("kind", ["winograd2", "winograd4"])
def test_winograd_float32_accuracy_on_wide_layers(rng, kind):
    """Deep-layer widths and magnitudes: the float32 Winograd output stays close to float64 (F(4x4)'s
    points are chosen for this, reference/winograd.py)."""
    c, o, h, w = 256, 64, 8, 8
    x = np.abs(rng.standard_normal((c, h, w))) * 50  # post-ReLU activations: non-negative, large
    wt = rng.standard_normal((o, c, 3, 3)) * np.sqrt(2 / (9 * c))
    want = reference(x, wt)
    got, _ = run_kernel(kind, x.astype(np.float32), wt.astype(np.float32), None)
    direct, _ = run_kernel("direct", x.astype(np.float32), wt.astype(np.float32), None)
    err_w = rel_error(padded.interior(got, h, w), want)
    err_d = rel_error(padded.interior(direct, h, w), want)
    assert err_w < 5e-6, f"winograd float32 error {err_w:.1e} (direct: {err_d:.1e})"


def test_choose_kernel():
    assert choose_kernel(64, 3, 32, 32) == "shift"          # conv1_1's input gradient
    assert choose_kernel(3, 64, 32, 32) == "direct"         # conv1_1
    assert choose_kernel(512, 512, 32, 32) == "winograd4"
    assert choose_kernel(512, 512, 31, 30) == "winograd4"  # partial tiles: any map size
    assert choose_kernel(512, 512, 16, 16) == "winograd2"   # 16 tiles of 4x4 only
    assert choose_kernel(512, 512, 7, 9) == "winograd2"
    assert choose_kernel(512, 512, 6, 6) == "winograd2"
    assert choose_kernel(512, 512, 2, 2) == "winograd2"     # one tile still beats 9 weights per filter
    assert choose_kernel(512, 512, 1, 1) == "direct"
    assert choose_kernel(64, 64, 32, 32) == "direct"        # conv1_2: a tie, and direct is more accurate
    assert choose_kernel(64, 128, 32, 32) == "winograd4"
    assert choose_kernel(32, 64, 32, 32) == "direct"
    assert choose_kernel(4, 4, 32, 32, winograd="always") == "winograd4"
    assert choose_kernel(4, 4, 2, 2, winograd="f2") == "winograd2"
    assert choose_kernel(512, 512, 32, 32, winograd="never") == "direct"
    assert choose_kernel(64, 3, 32, 32, winograd="always") == "shift"
    with pytest.raises(ValueError):
        PreparedConv3x3(np.zeros((4, 4, 3, 3)), None, winograd="sometimes")


@pytest.mark.parametrize("winograd", ["always", "f2", "never"])
@pytest.mark.parametrize("transposed", [False, True])
def test_prepared_conv_runs_every_kernel(rng, transposed, winograd):
    """Narrow layers: "always" runs F(4x4) on (5, 6) and (4, 4), "f2" F(2x2), "never" the direct kernel; (6, 2)
    takes multiply-then-shift whichever way (in one direction)."""
    for c, o in [(5, 6), (6, 2), (4, 4)]:
        wt = rng.standard_normal((o, c, 3, 3))
        prep = PreparedConv3x3(wt, None, winograd=winograd)
        cin = o if transposed else c
        x = rng.standard_normal((cin, 6, 8))
        out = np.empty(padded.padded_shape(c if transposed else o, 6, 8))
        prep.run(padded.to_padded(x), out, 6, 8, transposed=transposed)
        want = reference(x, flip_transpose(wt) if transposed else wt)
        assert rel_error(padded.interior(out, 6, 8), want) < 1e-12, (c, o, transposed)


# --- threads -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_for_each_task_runs_every_task_once(n_threads):
    threads.set_num_threads(n_threads)
    try:
        done = []
        threads.for_each_task(done.append, 17)
        assert sorted(done) == list(range(17)), n_threads
        pieces = []
        threads.parallel_ranges(lambda lo, hi: pieces.append((lo, hi)), 10, work=1 << 20)
        assert sorted(i for lo, hi in pieces for i in range(lo, hi)) == list(range(10)), n_threads
    finally:
        threads.set_num_threads(None)


def test_task_errors_reach_the_caller():
    threads.set_num_threads(2)
    try:
        def fail(i):
            if i == 3:
                raise RuntimeError("task 3")
        with pytest.raises(RuntimeError, match="task 3"):
            threads.for_each_task(fail, 8)
    finally:
        threads.set_num_threads(None)


def test_thread_count_follows_the_environment(monkeypatch):
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")
    threads.set_num_threads(None)
    assert threads.num_threads() == 3
    monkeypatch.setenv("NSTYLE_NUM_THREADS", "5")
    threads.set_num_threads(None)
    assert threads.num_threads() == 5
    monkeypatch.delenv("NSTYLE_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    threads.set_num_threads(None)
    assert threads.num_threads() == threads.available_cores()
    with pytest.raises(ValueError):
        threads.set_num_threads(0)
    threads.set_num_threads(None)


@pytest.mark.parametrize("m", [2, 4])
def test_transposed_form_is_the_forward_transform_permuted_and_transposed(rng, m):
    """The backward's stored weights: block k is the forward's block index_t[k], transposed -- and the
    kernel gives the same result with it as when it makes it itself."""
    from nstyle.cpu.winograd import matrices, transposed_form  # noqa: PLC0415
    wt = rng.standard_normal((5, 3, 3, 3))
    u = winograd_form(wt, m)
    ut = transposed_form(u)
    index_t = matrices(m, u.dtype).index_t
    assert ut.shape == (u.shape[0], u.shape[2], u.shape[1]) and ut.flags.c_contiguous
    for k in range(u.shape[0]):
        assert np.array_equal(ut[k], u[index_t[k]].T)
    dy = padded.to_padded(rng.standard_normal((5, 7, 9)))
    made, given = (np.full(padded.padded_shape(3, 7, 9), np.nan) for _ in range(2))
    conv3x3_winograd(dy, u, made, 7, 9, transposed=True)
    conv3x3_winograd(dy, u, given, 7, 9, transposed=True, ut=ut)
    assert np.array_equal(made, given)
    want = conv2d_forward_naive(padded.interior(dy, 7, 9)[None], flip_transpose(wt), None, 1, 1)[0][0]
    assert rel_error(padded.interior(given, 7, 9), want) < 1e-12


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("transposed", [False, True])
def test_separable_transforms_are_the_kronecker_products(rng, m, transposed):
    """The tile transforms run as two passes of the one-dimensional matrix (winograd.separable): the
    same as one product with kron(t, t), on the channel-range blocks the small-map path hands it."""
    from nstyle.cpu.winograd import matrices, separable  # noqa: PLC0415
    mats = matrices(m, np.float64)
    a, c, tiles = m + 2, 7, 5
    src = rng.standard_normal((a * a, c, tiles))
    for t in (mats.input[transposed], mats.output[transposed]):
        rows = t.shape[0]
        want = (np.kron(t, t) @ src.reshape(a * a, -1)).reshape(rows * rows, c, tiles)
        dst = np.full((rows * rows, c, tiles), np.nan)
        separable(t, src[:, 2:5], dst[:, 2:5])  # a block of channels: views with gaps between points
        assert np.allclose(dst[:, 2:5], want[:, 2:5], rtol=1e-13, atol=1e-12)
        assert np.isnan(dst[:, :2]).all() and np.isnan(dst[:, 5:]).all()  # nothing outside the block


def test_products_in_blocks_match_and_keep_their_bits_on_any_channel_range(rng, monkeypatch):
    """The Winograd products cut into row blocks (for OpenBLAS's in-place kernels): the product
    np.matmul makes, and -- where the core has those kernels -- the same bits whichever range of output
    channels a thread takes. (Elsewhere the core is only pretended to have them, and the packed kernels
    may round a block otherwise than the whole.)"""
    from nstyle.cpu import blas  # noqa: PLC0415
    from nstyle.cpu.winograd import products  # noqa: PLC0415
    real = blas.corename() in blas.SMALL_PRODUCT_CORES
    u = rng.standard_normal((4, 96, 512)).astype(np.float32)
    v = rng.standard_normal((4, 512, 40)).astype(np.float32)
    monkeypatch.setattr(blas, "_corename", "skylakex")
    rows = blas.small_product_rows(512, 40, np.float32)
    assert rows == blas.SMALL_PRODUCT_MULADDS // (512 * 40) and rows < 96  # so the product is cut
    whole = products(u, v, np.empty((4, 96, 40), np.float32))
    assert np.allclose(whole, np.matmul(u, v), rtol=1e-5, atol=1e-4)
    for lo, hi in ((0, 48), (48, 96), (0, 31), (31, 96)):
        part = products(u[:, lo:hi], v, np.empty((4, hi - lo, 40), np.float32))
        assert np.array_equal(part, whole[:, lo:hi]) if real else np.allclose(part, whole[:, lo:hi], rtol=1e-5, atol=1e-4)
    assert blas.small_product_rows(512, 40, np.float64) is None      # float32 only
    assert blas.small_product_rows(512, 4096, np.float32) is None    # blocks would be too thin
    monkeypatch.setattr(blas, "_corename", "haswell")
    assert blas.small_product_rows(512, 40, np.float32) is None      # a core without those kernels
