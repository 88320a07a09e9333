"""`nstyle stylize` and `nstyle demo`: defaults from the API, every option's effect, Ctrl-C, the demo.

Runs use full-shape random VGG-19 weights and cheap layers (relu1_1, relu2_1) at 24-48 pixels, so
each takes well under a second of computing.
"""
import json
import signal

import numpy as np
import pytest
from PIL import Image

from nstyle.app.run.color import chroma, colour_stats, rgb_to_yiq
from nstyle.app.run.stylize import stylize
from nstyle.cli import main as cli
from nstyle.cli import stylize as stylize_command

from .clitools import (
    FAST_LAYERS,
    assert_one_line_error,
    gradient_image,
    leftovers,
    nstyle,
    signal_at_line,
    stripes_image,
)


def run_cli(capsys, *args):
    """cli.main in this process; returns (exit code, stdout, stderr)."""
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def parse(*args):
    parser = cli.build_parser()
    return parser.parse_args(["stylize", "c.png", "s.png", "-o", "o.png", *args])


# --- parsing and defaults --------------------------------------------------------------------------

def test_every_default_comes_from_the_api():
    args = parse()
    options = stylize_command.options_from_args(args)
    api = stylize.__kwdefaults__
    for key, value in options.items():
        assert value == api[key], f"--{key.replace('_', '-')} defaults to {value!r}, the API to {api[key]!r}"
    for key in ("size", "iters", "content_weight", "style_weight", "tv_weight", "init", "seed", "optimizer",
                "lr", "bounds", "pooling", "content_layers", "style_layers", "style_layer_weights",
                "style_blend", "style_scale", "original_colors", "device", "weights", "max_pixels",
                "check_memory", "scales"):
        assert key in options, f"stylize keyword {key} has no command-line flag"


def test_flags_reach_the_api():
    args = parse("--size", "300", "--iters", "7", "--content-weight", "2", "--style-weight", "5e2",
                 "--tv-weight", "0.1", "--init", "noise", "--seed", "3", "--optimizer", "adam", "--lr", "4",
                 "--no-bounds", "--pooling", "max", "--content-layers", "relu3_2",
                 "--style-layers", "relu1_1,relu3_1", "--style-layer-weights", "1,2", "--style-scale", "0.5",
                 "--original-colors", "luminance", "--device", "cpu", "--max-pixels", "1000",
                 "--no-memory-check")
    o = stylize_command.options_from_args(args)
    assert (o["size"], o["iters"], o["content_weight"], o["style_weight"], o["tv_weight"]) == (300, 7, 2, 500, 0.1)
    assert (o["init"], o["seed"], o["optimizer"], o["lr"], o["bounds"], o["pooling"]) == \
        ("noise", 3, "adam", 4, False, "max")
    assert o["content_layers"] == ("relu3_2",) and o["style_layers"] == ("relu1_1", "relu3_1")
    assert o["style_layer_weights"] == [1, 2] and o["style_scale"] == 0.5
    assert (o["original_colors"], o["max_pixels"], o["check_memory"]) == ("luminance", 1000, False)


def test_scales_take_one_iteration_count_per_stage():
    o = stylize_command.options_from_args(parse("--scales", "128,256", "--iters", "30,20"))
    assert o["scales"] == [128, 256] and o["iters"] == [30, 20]
    with pytest.raises(cli.NStyleError, match="disagree"):
        stylize_command.options_from_args(parse("--scales", "128,256", "--size", "300"))
    with pytest.raises(cli.NStyleError, match="one stage"):
        stylize_command.options_from_args(parse("--iters", "30,20"))


@pytest.mark.parametrize("flag,value", [("--style-weight", "nan"), ("--content-weight", "inf"),
                                        ("--tv-weight", "-1"), ("--iters", "-5"), ("--size", "0"),
                                        ("--lr", "0"), ("--style-scale", "-inf"), ("--seed", "x"),
                                        ("--style-blend", "1,nan"), ("--scales", "64,,128"),
                                        ("--max-pixels", "0"), ("--save-every", "-1")])
def test_bad_numbers_are_refused_at_parse_time(capsys, flag, value):
    with pytest.raises(SystemExit) as exc:
        cli.main(["stylize", "c.png", "s.png", "-o", "o.png", flag, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2, f"{flag} {value}"
    assert err.startswith("nstyle: error:") and flag in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 2, f"one error line and one hint expected: {err}"


@pytest.mark.parametrize("command", [["stylize", "c.png", "s.png", "-o", "o.png"],
                                     ["grid", "c.png", "s.png", "-o", "o.png"],
                                     ["reconstruct", "c.png", "-o", "o.png"]])
@pytest.mark.parametrize("flag,value", [("--style-layers", "relu1_1,,relu2_1"), ("--style-layers", "relu1_1,"),
                                        ("--style-layers", "relu1_1,relu1_1"), ("--size", "0"),
                                        ("--size", "-3"), ("--iters", "-1"), ("--seed", "-1"),
                                        ("--engine", "turbo")])
def test_every_command_shares_the_argument_types(capsys, command, flag, value):
    """grid and reconstruct accept exactly what stylize accepts: empty list items, repeated layers and
    out-of-range counts are refused at parse time, in one line, exit 2."""
    with pytest.raises(SystemExit) as exc:
        cli.main(command + [flag, value])
    err = capsys.readouterr().err
    assert exc.value.code == 2, f"{command[0]} {flag} {value}"
    assert err.startswith("nstyle: error:") and flag in err and "Traceback" not in err, err


# --- what a run writes ---------------------------------------------------------------------------

def test_reference_engine_runs_end_to_end_and_ends_at_the_fast_engines_loss(tmp_path, images, weights, capsys):
    """--engine reference runs the readable layer loop through the whole command; 10 iterations at
    64 px end at the default engine's loss (relative difference < 1e-3), and the log names the engine."""
    content, style = images
    finals = {}
    for engine in ("auto", "reference"):
        log = tmp_path / f"log-{engine}.json"
        code, _, err = run_cli(capsys, "stylize", content, style, "-o", tmp_path / f"{engine}.png", "--size", 64,
                               "--iters", 10, "--weights", weights, "--engine", engine, "--log-json", log,
                               *FAST_LAYERS)
        assert code == 0, err
        doc = json.loads(log.read_text())
        assert doc["settings"]["engine"] == ("cpu" if engine == "auto" else "reference")
        assert len(doc["records"]) == 10
        finals[engine] = doc["records"][-1]["loss"]
    assert abs(finals["reference"] - finals["auto"]) / finals["auto"] < 1e-3, finals


def test_log_json_plot_and_save_every(tmp_path, images, weights, capsys):
    content, style = images
    out = tmp_path / "out.png"
    code, stdout, err = run_cli(capsys, "stylize", content, style, "-o", out, "--size", 32, "--iters", 5,
                                "--weights", weights, "--save-every", 2, "--log-json", tmp_path / "log.json",
                                "--plot", tmp_path / "loss.png", "--print-every", 2, *FAST_LAYERS)
    assert code == 0, err
    assert stdout.strip() == str(out)
    assert Image.open(out).size == (32, 21)
    for step in (2, 4):
        snap = tmp_path / f"out_iter{step}.png"
        assert snap.exists() and Image.open(snap).size == (32, 21), f"--save-every file for step {step}"
    assert not (tmp_path / "out_iter5.png").exists()
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["status"] == "done" and log["output"] == str(out)
    assert log["settings"]["size"] == 32 and log["settings"]["style_layers"] == ["relu1_1", "relu2_1"]
    assert [r["iter"] for r in log["records"]] == [1, 2, 3, 4, 5]
    for rec in log["records"]:
        for key in ("iter", "loss", "content", "style", "tv", "seconds", "style/relu1_1", "style/relu2_1"):
            assert key in rec, f"record lacks {key}: {rec}"
        assert rec["content"] + rec["style"] + rec["tv"] == pytest.approx(rec["loss"], rel=1e-6)
    assert log["records"][-1]["loss"] < log["records"][0]["loss"]
    plot = Image.open(tmp_path / "loss.png")
    assert plot.format == "PNG" and plot.width > 200
    # --print-every 2: the breakdown lines name every style layer
    assert "relu1_1" in err and "relu2_1" in err and "content" in err
    assert leftovers(tmp_path) == []


def test_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path, images, weights, capsys):
    content, style = images

    def run(name, seed):
        out = tmp_path / name
        code, _, err = run_cli(capsys, "stylize", content, style, "-o", out, "--size", 32, "--iters", 3,
                               "--init", "noise", "--seed", seed, "--weights", weights, *FAST_LAYERS)
        assert code == 0, err
        return out.read_bytes()

    a, b, c = run("a.png", 7), run("b.png", 7), run("c.png", 8)
    assert a == b, "same seed and inputs must give the same output bytes"
    assert a != c, "a different seed must start from different noise"


def test_coarse_to_fine_runs_each_stage_from_the_last(tmp_path, images, weights, capsys):
    content, style = images
    out = tmp_path / "out.png"
    code, _, err = run_cli(capsys, "stylize", content, style, "-o", out, "--scales", "24,40", "--iters", "3,2",
                           "--weights", weights, "--log-json", tmp_path / "log.json", *FAST_LAYERS)
    assert code == 0, err
    assert Image.open(out).size == (40, 27)
    recs = json.loads((tmp_path / "log.json").read_text())["records"]
    assert [(r["stage"], r["iter"], r["step"], r["size"]) for r in recs] == \
        [(1, 1, 1, 24), (1, 2, 2, 24), (1, 3, 3, 24), (2, 1, 4, 40), (2, 2, 5, 40)]
    assert "stage 2/2" in err


def _yiq(img):
    return rgb_to_yiq(np.asarray(img.convert("RGB"), dtype=np.float64))


def test_original_colors_keep_the_photos_colours(tmp_path, weights, capsys):
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    # a warm photo and a cool painting, so that whose colours the result has is plain to measure
    photo = Image.fromarray((np.asarray(gradient_image(40, 40), float) * [1.0, 0.6, 0.3]).astype(np.uint8))
    photo.save(content)
    painting = Image.fromarray((np.asarray(stripes_image(40, 40), float) * [0.2, 0.7, 1.0]).astype(np.uint8))
    painting.save(style)
    outs = {}
    for mode in ("none", "luminance", "match"):
        outs[mode] = tmp_path / f"{mode}.png"
        code, _, err = run_cli(capsys, "stylize", content, style, "-o", outs[mode], "--size", 40, "--iters", 8,
                               "--style-weight", 1e5, "--original-colors", mode, "--weights", weights, *FAST_LAYERS)
        assert code == 0, f"{mode}: {err}"
    photo_yiq = _yiq(photo)
    lum = _yiq(Image.open(outs["luminance"]))
    # luminance-only transfer: the colour channels (I, Q) are the photo's, up to 8-bit rounding and clipping
    iq_error = np.abs(lum[:, :, 1:] - photo_yiq[:, :, 1:]).mean()
    none_error = np.abs(_yiq(Image.open(outs["none"]))[:, :, 1:] - photo_yiq[:, :, 1:]).mean()
    assert iq_error < 2.0, f"luminance mode changed the photo's chroma by {iq_error:.2f} on average"
    assert none_error > 3 * iq_error, f"plain transfer should change the colours more ({none_error:.2f})"
    assert abs(chroma(Image.open(outs["luminance"])) - chroma(photo)) < 2.0
    # colour matching: the result's colour mean sits nearer the photo's than the style's does
    # colour matching: the result's colour mean sits near the photo's; the plain result's near the style's
    mu_photo, _ = colour_stats(photo)
    mu_style, _ = colour_stats(painting)
    mu_match, _ = colour_stats(Image.open(outs["match"]))
    mu_none, _ = colour_stats(Image.open(outs["none"]))
    gap = np.linalg.norm(mu_style - mu_photo)
    assert np.linalg.norm(mu_match - mu_photo) < 0.25 * gap, (mu_match, mu_photo, mu_style)
    assert np.linalg.norm(mu_none - mu_photo) > 2 * np.linalg.norm(mu_match - mu_photo), (mu_none, mu_match)


def test_several_styles_blend_and_dry_run_writes_nothing(tmp_path, images, capsys):
    content, style = images
    stripes_image(30, 50, seed=5).save(tmp_path / "style2.png")
    code, out, err = run_cli(capsys, "stylize", content, style, tmp_path / "style2.png", "--style-blend", "1,3",
                             "--size", 480, "--dry-run")
    assert code == 0, err
    assert "output size      480x320" in out and "memory needed" in out and "memory free" in out
    assert "style 480x480, 288x480" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["content.png", "style.png", "style2.png"]
    code, out, err = run_cli(capsys, "stylize", content, style, "--style-blend", "1,3", "--dry-run")
    assert code == 2 and "2 style blend weights given for 1 style image" in err


# --- Ctrl-C ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_writes_the_best_image_and_exits_130(tmp_path, images, weights, sig):
    content, style = images
    out = tmp_path / "out.png"
    out.write_bytes(b"previous result")
    args = ["stylize", content, style, "-o", out, "--size", "48", "--iters", "100000", "--print-every", "1",
            "--weights", weights, "--log-json", tmp_path / "log.json", *FAST_LAYERS]
    code, _, err = signal_at_line(tmp_path, args, lambda line: line.startswith("iter") and "loss" in line
                                  and "iter     3" in line, sig)  # iterations are running
    assert code == 130, f"exit {code}: {err}"
    assert "best image so far" in err and str(out) in err, err
    assert "Traceback" not in err, err
    img = Image.open(out)
    assert img.size == (48, 32)
    log = json.loads((tmp_path / "log.json").read_text())
    assert log["status"] == "interrupted" and len(log["records"]) >= 3
    assert leftovers(tmp_path) == []


# --- the demo --------------------------------------------------------------------------------------

def test_demo_runs_end_to_end_at_a_tiny_size(tmp_path, weights):
    result = nstyle(tmp_path, "demo", "--out-dir", "demo", "--scales", "24,32", "--iters", "2,2",
                    "--weights", weights)
    assert result.code == 0, result
    demo = tmp_path / "demo"
    for name in ("content.png", "style.png", "result.png", "sheet.png", "loss.png", "log.json"):
        assert (demo / name).exists(), f"demo did not write {name}: {result}"
    result_img = Image.open(demo / "result.png")
    assert max(result_img.size) == 32
    sheet = Image.open(demo / "sheet.png")
    assert sheet.width > 3 * 256, "the sheet shows content, style and result side by side"
    log = json.loads((demo / "log.json").read_text())
    assert log["status"] == "done" and len(log["records"]) == 4
    assert "demo/sheet.png" in result.out


def test_demo_explains_a_missing_weights_file(tmp_path):
    result = nstyle(tmp_path, "demo", "--out-dir", "demo", "--weights", tmp_path / "nope.h5")
    assert_one_line_error(result, 2, "nope.h5")
