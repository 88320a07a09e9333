"""Make the README's sheets of "What each layer encodes" from images that need no download.

Content: scikit-image's bundled cat photo (``skimage.data.chelsea``). Style: a brush-stroke picture this
script paints itself (``brush_strokes``). Needs the real VGG-19 weights (``--weights`` or the default
file) and scikit-image. Cells are kept in a work folder, so an interrupted run resumes.

    python3 docs/make_sheets.py --weights /path/to/vgg19.h5 [--work /tmp/nstyle-sheets]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from nstyle.app.figures.grid import make_grid  # noqa: E402
from nstyle.app.files.imageio import save_image  # noqa: E402
from nstyle.app.figures.reconstruct import reconstruct_sheet  # noqa: E402
from nstyle.app.run.network import VGG19  # noqa: E402 -- the model's network plus load(path)

DOCS = os.path.dirname(os.path.abspath(__file__))
PALETTE = [(22, 45, 110), (38, 82, 160), (70, 130, 200), (130, 180, 220), (235, 205, 70), (250, 235, 140),
           (200, 120, 40), (25, 30, 45)]


def brush_strokes(size=256, strokes=2500, seed=0):
    """A swirling picture of short thick brush strokes that follow a flow field (blues, yellows, dark)."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), PALETTE[1])
    draw = ImageDraw.Draw(img)
    for _ in range(strokes):
        x, y = rng.uniform(0, size, 2)
        # warm colours gather round two "lights", cool ones elsewhere
        near = min(np.hypot(x - 0.7 * size, y - 0.3 * size), np.hypot(x - 0.25 * size, y - 0.7 * size))
        warm = rng.random() < np.exp(-(near / (0.16 * size)) ** 2)
        colour = PALETTE[rng.integers(4, 7)] if warm else PALETTE[rng.choice([0, 1, 2, 3, 7], p=[.3, .3, .2, .12, .08])]
        colour = tuple(int(np.clip(c + rng.normal(0, 12), 0, 255)) for c in colour)
        points = [(x, y)]
        for _ in range(int(rng.integers(3, 7))):
            angle = 2.0 * np.sin(x / size * 6.0) + 2.0 * np.cos(y / size * 5.0)
            x, y = x + 3.0 * np.cos(angle), y + 3.0 * np.sin(angle)
            points.append((x, y))
        draw.line(points, fill=colour, width=int(rng.integers(2, 5)), joint="curve")
    return img


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "nstyle-sheets"))
    parser.add_argument("--docs", default=DOCS, help="where the finished sheets go (default: this folder)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--grid-size", type=int, default=96)
    parser.add_argument("--grid-iters", type=int, default=100)
    # Small images need larger ratios than the paper's 1e-5..1e-2 at ~512 px: the content loss is a sum
    # over positions (it grows with the pixel count), while the Gram loss is normalised by it.
    parser.add_argument("--ratios", default="1e-3,1e-2,1e-1,1")
    args = parser.parse_args()

    import skimage.data  # noqa: PLC0415

    os.makedirs(args.work, exist_ok=True)
    cat = Image.fromarray(skimage.data.chelsea())
    strokes = brush_strokes()
    save_image(strokes.resize((128, 128), Image.Resampling.LANCZOS), os.path.join(args.docs, "strokes.png"))
    vgg = VGG19.load(args.weights)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    jobs = [
        ("layers_content.png", lambda out: reconstruct_sheet(cat, style_layers=(), out=out, size=args.size,
                                                             iters=args.iters, vgg=vgg, log=log)),
        ("layers_style.png", lambda out: reconstruct_sheet(strokes, content_layers=(), out=out, size=args.size,
                                                           iters=args.iters, vgg=vgg, log=log)),
        ("grid.png", lambda out: make_grid(cat, strokes, out=out, size=args.grid_size, iters=args.grid_iters,
                                           ratios=[float(r) for r in args.ratios.split(",")], vgg=vgg, log=log)),
    ]
    for name, job in jobs:
        out = os.path.join(args.work, name)
        start = time.perf_counter()
        _, cells = job(out)
        made = sum(not c.reused for c in cells)
        print(f"{name}: {time.perf_counter() - start:.0f} s wall, {made} of {len(cells)} cells optimised "
              f"({sum(c.seconds for c in cells):.0f} s in the optimiser)", flush=True)
        with Image.open(out) as sheet:
            save_image(sheet.convert("RGB"), os.path.join(args.docs, name))


if __name__ == "__main__":
    main()
