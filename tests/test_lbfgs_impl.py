"""``--lbfgs-impl`` / ``lbfgs_impl=`` is honoured by every path that runs L-BFGS-B -- a tiled run's base and
tiles, video frames, reconstructions, the grid's cells, batch jobs -- and recorded in their logs: the
JSON log's settings, the tiles' and the frames' records, a batch job's sidecar (issue 25: tiles and
frames used to run the default implementation whatever the flag said).

Which implementation ran is seen where it runs: a spy on SciPy's ``scipy.optimize.minimize`` and on
nstyle's ``lbfgsb.minimize_lbfgsb`` counts every call. Small random networks, a few iterations."""
import json

import numpy as np
import pytest
import scipy.optimize
from PIL import Image

import nstyle
from nstyle.app.run import network
from nstyle.app.run.settings import Settings
from nstyle.cli import main as cli
from nstyle.model.gradcheck import random_vgg_params
from nstyle.model.vgg import VGG19
from nstyle.optim import lbfgsb
from nstyle.weights.store import write_hdf5

from .clitools import FAST_LAYERS, gradient_image, stripes_image

FAST = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


@pytest.fixture
def spy(monkeypatch):
    """The list of implementations run, one entry per L-BFGS-B run, in order."""
    calls = []
    real_scipy, real_nstyle = scipy.optimize.minimize, lbfgsb.minimize_lbfgsb

    def scipy_run(*args, **kwargs):
        calls.append("scipy")
        return real_scipy(*args, **kwargs)

    def nstyle_run(*args, **kwargs):
        calls.append("nstyle")
        return real_nstyle(*args, **kwargs)

    monkeypatch.setattr(scipy.optimize, "minimize", scipy_run)
    monkeypatch.setattr(lbfgsb, "minimize_lbfgsb", nstyle_run)
    return calls


@pytest.fixture
def params():
    return random_vgg_params(np.random.default_rng(0))


@pytest.fixture
def files(tmp_path, monkeypatch, params):
    """Images on disk and a weights file whose reading gives the small random network (the commands load
    weights from a file; a file with the real widths would take seconds to write)."""
    gradient_image(64, 48).save(tmp_path / "content.png")
    stripes_image(40, 40).save(tmp_path / "style.png")
    write_hdf5(params, tmp_path / "small.h5", attrs={"source": "random weights for tests"})
    monkeypatch.setattr(network, "load_params", lambda path=None: params)
    return tmp_path


@pytest.mark.parametrize("impl", ["nstyle", "scipy"])
def test_a_tiled_run_runs_the_asked_implementation_in_its_base_and_every_tile(spy, params, impl):
    tiles = []
    image = nstyle.stylize(gradient_image(64, 48), stripes_image(40, 40), size=64, iters=2, tile=32,
                           lbfgs_impl=impl, vgg=VGG19(params), log=lambda m: tiles.append(m), **FAST)
    assert image.size == (64, 48)
    made = [line for line in tiles if line.startswith("pass 1/1")]
    assert made and "3x2 tiles" in made[0], tiles
    assert spy == [impl] * (1 + 6), f"base + 6 tiles should all run {impl}: {spy}"


def test_stylize_command_tiled_honours_the_flag_and_logs_it(spy, files, capsys):
    out, log = files / "out.png", files / "log.json"
    code = cli.main(["stylize", str(files / "content.png"), str(files / "style.png"), "-o", str(out), "--size", "64",
                     "--tile", "32", "--iters", "2", "--lbfgs-impl", "nstyle", "--weights", str(files / "small.h5"),
                     "--log-json", str(log), "--quiet", *FAST_LAYERS])
    assert code == 0, capsys.readouterr().err
    assert spy and set(spy) == {"nstyle"}, spy
    assert json.loads(log.read_text())["settings"]["lbfgs_impl"] == "nstyle"


def test_auto_is_resolved_once_and_logged_as_what_ran(spy, files):
    log = files / "log.json"
    assert cli.main(["stylize", str(files / "content.png"), str(files / "style.png"), "-o", str(files / "o.png"),
                     "--size", "32", "--iters", "2", "--weights", str(files / "small.h5"), "--log-json", str(log),
                     "--quiet", *FAST_LAYERS]) == 0
    assert spy == ["scipy"]  # auto on the CPU
    assert json.loads(log.read_text())["settings"]["lbfgs_impl"] == "scipy"


def test_video_frames_honour_the_flag_and_record_it(spy, files):
    pytest.importorskip("av", reason="needs the video extra: pip install 'nstyle[video]'")
    pytest.importorskip("cv2", reason="needs the video extra: pip install 'nstyle[video]'")
    clip = files / "clip"
    clip.mkdir()
    for k in range(3):  # a folder of numbered frames: a small pan over the content
        gradient_image(72, 48).crop((2 * k, 0, 2 * k + 64, 48)).save(clip / f"frame_{k + 1:04d}.png")
    out, log = files / "styled", files / "video.json"
    code = cli.main(["video", str(clip), str(files / "style.png"), "-o", str(out), "--size", "32", "--iters", "2",
                     "--lbfgs-impl", "nstyle", "--weights", str(files / "small.h5"), "--log-json", str(log),
                     "--quiet", *FAST_LAYERS])
    assert code == 0
    assert spy == ["nstyle"] * 3, spy
    doc = json.loads(log.read_text())
    assert doc["settings"]["lbfgs_impl"] == "nstyle"
    assert [r["lbfgs_impl"] for r in doc["settings"]["result"]["frames"]] == ["nstyle"] * 3
    kept = json.loads((out / "nstyle-video.json").read_text())["frames"]
    assert kept and all(r["lbfgs_impl"] == "nstyle" for r in kept.values()), kept


def test_reconstructions_and_grid_cells_honour_it(spy, params):
    vgg, image = VGG19(params), gradient_image(40, 32)
    nstyle.reconstruct(image, content_layer="relu2_1", size=32, iters=2, lbfgs_impl="nstyle", vgg=vgg)
    assert spy == ["nstyle"]
    nstyle.reconstruct_sheet(image, content_layers=("relu1_1",), style_layers=("relu1_1",), size=32, iters=2,
                             lbfgs_impl="nstyle", vgg=vgg)
    assert spy == ["nstyle"] * 3
    nstyle.make_grid(image, stripes_image(32, 32), ratios=(1e-3, 1e-2), depths=(1,), size=32, iters=2,
                     style_layers=FAST["style_layers"], content_layer="relu2_1", lbfgs_impl="nstyle", vgg=vgg)
    assert spy == ["nstyle"] * 5


def test_a_tile_task_runs_and_records_the_implementation_it_is_given(spy, files):
    """What a Dask worker runs for one tile: the settings travel as a plain dict, the record names the
    implementation that ran."""
    from nstyle.app.tiles.work import tile_task
    settings = Settings.checked(style_weight=0.0, content_layers=("relu2_1",), lbfgs_impl="nstyle",
                                weights=str(files / "small.h5"))
    crop = np.asarray(gradient_image(32, 32))
    spec = {"name": "p1_r000_c000", "content": crop, "init": crop, "settings": settings.to_dict(client=False),
            "iters": 2, "term_scales": None, "threads": 1}
    done = tile_task(spec, {})
    assert done["status"] == "done", done
    assert done["record"]["lbfgs_impl"] == "nstyle" and spy == ["nstyle"]


def test_a_batch_job_runs_the_asked_implementation_and_its_sidecar_says_so(spy, files):
    from nstyle.app.batch.worker import read_sidecar, run_job
    out = files / "job.png"
    spec = {"name": "job", "content": str(files / "content.png"), "styles": [str(files / "style.png")],
            "options": {"size": 32, "iters": 2, "lbfgs_impl": "nstyle", "weights": str(files / "small.h5"), **FAST},
            "output": str(out), "settings": {}, "settings_hash": "0" * 64, "threads": 1}
    result = run_job(spec)
    assert result["status"] == "done", result
    assert spy == ["nstyle"] and read_sidecar(out)["lbfgs_impl"] == "nstyle"
    assert Image.open(out).size == (32, 24)
