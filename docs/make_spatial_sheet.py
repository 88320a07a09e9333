"""Make docs/spatial_control.png: spatial control (guided Gram matrices, Gatys et al. CVPR 2017).

Top row: the photo (scikit-image's bundled ``coffee``), its two-region mask (red: the cup and saucer,
blue: the table), and the two styles -- nstyle's generated swirl painting and a warm mosaic this script
draws. Bottom row: the unguided stylisation with both styles blended 1:1, and the guided one, where the
cup takes the mosaic and the table the swirls (``--content-mask mask.png --region-styles red=2,blue=1``).

    python3 docs/make_spatial_sheet.py [--weights FILE] [--size 200] [--iters 100]

Real VGG-19 weights (the default file, or --weights). Both runs share every other setting (defaults,
L-BFGS-B from the photo).
"""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from nstyle import stylize  # noqa: E402
from nstyle.app.figures.samples import swirl_painting  # noqa: E402
from nstyle.app.figures.sheet import contact_sheet  # noqa: E402
from small_png import save_small_png  # noqa: E402 -- docs/small_png.py
from nstyle.app.run.network import VGG19  # noqa: E402 -- the model's network plus load(path)

WARM = [(196, 62, 36), (232, 132, 40), (244, 196, 88), (150, 36, 40), (250, 226, 170), (110, 52, 30)]


def mosaic(width, height, tiles=260, seed=3):
    """Irregular warm tiles with dark grout: the nearest of ``tiles`` random centres, then edges."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 1, (tiles, 2)) * (width, height)
    colours = np.array([WARM[i] for i in rng.integers(len(WARM), size=tiles)], dtype=np.float64)
    colours *= rng.uniform(0.85, 1.1, (tiles, 1))
    yy, xx = np.mgrid[0:height, 0:width]
    d = (xx[..., None] - centres[:, 0]) ** 2 + (yy[..., None] - centres[:, 1]) ** 2
    nearest = np.argsort(d, axis=-1)[..., :2]
    gap = np.sqrt(np.take_along_axis(d, nearest, -1))
    img = colours[nearest[..., 0]]
    img[(gap[..., 1] - gap[..., 0]) < 2.2] = (60, 36, 28)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def coffee_mask(photo):
    """Red over the cup and saucer (an ellipse), blue over the table, at the photo's size."""
    w, h = photo.size
    mask = Image.new("RGB", (w, h), (0, 0, 255))
    draw = ImageDraw.Draw(mask)
    draw.ellipse([0.07 * w, 0.12 * h, 0.82 * w, 0.99 * h], fill=(255, 0, 0))   # the saucer
    draw.ellipse([0.26 * w, 0.01 * h, 0.70 * w, 0.62 * h], fill=(255, 0, 0))   # the cup
    return mask


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--out", default=os.path.join(HERE, "spatial_control.png"))
    args = parser.parse_args()
    import skimage.data  # noqa: PLC0415

    photo = Image.fromarray(skimage.data.coffee())
    mask = coffee_mask(photo)
    styles = [swirl_painting(300, 300, seed=0), mosaic(300, 300)]
    vgg = VGG19.load(args.weights)
    common = dict(size=args.size, iters=args.iters, vgg=vgg, weights=args.weights)
    results = {}
    for name, extra in (("unguided", {}), ("guided", {"content_mask": mask, "region_styles": "red=2,blue=1"})):
        start = time.perf_counter()
        results[name] = stylize(photo, styles, log=lambda m: print(m, file=sys.stderr), **common, **extra)
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    w, h = results["guided"].size
    cells = [(photo, "photo (scikit-image coffee)"), (mask, "mask: red cup, blue table"),
             (styles[0], "style 1: swirls"), (styles[1], "style 2: mosaic"),
             (results["unguided"], "unguided, styles 1:1"), (results["guided"], "guided: red=2, blue=1"), None, None]
    sheet = contact_sheet(cells, columns=4, cell_size=(w, h))
    save_small_png(sheet, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
