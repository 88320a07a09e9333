"""The normalised network: each filter's mean ReLU activation is 1 on the images used, and the features
at every tap are the original's divided by a per-channel scale."""
import json

import numpy as np
import pytest
from PIL import Image

from nstyle.cli import main as cli
from nstyle.model.arch import CONV_LAYERS
from nstyle.model.gradcheck import random_image, random_vgg_params
from nstyle.model.vgg import VGG19
from nstyle.weights.normalize import normalize_params
from nstyle.weights.store import read_hdf5, write_hdf5

from .weights_fixtures import FULL, random_params

RELUS = tuple("relu" + name[4:] for name in CONV_LAYERS)


def _images(rng):
    return [random_image(rng, 40, 48).astype(np.float32), random_image(rng, 32, 32).astype(np.float32)]


def _relu_means(vgg, images):
    """Mean of each ReLU output channel over all images and positions (positions weighted equally)."""
    sums, counts = {}, {}
    for x in images:
        feats, _ = vgg.forward(x, RELUS)
        for name, f in feats.items():
            sums[name] = sums.get(name, 0) + f.sum(axis=(0, 2, 3), dtype=np.float64)
            counts[name] = counts.get(name, 0) + f.shape[0] * f.shape[2] * f.shape[3]
    return {name: sums[name] / counts[name] for name in sums}


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_every_filter_has_mean_activation_one(rng, pooling):
    params = random_vgg_params(rng)
    images = _images(rng)
    new, scales, dead = normalize_params(params, images, pooling=pooling)
    means = _relu_means(VGG19(new, pooling=pooling), images)
    for conv, relu in zip(CONV_LAYERS, RELUS):
        alive = np.ones(len(means[relu]), bool)
        alive[dead[conv]] = False
        err = np.abs(means[relu][alive] - 1).max()
        assert err < 1e-3, f"{relu} ({pooling} pooling): a mean is off 1 by {err:.2e}"
        assert np.all(means[relu][~alive] == 0), f"{relu}: a dead filter came alive"


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_taps_are_the_originals_up_to_a_per_channel_scale(rng, pooling):
    params = random_vgg_params(rng)
    images = _images(rng)
    new, scales, _ = normalize_params(params, images, pooling=pooling)
    taps = ("relu1_1", "relu3_1", "pool4", "relu5_4", "pool5")
    probe = random_image(rng, 36, 44).astype(np.float32)  # an image the scales were not measured on
    orig, _ = VGG19(params, pooling=pooling).forward(probe, taps)
    norm, _ = VGG19(new, pooling=pooling).forward(probe, taps)
    for tap, conv in zip(taps, ("conv1_1", "conv3_1", "conv4_4", "conv5_4", "conv5_4")):
        s = scales[conv][None, :, None, None]
        np.testing.assert_allclose(norm[tap] * s, orig[tap], rtol=2e-4, atol=2e-4 * np.abs(orig[tap]).max(),
                                   err_msg=f"{tap} ({pooling} pooling)")


def test_dead_filters_are_left_alone_and_reported(rng):
    params = random_vgg_params(rng)
    w, b = params["conv2_1"]
    b = b.copy()
    b[[1, 4]] = -1e6  # these two filters can never fire
    params["conv2_1"] = (w, b)
    images = _images(rng)
    new, scales, dead = normalize_params(params, images)
    assert {1, 4} <= set(dead["conv2_1"]), dead["conv2_1"]
    assert np.all(scales["conv2_1"][[1, 4]] == 1.0)
    # their own weights are only rescaled by the compensation for conv1_2's scales, never by their own
    np.testing.assert_allclose(new["conv2_1"][1][[1, 4]], -1e6)
    np.testing.assert_allclose(new["conv2_1"][0][[1, 4]],
                               (params["conv2_1"][0] * scales["conv1_2"][None, :, None, None])[[1, 4]],
                               rtol=1e-6)
    # ... and the next layer reads them with an unchanged weight (scale 1 compensation)
    live = scales["conv2_2"][:, None, None, None]
    np.testing.assert_allclose(new["conv2_2"][0][:, [1, 4]], (params["conv2_2"][0] / live)[:, [1, 4]], rtol=1e-5)


def test_normalize_command_records_what_it_did(tmp_path, rng, capsys):
    """Full-size random weights, two small images on disk: the CLI writes a file that says it is normalised."""
    src = write_hdf5(random_params(rng, FULL), tmp_path / "vgg.h5", {"source": "random test weights"})
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, (h, w) in enumerate([(40, 56), (48, 32)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "norm.h5"
    code = cli.main(["weights", "normalize", "--images", str(folder), "-o", str(out), "--weights", str(src),
                     "--size", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip().splitlines()[-1] == str(out)
    params, attrs = read_hdf5(out)
    assert attrs["source"] == "random test weights" and "Gatys" in attrs["normalized"]
    assert attrs["normalization_images"] == 2 and attrs["normalization_pooling"] == "avg"
    assert attrs["normalization_dead_count"] == sum(len(v) for v in json.loads(
        attrs["normalization_dead_filters"]).values())
    import h5py
    with h5py.File(out) as f:
        assert f["conv5_4/normalization_scale"].shape == (512,)


def test_normalize_command_input_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    src = tmp_path / "missing.h5"
    assert cli.main(["weights", "normalize", "--images", str(empty), "-o", str(tmp_path / "o.h5"),
                     "--weights", str(src)]) == 2
    assert "nstyle: error:" in capsys.readouterr().err
    assert cli.main(["weights", "normalize", "--images", str(empty), "-o", str(tmp_path / "o.h5"),
                     "--size", "8", "--weights", str(src)]) == 2
    assert "too small" in capsys.readouterr().err
