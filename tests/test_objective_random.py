"""The gradient is the derivative of the reported loss in every configuration: random layer sets (a layer
may be both a content and a style tap), weights, several styles of other sizes with blends, pooling,
TV, on each engine -- float64, directional derivatives of the very value ``value_and_grad`` reports."""
import numpy as np
import pytest

from nstyle.model.arch import LAYER_NAMES
from nstyle.model.gradcheck import directional_check, random_image, random_vgg_params
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19

TAPS = [n for n in LAYER_NAMES[:LAYER_NAMES.index("relu4_1") + 1] if not n.startswith("pool")] + ["pool1", "pool2"]


def random_configuration(rng):
    content_layers = tuple(rng.choice(TAPS, size=rng.integers(1, 3), replace=False))
    style_layers = tuple(rng.choice(TAPS, size=rng.integers(1, 4), replace=False))
    if rng.random() < 0.5:  # share a layer between the content and the style terms
        style_layers = tuple(dict.fromkeys(style_layers + content_layers[:1]))
    n_styles = int(rng.integers(1, 3))
    return {
        "content_layers": content_layers, "style_layers": style_layers,
        "content_weight": float(10 ** rng.uniform(-1, 1)), "style_weight": float(10 ** rng.uniform(0, 3)),
        "tv_weight": float(rng.choice([0.0, 10 ** rng.uniform(-3, 0)])),
        "style_layer_weights": [float(w) for w in rng.uniform(0.1, 1, len(style_layers))],
        "style_blend": [float(b) for b in rng.uniform(0.2, 1, n_styles)] if n_styles > 1 else None,
        "pooling": str(rng.choice(["avg", "max"])), "n_styles": n_styles,
    }


@pytest.mark.parametrize("engine", ["reference", "cpu"])
@pytest.mark.parametrize("seed", range(8))
def test_gradient_is_the_derivative_of_the_reported_loss(engine, seed):
    rng = np.random.default_rng(1000 + seed)
    config = random_configuration(rng)
    vgg = VGG19(random_vgg_params(rng), pooling=config.pop("pooling"), dtype=np.float64, engine=engine)
    h, w = 24, 32
    content = random_image(rng, h, w)
    styles = [random_image(rng, int(rng.integers(16, 40)), int(rng.integers(16, 40)))
              for _ in range(config.pop("n_styles"))]
    obj = StyleObjective(vgg, content=content, styles=styles, **config)
    x = random_image(rng, h, w)
    f, g = obj.value_and_grad(x)
    terms = obj.last_breakdown
    assert f == pytest.approx(terms["content"] + terms["style"] + terms["tv"], rel=1e-12)
    err = directional_check(lambda z: obj.value_and_grad(z)[0], g, x, rng, directions=3)
    assert err < 1e-6, f"{engine} {config}: directional error {err:.2e}"
