"""Make docs/size_sheet.png: one photo and painting stylised at several sizes with the default flags,
before (``--weight-scaling paper``: the paper's loss literally) and after (the default, ``invariant``).

Also prints the balance the two scalings give at each size: the weighted style term over the weighted
content term, both evaluated at one fixed probe image (scikit-image's ``astronaut``) rendered at that size.

    python3 docs/make_size_sheet.py [--weights FILE] [--sizes 128,256,512,1024] [--iters 40,40,20,6]

Real VGG-19 weights. The photo is scikit-image's ``chelsea``, the painting nstyle's generated swirl
painting. Default flags otherwise (L-BFGS-B from the photo, style weight 1e3, content weight 1). At 512,
the reference size, both scalings are the same loss, so that cell is computed once. Runs at 1024 take
about a minute per iteration on a busy 2-core machine: pass fewer iterations there (the caption says how many).
"""
import argparse
import os
import sys
import time

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from nstyle import stylize  # noqa: E402
from nstyle.app.files.imageio import fit_size, preprocess  # noqa: E402
from nstyle.app.figures.samples import swirl_painting  # noqa: E402
from nstyle.app.figures.sheet import contact_sheet  # noqa: E402
from small_png import save_small_png  # noqa: E402 -- docs/small_png.py
from nstyle.app.run.weighting import REFERENCE_SIZE, term_scales  # noqa: E402
from nstyle.model.objective import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, StyleObjective  # noqa: E402
from nstyle.app.run.network import VGG19  # noqa: E402 -- the model's network plus load(path)


def balance(vgg, photo, painting, probe, size, mode):
    """Weighted style / weighted content at the probe image, at this size."""
    w, h = fit_size(*photo.size, size)
    net = [preprocess(im.resize((w, h), Image.Resampling.LANCZOS)) for im in (photo, painting, probe)]
    obj = StyleObjective(vgg, content=net[0], styles=[net[1]],
                         term_scales=term_scales(w, h, DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, mode))
    obj.value_and_grad(net[2])
    return obj.last_breakdown["style"] / obj.last_breakdown["content"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=None)
    parser.add_argument("--sizes", default="128,256,512,1024")
    parser.add_argument("--iters", default="40,40,20,6", help="one count, or one per size")
    parser.add_argument("--cell", type=int, default=192, help="longest side of each cell on the sheet")
    parser.add_argument("--out", default=os.path.join(HERE, "size_sheet.png"))
    args = parser.parse_args()
    import skimage.data  # noqa: PLC0415

    sizes = [int(s) for s in args.sizes.split(",")]
    iters = [int(s) for s in args.iters.split(",")]
    iters = iters * len(sizes) if len(iters) == 1 else iters
    photo, probe = Image.fromarray(skimage.data.chelsea()), Image.fromarray(skimage.data.astronaut())
    painting = swirl_painting(*photo.size, seed=0)
    vgg = VGG19.load(args.weights)

    print("| size | paper: style / content | invariant: style / content |\n| --- | --- | --- |")
    for size in sizes:
        print(f"| {size} | {balance(vgg, photo, painting, probe, size, 'paper'):.3g} | "
              f"{balance(vgg, photo, painting, probe, size, 'invariant'):.3g} |", flush=True)

    cells = {}
    for mode in ("paper", "invariant"):
        for size, n in zip(sizes, iters):
            if mode == "invariant" and size == REFERENCE_SIZE:
                cells[(mode, size)] = cells[("paper", size)]  # the same loss at the reference size
                continue
            start = time.perf_counter()
            img = stylize(photo, painting, size=size, iters=n, vgg=vgg, weight_scaling=mode, weights=args.weights)
            cells[(mode, size)] = img
            print(f"{mode} {size}: {n} iterations, {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    w, h = fit_size(*photo.size, args.cell)
    sheet = contact_sheet([(cells[(m, s)], f"{s} px, {n} iterations") for m in ("paper", "invariant")
                           for s, n in zip(sizes, iters)], columns=len(sizes), cell_size=(w, h),
                          row_labels=["before\n(paper)", "after\n(default)"])
    save_small_png(sheet, args.out)
    print(args.out)


if __name__ == "__main__":
    main()
