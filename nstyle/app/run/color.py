"""Keeping the photo's colours: luminance-only transfer and colour matching.

Both come from Gatys, Ecker, Bethge, Hertzmann and Shechtman, "Controlling Perceptual Factors in Neural
Style Transfer" (CVPR 2017), section 5:

- Luminance-only transfer: run the algorithm on the luminance channel alone, after giving the style's
  luminance the content's mean and spread (``L_s' = sigma_c / sigma_s * (L_s - mu_s) + mu_c``, so that a
  dark painting does not darken the photo), then put the content's colour channels back. We use YIQ,
  as the paper does: Y is the luminance, I and Q carry the colour.
- Colour matching: before the run, map the style image's pixel colours linearly so their mean and
  3x3 covariance equal the content's: ``x' = A (x - mu_s) + mu_c`` with ``A Sigma_s A^T = Sigma_c``.
  Of the many such A we take ``A = Sigma_c^(1/2) Sigma_s^(-1/2)`` with symmetric square roots (the
  paper's "image analogies" choice; a Cholesky-based A also matches the covariance but rotates colours
  more).

Images here are RGB uint8 PIL images or float (H, W, 3) arrays on the 0..255 scale.
"""
import numpy as np
from PIL import Image

# NTSC RGB -> YIQ (rows: Y, I, Q). Y is the luminance a grey-scale television showed.
RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                       [0.595716, -0.274453, -0.321263],
                       [0.211456, -0.522591, 0.311135]])
YIQ_TO_RGB = np.linalg.inv(RGB_TO_YIQ)


def _float_rgb(img):
    arr = np.asarray(img.convert("RGB") if isinstance(img, Image.Image) else img, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image (H, W, 3); got shape {arr.shape}")
    return arr


def _to_image(arr):
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def rgb_to_yiq(rgb):
    """(H, W, 3) RGB floats (0..255) -> (H, W, 3) YIQ floats (Y on 0..255)."""
    return _float_rgb(rgb) @ RGB_TO_YIQ.T


def yiq_to_rgb(yiq):
    """Inverse of :func:`rgb_to_yiq` (not clipped)."""
    return np.asarray(yiq, dtype=np.float64) @ YIQ_TO_RGB.T


def luminance(img):
    """The Y channel of an RGB image, (H, W) floats on 0..255."""
    return rgb_to_yiq(img)[:, :, 0]


def grey_image(y):
    """A luminance array as an RGB image with R = G = B = Y (what the network sees in luminance mode)."""
    y = np.asarray(y, dtype=np.float64)
    return _to_image(np.repeat(y[:, :, None], 3, axis=2))


def match_luminance(style_img, content_img):
    """The style's luminance shifted and scaled to the content's mean and standard deviation, as grey RGB."""
    ys, yc = luminance(style_img), luminance(content_img)
    spread = ys.std()
    # A flat style (spread 0) has no contrast to rescale: only its mean moves.
    gain = yc.std() / spread if spread > 1e-6 else 1.0
    return grey_image(gain * (ys - ys.mean()) + yc.mean())


def restore_colors(result_img, content_img):
    """The result's luminance with the content's I and Q channels (the content resized to the result).

    This is the last step of luminance-only transfer; it also works on a full-colour result (its own
    colours are then replaced by the photo's).
    """
    if content_img.size != result_img.size:
        content_img = content_img.convert("RGB").resize(result_img.size, Image.Resampling.LANCZOS)
    yiq = rgb_to_yiq(content_img)
    yiq[:, :, 0] = luminance(result_img)
    return _to_image(yiq_to_rgb(yiq))


def _sym_power(cov, power, eps=1e-5):
    """cov^power for a symmetric positive semi-definite 3x3 matrix (eigenvalues floored at eps)."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.maximum(vals, eps)
    return (vecs * vals ** power) @ vecs.T


def colour_stats(img):
    """Mean (3,) and covariance (3, 3) of an image's RGB pixels."""
    px = _float_rgb(img).reshape(-1, 3)
    mean = px.mean(axis=0)
    centred = px - mean
    return mean, centred.T @ centred / max(1, len(px))


def match_colors(style_img, content_img):
    """The style image with its colour mean and covariance mapped to the content's (RGB PIL image)."""
    mu_s, cov_s = colour_stats(style_img)
    mu_c, cov_c = colour_stats(content_img)
    # eps: a flat or two-colour style has a singular covariance; flooring its eigenvalues keeps A finite.
    A = _sym_power(cov_c, 0.5) @ _sym_power(cov_s, -0.5, eps=1e-2)
    px = _float_rgb(style_img)
    return _to_image((px - mu_s) @ A.T + mu_c)


def chroma(img):
    """Mean distance from grey per pixel: sqrt(I^2 + Q^2) averaged -- how colourful an image is."""
    yiq = rgb_to_yiq(img)
    return float(np.hypot(yiq[:, :, 1], yiq[:, :, 2]).mean())
