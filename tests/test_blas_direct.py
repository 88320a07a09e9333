"""The CPU engine's direct BLAS calls (``cpu/blas.py``), the thread-split Gram product and the
epilogues that run on a channel range: each against plain NumPy, with and without the BLAS binding."""
import numpy as np
import pytest

from nstyle.cpu import blas, padded, threads
from nstyle.cpu.conv3x3 import flip_transpose
from nstyle.cpu.losses import GramGradient, bordered_style_loss, gram
from nstyle.cpu.steps import grad_mask_epilogue, mask_shape, relu_epilogue
from nstyle.cpu.winograd import band_plan, conv3x3_winograd, winograd_form
from nstyle.model.gradcheck import rel_error
from nstyle.reference import conv2d_forward_naive
from nstyle.reference.losses import style_layer_loss


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_binding_is_found_for_numpys_openblas(dtype):
    # NumPy's wheels ship OpenBLAS; where another BLAS is in use the fallback is tested below.
    if not blas.openblas_paths():
        pytest.skip("this NumPy does not use OpenBLAS")
    assert blas.available(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("direct", [True, False], ids=["blas", "numpy"])
def test_accumulate_adds_into_windows(rng, dtype, direct, monkeypatch):
    if not direct:
        monkeypatch.setattr(blas, "_gemms", {np.dtype(dtype): None})
    big = rng.standard_normal((9, 40)).astype(dtype)
    a = rng.standard_normal((6, 13)).astype(dtype)[:, 2:10]   # a row pitch wider than its width
    b = rng.standard_normal((30, 8)).astype(dtype).T[:, 3:25]  # transposed, (8, 22)
    c = big[2:8, 5:27]                                         # a window of a larger array
    want = big.copy()
    want[2:8, 5:27] += np.asarray(a, np.float64) @ np.asarray(b, np.float64)
    out = blas.accumulate(a, b, c)
    assert out is c
    assert rel_error(big, want) < (1e-6 if dtype == np.float32 else 1e-14)
    # nothing outside the window was touched
    untouched = np.ones(big.shape, bool)
    untouched[2:8, 5:27] = False
    assert np.array_equal(big[untouched], want[untouched])


def test_accumulate_takes_operands_blas_cannot_read(rng):
    """Column-strided or reversed operands, mixed dtypes, empty products: NumPy's way, same sums."""
    a = rng.standard_normal((4, 10))[:, ::2]        # no unit stride
    b = rng.standard_normal((5, 3))[::-1]           # negative stride
    c = np.ones((4, 3))
    blas.accumulate(a, b, c)
    assert np.allclose(c, 1 + a @ b)
    c32 = np.ones((4, 3), np.float32)
    blas.accumulate(a, b, c32)                      # float64 operands into float32
    assert np.allclose(c32, 1 + a @ b, rtol=1e-6)
    empty = np.ones((4, 3))
    blas.accumulate(np.zeros((4, 0)), np.zeros((0, 3)), empty)
    assert np.array_equal(empty, np.ones((4, 3)))


@pytest.mark.parametrize("n, m", [(8, 500), (64, 40), (16, 3)])  # split, not split (thin), tiny
def test_gram_split_is_f_ft_and_the_same_on_any_thread_count(rng, n, m):
    F = rng.standard_normal((n, m)).astype(np.float32)
    results = []
    for n_threads in (1, 2, 3):
        threads.set_num_threads(n_threads)
        try:
            results.append(gram(F))
        finally:
            threads.set_num_threads(None)
    assert rel_error(results[0].astype(np.float64), F.astype(np.float64) @ F.T.astype(np.float64)) < 1e-6
    assert all(np.array_equal(r, results[0]) for r in results), "the bytes must not depend on the threads"
    assert np.array_equal(results[0], results[0].T)


@pytest.mark.parametrize("with_blas", [True, False])
def test_bordered_style_loss_and_factored_rows(rng, with_blas, monkeypatch):
    if not with_blas:
        monkeypatch.setattr(blas, "_gemms", {np.dtype(np.float64): None})
    n, h, w = 6, 7, 5
    F = np.zeros((1, n, h + 3, w + 2))
    F[0, :, 1:h + 1, 1:w + 1] = rng.standard_normal((n, h, w))
    A = rng.standard_normal((n, n))
    A = A @ A.T
    value, grad = bordered_style_loss(F, A, h * w)
    want_value, want_grad = style_layer_loss(F[:, :, 1:h + 1, 1:w + 1].copy(), A)
    assert abs(value - want_value) <= 1e-12 * abs(want_value)
    target = rng.standard_normal((n + 2, h + 3, w + 2))   # rows of a larger padded buffer
    before = target.copy()
    grad.add_rows(target[1:5, 2:6], 1, 5, 2, 6)
    expected = before.copy()
    expected[1:5, 2:6] += np.asarray(grad)[0, 1:5, 2:6]
    assert rel_error(target, expected) < 1e-13
    assert rel_error(np.asarray(grad)[0, :, 1:h + 1, 1:w + 1], want_grad[0]) < 1e-12


def test_add_rows_into_a_strided_target(rng):
    """A target whose rows are not contiguous per channel takes NumPy's way (no in-place view)."""
    n = 4
    F = rng.standard_normal((1, n, 6, 5))
    grad = GramGradient(rng.standard_normal((n, n)), F)
    target = rng.standard_normal((n, 3, 10))[:, :, ::2]  # (n, 3, 5), every other column
    before = target.copy()
    grad.add_rows(target, 0, n, 1, 4)
    assert rel_error(target, before + np.asarray(grad)[0, :, 1:4]) < 1e-13


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("kind", ["relu", "grad"])
def test_small_map_winograd_runs_channel_epilogues_in_its_tasks(rng, m, transposed, kind):
    """On a small map each thread finishes its own output channels, epilogue included: the result
    equals the kernel without an epilogue followed by the epilogue over the whole map."""
    c, o, h, w = 5, 6, 9, 7
    wt = rng.standard_normal((o, c, 3, 3))
    c_in, c_out = (o, c) if transposed else (c, o)
    x = padded.to_padded(rng.standard_normal((c_in, h, w)))
    u = winograd_form(wt, m)
    bits = np.packbits(rng.random(padded.padded_shape(c_out, h, w)) > 0.5, axis=-1)
    tap = rng.standard_normal((c_out, h, w))

    def run(with_epilogue):
        out = np.full(padded.padded_shape(c_out, h, w), np.nan)
        mask = np.zeros(mask_shape(c_out, h, w), np.uint8) if kind == "relu" else bits.copy()
        epilogue = relu_epilogue(out, mask, w) if kind == "relu" else grad_mask_epilogue(out, tap, mask, w)
        assert hasattr(epilogue, "channels")
        conv3x3_winograd(x, u, out, h, w, epilogue=epilogue if with_epilogue else None, transposed=transposed)
        if not with_epilogue:
            epilogue(1, 1 + h)
        return out, mask

    threads.set_num_threads(2)
    try:
        assert band_plan(c_in, c_out, h, w, m)[0] == "small"
        fused, fused_mask = run(True)
        after, after_mask = run(False)
    finally:
        threads.set_num_threads(None)
    assert not np.isnan(fused).any()
    assert rel_error(fused, after) < 1e-13
    assert np.array_equal(fused_mask, after_mask)
    want = conv2d_forward_naive(padded.interior(x, h, w)[None], flip_transpose(wt) if transposed else wt,
                                None, 1, 1)[0][0]
    if kind == "relu":
        assert rel_error(padded.interior(fused, h, w), np.maximum(want, 0)) < 1e-12

