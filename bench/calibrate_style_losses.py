"""Calibrate each style loss's default weight against the Gram loss's (docs/style_losses.md, "Default weights").

For each (photo, painting) pair and size, at x = the content photo (where every run starts), with the
real VGG-19, the default style layers and weights and beta = 1: the norm of the style part's gradient
with respect to the pixels, ||d(sum_l w_l E_l)/dx||, for the Gram loss and for each other loss at
c_k = 1 and kappa = 1. kappa_k = the Gram norm over the loss's norm at 512 pixels (the reference size of
the invariant weighting), as a geometric mean over the pairs: with it the loss pulls the first step as
hard as the Gram default does. The same ratios at the other sizes show whether that holds at every size
(the weighting is "mean" for all of them: no size factor). Also printed: the ratios with the current
default weights (``--check``), which should all be near 1.

    python3 bench/calibrate_style_losses.py --out RESULTS_DIR [--sizes 128 256 512] [--check]

Photos: scikit-image's bundled ones; paintings: nstyle's generated swirl_painting (seeds 0, 1, 2).
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nstyle  # noqa: E402
from nstyle.app.figures.samples import bundled_photo, swirl_painting  # noqa: E402
from nstyle.model.style_loss import style_losses  # noqa: E402

PAIRS = (("chelsea", 0), ("astronaut", 1), ("coffee", 2))
REFERENCE = 512


def fit(img, side):
    w, h = img.size
    s = side / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)


def style_grad_norm(vgg, content, style, loss, seed=0):
    """||d(sum_l w_l E_l)/dx|| at x = content, beta = 1, the loss at weight 1 / its default weight
    (so kappa = 1: the raw loss)."""
    kappa = style_losses()[loss].default_weight
    obj = nstyle.StyleObjective(vgg, content=None, styles=[style], content_weight=0.0, style_weight=1.0 / kappa,
                                style_loss=loss, seed=seed)
    _, g = obj.value_and_grad(content)
    return float(np.linalg.norm(np.asarray(g, dtype=np.float64)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for calibration.json")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--losses", nargs="+", default=[n for n in style_losses() if n != "gram"])
    ap.add_argument("--check", action="store_true", help="also print the ratios with the current default weights")
    args = ap.parse_args(argv)
    vgg = nstyle.VGG19.load()
    rows = []
    for photo, seed in PAIRS:
        for size in args.sizes:
            content = fit(bundled_photo(photo), size)
            style = fit(swirl_painting(seed=seed), size)
            xc, xs = nstyle.preprocess(content), nstyle.preprocess(style)
            t0 = time.perf_counter()
            norms = {loss: style_grad_norm(vgg, xc, xs, loss) for loss in ["gram", *args.losses]}
            rows.append({"photo": photo, "painting_seed": seed, "size": size, "norms": norms})
            print(f"{photo:>9} swirl{seed} {size:>4}: " + "  ".join(
                f"{k} {v:.3g}" for k, v in norms.items()) + f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    kappa = {}
    for loss in args.losses:
        ref = [r["norms"]["gram"] / r["norms"][loss] for r in rows if r["size"] == REFERENCE]
        kappa[loss] = math.exp(np.mean(np.log(ref))) if ref else None
    print("\nkappa (Gram's gradient norm over the loss's at 512, geometric mean over the pairs):")
    for loss, k in kappa.items():
        print(f"  {loss:<20} {k:.4g}" if k else f"  {loss:<20} (no {REFERENCE} px rows)")
    print("\nratio (loss with kappa) / Gram per size, geometric mean over pairs [min, max]:")
    spread = {}
    for loss in args.losses:
        line = []
        for size in args.sizes:
            r = [kappa[loss] * row["norms"][loss] / row["norms"]["gram"] for row in rows if row["size"] == size]
            spread.setdefault(loss, {})[size] = r
            line.append(f"{size}: {math.exp(np.mean(np.log(r))):.2f} [{min(r):.2f}, {max(r):.2f}]")
        print(f"  {loss:<20} " + "   ".join(line))
    if args.check:
        print("\nwith the current default weights, ratio to Gram per size (geometric mean over pairs):")
        for loss in args.losses:
            kd = style_losses()[loss].default_weight
            line = [f"{size}: {math.exp(np.mean(np.log([kd * row['norms'][loss] / row['norms']['gram'] for row in rows if row['size'] == size]))):.2f}"
                    for size in args.sizes]
            print(f"  {loss:<20} default {kd:<8g} " + "   ".join(line))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(
        {"rows": rows, "kappa": kappa, "reference_size": REFERENCE, "pairs": PAIRS,
         "defaults": {loss: style_losses()[loss].default_weight for loss in args.losses}}, indent=1))
    print(f"\nwrote {out / 'calibration.json'}")


if __name__ == "__main__":
    main()
