"""What every benchmark shares and may import without side effects: the objective's constants, VGG-19's
widths, seeded weights of those widths and seeded images.

bench/rivals_common.py re-exports all of it for the scripts; asv's benchmarks (bench/asv_benchmarks/)
import this module directly, because rivals_common puts this checkout's nstyle first on sys.path and
asv must measure the nstyle it installed. Nothing here imports nstyle except ``images`` reading a file.
"""
import numpy as np

# --- the objective (nstyle's defaults for the benchmarks) -----------------------------------------------

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
STYLE_LAYER_WEIGHT = 1.0 / len(STYLE_LAYERS)
CONTENT_WEIGHT = 1.0
STYLE_WEIGHT = 1e3
MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)  # Caffe ImageNet mean, B, G, R

# VGG-19's convolutional blocks: (block, convolutions in it, output channels).
VGG19_BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def conv_shapes(last="conv5_1"):
    """[(name, (O, C, 3, 3))] of the convolutions from conv1_1 through ``last``, in network order."""
    out, cin = [], 3
    for block, n_conv, width in VGG19_BLOCKS:
        for i in range(1, n_conv + 1):
            out.append((f"conv{block}_{i}", (width, cin, 3, 3)))
            cin = width
            if out[-1][0] == last:
                return out
    return out


def random_vgg_params(seed=0, last="conv5_1"):
    """{conv name: (W, b)} float32, He-initialised, VGG-19's real widths, from ``seed`` (the same bits in
    every process and on every machine: NumPy's default_rng)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (o, c, kh, kw) in conv_shapes(last):
        w = rng.standard_normal((o, c, kh, kw), dtype=np.float32) * np.float32(np.sqrt(2.0 / (c * kh * kw)))
        out[name] = (w, (rng.standard_normal(o, dtype=np.float32) * np.float32(0.1)))
    return out


def pixel_box():
    """(lo, hi) per BGR channel: the values a real 0..255 pixel can take in network space."""
    return -MEAN_BGR.astype(np.float64), 255.0 - MEAN_BGR.astype(np.float64)


def _smooth_image(rng, size):
    """A (size, size, 3) uint8-range float image with structure at several scales (not white noise)."""
    img = np.zeros((size, size, 3), np.float32)
    for cells in (4, 16, 64):
        cells = min(cells, size)
        coarse = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
        reps = -(-size // cells)
        img += np.repeat(np.repeat(coarse, reps, 0), reps, 1)[:size, :size]
    return np.clip(img / 3 + rng.normal(0, 8, img.shape), 0, 255).astype(np.float32)


def images(size, seed=1, content=None, style=None):
    """(content, style, start) as (1, 3, size, size) float32 network input: BGR, 0..255 minus the mean.

    Image files go through ``nstyle.preprocess``; otherwise seeded synthetic images. ``start`` is the
    content image plus noise, clipped to the pixel box (where one evaluation is timed)."""
    rng = np.random.default_rng(seed)
    out = []
    for path in (content, style):
        if path:
            import nstyle
            from PIL import Image
            img = Image.open(path).convert("RGB").resize((size, size), Image.LANCZOS)
            out.append(np.asarray(nstyle.preprocess(img), dtype=np.float32))
        else:
            bgr = _smooth_image(rng, size)
            out.append((bgr - MEAN_BGR).transpose(2, 0, 1)[None].astype(np.float32).copy())
    lo, hi = pixel_box()
    noisy = out[0] + rng.normal(0, 10, out[0].shape).astype(np.float32)
    start = np.clip(noisy, lo[None, :, None, None], hi[None, :, None, None]).astype(np.float32)
    return out[0], out[1], start
