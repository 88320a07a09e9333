"""Reconstructions from white noise (content from one layer, style from a set of layers), their sheet,
the resumable cell store behind it, and `nstyle reconstruct`, with small random weights."""
import json

import numpy as np
import pytest
from PIL import Image

import nstyle.app.figures.reconstruct as rec
from nstyle.cli import main as cli
from nstyle.app.figures.cells import CellsInterrupted, CellStore
from nstyle.app.figures.sheet import layout_sheet
from nstyle.errors import InputError
from nstyle.model.gradcheck import random_vgg_params
from nstyle.app.files.imageio import deprocess, preprocess
from nstyle.app.files.imageio import white_noise
from nstyle.app.run import network
from nstyle.model.vgg import VGG19


def synthetic_image(h=24, w=32):
    """Ramps in red and green, stripes in blue: structure at two scales and every channel in use."""
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = (np.sin(xx / 2.0) > 0) * 200 + 30
    return np.stack([xx * 255 // w, yy * 255 // h, stripes], -1).astype(np.uint8)


@pytest.fixture
def vgg(rng):
    return VGG19(random_vgg_params(rng))


def noise_start(img, seed=0):
    return preprocess(white_noise(img.shape[1], img.shape[0], seed))


class CellRuns(list):
    """A reconstruct_sheet callback that records every cell optimised (its first iteration; a reused
    cell has none)."""

    def __call__(self, cell, record, _get_image):
        if record["iter"] == 1:
            self.append(cell.name)


def test_content_reconstruction_from_relu1_1_gets_back_the_image(vgg):
    img = synthetic_image()
    out = rec.reconstruct(img, content_layer="relu1_1", size=32, iters=40, seed=3, vgg=vgg)
    assert out.size == (32, 24)
    start = np.abs(np.asarray(deprocess(noise_start(img, 3)), float) - img).mean()
    end = np.abs(np.asarray(out, float) - img).mean()
    assert end < start / 15 and end < 5, f"mean pixel error went from {start:.2f} only to {end:.2f}"


def test_style_reconstruction_lowers_the_gram_loss_by_a_large_factor(vgg):
    img = synthetic_image()
    layers = ("relu1_1", "relu2_1")
    out = rec.reconstruct(img, style_layers=layers, size=32, iters=40, seed=1, vgg=vgg)
    objective = rec.reconstruction_objective(vgg, preprocess(img), style_layers=layers)
    start, end = objective.value(noise_start(img, 1)), objective.value(preprocess(out))
    assert end < start / 300, f"Gram loss went from {start:.3e} only to {end:.3e}"
    # the arrangement is not what a Gram matrix keeps: the pixels stay far from the image
    assert np.abs(np.asarray(out, float) - img).mean() > 20


def test_reconstruction_is_seeded(vgg):
    img = synthetic_image()
    a = rec.reconstruct(img, content_layer="conv2_1", size=32, iters=3, seed=5, vgg=vgg)
    b = rec.reconstruct(img, content_layer="conv2_1", size=32, iters=3, seed=5, vgg=vgg)
    c = rec.reconstruct(img, content_layer="conv2_1", size=32, iters=3, seed=6, vgg=vgg)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_one_term_at_a_time(vgg):
    x = preprocess(synthetic_image())
    for kwargs in ({}, {"content_layer": "relu1_1", "style_layers": ("relu1_1",)}, {"style_layers": ()},
                   {"content_layer": ("relu1_1", "relu2_1")}):
        with pytest.raises(InputError):
            rec.reconstruction_objective(vgg, x, **kwargs)
    with pytest.raises(InputError, match="relu9_1"):
        rec.reconstruction_objective(vgg, x, content_layer="relu9_1")


def test_sheet_has_a_labelled_cell_per_layer_and_resumes(vgg, tmp_path):
    runs = CellRuns()
    out = tmp_path / "layers.png"
    kwargs = dict(content_layers=("relu1_1", "conv2_1", "relu2_1"), style_layers=("relu1_1", "relu2_1"),
                  out=out, size=32, iters=3, vgg=vgg, callback=runs)
    sheet, cells = rec.reconstruct_sheet(synthetic_image(), **kwargs)
    assert len(runs) == 5
    assert [(c.row, c.col) for c in cells] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert [c.label for c in cells][-1] == "style relu1_1..relu2_1"
    assert [c.name for c in cells][-2:] == ["style-relu1_1", "style-relu1_1+relu2_1"]
    assert Image.open(out).size == sheet.size
    folder = tmp_path / "layers_cells"
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(f"{c.name}.png" for c in cells)
    for cell in cells:
        assert np.array_equal(np.asarray(sheet.crop(cell.box)), np.asarray(cell.image)), cell.label
    left = min(c.box[0] for c in cells)
    assert (np.asarray(sheet.crop((0, 0, left, sheet.height))) < 128).any(), "row labels missing"

    sheet2, cells2 = rec.reconstruct_sheet(synthetic_image(), **kwargs)
    assert len(runs) == 5, "the second call must reuse every cell"
    assert all(c.reused for c in cells2)
    assert np.array_equal(np.asarray(sheet), np.asarray(sheet2))

    (folder / f"{cells[1].name}.png").write_bytes(b"not a png")  # a broken cell is made again
    (folder / f"{cells[4].name}.png").unlink()
    rec.reconstruct_sheet(synthetic_image(), **kwargs)
    assert len(runs) == 7
    # other rows with the same settings: only the cells not made before are optimised
    _, cells3 = rec.reconstruct_sheet(synthetic_image(), **{**kwargs, "content_layers": ("relu1_1", "relu1_2"),
                                                            "style_layers": ("relu1_1", "relu1_2")})
    assert len(runs) == 9 and [c.reused for c in cells3] == [True, False, True, False]
    with pytest.raises(InputError, match="twice"):
        rec.reconstruct_sheet(synthetic_image(), **{**kwargs, "content_layers": ("relu1_1", "relu1_1")})


def test_other_settings_are_refused_unless_restarting(vgg, tmp_path):
    runs = CellRuns()
    out = tmp_path / "s.png"
    kwargs = dict(content_layers=("relu1_1",), style_layers=("relu1_1",), out=out, size=24, vgg=vgg,
                  callback=runs)
    rec.reconstruct_sheet(synthetic_image(), iters=2, **kwargs)
    with pytest.raises(InputError, match="iters: was 2, now 3"):
        rec.reconstruct_sheet(synthetic_image(), iters=3, **kwargs)
    with pytest.raises(InputError, match="image differs"):
        rec.reconstruct_sheet(synthetic_image()[::-1].copy(), iters=2, **kwargs)
    assert len(runs) == 2
    _, cells = rec.reconstruct_sheet(synthetic_image(), iters=3, restart=True, **kwargs)
    assert len(runs) == 4 and not any(c.reused for c in cells)
    assert json.loads((tmp_path / "s_cells" / "settings.json").read_text())["settings"]["options"]["iters"] == 3


def test_foreign_folder_is_not_used(tmp_path):
    folder = tmp_path / "x_cells"
    folder.mkdir()
    (folder / "holiday.png").write_bytes(b"")
    with pytest.raises(InputError, match="not a cells folder"):
        CellStore(folder, {"a": 1})
    assert (folder / "holiday.png").exists()


def test_interrupted_sheet_keeps_finished_cells_and_resumes(vgg, tmp_path):
    runs = CellRuns()
    out = tmp_path / "i.png"
    kwargs = dict(content_layers=("relu1_1", "relu2_1", "relu3_1"), style_layers=(), out=out, size=24,
                  iters=3, vgg=vgg)

    def ctrl_c_in_third_cell(cell, record, get_image):
        runs(cell, record, get_image)
        if cell.col == 2 and record["iter"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(CellsInterrupted) as info:
        rec.reconstruct_sheet(synthetic_image(), callback=ctrl_c_in_third_cell, **kwargs)
    assert (info.value.finished, info.value.total) == (2, 3)
    assert len(list((tmp_path / "i_cells").glob("*.png"))) == 2
    assert out.exists(), "the sheet of the finished cells is written as they finish"
    _, cells = rec.reconstruct_sheet(synthetic_image(), callback=runs, **kwargs)
    assert len(runs) == 4 and [c.reused for c in cells] == [True, True, False]


def test_layout_sheet_places_cells_labels_and_captions():
    cells = [[Image.new("RGB", (20, 10), (0, 200, 0)), None], [Image.new("RGB", (20, 10), (0, 0, 200)),
                                                               Image.new("RGB", (16, 8), (200, 0, 0))]]
    sheet, boxes = layout_sheet(cells, row_labels=["a", "b"], col_labels=["a much longer column label", "y"],
                                captions=[["c1", "c2"], ["c3", "c4"]], title="title")
    assert len(boxes) == 2 and all(len(r) == 2 for r in boxes)
    assert boxes[0][1][0] - boxes[0][0][0] > 20 + 6, "a wide column label widens its column"
    arr = np.asarray(sheet)
    l, t, r, b = boxes[1][0]
    assert (arr[t:b, l:r] == (0, 0, 200)).all()
    l, t, r, b = boxes[0][1]
    assert (arr[t:b, l:r] == (220, 220, 220)).all(), "a missing cell is a grey box"
    assert (arr[:boxes[0][0][1]] < 128).any(), "column labels and title are drawn above the cells"
    with pytest.raises(ValueError):
        layout_sheet(cells, row_labels=["only one"])


@pytest.fixture
def small_weights(monkeypatch, rng):
    """the weights file reads as a small random network, so the commands run without the real weights."""
    params = random_vgg_params(rng)
    monkeypatch.setattr(network, "load_params", lambda path=None: params)


def test_reconstruct_command(small_weights, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(synthetic_image()).save(src)
    out = tmp_path / "out.png"
    assert cli.main(["reconstruct", str(src), "--content-layer", "relu2_1", "-o", str(out),
                     "--size", "24", "--iters", "2"]) == 0
    assert Image.open(out).size == (24, 18) and capsys.readouterr().out.strip() == str(out)
    assert cli.main(["reconstruct", str(src), "--style-layers", "relu1_1,relu2_1", "-o", str(out),
                     "--size", "24", "--iters", "2"]) == 0
    sheet = tmp_path / "sheet.png"
    assert cli.main(["reconstruct", str(src), "--all", "--content-layer", "relu1_1,relu2_1", "-o", str(sheet),
                     "--size", "24", "--iters", "2"]) == 0
    assert len(list((tmp_path / "sheet_cells").glob("*.png"))) == 2
    assert capsys.readouterr().err.count("optimising") == 2
    assert cli.main(["reconstruct", str(src), "--all", "--content-layer", "relu1_1,relu2_1", "-o", str(sheet),
                     "--size", "24", "--iters", "2"]) == 0
    assert capsys.readouterr().err.count("reused") == 2


@pytest.mark.parametrize("argv, message", [
    ([], "--content-layer"),
    (["--content-layer", "relu1_1,relu2_1"], "one content layer at a time"),
    (["--content-layer", "relu1_1", "--style-layers", "relu1_1"], "--content-layer"),
    (["--content-layer", "relu7_1"], "relu7_1"),
    (["--content-layer", "relu1_1", "--OUT-IS-IN"], "never overwrites"),
])
def test_reconstruct_command_refuses_bad_usage(small_weights, tmp_path, capsys, argv, message):
    src = tmp_path / "in.png"
    Image.fromarray(synthetic_image()).save(src)
    out = str(src) if "--OUT-IS-IN" in argv else str(tmp_path / "o.png")
    argv = [a for a in argv if a != "--OUT-IS-IN"]
    code = cli.main(["reconstruct", str(src), "-o", out, "--size", "16", "--iters", "1"] + argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, (argv, code, err)


def test_a_failing_cell_is_named_and_not_stored(tmp_path):
    from nstyle.app.figures.cells import Cell, fill_cells
    from nstyle.errors import RunError

    store = CellStore(tmp_path / "f_cells", {"job": "test"})
    cells = [Cell(0, 0, "ok", "first", {}), Cell(0, 1, "bad", "second", {})]

    def make(cell):
        if cell.name == "bad":
            raise RunError("the loss became nan")
        return Image.new("RGB", (4, 3))

    with pytest.raises(RunError, match="^cell second: the loss became nan$"):
        fill_cells(cells, make, (4, 3), store=store)
    assert store.load("ok", (4, 3)) is not None and not store.path("bad").exists()


def test_missing_or_broken_input_is_a_usage_error(small_weights, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    for name in ("missing.png", "broken.png"):
        code = cli.main(["reconstruct", str(tmp_path / name), "--content-layer", "relu1_1", "-o",
                         str(tmp_path / "o.png")])
        err = capsys.readouterr().err
        assert code == 2 and name in err and "internal error" not in err, (name, err)
    code = cli.main(["grid", str(tmp_path / "missing.png"), str(broken), "-o", str(tmp_path / "g.png")])
    err = capsys.readouterr().err
    assert code == 2 and "content image" in err and "no such file" in err, err
