"""``nstyle reconstruct IMAGE -o OUT``: what one layer (content) or a set of layers (style) keeps of an image."""
import sys

from ..app.figures.cells import CellsInterrupted
from ..app.figures.reconstruct import PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS, reconstruct, reconstruct_sheet
from ..app.files.imageio import save_image
from ..app.files.progress import say
from ..app.run.stylize import NonFiniteLoss, StylizeInterrupted
from ..errors import InputError
from .args import (
    add_lbfgs_impl_option,
    add_network_options,
    add_style_loss_option,
    count,
    layers,
    positive_int,
    print_path,
)
from .checks import check_run
from .commands import summary

DEFAULTS = reconstruct.__kwdefaults__


def add_parser(sub):
    d = DEFAULTS
    p = sub.add_parser(
        "reconstruct", help=summary("reconstruct"),
        description="Start from seeded white noise and optimise only the content loss at one layer "
                    "(--content-layer) or only the style (Gram) loss over a set of layers (--style-layers). "
                    "With --all: a labelled sheet with one reconstruction per content layer and/or one per "
                    "growing prefix of the style layers (the paper's figure 1; with neither option, both rows: "
                    f"content {','.join(PAPER_CONTENT_LAYERS)}; style {','.join(PAPER_STYLE_LAYERS)}). "
                    "Sheet cells are kept in <OUT stem>_cells/ and reused when the command is run again.")
    p.add_argument("image", help="the image to reconstruct")
    p.add_argument("-o", "--output", required=True, help="output image (with --all: the sheet)")
    p.add_argument("--content-layer", "--content-layers", dest="content_layer", type=layers, default=None,
                   metavar="LAYER", help="content reconstruction from this layer (with --all: a comma list)")
    p.add_argument("--style-layers", type=layers, default=None, metavar="L1,L2,...",
                   help="style reconstruction from these layers (with --all: each growing prefix)")
    p.add_argument("--all", action="store_true", help="make whole rows and a labelled contact sheet")
    p.add_argument("--size", type=positive_int, default=d["size"], help=f"longest side in pixels (default {d['size']})")
    p.add_argument("--iters", type=positive_int, default=d["iters"], help=f"L-BFGS-B iterations (default {d['iters']})")
    p.add_argument("--seed", type=count, default=d["seed"], help=f"white-noise seed (default {d['seed']})")
    p.add_argument("--no-bounds", dest="bounds", action="store_false", help="let pixels leave 0..255")
    add_lbfgs_impl_option(p, d)
    add_style_loss_option(p, d)
    p.add_argument("--mask", default=None, metavar="SEG",
                   help="colour-coded segmentation of the image: a guided style reconstruction, each region "
                        "keeping its own statistics (Gatys et al. 2017)")
    p.add_argument("--mask-mode", choices=("inside", "all", "simple"), default=d["mask_mode"],
                   help=f"how the mask follows the network (default: {d['mask_mode']})")
    p.add_argument("--weight-scaling", choices=("invariant", "paper"), default=d["weight_scaling"],
                   help=f"as for stylize (default: {d['weight_scaling']})")
    add_network_options(p, d)
    p.add_argument("--restart", action="store_true", help="with --all: discard cells made with other settings")
    p.add_argument("--no-memory-check", dest="check_memory", action="store_false",
                   help="run even when the memory estimate says it will not fit")
    p.add_argument("--print-every", type=count, default=50, help="progress line every N iterations (0: none)")
    p.set_defaults(run=run)


def _progress(args, label):
    def report(rec, _get_x):
        if args.print_every and rec["iter"] % args.print_every == 0:
            print(f"{label}: iter {rec['iter']:5d}  loss {rec['loss']:.4e}  {rec['seconds']:.1f}s",
                  file=sys.stderr, flush=True)
    return report


def reconstruct_options(args):
    """``reconstruct``'s keywords from the command line: every one that a flag sets, read off its
    signature (so a keyword given a flag travels, with no second list of names to keep), less the
    layers, which ``--all`` reads as rows."""
    return {k: getattr(args, k) for k in DEFAULTS if hasattr(args, k) and k not in ("content_layer", "style_layers")}


def run(args):
    options = reconstruct_options(args)
    check_run(reads=[args.image] + ([args.mask] if args.mask else []), weights=args.weights, device=args.device,
              outputs=[(args.output, "sheet" if args.all else "output", True)])
    if args.all:
        content = args.content_layer
        style = args.style_layers
        if content is None and style is None:
            content, style = PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS
        try:
            reconstruct_sheet(args.image, content_layers=content or (), style_layers=style or (),
                              out=args.output, restart=args.restart, log=say,
                              callback=lambda cell, rec, get_x: _progress(args, cell.label)(rec, get_x),
                              **options)
        except CellsInterrupted as exc:
            say(exc.message)
            return 130
        print_path(args.output)
        return 0

    if (args.content_layer is None) == (args.style_layers is None):
        raise InputError("give --content-layer LAYER or --style-layers L1,L2,... (or --all for whole rows)")
    if args.content_layer is not None and len(args.content_layer) != 1:
        raise InputError(f"one content layer at a time (got {','.join(args.content_layer)})",
                         hint="add --all for one reconstruction per layer on a sheet")
    if args.content_layer is not None:
        what = {"content_layer": args.content_layer[0]}
        label = f"content {args.content_layer[0]}"
    else:
        what = {"style_layers": args.style_layers}
        label = f"style {','.join(args.style_layers)}"
    try:
        image = reconstruct(args.image, callback=_progress(args, label), log=say, **what, **options)
    except StylizeInterrupted as exc:
        save_image(exc.image, args.output)
        say(f"interrupted at iteration {exc.iteration}; best image so far written to {args.output}")
        return 130
    except NonFiniteLoss as exc:
        save_image(exc.image, args.output)
        raise
    save_image(image, args.output)
    print_path(args.output)
    return 0
