"""Colour handling: YIQ round trip, luminance matching, colour matching (mean and covariance), restoring
the photo's chroma."""
import numpy as np
from PIL import Image

from nstyle.app.run.color import (
    chroma,
    colour_stats,
    luminance,
    match_colors,
    match_luminance,
    restore_colors,
    rgb_to_yiq,
    yiq_to_rgb,
)


def random_rgb(rng, h=24, w=32, tint=(1.0, 1.0, 1.0)):
    arr = rng.uniform(0, 255, (h, w, 3)) * np.asarray(tint)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def test_yiq_round_trip(rng):
    rgb = rng.uniform(0, 255, (5, 7, 3))
    np.testing.assert_allclose(yiq_to_rgb(rgb_to_yiq(rgb)), rgb, atol=1e-9)
    grey = np.full((2, 2, 3), 100.0)
    yiq = rgb_to_yiq(grey)
    np.testing.assert_allclose(yiq[..., 0], 100.0)
    np.testing.assert_allclose(yiq[..., 1:], 0.0, atol=1e-9)


def test_match_luminance_takes_the_contents_mean_and_spread(rng):
    content = random_rgb(rng, tint=(0.3, 0.3, 0.3))
    style = random_rgb(rng, tint=(1.0, 0.9, 0.8))
    out = match_luminance(style, content)
    arr = np.asarray(out, dtype=float)
    assert np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]), "grey"
    y, yc = luminance(out), luminance(content)
    assert abs(y.mean() - yc.mean()) < 1.0 and abs(y.std() - yc.std()) < 1.0, (y.mean(), yc.mean())
    flat = match_luminance(Image.new("RGB", (8, 8), (50, 50, 50)), content)
    assert abs(luminance(flat).mean() - yc.mean()) < 1.0, "a flat style only moves its mean"


def test_match_colors_takes_the_contents_mean_and_covariance(rng):
    content = random_rgb(rng, tint=(1.0, 0.5, 0.2))
    yy, xx = np.mgrid[0:40, 0:40]
    noise = rng.uniform(0, 60, (40, 40, 3))
    style = Image.fromarray((np.stack([xx * 2, yy * 3, 200 - xx * 3], -1) + noise).clip(0, 255).astype(np.uint8))
    mu_c, cov_c = colour_stats(content)
    mu_m, cov_m = colour_stats(match_colors(style, content))
    assert np.abs(mu_m - mu_c).max() < 2.0, (mu_m, mu_c)
    # up to clipping to 0..255 (a few percent of the pixels here), which trims the largest variance
    assert np.abs(cov_m - cov_c).max() < 0.12 * np.abs(cov_c).max(), (cov_m, cov_c)
    _, cov_s = colour_stats(style)
    assert np.abs(cov_s - cov_c).max() > 0.5 * np.abs(cov_c).max(), "the style's colours really were different"


def test_restore_colors_keeps_the_results_luminance_and_the_contents_chroma(rng):
    content = random_rgb(rng, 16, 16, tint=(1.0, 0.6, 0.3))
    result = random_rgb(rng, 16, 16)
    out = restore_colors(result, content)
    yiq_out, yiq_content = rgb_to_yiq(out), rgb_to_yiq(content)
    inside = np.all((np.asarray(out) > 0) & (np.asarray(out) < 255), axis=2)  # where clipping did not bite
    assert np.abs(yiq_out[..., 0] - luminance(result))[inside].max() < 1.5
    assert np.abs(yiq_out[..., 1:] - yiq_content[..., 1:])[inside].max() < 1.5
    assert abs(chroma(out) - chroma(content)) < 0.15 * chroma(content)
    small = restore_colors(result.resize((8, 8)), content)
    assert small.size == (8, 8), "the content is resized to the result"
