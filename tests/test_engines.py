"""Every engine this machine has, held to the reference engine: taps, gradients, whole objectives.

The reference engine (the readable layer loop over ``nstyle.reference``) is itself held to float64
numerical gradients (test_objective.py, test_layers.py) and to PyTorch (test_torch_oracle.py). Here each
faster engine must give the same features and the same gradient: to 1e-12 in float64, and within float32
rounding of the float64 reference in float32. Engines are chosen through ``VGG19(engine=...)`` -- no
test reaches a code path by patching a module.
"""
import numpy as np
import pytest

from nstyle.cpu.engine import CpuEngine
from nstyle.model.arch import LAYER_NAMES
from nstyle.model.gradcheck import random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19

from .conftest import host, on
from .gpu_paths import GPU_PATHS, gpu_path

TAPS = ("conv1_1", "relu1_1", "relu1_2", "pool1", "relu2_1", "conv3_1", "relu3_1", "pool3", "relu4_1",
        "relu4_2", "relu5_1")


def cpu_winograd_always(params, pooling):
    """The CPU engine with Winograd on every layer it can run on (test networks are too narrow for the
    thresholds that pick it in real runs)."""
    return CpuEngine(params, pooling, winograd="always")


def cpu_winograd_never(params, pooling):
    return CpuEngine(params, pooling, winograd="never")


# (id, engine for VGG19, device of the arrays, context the GPU engine's kernels run in)
ENGINES = [pytest.param("cpu", "cpu", None, id="cpu"),
           pytest.param(cpu_winograd_always, "cpu", None, id="cpu-winograd"),
           pytest.param(cpu_winograd_never, "cpu", None, id="cpu-direct")]
ENGINES += [pytest.param("gpu", "gpu" if p.values[0] == "gpu" else "cpu", p.values[0], marks=p.marks,
                         id=f"gpu-{p.values[0]}") for p in GPU_PATHS]


def run_engine(engine, device, path, params, pooling, dtype, x, taps, grads):
    """Features (copied to the host) and dL/dx from one forward and one backward on ``engine``."""
    backend = "gpu" if device == "gpu" else "cpu"
    with gpu_path(path) if path else _nothing():
        vgg = VGG19(params, pooling=pooling, device=device, dtype=dtype, engine=engine)
        feats, trace = vgg.forward(on(backend, x.astype(dtype)), taps)
        feats = {k: host(v).copy() for k, v in feats.items()}
        dx = vgg.backward(trace, {k: on(backend, g.astype(dtype)) for k, g in grads.items()})
    return feats, host(dx)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("engine,device,path", ENGINES)
@pytest.mark.parametrize("pooling", ["avg", "max"])
@pytest.mark.parametrize("size", [(32, 40), (29, 35)], ids=str)
def test_engine_matches_reference_float64(rng, engine, device, path, pooling, size):
    params = random_vgg_params(rng)
    x = random_image(rng, *size)
    ref = VGG19(params, pooling=pooling, dtype=np.float64, engine="reference")
    feats_ref, trace = ref.forward(x, TAPS)
    grads = {t: rng.standard_normal(feats_ref[t].shape) for t in TAPS}
    feats_ref = {k: v.copy() for k, v in feats_ref.items()}
    dx_ref = ref.backward(trace, {k: g.copy() for k, g in grads.items()})
    feats, dx = run_engine(engine, device, path, params, pooling, np.float64, x, TAPS, grads)
    for t in TAPS:
        assert feats[t].shape == feats_ref[t].shape, (t, pooling, size)
        assert rel_error(feats[t], feats_ref[t]) < 1e-12, f"{t} ({pooling}, {size}): {rel_error(feats[t], feats_ref[t]):.1e}"
    assert dx.shape == x.shape
    assert rel_error(dx, dx_ref) < 1e-12, f"dx ({pooling}, {size}): {rel_error(dx, dx_ref):.1e}"


@pytest.mark.parametrize("engine,device,path", ENGINES)
def test_engine_gradient_at_a_shallow_tap_only(rng, engine, device, path):
    """A gradient at relu1_1 only, with relu3_1 run too: the deeper layers pass nothing back."""
    params = random_vgg_params(rng)
    x = random_image(rng, 16, 16)
    ref = VGG19(params, dtype=np.float64, engine="reference")
    feats, trace = ref.forward(x, ["relu1_1", "relu3_1"])
    grads = {"relu1_1": rng.standard_normal(feats["relu1_1"].shape)}
    dx_ref = ref.backward(trace, {k: g.copy() for k, g in grads.items()})
    _, dx = run_engine(engine, device, path, params, "avg", np.float64, x, ["relu1_1", "relu3_1"], grads)
    assert rel_error(dx, dx_ref) < 1e-12


def mask_flips(vgg32, vgg64, x):
    """ReLU units whose float32 and float64 pre-activations have different signs."""
    convs = [n for n in LAYER_NAMES[:LAYER_NAMES.index("relu5_1")] if n.startswith("conv")]
    f32, _ = vgg32.forward(x.astype(np.float32), convs)
    f64, _ = vgg64.forward(x, convs)
    return sum(int(((host(f32[n]) > 0) != (f64[n] > 0)).sum()) for n in convs)


@pytest.mark.parametrize("engine,device,path", ENGINES + [pytest.param("reference", "cpu", None, id="reference")])
@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_float32_objective_within_1e4_of_float64_reference(rng, engine, device, path, pooling):
    """The whole float32 objective (loss and gradient) on each engine against the float64 reference.

    Float rounding moves a pre-activation that sits within ~1e-7 of zero to the other side of the ReLU
    now and then; the gradient there then legitimately differs by a whole term (any float32 code,
    PyTorch's included, does this). The test asserts no unit flipped, so what it measures is the
    arithmetic error of the engine.
    """
    params = random_vgg_params(rng, widths=(16, 16, 24, 24, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32, 32))
    content, style, x = (random_image(rng, 48, 64) for _ in range(3))
    vgg64 = VGG19(params, pooling=pooling, dtype=np.float64, engine="reference")
    kwargs = dict(content_weight=1.0, style_weight=1e3, tv_weight=1e-3)
    f64, g64 = StyleObjective(vgg64, content=content, styles=[style], **kwargs).value_and_grad(x)
    backend = "gpu" if device == "gpu" else "cpu"
    with gpu_path(path) if path else _nothing():
        vgg32 = VGG19(params, pooling=pooling, device=device, dtype=np.float32, engine=engine)
        assert mask_flips(vgg32, vgg64, on(backend, x)) == 0, "choose another seed: a ReLU flipped"
        obj32 = StyleObjective(vgg32, content=content.astype(np.float32), styles=[style.astype(np.float32)],
                               **kwargs)
        f32, g32 = obj32.value_and_grad(on(backend, x.astype(np.float32)))
    g32 = host(g32)
    assert g32.dtype == np.float32
    assert abs(f32 - f64) / abs(f64) < 1e-5, (pooling, f32, f64)
    err = rel_error(g32, g64)
    assert err < 1e-4, f"{pooling}: float32 gradient relative error {err:.1e}"


@pytest.mark.parametrize("engine,device,path", ENGINES)
def test_objective_with_a_layer_both_content_and_style(rng, engine, device, path):
    """relu2_1 as content and style tap at once: each engine sums both gradients there (the CPU engine
    mixes an interior-shaped content gradient with its factored, bordered style gradient)."""
    params = random_vgg_params(rng)
    content, style, x = (random_image(rng, 24, 32) for _ in range(3))
    kwargs = dict(content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), style_weight=1e2)
    ref = StyleObjective(VGG19(params, dtype=np.float64, engine="reference"), content, [style], **kwargs)
    f_ref, g_ref = ref.value_and_grad(x)
    backend = "gpu" if device == "gpu" else "cpu"
    with gpu_path(path) if path else _nothing():
        obj = StyleObjective(VGG19(params, device=device, dtype=np.float64, engine=engine), content, [style],
                             **kwargs)
        f, g = obj.value_and_grad(on(backend, x))
    assert abs(f - f_ref) <= 1e-12 * abs(f_ref)
    assert rel_error(host(g), g_ref) < 1e-12


def test_engine_names_and_choice(rng):
    params = random_vgg_params(rng)
    assert VGG19(params).engine_name == "cpu"
    assert VGG19(params, engine="fast").engine_name == "cpu"
    assert VGG19(params, engine="reference").engine_name == "reference"
    assert VGG19(params, engine=cpu_winograd_always).engine.winograd == "always"
    from nstyle.errors import InputError
    with pytest.raises(InputError, match="engine"):
        VGG19(params, engine="turbo")
