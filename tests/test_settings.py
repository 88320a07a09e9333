"""One settings object (issue 25): every option declared once (``app/run/settings.py``), checked once,
handed down frozen -- and the resumable folders (tiles, video frames, cells, batch outputs) keying on
what the declarations say changes the picture: another device, engine, L-BFGS-B or TF32 setting never
invalidates a folder, another weight, pooling or seed always does."""
import dataclasses
import inspect
import json

import numpy as np
import pytest

import nstyle
from nstyle.app.batch import jobs
from nstyle.app.batch.jobs import Job
from nstyle.app.batch.run_batch import plan_batch
from nstyle.app.run import settings as declared
from nstyle.app.run.settings import DEFAULTS, OPTION_NAMES, Settings
from nstyle.app.run.stylize import prepare, stylize
from nstyle.errors import InputError
from nstyle.model.gradcheck import random_vgg_params
from nstyle.model.vgg import VGG19

from .clitools import gradient_image, stripes_image

FAST = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}
# Settings that say how or where the picture is computed, with a value other than the default each.
HOW = {"engine": "reference", "lbfgs_impl": "nstyle", "tf32": True, "max_pixels": 10**7, "check_memory": False}


# --- the declarations ---------------------------------------------------------------------------------

def test_stylize_takes_exactly_the_declared_options_with_their_defaults():
    signature = inspect.signature(stylize).parameters
    options = [name for name in signature if name not in ("content", "style", "vgg", "callback", "log")]
    assert sorted(options) == sorted(OPTION_NAMES)
    assert {name: stylize.__kwdefaults__[name] for name in options} == DEFAULTS.to_dict()


def test_the_picture_rule_is_declared_once():
    how = set(OPTION_NAMES) - set(declared.picture_options())
    assert how == {"device", "engine", "tf32", "lbfgs_impl", "weights", "max_pixels", "check_memory", "tile_dir",
                   "tile_cluster"}
    assert set(HOW) <= how


def test_the_batch_reads_its_tables_off_the_declarations():
    """Per-job options in the declaration's order (the order of output names), the whole batch's, the
    list-valued ones; a tiled run's options are nobody's per job."""
    assert list(jobs.OPTION_KINDS) == list(declared.options_of("job"))
    assert list(jobs.OPTION_KINDS)[:3] == ["size", "iters", "scales"]
    assert set(jobs.BATCH_WIDE) == {"weights", "device", "engine", "max_pixels", "check_memory"}
    assert {"scales", "style_layers", "style_masks", "region_weights"} <= jobs.LIST_VALUED
    assert "iters" not in jobs.LIST_VALUED and not any(n.startswith("tile") for n in jobs.OPTION_KINDS)
    with pytest.raises(InputError, match="set for the whole batch"):
        jobs.parse_value("engine", "reference")


def test_checked_once_frozen_and_a_read_only_mapping():
    s = Settings.checked(style_weight=5, tf32=np.bool_(True), original_colors=None, style_layers=["relu1_1"])
    assert (s.style_weight, s.tf32, s.original_colors, s.style_layers) == (5.0, True, "none", ("relu1_1",))
    assert s["style_weight"] == 5.0 and dict(s)["pooling"] == "avg" and len(s) == len(OPTION_NAMES)
    assert {**s}.keys() == set(OPTION_NAMES) and "vgg" not in s and s.get("nothing") is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.style_weight = 1.0
    with pytest.raises(TypeError, match="unknown option.*colour"):
        Settings.checked(colour="red")
    for bad, message in (({"pooling": "min"}, "pooling"), ({"lbfgs_impl": "lbfgs"}, "L-BFGS-B"),
                         ({"style_weight": float("nan")}, "style weight"), ({"tf32": "yes"}, "tf32"),
                         ({"weight_scaling": "loose"}, "weight scaling"),
                         ({"style_layer_weights": [1.0]}, "1 style layer weights given for 5")):
        with pytest.raises(InputError, match=message):
            Settings.checked(**bad)
    assert Settings.from_dict(s.to_dict(client=False)) == s  # a worker's copy is the client's
    assert "tile_cluster" not in s.to_dict(client=False)


def test_plan_carries_the_settings_and_runs_resolve_the_implementation_once():
    plan = prepare(gradient_image(32, 24), stripes_image(32, 32), size=32, iters=1, **FAST)
    assert isinstance(plan.settings, Settings) and plan.options is plan.settings
    cpu = VGG19(random_vgg_params(np.random.default_rng(0)))
    bound = plan.on_network(cpu)
    assert bound.settings.lbfgs_impl == "scipy" and plan.settings.lbfgs_impl == "auto"
    assert bound.on_network(cpu) is bound, "resolving again changes nothing"
    gpu_like = type("Net", (), {"device": "gpu"})()  # a network on the GPU: auto picks nstyle's
    assert plan.on_network(gpu_like).settings.lbfgs_impl == "nstyle"


def test_picture_fingerprints_input_images_and_keeps_keywords():
    s = Settings.checked(init=gradient_image(8, 8), content_mask="m.png", style_masks=["a.png", "b.png"])
    picture = s.picture(lambda item: f"fp({item if isinstance(item, str) else 'pixels'})")
    assert (picture["init"], picture["content_mask"], picture["style_masks"]) == \
        ("fp(pixels)", "fp(m.png)", ["fp(a.png)", "fp(b.png)"])
    assert Settings.checked(init="noise").picture(lambda item: 1 / 0)["init"] == "noise"
    assert not set(picture) & set(HOW)


# --- the folders that resume ----------------------------------------------------------------------------

@pytest.fixture
def vgg():
    return VGG19(random_vgg_params(np.random.default_rng(0)))


def test_tiles_resume_on_another_engine_or_optimizer_but_not_with_other_weights(vgg, tmp_path):
    """A tiled run's folder is reused when only how the picture is computed changed (it used to be
    refused as 'made with other settings'); a change to the picture is refused."""
    folder = tmp_path / "tiles"
    args = (gradient_image(64, 48), stripes_image(40, 40))
    common = {"size": 64, "iters": 2, "tile": 32, "tile_dir": str(folder), "vgg": vgg, **FAST}
    first = nstyle.stylize(*args, **common)
    logs = []
    again = nstyle.stylize(*args, **common, **HOW, log=logs.append)
    assert any("6 already made" in line for line in logs), logs
    assert np.array_equal(np.asarray(first), np.asarray(again))
    with pytest.raises(InputError, match="style_weight"):
        nstyle.stylize(*args, **{**common, "style_weight": 10.0})


def test_cells_key_on_pooling_but_not_on_the_engine(vgg, tmp_path):
    """A reconstruction sheet's cells key on its plans' picture settings, less what each cell sets."""
    image, out = gradient_image(40, 32), tmp_path / "sheet.png"
    kwargs = {"content_layers": ("relu1_1",), "style_layers": (), "size": 32, "iters": 2, "out": out}
    nstyle.reconstruct_sheet(image, vgg=vgg, **kwargs)
    _, cells = nstyle.reconstruct_sheet(image, vgg=vgg, engine="reference", lbfgs_impl="nstyle", **kwargs)
    assert all(c.reused for c in cells)
    with pytest.raises(InputError, match="pooling: was avg, now max"):
        nstyle.reconstruct_sheet(image, vgg=VGG19(vgg.params, pooling="max"), pooling="max", **kwargs)


def test_batch_outputs_key_on_the_picture_only(tmp_path):
    """A job's sidecar hash: the same on another device engine or L-BFGS-B (the batch used to redo every
    job for another engine), another for another seed."""
    folder = tmp_path / "in"
    folder.mkdir()
    gradient_image(32, 24).save(folder / "photo.png")
    stripes_image(32, 32).save(folder / "stripes.png")
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"weights")  # planning hashes the file; nothing loads it

    def key(engine="auto", **options):
        job = Job("job 1", str(folder / "photo.png"), [str(folder / "stripes.png")],
                  {"size": 24, "iters": 2, **FAST, **options})
        (planned,), _ = plan_batch([job], tmp_path / "out", weights=str(weights), engine=engine)
        return planned.settings_hash, planned.settings

    base, settings = key()
    assert key(engine="reference", lbfgs_impl="nstyle")[0] == base
    assert key(seed=3)[0] != base and key(pooling="max")[0] != base
    assert json.dumps(settings["options"], sort_keys=True)  # plain data: the sidecar records it
    assert not set(settings["options"]) & set(HOW)


def test_video_frames_folder_keys_on_the_picture_only(tmp_path):
    pytest.importorskip("av", reason="needs the video extra: pip install 'nstyle[video]'")
    pytest.importorskip("cv2", reason="needs the video extra: pip install 'nstyle[video]'")
    from nstyle.app.video import prepare_video
    clip = tmp_path / "clip"
    clip.mkdir()
    for k in range(2):
        gradient_image(48, 36, seed=k).save(clip / f"frame_{k + 1:04d}.png")
    stripes_image(32, 32).save(tmp_path / "style.png")

    def key(**options):
        vplan = prepare_video(clip, tmp_path / "style.png", tmp_path / "out", size=32, iters=1, **FAST, **options)
        return vplan.store.hash

    base = key()
    assert key(**HOW) == base
    assert key(style_weight=10.0) != base and key(seed=2) != base
