"""A command's flags reach its API function with no list of names kept by hand (issue 25: a flag parsed
and then dropped on the way is how ``--lbfgs-impl`` was lost in tiles and frames): every keyword of
``reconstruct`` and ``make_grid`` that the command has a flag for arrives with the value parsed."""
import argparse

from nstyle.cli import grid as grid_command
from nstyle.cli import main as cli
from nstyle.cli import reconstruct as reconstruct_command


def flag_dests(command):
    parser = cli.build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return {a.dest for a in sub._actions}


# Flags at values other than their defaults, and what the API should receive for them.
COMMON = (["--size", "99", "--iters", "3", "--seed", "7", "--lbfgs-impl", "nstyle", "--weight-scaling", "paper",
           "--pooling", "max", "--engine", "reference", "--weights", "w.h5", "--no-memory-check"],
          {"size": 99, "iters": 3, "seed": 7, "lbfgs_impl": "nstyle", "weight_scaling": "paper", "pooling": "max",
           "engine": "reference", "weights": "w.h5", "check_memory": False})


def capture(monkeypatch, module, name):
    seen = {}
    monkeypatch.setattr(module, "check_run", lambda **kw: None)
    monkeypatch.setattr(module, name, lambda *args, **kwargs: seen.update(kwargs))
    monkeypatch.setattr(module, "print_path", lambda path: None)
    return seen


def test_reconstruct_passes_every_flag_it_has(monkeypatch, tmp_path):
    seen = capture(monkeypatch, reconstruct_command, "reconstruct")
    monkeypatch.setattr(reconstruct_command, "save_image", lambda image, path: None)
    argv, expected = COMMON
    code = cli.main(["reconstruct", "img.png", "-o", str(tmp_path / "o.png"), "--content-layer", "relu2_1",
                     "--no-bounds", "--mask", "seg.png", "--mask-mode", "all", *argv])
    assert code == 0
    expected = {**expected, "bounds": False, "mask": "seg.png", "mask_mode": "all", "content_layer": "relu2_1"}
    assert {k: seen.get(k) for k in expected} == expected
    # the layers say what to reconstruct (one of the two); every other keyword with a flag is an option
    keywords = flag_dests("reconstruct") & set(reconstruct_command.DEFAULTS) - {"content_layer", "style_layers"}
    assert len(keywords) >= 13 and keywords <= set(seen), sorted(keywords - set(seen))


def test_a_reconstruction_sheet_gets_the_same_options(monkeypatch, tmp_path):
    seen = capture(monkeypatch, reconstruct_command, "reconstruct_sheet")
    argv, expected = COMMON
    assert cli.main(["reconstruct", "img.png", "-o", str(tmp_path / "o.png"), "--all", *argv]) == 0
    assert {k: seen.get(k) for k in expected} == expected


def test_grid_passes_every_flag_it_has(monkeypatch, tmp_path):
    seen = capture(monkeypatch, grid_command, "make_grid")
    argv, expected = COMMON
    code = cli.main(["grid", "c.png", "s.png", "-o", str(tmp_path / "g.png"), "--ratios", "0.1,1", "--depths", "2",
                     "--init", "content", "--content-layer", "relu3_1", "--style-layers", "relu1_1,relu2_1",
                     "--restart", *argv])
    assert code == 0
    expected = {**expected, "ratios": [0.1, 1.0], "depths": [2], "init": "content", "content_layer": "relu3_1",
                "style_layers": ("relu1_1", "relu2_1"), "restart": True, "out": str(tmp_path / "g.png")}
    assert {k: seen.get(k) for k in expected} == expected
    keywords = flag_dests("grid") & set(grid_command.DEFAULTS)
    assert len(keywords) >= 15 and keywords <= set(seen), sorted(keywords - set(seen))
