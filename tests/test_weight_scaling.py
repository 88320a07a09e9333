"""weight_scaling="invariant": the same weights mean the same balance at every size and on every network."""
import numpy as np
import pytest
from PIL import Image

from nstyle import stylize
from nstyle.app.files.imageio import fit_size, preprocess
from nstyle.app.run.memory import estimate
from nstyle.app.run.weighting import (
    REFERENCE_SIZE,
    attach_normalization,
    compensate_normalization,
    network_normalization,
    term_scales,
)
from nstyle.cli import main as cli
from nstyle.model.arch import CONV_LAYERS
from nstyle.model.gradcheck import random_image, random_vgg_params
from nstyle.model.objective import DEFAULT_STYLE_LAYERS, StyleObjective, layer_positions
from nstyle.model.vgg import VGG19
from nstyle.weights.hdf5 import read_normalization, write_hdf5
from nstyle.weights.normalize import normalization_attrs

from .clitools import gradient_image, stripes_image

STYLE = DEFAULT_STYLE_LAYERS


def test_at_the_reference_size_the_weights_are_the_papers(rng):
    scales = term_scales(512, 341, ("relu4_2",), STYLE)
    assert REFERENCE_SIZE == 512 and set(scales.values()) == {1.0}
    assert term_scales(256, 171, ("relu4_2",), STYLE, mode="paper") == {}


def test_content_and_tv_scale_with_the_pixel_counts():
    s = term_scales(256, 171, ("relu4_2", "relu1_1"), STYLE)  # the reference: the same picture at 512x342
    assert s["content/relu4_2"] == layer_positions(342, 512, "relu4_2") / layer_positions(171, 256, "relu4_2")
    assert s["content/relu4_2"] == (64 * 42) / (32 * 21)  # pools floor: 342 -> 42 rows, 171 -> 21
    assert s["content/relu1_1"] == s["tv"] == 4.0
    assert all(s[f"style/{n}"] == 1.0 for n in STYLE)  # E_l is already a per-position statistic


def natural_images(n):
    """A photo, a painting and a third image at longest side n: images with detail at every scale, so
    that a smaller rendering is the same picture with fewer pixels."""
    skimage_data = pytest.importorskip("skimage.data")
    photo, other = Image.fromarray(skimage_data.chelsea()), Image.fromarray(skimage_data.astronaut())
    size = fit_size(*photo.size, n)
    painting = Image.fromarray(skimage_data.coffee()).resize(size, Image.Resampling.LANCZOS)
    return [preprocess(im.resize(size, Image.Resampling.LANCZOS)).astype(np.float64) for im in (photo, painting, other)], size


def balance(vgg, n, mode):
    (content, style, x), size = natural_images(n)
    obj = StyleObjective(vgg, content=content, styles=[style], tv_weight=1.0,
                         term_scales=term_scales(*size, ("relu4_2",), STYLE, mode))
    obj.value_and_grad(x)
    b = obj.last_breakdown
    return b["style"] / b["content"]


def test_the_style_content_balance_is_the_same_at_two_sizes(rng):
    """One picture rendered at 128 and 256 pixels, the terms at the same third image: the ratio of the
    weighted style and content terms moves by less than 1.6x with the invariant scaling (what is left is
    the pictures themselves changing with the resolution; a narrow random network shows more of it than
    VGG-19, where it is 1.3x), by more than 4x with the paper's literal loss."""
    vgg = VGG19(random_vgg_params(rng), dtype=np.float64)
    invariant = balance(vgg, 256, "invariant") / balance(vgg, 128, "invariant")
    paper = balance(vgg, 256, "paper") / balance(vgg, 128, "paper")
    assert 1 / 1.6 < invariant < 1.6, invariant
    assert paper < invariant / 4, paper


def test_tv_means_the_same_at_every_size():
    """Pixel-scale noise, the thing TV is there to remove: its weighted term is the same at 64 and 128."""
    rng = np.random.default_rng(0)
    weighted = []
    for n in (64, 128):
        x = rng.normal(0, 20, (1, 3, n, n))
        obj = StyleObjective(VGG19(random_vgg_params(rng)), content_weight=0, style_weight=0, tv_weight=1.0,
                             term_scales=term_scales(n, n, mode="invariant"))
        obj.value_and_grad(x.astype(np.float32))
        weighted.append(obj.last_breakdown["tv"])
        assert obj.last_breakdown["paper/tv"] * (512 / n) ** 2 == pytest.approx(weighted[-1])
    assert weighted[1] == pytest.approx(weighted[0], rel=0.05)


def test_the_log_records_the_weighted_and_the_papers_terms(rng):
    records = []
    stylize(gradient_image(48, 32), stripes_image(40, 40), size=48, iters=2, vgg=VGG19(random_vgg_params(rng)),
            content_layers=("relu2_1",), style_layers=("relu1_1", "relu2_1"), style_weight=10.0, tv_weight=0.5,
            callback=lambda rec, _: records.append(rec))
    rec = records[-1]
    content_scale = layer_positions(341, 512, "relu2_1") / layer_positions(32, 48, "relu2_1")
    assert rec["content"] == pytest.approx(rec["paper/content"] * content_scale, rel=1e-6)
    assert rec["style/relu1_1"] == pytest.approx(10.0 * 0.5 * rec["paper/style/relu1_1"], rel=1e-6)
    assert rec["paper/style"] == pytest.approx(0.5 * (rec["paper/style/relu1_1"] + rec["paper/style/relu2_1"]))
    assert rec["tv"] == pytest.approx(0.5 * rec["paper/tv"] * (512 * 341) / (48 * 32), rel=1e-6)
    records.clear()
    stylize(gradient_image(48, 32), stripes_image(40, 40), size=48, iters=2, vgg=VGG19(random_vgg_params(rng)),
            content_layers=("relu2_1",), style_layers=("relu1_1",), weight_scaling="paper",
            callback=lambda rec, _: records.append(rec))
    assert records[-1]["content"] == pytest.approx(records[-1]["paper/content"], rel=1e-12)


def normalised_copy(params, rng):
    """The network with each filter's output divided by a random s in 1e-2..1e2 and the next layer
    compensating: its features are exactly the plain ones divided by s, channel by channel."""
    out, scales, prev = {}, {}, None
    for name in CONV_LAYERS:
        w, b = (np.asarray(a, dtype=np.float64) for a in params[name])
        if prev is not None:
            w = w * prev[None, :, None, None]
        s = np.exp(rng.uniform(np.log(1e-2), np.log(1e2), w.shape[0]))
        out[name], scales[name], prev = (w / s[:, None, None, None], b / s), s, s
    return out, scales


def test_a_normalised_network_keeps_the_terms_sizes(rng):
    """Without compensation a normalised network changes the terms by 1e2..1e7 here; with it (measured on
    the run's own targets) each stays within 4x of the plain network's."""
    params = random_vgg_params(rng)
    norm, scales = normalised_copy(params, rng)
    content, style, x = (random_image(rng, 32, 32) for _ in range(3))
    plain = StyleObjective(VGG19(params, dtype=np.float64), content=content, styles=[style])
    bare = StyleObjective(VGG19(norm, dtype=np.float64), content=content, styles=[style])
    fixed = compensate_normalization(StyleObjective(VGG19(norm, dtype=np.float64), content=content, styles=[style]),
                                     scales)
    for obj in (plain, bare, fixed):
        obj.value_and_grad(x)
    for key in ["content/relu4_2"] + [f"style/{n}" for n in STYLE]:
        ratio = fixed.last_breakdown[key] / plain.last_breakdown[key]
        assert 1 / 4 < ratio < 4, (key, ratio)
        assert not 1 / 20 < bare.last_breakdown[key] / plain.last_breakdown[key] < 20, key


def test_the_weights_file_records_normalisation_and_runs_adapt(tmp_path, rng):
    params = random_vgg_params(rng)
    norm, scales = normalised_copy(params, rng)
    path = tmp_path / "normalised.h5"
    write_hdf5(norm, path, attrs=normalization_attrs(2, 64, "avg", {}),
               extra={name: {"normalization_scale": s} for name, s in scales.items()})
    write_hdf5(params, tmp_path / "plain.h5")
    read = read_normalization(path)
    assert set(read) == set(CONV_LAYERS) and all(np.allclose(read[k], scales[k], rtol=1e-6) for k in read)
    assert read_normalization(tmp_path / "plain.h5") is None
    vgg = attach_normalization(VGG19(norm), path)
    assert np.allclose(network_normalization(vgg)["conv1_1"], scales["conv1_1"], rtol=1e-6)
    assert network_normalization(VGG19(params)) is None  # built from parameters: nothing says, plain
    # the default run on the normalised network moves the picture as the plain one does
    content, style = gradient_image(48, 48), stripes_image(48, 48)
    outs = {}
    for name, net in (("plain", attach_normalization(VGG19(params), tmp_path / "plain.h5")), ("normalised", vgg)):
        outs[name] = np.asarray(stylize(content, style, size=48, iters=10, vgg=net, content_layers=("relu2_1",),
                                        style_layers=("relu1_1", "relu2_1")), dtype=np.float64)
    photo = np.asarray(content, dtype=np.float64)
    moved = {k: np.abs(v - photo).mean() for k, v in outs.items()}
    assert moved["normalised"] > 0.3 * moved["plain"] > 1, moved


@pytest.fixture
def images(tmp_path):
    gradient_image(60, 40).save(tmp_path / "c.png")
    stripes_image(40, 40).save(tmp_path / "s.png")
    return tmp_path / "c.png", tmp_path / "s.png"


def test_dry_run_exit_code_says_whether_the_run_fits(images, capsys):
    content, style = images
    assert cli.main(["stylize", str(content), str(style), "--size", "64", "--dry-run"]) == 0
    assert "fits" in capsys.readouterr().out
    code = cli.main(["stylize", str(content), str(style), "--size", "16000", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 2 and "DOES NOT FIT" in out and "memory" in err
    assert cli.main(["stylize", str(content), str(style), "--size", "16000", "--dry-run", "--no-memory-check"]) == 0


# Peak resident memory (MiB) of real runs (bench/memory_small_sizes.py: a 1024x1024 photo and painting,
# real weights, a fresh process each; L-BFGS-B 20 iterations, Adam 3; this project's 2-core machine).
MEASURED_PEAKS_MIB = {(64, "lbfgs"): 311.1, (64, "adam"): 284.5, (96, "lbfgs"): 344.6, (96, "adam"): 309.1,
                      (128, "lbfgs"): 389.1, (128, "adam"): 338.3, (160, "lbfgs"): 414.4, (160, "adam"): 346.9,
                      (192, "lbfgs"): 427.8, (192, "adam"): 347.6, (256, "lbfgs"): 541.8, (256, "adam"): 405.4}


@pytest.fixture
def two_threads():
    """The measurements ran with two threads (each keeps its own band buffers)."""
    from nstyle.cpu import threads
    saved = threads._override
    threads.set_num_threads(2)
    yield
    threads.set_num_threads(saved)


@pytest.mark.parametrize("size,optimizer", sorted(MEASURED_PEAKS_MIB))
def test_the_memory_estimate_is_never_below_the_measured_peak(size, optimizer, two_threads):
    """With 5% to spare: a run's peak moves a little from one machine or image to the next."""
    est = estimate(size, size, ("relu4_2",), STYLE, [(size, size)], optimizer=optimizer,
                   image_bytes=6 * 2 * 1024 * 1024, engine="cpu")
    assert est.total >= 1.05 * MEASURED_PEAKS_MIB[(size, optimizer)] * 2**20
