"""Tiled runs without running one: the grid, the blend's partition of unity, the assembly in strips, the
plan and its refusals, --dry-run, the shared style targets and the tiles' term scales (issue 20)."""
import numpy as np
import pytest
from PIL import Image

from nstyle import InputError
from nstyle.app.tiles import plan as tiles_module
from nstyle.app.files.imageio import preprocess
from nstyle.app.run.stages import setup_stage
from nstyle.app.run.stylize import prepare
from nstyle.app.tiles.blend import Blender, assemble
from nstyle.app.tiles.plan import TilePlan, axis_tiles, axis_weights, resolve_overlap
from nstyle.app.tiles.work import style_grams, tile_term_scales
from nstyle.cli import main as cli
from nstyle.model.gradcheck import random_vgg_params
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19

from .clitools import gradient_image, stripes_image

FAST = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


def tile_plan(w, h, tile, overlap, passes):
    return TilePlan((w, h), max(w, h) // 2, (w // 2, h // 2), tile, overlap, passes, 1, [(w, h)])


@pytest.mark.parametrize("length,tile,overlap", [(192, 96, 24), (1000, 256, 64), (257, 256, 0), (96, 96, 0),
                                                 (50, 96, 10), (1001, 100, 49), (6000, 1024, 256)])
def test_axis_tiles_cover_with_at_least_the_overlap(length, tile, overlap):
    spans = axis_tiles(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(e - s == min(tile, length) for s, e in spans)
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        assert s1 < s2 and e1 - s2 >= overlap, "neighbours overlap by at least what was asked"
    fewer = len(spans) - 1  # and no tile could be spared
    assert fewer == 0 or (fewer * tile - (fewer - 1) * overlap) < length


@pytest.mark.parametrize("w,h,tile,overlap,passes", [
    (192, 144, 96, 24, 1), (192, 144, 96, 24, 2), (500, 333, 128, 32, 2), (300, 200, 100, 0, 2),
    (200, 130, 64, 31, 2), (96, 64, 128, 16, 2), (1000, 700, 256, 96, 1)])
def test_blend_weights_are_a_partition_of_unity_covering_every_pixel(w, h, tile, overlap, passes):
    tp = tile_plan(w, h, tile, overlap, passes)
    for pass_no in range(1, passes + 1):
        total = np.zeros((h, w))
        positive = np.zeros((h, w), int)
        for t in tp.tiles(pass_no):
            x0, y0, x1, y1 = t.box
            wt = tp.weights(t)
            assert wt.shape == (y1 - y0, x1 - x0) and (wt >= 0).all() and (wt <= 1 + 1e-6).all()
            total[y0:y1, x0:x1] += wt
            positive[y0:y1, x0:x1] += wt > 0
        np.testing.assert_allclose(total, 1.0, atol=1e-6)
        assert (positive >= 1).all(), "every pixel covered by a tile that counts"
    # the weights are smooth: no jump larger than a raised cosine's steepest step across the overlap
    if overlap:
        for w1 in axis_weights(tp.axes[1][0], w, overlap):
            assert np.abs(np.diff(w1)).max() <= np.pi / 2 / overlap * 1.5


def test_the_ramp_is_the_overlap_wide_in_the_middle_of_a_wider_overlap():
    spans = [(0, 256), (128, 384), (256, 512)]   # tiles spread evenly: 128 pixels of overlap
    first = axis_weights(spans, 512, 32)[0]
    assert (first[:176] == 1).all() and (first[208:] == 0).all() and 0 < first[190] < 1
    hard = axis_weights(spans, 512, 0)[0]        # overlap 0: a cut in the middle, nothing blended
    assert (hard[:191] == 1).all() and (hard[193:] == 0).all()


def test_second_pass_cuts_at_the_first_pass_tile_centres():
    tp = tile_plan(400, 100, 160, 40, 2)
    first, second = tp.axes[1][0], tp.axes[2][0]
    assert len(second) == len(first) + 1
    centres = [(s + e) / 2 for s, e in first]
    for (s, e), (s2, _), c in zip(second, second[1:], centres):
        assert abs((s2 + e) / 2 - c) <= 1, "each seam of the second pass sits in a first-pass tile's middle"
    assert max(e - s for s, e in second) <= 160


def test_assembly_in_strips_reproduces_the_image_its_tiles_were_cut_from(rng):
    w, h = 203, 150
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    tp = tile_plan(w, h, 64, 16, 2)
    for pass_no in (1, 2):
        blender = Blender(tp, pass_no, lambda t: img[t.box[1]:t.box[3], t.box[0]:t.box[2]], None)
        out = np.asarray(assemble(blender, (w, h), rows=17))
        assert np.abs(out.astype(int) - img).max() <= 1
        assert len(blender.cache) <= 2 * len(tp.axes[pass_no][0]), "only the rows of tiles still needed are kept"
    # a tile not made yet is stood in for by the fallback
    blender = Blender(tp, 1, lambda t: None, lambda t: np.full(t.size[::-1] + (3,), 7, np.uint8))
    assert (blender.region((10, 10, 60, 40)) == 7).all()


@pytest.mark.parametrize("value,tile,pixels", [(0.25, 96, 24), (0, 96, 0), (30, 96, 30), (0.125, 1024, 128)])
def test_overlap_is_a_fraction_or_pixels(value, tile, pixels):
    assert resolve_overlap(value, tile) == pixels


@pytest.mark.parametrize("value,message", [(0.5, "not below half"), (48, "not below half"), (2.5, "whole pixels"),
                                           (-1, ">= 0")])
def test_overlap_refused(value, message):
    with pytest.raises(InputError, match=message):
        resolve_overlap(value, 96)


def test_plan_of_a_tiled_run(tmp_path):
    plan = prepare(gradient_image(300, 200), stripes_image(60, 60), size=300, iters=7, tile=128, tile_iters=3,
                   tile_passes=2, **FAST)
    tp = plan.tiles
    assert plan.output_size == (300, 200) and tp.base_size == (150, 100) and plan.stages[0].content_size == (150, 100)
    assert tp.style_sizes == [(300, 300)], "style targets at the output's scale"
    assert plan.stages[0].style_sizes == [(150, 150)], "the base's style at the base's scale"
    assert tp.overlap == 16 and tp.grid(1) == (3, 2) and tp.grid(2) == (4, 3)
    assert plan.total_iters == 7 + 3 * (6 + 12)
    text = "\n".join(plan.describe())
    for needle in ("tiled", "base             150x100", "tile grid        3x2, then 4x3 tiles of 128x128",
                   "overlap 16 px", "2 passes (6 + 12 tiles)", "memory, tile", "total work"):
        assert needle in text
    one_piece = prepare(gradient_image(300, 200), stripes_image(60, 60), size=300, tile="auto", **FAST)
    assert one_piece.tiles is None, "auto: tiles only when one piece does not fit"


@pytest.mark.parametrize("options,message", [
    ({"tile": 20}, "too small"), ({"tile": 128, "scales": (64, 128)}, "--scales"),
    ({"tile": 128, "tile_base": 400}, "larger than the output"), ({"tile": 128, "tile_passes": 3}, "1 or 2"),
    ({"tile": 128, "tile_overlap": 0.6}, "half"), ({"tile": "big"}, "'auto'"),
    ({"tile": 128, "tile_base": 1}, "too small for the network"),
    ({"tile": 128, "region_styles": "red=1", "content_mask": Image.new("RGB", (300, 200), "red")}, "spatial control")])
def test_tiled_plan_refusals(options, message):
    with pytest.raises(InputError, match=message):
        prepare(gradient_image(300, 200), stripes_image(60, 60), size=300, **{**FAST, **options})


def test_auto_tiles_when_one_piece_does_not_fit(monkeypatch):
    monkeypatch.setattr(tiles_module, "available_bytes", lambda: (800 * 2**20, "test"))
    from nstyle.app.run import plan as plan_module
    monkeypatch.setattr(plan_module, "available_bytes", lambda: (800 * 2**20, "test"))
    plan = prepare(gradient_image(300, 200), stripes_image(60, 60), size=2000, tile="auto", **FAST)
    assert plan.tiles is not None and "does not fit" in plan.tiles.reason
    assert plan.tiles.memory.total <= 800 * 2**20 and plan.memory.total <= 800 * 2**20
    plan.check_memory()


def test_dry_run_prints_the_tiles_and_refuses_a_tile_that_does_not_fit(tmp_path, capsys, monkeypatch):
    gradient_image(60, 40).save(tmp_path / "c.png")
    stripes_image(40, 40).save(tmp_path / "s.png")
    args = ["stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "--size", "3000", "--dry-run"]
    assert cli.main(args + ["--tile", "512", "--tile-base", "600", "--tile-passes", "2"]) == 0
    out = capsys.readouterr().out
    assert "tile grid        7x5, then 8x6 tiles of 512x512" in out and "fits" in out and "memory, base" in out
    monkeypatch.setattr(tiles_module, "available_bytes", lambda: (3 * 2**30, "test"))
    assert cli.main(args + ["--tile", "2048", "--tile-base", "600"]) == 2
    out, err = capsys.readouterr()
    assert "DOES NOT FIT" in out and "2048x2000 tile would need" in err and "smaller --tile" in err
    assert cli.main(args + ["--tile-workers", "2"]) == 2
    assert "add --tile" in capsys.readouterr().err


def test_blocked_style_statistics_match_the_whole_image(rng):
    vgg = VGG19(random_vgg_params(rng))
    img = stripes_image(260, 200)  # more pixels than a 32-pixel block and its 96-pixel margins
    layers = ("relu1_1", "relu2_1", "relu3_1")
    whole = style_grams(vgg, [img], layers, [1.0], block=1000)
    objective = StyleObjective(vgg, styles=[preprocess(img)], content_weight=0, style_layers=layers)
    for name in layers:
        np.testing.assert_allclose(whole[name], objective.style_statistics(name), rtol=1e-4, atol=1e-6)
    blocked = style_grams(vgg, [img], layers, [1.0], block=32)   # 9 x 7 blocks, 96 pixels of margin
    for name in layers:
        np.testing.assert_allclose(blocked[name], whole[name], rtol=1e-3, atol=1e-4 * np.abs(whole[name]).max())


def test_blocked_style_statistics_keep_one_block_shape_of_buffers(rng):
    """Blocks of several shapes (edge blocks are smaller) must not pile up buffers in the engine's
    pool, a set for each shape: at 4096 px that took the targets' peak from 3.1 to 5.8 GB."""
    vgg = VGG19(random_vgg_params(rng))
    pool, forward, held = vgg.engine.buffers, vgg.forward, []

    def watched(x, layers):
        out = forward(x, layers)
        h, w = x.shape[2:]
        largest_map = 64 * (h + 3) * (w + 2) * x.dtype.itemsize  # conv1's output for this block
        held.append(pool.nbytes() / largest_map)
        return out

    vgg.forward = watched
    style_grams(vgg, [stripes_image(260, 200)], ("relu1_1", "relu2_1"), [1.0], block=32)
    assert len(held) == 9 * 7 and min(held) > 0
    assert max(held) <= 3, held  # a few of this block's maps at most, not a set per block shape


def test_a_tile_as_large_as_the_image_has_the_full_objective(rng):
    """One tile covering everything: its objective (shared targets, tile term scales) is the one-piece
    run's, term for term -- the plumbing adds nothing of its own."""
    vgg = VGG19(random_vgg_params(rng))
    content, style = gradient_image(120, 90), stripes_image(70, 70)
    for scaling in ("invariant", "paper"):
        plan = prepare(content, style, size=120, iters=0, weight_scaling=scaling, **FAST)
        _, full, x = setup_stage(plan, plan.stages[0], vgg, None)
        tiled = prepare(content, style, size=120, iters=0, tile=128, weight_scaling=scaling, **FAST)
        grams = style_grams(vgg, [style.resize((120, 120), Image.Resampling.LANCZOS)], FAST["style_layers"],
                            [1.0], 128)
        tile = StyleObjective(vgg, content=preprocess(content.resize((120, 90), Image.Resampling.LANCZOS)),
                              style_grams=grams, term_scales=tile_term_scales(tiled, 120, 90), **FAST)
        assert tile.value(x) == pytest.approx(full.value(x), rel=1e-5)
