"""The ratio x depth grid: one labelled cell per (alpha/beta, depth), resumable, and `nstyle grid`."""
import numpy as np
import pytest
from PIL import Image

import nstyle.app.figures.grid as grid_module
from nstyle.cli import main as cli
from nstyle.errors import InputError
from nstyle.model.gradcheck import random_vgg_params
from nstyle.app.figures.grid import format_ratio, grid_cells, make_grid
from nstyle.app.run import network
from nstyle.model.vgg import VGG19

from .test_optimize import synthetic_pair


@pytest.fixture
def images(rng):
    content, style = synthetic_pair(rng, h=18, w=24)
    return Image.fromarray(content), Image.fromarray(style)


@pytest.fixture
def vgg(rng):
    return VGG19(random_vgg_params(rng))


class CellRuns(list):
    """A make_grid callback that records (style weight, style layers) of every cell optimised: the
    first iteration of a cell is its start, and a reused cell has none."""

    def __call__(self, cell, record, _get_image):
        if record["iter"] == 1:
            self.append((1.0 / cell.params["ratio"], cell.params["style_layers"]))


def test_ratio_names_are_short_and_distinct():
    assert [format_ratio(r) for r in (1e-5, 1e-4, 2.5e-4, 1e-2, 1.0, 30)] == \
        ["1e-5", "1e-4", "2.5e-4", "1e-2", "1e0", "3e1"]
    cells = grid_cells([1e-3, 1e-2], [1, 3])
    assert [c.name for c in cells] == ["depth1-ratio1e-3", "depth1-ratio1e-2", "depth3-ratio1e-3",
                                       "depth3-ratio1e-2"]
    assert cells[2].params["style_layers"] == ("relu1_1", "relu2_1", "relu3_1")


def test_grid_lays_out_one_labelled_cell_per_ratio_and_depth(images, vgg, tmp_path):
    runs = CellRuns()
    out = tmp_path / "grid.png"
    ratios, depths = [1e-3, 1e-1], [1, 2, 3]
    sheet, cells = make_grid(*images, out=out, ratios=ratios, depths=depths, size=24, iters=3, vgg=vgg,
                             callback=runs)
    assert len(cells) == 6 and len(runs) == 6
    assert sorted(set(runs)) == sorted({(1 / r, ("relu1_1", "relu2_1", "relu3_1")[:d]) for r in ratios for d in depths})
    assert {(c.row, c.col) for c in cells} == {(r, c) for r in range(3) for c in range(2)}
    assert Image.open(out).size == sheet.size
    assert sorted(p.name for p in (tmp_path / "grid_cells").glob("*.png")) == sorted(f"{c.name}.png" for c in cells)
    for cell in cells:
        assert cell.image.size == (24, 18), cell.label
        assert np.array_equal(np.asarray(sheet.crop(cell.box)), np.asarray(cell.image)), cell.label
    arr = np.asarray(sheet)
    top = min(c.box[1] for c in cells)
    left = min(c.box[0] for c in cells)
    assert (arr[:top] < 128).any(), "column labels (alpha/beta) missing above the cells"
    assert (arr[top:, :left] < 128).any(), "row labels (depth) missing left of the cells"
    # the ratio reaches the optimisation: two columns of one row are different pictures
    assert not np.array_equal(np.asarray(cells[0].image), np.asarray(cells[1].image))


def test_grid_resumes_from_existing_cells(images, vgg, tmp_path):
    runs = CellRuns()
    out = tmp_path / "g.png"
    kwargs = dict(out=out, ratios=[1e-2, 1e-1], depths=[1, 2], size=24, iters=2, vgg=vgg, callback=runs)
    sheet, _ = make_grid(*images, **kwargs)
    assert len(runs) == 4
    sheet2, cells = make_grid(*images, **kwargs)
    assert len(runs) == 4, "a resumed grid must not optimise any finished cell"
    assert all(c.reused for c in cells)
    assert np.array_equal(np.asarray(sheet), np.asarray(sheet2))
    # a wider grid with the same settings reuses the four cells and makes only the new column
    _, cells = make_grid(*images, **{**kwargs, "ratios": [1e-2, 1e-1, 1.0]})
    assert len(runs) == 6 and sum(c.reused for c in cells) == 4
    # a cell of the wrong size is not valid
    Image.new("RGB", (5, 5)).save(tmp_path / "g_cells" / f"{cells[0].name}.png")
    make_grid(*images, **kwargs)
    assert len(runs) == 7
    with pytest.raises(InputError, match="seed"):
        make_grid(*images, **{**kwargs, "seed": 1})


@pytest.mark.parametrize("kwargs, message", [
    ({"ratios": [0.0]}, "> 0"), ({"ratios": [float("nan")]}, "> 0"), ({"ratios": []}, "at least one ratio"),
    ({"ratios": [1e-3, 0.001]}, "repeat"), ({"depths": [6]}, "between 1 and 5"), ({"depths": [0]}, "between"),
    ({"depths": [2, 2]}, "repeat"), ({"depths": [1.5]}, "between"), ({"init": "banana"}, "init"),
    ({"style_layers": ("relu1_1", "relu8_1"), "depths": [2]}, "relu8_1"),
])
def test_grid_refuses_bad_settings(images, vgg, kwargs, message):
    with pytest.raises(InputError, match=message):
        make_grid(*images, size=16, iters=1, vgg=vgg, **{"depths": [1], **kwargs})


def test_grid_command(images, rng, tmp_path, monkeypatch, capsys):
    params = random_vgg_params(rng)
    monkeypatch.setattr(network, "load_params", lambda path=None: params)
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    images[0].save(content)
    images[1].save(style)
    out = tmp_path / "sheet.png"
    argv = ["grid", str(content), str(style), "-o", str(out), "--ratios", "1e-3,1e-2", "--depths", "1,2",
            "--size", "20", "--iters", "2"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.strip() == str(out) and out.exists()
    assert cli.main(argv) == 0
    assert capsys.readouterr().err.count("reused") == 4
    assert cli.main(argv[:-1] + ["3"]) == 2
    assert "--restart" in capsys.readouterr().err
    assert cli.main(argv[:-1] + ["3", "--restart"]) == 0
    assert cli.main(argv + ["--depths", "7"]) == 2
    assert "depth 7" in capsys.readouterr().err
    assert cli.main(["grid", str(content), str(style), "-o", str(style)]) == 2
    assert "never overwrites" in capsys.readouterr().err
