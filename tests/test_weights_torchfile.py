"""Reading torch.save files without torch: bit-identical to torch.load, and no code ever runs."""
import collections
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

from nstyle.errors import WeightsError
from nstyle.weights import torchfile

from .conftest import require_torch
from .weights_fixtures import torch_save_bytes


def _tensors(torch):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 7
    return collections.OrderedDict([
        ("f32", torch.randn(3, 4, 2, 2, generator=torch.Generator().manual_seed(0))),
        ("f64", torch.linspace(-1, 1, 5, dtype=torch.float64)),
        ("f16", torch.tensor([0.5, -2.25, 65504.0], dtype=torch.float16)),
        ("bf16", torch.tensor([1.0, -3.5, 1e-3], dtype=torch.bfloat16)),
        ("u8", torch.arange(256, dtype=torch.uint8).reshape(16, 16)),
        ("i8", torch.tensor([-128, 0, 127], dtype=torch.int8)),
        ("i64", torch.tensor([-(2 ** 40), 3], dtype=torch.int64)),
        ("bool", torch.tensor([True, False, True])),
        ("transposed", base.t()),          # non-contiguous strides
        ("slice", base[1:3, 2:5]),          # an offset into a shared storage
        ("base", base),
        ("scalar", torch.tensor(2.5)),
        ("empty", torch.zeros(0, 3)),
        ("param", torch.nn.Parameter(torch.ones(2, 2))),
        ("nested", {"inner": torch.full((2,), 7.0), "meta": [1, "two", 3.0, None]}),
    ])


def _as_numpy(torch, value):
    if isinstance(value, dict):
        return {k: _as_numpy(torch, v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        value = value.detach()
        return value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
    return value


def _assert_same(ours, ref, where=""):
    if isinstance(ref, dict):
        assert list(ours) == list(ref), f"{where}: keys {list(ours)} != {list(ref)}"
        for k in ref:
            _assert_same(ours[k], ref[k], f"{where}/{k}")
    elif isinstance(ref, np.ndarray):
        assert isinstance(ours, np.ndarray), f"{where}: got {type(ours)}"
        assert ours.dtype == ref.dtype and ours.shape == ref.shape, \
            f"{where}: {ours.dtype}{ours.shape} != {ref.dtype}{ref.shape}"
        assert ours.tobytes() == np.ascontiguousarray(ref).tobytes(), f"{where}: values differ"
    else:
        assert ours == ref, f"{where}: {ours!r} != {ref!r}"


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_reads_torch_save_bit_for_bit(tmp_path, legacy):
    torch = require_torch()
    path = tmp_path / "t.pth"
    path.write_bytes(torch_save_bytes(torch, _tensors(torch), legacy))
    ref = _as_numpy(torch, torch.load(str(path), weights_only=True))
    ours = torchfile.load(path)
    assert isinstance(ours, collections.OrderedDict)
    _assert_same(ours, ref)
    assert ours["transposed"].flags.c_contiguous and ours["transposed"].flags.owndata


def test_reads_a_state_dict_with_metadata(tmp_path):
    torch = require_torch()
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 3))
    for legacy in (True, False):
        data = torch_save_bytes(torch, model.state_dict(), legacy)
        ours = torchfile.load_bytes(data, "sd.pth")
        ref = _as_numpy(torch, model.state_dict())
        _assert_same(dict(ours), ref, f"legacy={legacy}")


class _RunsCommand:
    """Unpickling this would run a shell command that creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _OpensFile:
    """Unpickling this would create the marker file with open()."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


class _Evals:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return eval, (f"open({str(self.marker)!r}, 'w')",)


def _legacy_wrapped(payload):
    """A legacy torch.save stream whose main object is ``payload``'s pickle."""
    head = b"".join(pickle.dumps(x, protocol=2) for x in (
        torchfile.LEGACY_MAGIC, torchfile.LEGACY_PROTOCOL,
        {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 8}}))
    return head + payload + pickle.dumps([], protocol=2)


def _zip_wrapped(payload):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
    return buf.getvalue()


@pytest.mark.parametrize("attack", [_RunsCommand, _OpensFile, _Evals], ids=["os.system", "open", "eval"])
@pytest.mark.parametrize("wrap", ["bare", "legacy", "zip", "inside-dict"])
def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path, attack, wrap):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(attack(marker), protocol=2)
    if wrap == "inside-dict":
        payload = pickle.dumps({"features.0.weight": attack(marker)}, protocol=2)
        data = _legacy_wrapped(payload)
    elif wrap == "legacy":
        data = _legacy_wrapped(payload)
    elif wrap == "zip":
        data = _zip_wrapped(payload)
    else:
        data = payload
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(WeightsError) as err:
        torchfile.load(path)
    assert not marker.exists(), f"{attack.__name__} ({wrap}) ran code while loading"
    msg = str(err.value)
    assert str(path) in msg and "refused to load" in msg and "\n" not in msg, msg


def test_malicious_magic_number_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_RunsCommand(marker), protocol=2) + b"rest"
    with pytest.raises(WeightsError, match="refused to load"):
        torchfile.load_bytes(b"\x80" + data[1:], "x.bin")
    assert not marker.exists()


def test_allowed_names_with_wrong_arguments_are_refused():
    # _rebuild_tensor_v2 called with a string instead of a storage: our stand-in checks its arguments.
    class Fake:
        def __reduce__(self):
            return collections.OrderedDict, ()
    payload = pickle.dumps(Fake(), protocol=2).replace(b"collections\nOrderedDict",
                                                       b"torch._utils\n_rebuild_tensor_v2")
    with pytest.raises(WeightsError, match="rebuilt from a storage|missing"):
        torchfile.load_bytes(_legacy_wrapped(payload), "x.bin")


def _rewrite_zip(data, edit):
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            z.writestr(info.filename, edit(info.filename, src.read(info.filename)))
    return out.getvalue()


def test_tensor_reaching_past_its_storage_is_refused():
    torch = require_torch()
    data = torch_save_bytes(torch, {"t": torch.arange(10, dtype=torch.float32)[2:5]}, legacy=False)
    # Grow the size tuple (3,) to (9,) in the pickle: from offset 2 the view would read 1 element past the end.
    bad = _rewrite_zip(data, lambda n, b: b.replace(b"K\x03\x85", b"K\x09\x85") if n.endswith(".pkl") else b)
    assert bad != data
    with pytest.raises(WeightsError, match="reaches past its storage"):
        torchfile.load_bytes(bad, "t.pth")


def test_storage_of_the_wrong_size_is_refused():
    torch = require_torch()
    data = torch_save_bytes(torch, {"t": torch.ones(8)}, legacy=False)
    short = _rewrite_zip(data, lambda n, b: b[:-4] if "/data/" in n else b)
    with pytest.raises(WeightsError, match=r"has 28 bytes, the object expects 32"):
        torchfile.load_bytes(short, "t.pth")


@pytest.mark.parametrize("cut", [10, 200, -4], ids=["in-header", "in-pickle", "in-storage"])
def test_truncated_legacy_file_names_the_file(tmp_path, cut):
    torch = require_torch()
    data = torch_save_bytes(torch, {"w": torch.ones(64, 3, 3, 3)}, legacy=True)
    path = tmp_path / "short.bin"
    path.write_bytes(data[:cut])
    with pytest.raises(WeightsError) as err:
        torchfile.load(path)
    msg = str(err.value)
    assert str(path) in msg and ("truncated" in msg or "corrupt" in msg), msg


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(WeightsError, match="not a torch.save file"):
        torchfile.load(path)
    with pytest.raises(WeightsError, match="not found"):
        torchfile.load(tmp_path / "missing.pth")


def test_pickle_cannot_set_state_on_our_stand_ins():
    """BUILD on torch.FloatStorage would change how every later file is read: refused, nothing changed."""
    attack = b"ctorch\nFloatStorage\n(dS'dtype'\nS'<f8'\nsb."
    with pytest.raises(WeightsError, match="cannot carry state"):
        torchfile.load_bytes(_legacy_wrapped(attack), "x.bin")
    assert torchfile.STORAGE_TYPES["FloatStorage"].dtype == np.dtype("<f4")


def test_tensor_bigger_than_its_storage_is_refused():
    torch = require_torch()
    data = torch_save_bytes(torch, {"t": torch.arange(3, dtype=torch.float32)}, legacy=False)
    # size (3,) stride (1,) -> size (30,) stride (0,): in bounds, but 10x the storage
    bad = _rewrite_zip(data, lambda n, b: b.replace(b"K\x03\x85", b"K\x1e\x85").replace(b"K\x01\x85", b"K\x00\x85")
                       if n.endswith(".pkl") else b)
    with pytest.raises(WeightsError, match="more elements than its storage"):
        torchfile.load_bytes(bad, "t.pth")
