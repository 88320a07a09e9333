"""Make docs/tv_sheet.png: what ``--tv-weight`` does at the default weights, and that it does the same at
two sizes (the TV term is scaled with the pixel count, like the content term: ``app/run/weighting.py``).

One row per size, one column per TV weight; each caption gives the change of the result's total
variation (mean squared difference of neighbouring pixels) against the run without TV at that size.
Prints the same numbers as a Markdown table.

    python3 docs/make_tv_sheet.py [--weights FILE] [--sizes 96,192] [--tv 0,1,10,100,1000] [--iters 30]

Real VGG-19 weights; scikit-image's ``chelsea`` and nstyle's generated swirl painting; default flags
otherwise (L-BFGS-B from the photo).
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
from nstyle.app.files.imageio import fit_size  # noqa: E402
from nstyle.app.figures.samples import swirl_painting  # noqa: E402
from nstyle.app.figures.sheet import contact_sheet  # noqa: E402
from small_png import save_small_png  # noqa: E402 -- docs/small_png.py
from nstyle.app.run.network import VGG19  # noqa: E402 -- the model's network plus load(path)


def total_variation(img):
    a = np.asarray(img, dtype=np.float64)
    return float(((a[1:] - a[:-1]) ** 2).mean() + ((a[:, 1:] - a[:, :-1]) ** 2).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--sizes", default="96,192")
    parser.add_argument("--tv", default="0,1,10,100,1000")
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--cell", type=int, default=160)
    parser.add_argument("--out", default=os.path.join(HERE, "tv_sheet.png"))
    args = parser.parse_args()
    import skimage.data  # noqa: PLC0415

    photo = Image.fromarray(skimage.data.chelsea())
    painting = swirl_painting(*photo.size, seed=0)
    vgg = VGG19.load(args.weights)
    sizes, weights = [int(s) for s in args.sizes.split(",")], [float(t) for t in args.tv.split(",")]
    cells, rows = [], []
    for size in sizes:
        base, row = None, [f"| {size} |"]
        for tv in weights:
            start = time.perf_counter()
            out = stylize(photo, painting, size=size, iters=args.iters, tv_weight=tv, vgg=vgg, weights=args.weights)
            t = total_variation(out)
            base = t if base is None else base
            change = f"{100 * (t / base - 1):+.0f}%"
            row.append(f" {change} |")
            cells.append((out, f"{size} px, tv {tv:g}: {change}"))
            print(f"size {size} tv {tv:g}: total variation {t:.1f} ({change}), {time.perf_counter() - start:.0f} s",
                  file=sys.stderr, flush=True)
        rows.append("".join(row))
    print("| size | " + " | ".join(f"tv {t:g}" for t in weights) + " |")
    print("| --- |" + " --- |" * len(weights))
    print("\n".join(rows))
    save_small_png(contact_sheet(cells, columns=len(weights), cell_size=fit_size(*photo.size, args.cell)), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
