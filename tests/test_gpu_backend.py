"""Device selection and the GPU knobs, as seen from a machine with or without a GPU."""
import numpy as np
import pytest
from PIL import Image

from nstyle import backend
from nstyle.cli.main import main
from nstyle.errors import DeviceError

no_gpu = pytest.mark.skipif(backend.gpu_available(), reason="a GPU answers here: the no-GPU messages cannot be seen")


@no_gpu
def test_gpu_request_without_a_device_is_one_clear_line():
    with pytest.raises(DeviceError) as info:
        backend.resolve_device("gpu")
    assert "\n" not in info.value.message and "GPU requested but" in info.value.message
    assert "nstyle[gpu]" in info.value.hint and info.value.exit_code == 2


@no_gpu
def test_auto_falls_back_to_the_cpu_and_says_so_once():
    said = []
    assert backend.resolve_device("auto", announce=said.append) == "cpu"
    assert len(said) == 1 and "running on the CPU" in said[0]


@no_gpu
def test_cli_device_gpu_exits_2_with_the_reason(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(img)
    code = main(["stylize", str(img), str(img), "-o", str(tmp_path / "out.png"), "--device", "gpu"])
    err = capsys.readouterr().err
    assert code == 2 and "GPU requested but" in err and "hint:" in err and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


@no_gpu
def test_gpu_gauges_are_none_without_a_device():
    assert backend.gpu_memory_info() is None and backend.gpu_device_info() is None
    backend.free_gpu_memory()  # a no-op, not an error


def test_tf32_switch_returns_the_previous_setting():
    before = backend.set_tf32(True)
    try:
        assert backend.tf32_enabled()
        assert backend.set_tf32(False) is True and not backend.tf32_enabled()
    finally:
        backend.set_tf32(before)


def test_unknown_device_is_refused():
    with pytest.raises(DeviceError, match="unknown device"):
        backend.resolve_device("tpu")


def test_tf32_is_off_by_default_everywhere():
    from nstyle import stylize
    from nstyle.cli.main import build_parser

    assert not backend.tf32_enabled() and stylize.__kwdefaults__["tf32"] is False
    args = build_parser().parse_args(["stylize", "c.png", "s.png", "-o", "o.png"])
    assert args.tf32 is False
    assert build_parser().parse_args(["stylize", "c.png", "s.png", "-o", "o.png", "--tf32"]).tf32 is True


def test_stylize_tf32_holds_for_the_run_only_and_the_plan_says_so(rng):
    """stylize(tf32=True) allows TF32 while it runs (the GPU engine's products read the switch) and
    restores the setting after, even when the run fails; --dry-run's plan names it; a non-bool is refused."""
    from nstyle import InputError, stylize
    from nstyle.app.run.stylize import prepare
    from nstyle.model.gradcheck import random_vgg_params
    from nstyle.model.vgg import VGG19

    from .clitools import gradient_image, stripes_image

    fast = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1"), "size": 24}
    vgg = VGG19(random_vgg_params(rng))
    seen = []
    stylize(gradient_image(30, 24), stripes_image(24, 24), iters=2, tf32=True, vgg=vgg,
            callback=lambda rec, get: seen.append(backend.tf32_enabled()), **fast)
    assert seen == [True, True] and not backend.tf32_enabled()

    def fail(rec, get):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        stylize(gradient_image(30, 24), stripes_image(24, 24), iters=2, tf32=True, vgg=vgg, callback=fail, **fast)
    assert not backend.tf32_enabled()
    lines = prepare(gradient_image(30, 24), stripes_image(24, 24), tf32=True, **fast).describe()
    assert any("TF32" in line for line in lines)
    assert not any("TF32" in line for line in prepare(gradient_image(30, 24), stripes_image(24, 24), **fast).describe())
    with pytest.raises(InputError, match="tf32"):
        prepare(gradient_image(30, 24), stripes_image(24, 24), tf32="yes", **fast)
