"""Make docs/normalized.png: the plain VGG-19 beside Gatys et al.'s normalised one, with default flags.

The normalised network (``nstyle weights normalize``) has every filter rescaled so that its mean ReLU
activation over some images is 1, the next layer compensating (CVPR 2016, section 2): the same features
up to a positive factor per channel. The weights file records the factors, and with the default
``--weight-scaling invariant`` each term is scaled back to the size it has on the plain network, so the
default weights mean the same with both. Columns: the plain network; the normalised one (default,
invariant); the normalised one with ``--weight-scaling paper`` (the paper's loss literally, where the
style terms outweigh the content by many orders of magnitude and L-BFGS-B stops at once). Each caption
gives the mean change from the photo in grey levels.

    python3 docs/make_normalized_sheet.py [--weights FILE] [--size 160] [--iters 60]

Normalises the default (or --weights) VGG-19 on scikit-image's bundled photos at 256 pixels, into a
temporary folder. The content is ``chelsea`` and the style nstyle's generated swirl painting.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from small_png import save_small_png  # noqa: E402 -- docs/small_png.py

from nstyle import stylize  # noqa: E402
from nstyle.app.figures.samples import swirl_painting  # noqa: E402
from nstyle.app.figures.sheet import contact_sheet  # noqa: E402
from nstyle.app.files.imageio import preprocess, resize_longest  # noqa: E402
from nstyle.weights.normalize import normalize_file  # noqa: E402
from nstyle.weights.paths import default_weights_path  # noqa: E402

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--out", default=os.path.join(HERE, "normalized.png"))
    args = parser.parse_args()
    import skimage.data  # noqa: PLC0415

    source = args.weights or os.environ.get("NSTYLE_WEIGHTS") or default_weights_path()
    normalised = os.path.join(tempfile.mkdtemp(prefix="nstyle-norm-"), "vgg19_normalized.h5")
    images = [preprocess(resize_longest(Image.fromarray(getattr(skimage.data, n)()).convert("RGB"), 256))
              for n in PHOTOS]
    start = time.perf_counter()
    normalize_file(source, normalised, images, size=256)
    print(f"normalised on {len(images)} photos in {time.perf_counter() - start:.0f} s", file=sys.stderr)

    photo = Image.fromarray(skimage.data.chelsea())
    painting = swirl_painting(*photo.size, seed=0)
    cells = []
    for label, weights, scaling in (("plain", source, "invariant"), ("normalised", normalised, "invariant"),
                                    ("normalised, paper", normalised, "paper")):
        start = time.perf_counter()
        out = stylize(photo, painting, size=args.size, iters=args.iters, weights=weights, weight_scaling=scaling)
        moved = np.abs(np.asarray(out, np.float64) - np.asarray(photo.resize(out.size, Image.Resampling.LANCZOS),
                                                                   np.float64)).mean()
        print(f"{label}: mean change from the photo {moved:.1f} grey levels, {time.perf_counter() - start:.0f} s",
              flush=True)
        cells.append((out, f"{label}: {moved:.0f}"))
    save_small_png(contact_sheet(cells, cell_size=cells[0][0].size), args.out)
    print(args.out)


if __name__ == "__main__":
    main()
