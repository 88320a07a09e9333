"""Why coarse-to-fine starts its last stage far from the single-scale loss: the loss breakdown of a
coarse result upsampled to the fine size, next to its breakdown at its own size.

    python3 bench/c2f_breakdown.py [--weights FILE] [--coarse 256] [--fine 512] [--iters 100]

Runs nstyle.app.run.stylize at --coarse for --iters iterations (the same objective as bench_run.py), then
evaluates that result at --coarse and, upsampled the way stylize starts a stage (bicubic, in network
space), at --fine. Prints the total and every term.
"""
import argparse
import os

from PIL import Image

import common
import nstyle
from bench_run import load_inputs
from nstyle.app.files.imageio import preprocess
from nstyle.model.objective import StyleObjective
from nstyle.app.run.stages import resize_network_image


def evaluate(vgg, content_img, style_img, x_img, size):
    """Total and breakdown of x_img at longest side ``size`` (content and style resized like stylize)."""
    def fit(img):
        scale = size / max(img.size)
        return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)

    content, style = fit(content_img), fit(style_img)
    objective = StyleObjective(vgg, preprocess(content), [preprocess(style)],
                               content_weight=common.ALPHA, style_weight=common.BETA)
    x = resize_network_image(preprocess(x_img), content.size)
    value, _ = objective.value_and_grad(x)
    return value, objective.last_breakdown


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=os.environ.get("NSTYLE_WEIGHTS"))
    ap.add_argument("--coarse", type=int, default=256)
    ap.add_argument("--fine", type=int, default=512)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--content")
    ap.add_argument("--style")
    ap.add_argument("--size", type=int, default=512, help=argparse.SUPPRESS)  # load_inputs' noise fallback
    args = ap.parse_args()
    params, content_img, style_img, notes = load_inputs(args)
    print("; ".join(notes))
    vgg = nstyle.VGG19(params, pooling="avg")
    result = nstyle.stylize(content_img, style_img, size=args.coarse, iters=args.iters, vgg=vgg,
                            content_weight=common.ALPHA, style_weight=common.BETA, check_memory=False)
    for label, size in ((f"{args.coarse} result at {args.coarse}", args.coarse),
                        (f"{args.coarse} result upsampled to {args.fine}", args.fine)):
        value, parts = evaluate(vgg, content_img, style_img, result, size)
        terms = ", ".join(f"{k} {v:.3e}" for k, v in parts.items() if k != "total")
        print(f"{label}: total {value:.4e} ({terms})")


if __name__ == "__main__":
    main()
