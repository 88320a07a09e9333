"""The losses: values from their definitions, gradients against central differences."""
import numpy as np
import pytest

from nstyle.model.gradcheck import numerical_gradient, rel_error
from nstyle.reference.losses import blended_gram, content_loss, gram_matrix, style_layer_loss, tv_loss

from .conftest import BACKENDS, host, on


def check_losses_match_definitions(backend, rng):
    F = rng.standard_normal((1, 5, 4, 3))
    P = rng.standard_normal(F.shape)
    value, grad = content_loss(on(backend, F), on(backend, P))
    assert value == pytest.approx(0.5 * ((F - P) ** 2).sum(), rel=1e-12)
    np.testing.assert_allclose(host(grad), F - P, rtol=1e-12)

    Fm = F.reshape(5, 12)
    G = host(gram_matrix(on(backend, F)))
    np.testing.assert_allclose(G, [[Fm[i] @ Fm[j] for j in range(5)] for i in range(5)], rtol=1e-12)
    A = gram_matrix(rng.standard_normal((1, 5, 2, 2)))
    value, _ = style_layer_loss(on(backend, F), on(backend, A))
    assert value == pytest.approx(((G - A) ** 2).sum() / (4 * 5 ** 2 * 12 ** 2), rel=1e-12)

    x = rng.standard_normal((1, 3, 4, 5))
    value, _ = tv_loss(on(backend, x))
    want = sum(((x[:, :, i + 1, j] - x[:, :, i, j]) ** 2).sum() for i in range(3) for j in range(5))
    want += sum(((x[:, :, i, j + 1] - x[:, :, i, j]) ** 2).sum() for i in range(4) for j in range(4))
    assert value == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_losses_match_definitions(backend, rng):
    check_losses_match_definitions(backend, rng)


@pytest.mark.parametrize("shape", [(1, 4, 5, 6), (1, 1, 3, 7), (1, 6, 1, 1)])
def test_loss_gradients_numerically(rng, shape):
    F = rng.standard_normal(shape)
    P = rng.standard_normal(shape)
    assert rel_error(content_loss(F, P)[1], numerical_gradient(lambda z: content_loss(z, P)[0], F)) < 1e-7
    A = gram_matrix(rng.standard_normal((1, shape[1], 2, 3)))
    assert rel_error(style_layer_loss(F, A)[1],
                     numerical_gradient(lambda z: style_layer_loss(z, A)[0], F)) < 1e-7, shape


@pytest.mark.parametrize("shape", [(1, 3, 5, 4), (2, 1, 2, 6), (1, 3, 1, 5)])
def test_tv_gradient_numerically(rng, shape):
    x = rng.standard_normal(shape)
    assert rel_error(tv_loss(x)[1], numerical_gradient(lambda z: tv_loss(z)[0], x)) < 1e-7, shape


def test_blended_gram_is_weighted_sum(rng):
    g1, g2 = gram_matrix(rng.standard_normal((1, 3, 4, 4))), gram_matrix(rng.standard_normal((1, 3, 2, 5)))
    np.testing.assert_allclose(blended_gram([g1, g2], [0.25, 0.75]), 0.25 * g1 + 0.75 * g2, rtol=1e-12)
    with pytest.raises(ValueError):
        blended_gram([g1, g2], [1.0])
