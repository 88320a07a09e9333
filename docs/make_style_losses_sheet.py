"""Make docs/style_losses.png and the cross table of docs/style_losses.md: one column per style loss.

Row 1: scikit-image's ``chelsea`` painted with nstyle's generated swirl painting (``stylize`` with
``style_loss=...``, default flags otherwise: content start, L-BFGS-B, the calibrated default weight of
each loss). Row 2: texture synthesis, the painting reconstructed from seeded white noise by its style
statistics alone (``reconstruct`` with the default style layers). The same size, seed and iterations
in every cell.

The cross table: every row-1 result evaluated under every loss (the style part, sum_l w_l E_l, against
the painting), divided by that loss's value at the photo the run started from -- so a row says how much
of each loss a picture has removed, and the diagonal what a loss does for itself; the same for row 2,
divided by the value at the noise start. Printed as Markdown and written to ``--out`` as JSON.

    python3 docs/make_style_losses_sheet.py --out RESULTS_DIR [--size 160] [--iters 100] [--work DIR]

Real VGG-19 weights (the default file or ``--weights``). Cells are kept in ``--work`` and reused.
"""
import argparse
import json
import os
import sys
import tempfile
import time

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from small_png import save_small_png  # noqa: E402 -- docs/small_png.py

from nstyle import VGG19, StyleObjective, preprocess, stylize  # noqa: E402 -- VGG19.load: app/run/network.py
from nstyle.app.figures.reconstruct import reconstruct  # noqa: E402
from nstyle.app.figures.samples import bundled_photo, swirl_painting  # noqa: E402
from nstyle.app.figures.sheet import contact_sheet  # noqa: E402
from nstyle.app.files.imageio import fit_size, resize_longest, white_noise  # noqa: E402
from nstyle.model.objective import DEFAULT_STYLE_LAYERS  # noqa: E402
from nstyle.model.style_loss import style_losses  # noqa: E402

LOSSES = tuple(style_losses())  # gram first, then the others in registry order
SHORT = {"gram": "gram", "mean_std": "mean/std", "histogram": "histogram", "sliced_wasserstein": "sliced W.",
         "mmd_linear": "MMD linear", "mmd_polynomial": "MMD poly.", "mmd_gaussian": "MMD Gauss."}


def cached(path, make):
    """The image at ``path``, made (and saved) first if it is not there."""
    if not os.path.exists(path):
        t0 = time.perf_counter()
        make().save(path)
        print(f"{os.path.basename(path)}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return Image.open(path).convert("RGB")


def style_values(vgg, image, style, seed):
    """{loss: the style part sum_l w_l E_l of ``image`` against ``style``, both PIL at one size}."""
    x, s = preprocess(image), preprocess(style)
    out = {}
    for loss in LOSSES:
        obj = StyleObjective(vgg, content=None, styles=[s], content_weight=0.0, style_weight=1.0,
                             style_loss=loss, seed=seed)
        obj.value_and_grad(x)
        out[loss] = float(obj.last_breakdown["paper/style"])
    return out


def table(title, values, start):
    """Markdown: rows the pictures (by the loss that made them), columns the losses that judge them."""
    lines = [f"**{title}**", "", "| made by \\ judged by | " + " | ".join(SHORT[k] for k in LOSSES) + " |",
             "| --- |" + " ---: |" * len(LOSSES)]
    for made in LOSSES:
        cells = [f"{100 * values[made][k] / start[k]:.2g}%" for k in LOSSES]
        lines.append(f"| {SHORT[made]} | " + " | ".join(f"**{c}**" if k == made else c
                                                        for c, k in zip(cells, LOSSES)) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for style_losses_cross.json")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "nstyle-style-losses"))
    parser.add_argument("--sheet", default=os.path.join(HERE, "style_losses.png"))
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    photo = resize_longest(bundled_photo("chelsea"), args.size)
    painting = swirl_painting(seed=0)
    style = painting.resize(fit_size(*painting.size, args.size), Image.Resampling.LANCZOS)
    vgg = VGG19.load(args.weights)
    common = {"size": args.size, "iters": args.iters, "seed": args.seed, "vgg": vgg}
    painted, textures = {}, {}
    for loss in LOSSES:
        tag = f"{loss}_{args.size}_{args.iters}_{args.seed}"
        painted[loss] = cached(os.path.join(args.work, f"stylize_{tag}.png"),
                               lambda: stylize(photo, painting, style_loss=loss, **common))
        textures[loss] = cached(os.path.join(args.work, f"texture_{tag}.png"),
                                lambda: reconstruct(painting, style_layers=DEFAULT_STYLE_LAYERS, style_loss=loss,
                                                    **common))
    cells = [(painted[k], SHORT[k]) for k in LOSSES] + [(textures[k], SHORT[k]) for k in LOSSES]
    sheet = contact_sheet(cells, columns=len(LOSSES), cell_size=fit_size(*photo.size, 160),
                          row_labels=["stylize", "texture"])
    save_small_png(sheet, args.sheet)
    print(args.sheet)

    # the style as the runs saw it: the painting with the output's longest side (targets are per position)
    start = style_values(vgg, photo, style, args.seed)
    noise_start = style_values(vgg, white_noise(*style.size, args.seed), style, args.seed)
    cross = {k: style_values(vgg, painted[k], style, args.seed) for k in LOSSES}
    cross_tex = {k: style_values(vgg, textures[k], style, args.seed) for k in LOSSES}
    print(table(f"Stylised ({args.size} px, {args.iters} iterations): style loss left, in % of the photo's",
                cross, start))
    print()
    print(table("Texture synthesis: style loss left, as a fraction of the noise start's", cross_tex, noise_start))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "style_losses_cross.json"), "w", encoding="utf-8") as fh:
        json.dump({"size": args.size, "iters": args.iters, "seed": args.seed, "photo_values": start,
                   "noise_values": noise_start, "stylized": cross, "textures": cross_tex}, fh, indent=1)
    print(os.path.join(args.out, "style_losses_cross.json"))


if __name__ == "__main__":
    main()
