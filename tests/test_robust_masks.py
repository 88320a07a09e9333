"""Mask colour snapping is linear in the pixels (issue 26, item 3): a noise-like mask is refused in
seconds with an error that names a bounded number of colours, and snapping agrees with the obvious
per-pixel, per-colour loop."""
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from nstyle.app.run import masks
from nstyle.app.run.masks import read_segmentation
from nstyle.errors import InputError

from .clitools import assert_one_line_error, env_for, gradient_image, random_weights_file, stripes_image


def snap_naive(rgb, colors):
    """Every pixel against every colour, the first nearest kept: the definition snapping must meet."""
    best = np.zeros(rgb.shape[:2], np.int32)
    best_d = np.full(rgb.shape[:2], np.inf)
    for i, c in enumerate(colors):
        d = ((rgb.astype(np.int64) - np.array(c, np.int64)) ** 2).sum(axis=2)
        closer = d < best_d
        best[closer], best_d[closer] = i, d[closer]
    return best


def regions_with_noise(w, h, seed, noise=0.3):
    """Four flat regions, with a fraction of the pixels replaced by random colours (stray pixels never
    fill a 3x3 block, so the colours in use stay the four)."""
    rng = np.random.default_rng(seed)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2] = (255, 0, 0)
    arr[: h // 2, w // 2:] = (0, 0, 255)
    arr[h // 2:, : w // 2] = (10, 200, 30)
    arr[h // 2:, w // 2:] = (250, 250, 250)
    stray = rng.uniform(size=(h, w)) < noise
    arr[stray] = rng.integers(0, 256, (int(stray.sum()), 3), dtype=np.uint8)
    return arr


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_snapping_agrees_with_the_per_pixel_loop(seed):
    rgb = regions_with_noise(61, 47, seed)
    colors = masks.colors_in_use(rgb)
    assert len(colors) == 4, f"seed {seed}: {colors}"
    # ties included: a colour equally far from two in use goes to the first, as in the loop
    rgb[0, 0] = (128, 0, 128)
    np.testing.assert_array_equal(masks.snap(rgb, colors), snap_naive(rgb, colors), err_msg=f"seed {seed}")


def test_a_large_mask_with_stray_colours_snaps_in_seconds():
    rgb = regions_with_noise(1500, 1200, seed=3, noise=0.5)  # ~900,000 distinct stray colours
    start = time.perf_counter()
    seg = read_segmentation(Image.fromarray(rgb, "RGB"), "content mask", (1500, 1200))
    seconds = time.perf_counter() - start
    assert len(seg.colors) == 4 and seg.labels.shape == (1200, 1500)
    assert seconds < 20, f"{seconds:.1f} s for 1.8 megapixels"


@pytest.mark.parametrize("kind", ["noise", "photo"])
def test_a_mask_that_is_not_a_segmentation_is_refused_naming_a_few_colours(kind):
    rng = np.random.default_rng(7)
    if kind == "noise":
        rgb = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    else:  # a smooth photo: every 3x3 block of the flat sky is one of many slightly different colours
        rgb = np.asarray(gradient_image(400, 300).resize((400, 300)))
        rgb = (rgb // 4 * 4).astype(np.uint8)
        rgb = np.repeat(np.repeat(rgb[::3, ::3], 3, axis=0), 3, axis=1)[:300, :400]
    start = time.perf_counter()
    with pytest.raises(InputError) as info:
        read_segmentation(Image.fromarray(rgb, "RGB"), "content mask", (400, 300))
    assert time.perf_counter() - start < 10
    message = info.value.message
    assert "content mask" in message and f"at most {masks.MAX_REGIONS}" in message
    assert message.count("#") <= 5 + 1 and len(message) < 300, message  # a bounded number of colours


@pytest.mark.slow
def test_a_noise_mask_through_the_command_line_is_one_line_in_seconds(tmp_path):
    weights = random_weights_file(tmp_path)
    gradient_image(1200, 900).save(tmp_path / "photo.png")
    stripes_image(64, 64).save(tmp_path / "style.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8), "RGB").save(
        tmp_path / "noise.png")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nstyle", "stylize", "photo.png", "style.png", "-o", "out.png",
                           "--weights", str(weights), "--content-mask", "noise.png", "--region-styles", "red=1",
                           "--size", "64", "--iters", "1"], cwd=tmp_path, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start

    class R:
        code, out, err = proc.returncode, proc.stdout, proc.stderr

    assert_one_line_error(R, 2, "noise.png", "colours in use")
    assert seconds < 60, seconds
