"""Make docs/style_scale.png: what ``--style-scale`` does to the picture (0.5, 1 and 2).

The style image is resized to the scale times the content's longest side before its Gram matrices are
taken, so the scale sets the size of the strokes the network sees; since the targets are per-position
statistics (A_l = M_l * sum_s b_s F_s F_s^T / M_s,l), it does not change their strength -- the contrast
and saturation of the result stay the same. Prints each result's pixel standard deviation.

    python3 docs/make_style_scale_sheet.py [--weights FILE] [--size 160] [--iters 60]

Real VGG-19 weights; scikit-image's ``chelsea`` and nstyle's generated swirl painting; default flags
otherwise.
"""
import argparse
import os
import sys
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from nstyle import stylize  # noqa: E402
from nstyle.app.figures.samples import swirl_painting  # noqa: E402
from nstyle.app.figures.sheet import contact_sheet  # noqa: E402
from small_png import save_small_png  # noqa: E402 -- docs/small_png.py
from nstyle.app.run.network import VGG19  # noqa: E402 -- the model's network plus load(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--scales", default="0.5,1,2")
    parser.add_argument("--out", default=os.path.join(HERE, "style_scale.png"))
    args = parser.parse_args()
    import skimage.data  # noqa: PLC0415

    photo = Image.fromarray(skimage.data.chelsea())
    painting = swirl_painting(512, 384, seed=0)
    vgg = VGG19.load(args.weights)
    cells = [(painting, "style (nstyle's swirl painting)")]
    for scale in (float(s) for s in args.scales.split(",")):
        start = time.perf_counter()
        out = stylize(photo, painting, size=args.size, iters=args.iters, style_scale=scale, vgg=vgg,
                      weights=args.weights)
        std = np.asarray(out, dtype=np.float64).std()
        print(f"--style-scale {scale:g}: pixel std {std:.1f}, {time.perf_counter() - start:.0f} s", flush=True)
        cells.append((out, f"--style-scale {scale:g} (std {std:.0f})"))
    size = cells[1][0].size
    save_small_png(contact_sheet(cells, cell_size=size), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
