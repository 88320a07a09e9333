"""--style-loss from the command line and the API: stylize (stages, log), reconstruct, grid, batch and
video take it; the settings hold it in one spelling and key pictures on it; the dry run shows its memory;
masks and tiles refuse it in one line."""
import json

import numpy as np
import pytest

from nstyle import stylize
from nstyle.app.batch.jobs import output_name, parse_value
from nstyle.app.figures.reconstruct import reconstruct
from nstyle.app.run.settings import DEFAULTS, Settings, picture_options
from nstyle.app.run.stylize import prepare
from nstyle.cli import main as cli
from nstyle.errors import InputError
from nstyle.model.gradcheck import random_vgg_params
from nstyle.model.vgg import VGG19

from .clitools import FAST_LAYERS, stripes_image

FAST = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


def run_cli(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_setting_has_one_spelling_and_changes_the_picture():
    assert DEFAULTS.style_loss == "gram" and "style_loss" in picture_options()
    assert Settings.checked(style_loss={"gram": 1, "histogram": 0.5}).style_loss == "gram:1,histogram:0.5"
    assert Settings.checked(style_loss=" histogram ").style_loss == "histogram:1"
    with pytest.raises(InputError, match="unknown style loss"):
        Settings.checked(style_loss="gramm")
    # a batch sweeps it like any listed option, and names the pictures by it
    assert parse_value("style_loss", "gram:1,histogram:0.5") == "gram:1,histogram:0.5"
    job = type("Job", (), {"content": "a.png", "styles": ["b.png"], "options": {"style_loss": "mean_std:1"}})()
    assert "style_loss=mean_std-1" in output_name(job, DEFAULTS)


def test_masks_and_tiles_refuse_other_losses_in_one_line(tmp_path, images, capsys):
    content, style = images
    mask = tmp_path / "mask.png"
    stripes_image(48, 32).save(mask)
    for extra in (["--content-mask", mask, "--region-styles", "black=1,white=1"], ["--tile", "32"]):
        code, _, err = run_cli(capsys, "stylize", content, style, "-o", tmp_path / "o.png", "--size", 48,
                               "--style-loss", "gram:1,histogram:1", *extra)
        errors = [line for line in err.splitlines() if line.startswith("nstyle: error:")]
        assert code == 2 and "Traceback" not in err and len(errors) == 1, err
        assert "gram style loss only" in errors[0]
    with pytest.raises(InputError, match="gram style loss only"):
        prepare(content, style, style_loss="mmd_gaussian", tile=64, size=48)
    prepare(content, style, style_loss="gram:2", tile=64, size=128)  # the Gram loss alone tiles


def test_dry_run_shows_the_loss_and_its_memory(images, capsys):
    content, style = images
    code, out, err = run_cli(capsys, "stylize", content, style, "--dry-run", "--size", 64,
                             "--style-loss", "sliced_wasserstein", "--seed", 3)
    assert code == 0, err
    assert "style loss       sliced_wasserstein:1 (seed 3)" in out
    assert "style loss targets" in out and "style loss scratch" in out


def test_stylize_with_a_sum_logs_each_loss_and_the_draws(tmp_path, images, weights, capsys):
    content, style = images
    out, log = tmp_path / "out.png", tmp_path / "log.json"
    code, _, err = run_cli(capsys, "stylize", content, style, "-o", out, "--size", 32, "--iters", "3,3",
                           "--scales", "24,32", "--weights", weights, "--style-loss",
                           "gram:1,sliced_wasserstein:0.5", "--seed", 5, "--log-json", log, *FAST_LAYERS)
    assert code == 0, err
    doc = json.loads(log.read_text())
    assert doc["settings"]["style_loss"] == "gram:1,sliced_wasserstein:0.5" and doc["settings"]["seed"] == 5
    recs = doc["records"]
    for rec in recs:
        for key in ("style/relu1_1/gram", "style/relu1_1/sliced_wasserstein", "paper/style/relu2_1/gram",
                    "paper/style/relu2_1/sliced_wasserstein"):
            assert key in rec, key
        assert rec["style/relu1_1"] == pytest.approx(rec["style/relu1_1/gram"] + rec["style/relu1_1/sliced_wasserstein"])
    firsts = [r for r in recs if "style_draws" in r]
    assert [r["stage"] for r in firsts] == [1, 2] and all(r["iter"] == 1 for r in firsts)
    seeds = [r["style_draws"]["relu1_1"]["sliced_wasserstein"]["seed"] for r in firsts]
    assert seeds[0][:2] == [5, 0] and seeds[1][:2] == [5, 1]  # the seed, and a new draw per stage


def test_each_loss_paints_from_the_api_and_the_seed_fixes_the_bytes(images):
    content, style = images
    vgg = VGG19(random_vgg_params(np.random.default_rng(0)))
    pictures = {}
    for loss in ("mean_std", "histogram", "mmd_linear", "mmd_polynomial"):
        pictures[loss] = np.asarray(stylize(content, style, size=32, iters=4, vgg=vgg, style_loss=loss, **FAST))
    gram = np.asarray(stylize(content, style, size=32, iters=4, vgg=vgg, **FAST))
    assert all(not np.array_equal(p, gram) for p in pictures.values())

    def sw(seed):
        return np.asarray(stylize(content, style, size=32, iters=4, vgg=vgg, style_loss="sliced_wasserstein",
                                  seed=seed, **FAST))

    a, b, c = sw(1), sw(1), sw(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_reconstruct_synthesises_a_texture_with_any_loss(images):
    _, style = images
    vgg = VGG19(random_vgg_params(np.random.default_rng(1)))
    a = reconstruct(style, style_layers=("relu1_1", "relu2_1"), size=32, iters=5, vgg=vgg, style_loss="histogram")
    b = reconstruct(style, style_layers=("relu1_1", "relu2_1"), size=32, iters=5, vgg=vgg)
    assert a.size == b.size and not np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("command", ["reconstruct", "grid", "video", "batch"])
def test_every_painting_command_takes_the_option(command, capsys):
    parser = cli.build_parser()
    args = {"reconstruct": ["reconstruct", "i.png", "-o", "o.png", "--style-layers", "relu1_1"],
            "grid": ["grid", "c.png", "s.png", "-o", "o.png"], "video": ["video", "v.mp4", "s.png", "-o", "o.mp4"],
            "batch": ["batch", "-o", "out"]}[command]
    flag = "--style-loss"
    parsed = parser.parse_args(args + [flag, "gram:1,mmd_gaussian:0.5"])
    value = parsed.opt_style_loss if command == "batch" else parsed.style_loss
    assert value == "gram:1,mmd_gaussian:0.5"
    if command != "batch":  # batch reads its cells' text later, with the job's other options
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(args + [flag, "histogram:-2"])
        assert exc.value.code == 2
