"""Each layer: the fast version agrees with its naive twin, and every backward matches central differences."""
import numpy as np
import pytest

from nstyle.model.gradcheck import numerical_vjp, rel_error
from nstyle.reference import (
    avg_pool2d_backward,
    avg_pool2d_backward_naive,
    avg_pool2d_forward,
    avg_pool2d_forward_naive,
    conv2d_backward,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_forward_naive,
    max_pool2d_backward,
    max_pool2d_backward_naive,
    max_pool2d_forward,
    max_pool2d_forward_naive,
    relu_backward,
    relu_backward_naive,
    relu_forward,
    relu_forward_naive,
)

from .conftest import BACKENDS, host, on

# (N, C, H, W, O, K, stride, padding): odd and non-square sizes, 1 and 3 channels, stride 1 and 2, padding 0/1/2
CONV_CASES = [
    (1, 3, 7, 9, 4, 3, 1, 1),
    (2, 1, 8, 5, 3, 3, 2, 0),
    (1, 3, 6, 6, 2, 3, 2, 2),
    (2, 3, 5, 11, 5, 1, 1, 0),
    (1, 1, 9, 7, 3, 5, 1, 2),
    (1, 2, 10, 9, 3, 4, 2, 1),
]


def check_conv_matches_naive(backend, rng, case):
    n, c, h, w, o, k, s, p = case
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, k, k)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    ref, ref_cache = conv2d_forward_naive(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), s, p)
    out, cache = conv2d_forward(on(backend, x), on(backend, wt), on(backend, b), s, p)
    assert out.shape == ref.shape, f"case {case}"
    assert rel_error(host(out), ref) < 1e-5, f"forward, case {case}"
    dout = rng.standard_normal(ref.shape)
    dx_ref, dw_ref, db_ref = conv2d_backward_naive(dout, ref_cache)
    dx, dw, db = conv2d_backward(on(backend, dout.astype(np.float32)), cache, weight_grads=True)
    for name, got, want in [("dx", dx, dx_ref), ("dw", dw, dw_ref), ("db", db, db_ref)]:
        assert got.shape == want.shape, f"{name} shape, case {case}"
        assert rel_error(host(got), want) < 1e-5, f"{name}, case {case}"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_fast_matches_naive(backend, rng, case):
    check_conv_matches_naive(backend, rng, case)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_gradients_numerically(rng, case):
    n, c, h, w, o, k, s, p = case
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, k, k))
    b = rng.standard_normal(o)
    out, cache = conv2d_forward(x, wt, b, s, p)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache, weight_grads=True)
    assert rel_error(dx, numerical_vjp(lambda z: conv2d_forward(z, wt, b, s, p)[0], x, dout)) < 1e-7, case
    assert rel_error(dw, numerical_vjp(lambda z: conv2d_forward(x, z, b, s, p)[0], wt, dout)) < 1e-7, case
    assert rel_error(db, numerical_vjp(lambda z: conv2d_forward(x, wt, z, s, p)[0], b, dout)) < 1e-7, case


def test_conv_backward_dx_only_by_default(rng):
    x = rng.standard_normal((1, 2, 5, 5))
    out, cache = conv2d_forward(x, rng.standard_normal((3, 2, 3, 3)), None, 1, 1, keep_input=False)
    dx = conv2d_backward(np.ones_like(out), cache)
    assert dx.shape == x.shape
    with pytest.raises(ValueError, match="keep_input"):
        conv2d_backward(np.ones_like(out), cache, weight_grads=True)


def test_conv_rejects_bad_shapes(rng):
    with pytest.raises(ValueError, match="channels"):
        conv2d_forward(rng.standard_normal((1, 3, 5, 5)), rng.standard_normal((2, 4, 3, 3)))
    with pytest.raises(ValueError, match="too small"):
        conv2d_forward(rng.standard_normal((1, 1, 2, 2)), rng.standard_normal((2, 1, 5, 5)))


def check_relu(backend, rng):
    x = rng.standard_normal((2, 3, 5, 7)).astype(np.float32)
    x[0, 0, 0, :3] = 0.0  # exact zeros: the gradient there is 0 by convention
    out_ref, mask_ref = relu_forward_naive(x)
    out, mask = relu_forward(on(backend, x))
    np.testing.assert_array_equal(host(out), out_ref)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(host(relu_backward(on(backend, dout), mask)), relu_backward_naive(dout, mask_ref))
    assert not host(relu_backward(on(backend, dout), mask))[0, 0, 0, :3].any()
    xin = on(backend, x.copy())
    out_inplace, _ = relu_forward(xin, inplace=True)
    assert out_inplace is xin and host(xin).min() >= 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_relu(backend, rng):
    check_relu(backend, rng)


def test_relu_gradient_numerically(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # a finite difference must not straddle the kink
    out, mask = relu_forward(x)
    dout = rng.standard_normal(out.shape)
    assert rel_error(relu_backward(dout, mask), numerical_vjp(lambda z: relu_forward(z)[0], x, dout)) < 1e-7


POOL_CASES = [(2, 2, (1, 3, 8, 8)), (2, 2, (2, 1, 7, 9)), (3, 2, (1, 2, 9, 8)), (3, 3, (1, 3, 10, 7)),
              (2, 1, (1, 2, 5, 6))]
POOLS = {"avg": (avg_pool2d_forward, avg_pool2d_backward, avg_pool2d_forward_naive, avg_pool2d_backward_naive),
         "max": (max_pool2d_forward, max_pool2d_backward, max_pool2d_forward_naive, max_pool2d_backward_naive)}


def check_pool_matches_naive(backend, rng, kind, case):
    fwd, bwd, fwd_naive, bwd_naive = POOLS[kind]
    k, s, shape = case
    x = rng.standard_normal(shape).astype(np.float32)
    ref, ref_cache = fwd_naive(x, k, s)
    out, cache = fwd(on(backend, x), k, s)
    assert out.shape == ref.shape == (shape[0], shape[1], (shape[2] - k) // s + 1, (shape[3] - k) // s + 1)
    assert rel_error(host(out), ref) < 1e-6, (kind, case)
    dout = rng.standard_normal(ref.shape).astype(np.float32)
    assert rel_error(host(bwd(on(backend, dout), cache)), bwd_naive(dout, ref_cache)) < 1e-6, (kind, case)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_fast_matches_naive(backend, rng, kind, case):
    check_pool_matches_naive(backend, rng, kind, case)


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_pool_gradients_numerically(rng, kind, case):
    fwd, bwd = POOLS[kind][:2]
    k, s, shape = case
    # distinct, well-separated values: a max-pool finite difference must not swap two winners
    x = rng.permutation(int(np.prod(shape))).reshape(shape) * 0.01
    out, cache = fwd(x, k, s)
    dout = rng.standard_normal(out.shape)
    assert rel_error(bwd(dout, cache), numerical_vjp(lambda z: fwd(z, k, s)[0], x, dout)) < 1e-7, (kind, case)


def test_max_pool_tie_goes_to_first_element():
    x = np.zeros((1, 1, 2, 2))
    out, cache = max_pool2d_forward(x, 2, 2)
    dx = max_pool2d_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])


def test_pool_rejects_tiny_maps():
    with pytest.raises(ValueError, match="smaller"):
        avg_pool2d_forward(np.zeros((1, 1, 1, 3)), 2, 2)
