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
