"""``nstyle grid CONTENT STYLE -o SHEET``: the paper's grid of content/style ratios against style depth."""
import sys

from ..app.batch.run_batch import BatchInterrupted
from ..app.figures.cells import CellsInterrupted
from ..app.figures.grid import make_grid
from ..app.files.progress import say
from .args import (
    add_lbfgs_impl_option,
    add_network_options,
    add_style_loss_option,
    count,
    layers,
    list_of,
    positive_float,
    positive_int,
    print_path,
    scheduler,
)
from .checks import check_run
from .commands import summary

DEFAULTS = make_grid.__kwdefaults__


def add_parser(sub):
    d = DEFAULTS
    p = sub.add_parser(
        "grid", help=summary("grid"),
        description="One stylisation per (alpha/beta ratio, depth) cell, laid out like the paper's figure: "
                    "rows use the first DEPTH style layers, columns the ratio alpha/beta (alpha = 1, "
                    "beta = 1/ratio). Each finished cell is kept in <SHEET stem>_cells/ and reused when the "
                    "same command is run again, so an interrupted grid resumes where it stopped.")
    p.add_argument("content", help="content image (the photo)")
    p.add_argument("style", help="style image (the painting)")
    p.add_argument("-o", "--output", required=True, help="the sheet (image path)")
    p.add_argument("--ratios", type=list_of(positive_float), default=list(d["ratios"]),
                   help="alpha/beta per column (default " + ",".join(f"{r:g}" for r in d["ratios"]) + ")")
    p.add_argument("--depths", type=list_of(positive_int), default=list(d["depths"]),
                   help="style layers used per row (default " + ",".join(map(str, d["depths"])) + ")")
    p.add_argument("--size", type=positive_int, default=d["size"], help=f"longest side of each cell (default {d['size']})")
    p.add_argument("--iters", type=positive_int, default=d["iters"],
                   help=f"L-BFGS-B iterations per cell (default {d['iters']})")
    p.add_argument("--init", choices=("noise", "content", "style"), default=d["init"],
                   help=f"start of every cell (default {d['init']}, as in the paper)")
    p.add_argument("--seed", type=count, default=d["seed"], help=f"white-noise seed (default {d['seed']})")
    add_lbfgs_impl_option(p, d)
    add_style_loss_option(p, d)
    p.add_argument("--content-layer", default=d["content_layer"])
    p.add_argument("--style-layers", type=layers, default=d["style_layers"],
                   help="the layers whose prefixes the depths count (default " + ",".join(d["style_layers"]) + ")")
    add_network_options(p, d)
    p.add_argument("--weight-scaling", choices=("invariant", "paper"), default=d["weight_scaling"],
                   help="invariant: the ratios mean what the paper's mean at 512 pixels, at any --size; paper: "
                        f"the paper's loss literally (default: {d['weight_scaling']})")
    p.add_argument("--restart", action="store_true", help="discard cells made with other settings")
    p.add_argument("--no-memory-check", dest="check_memory", action="store_false",
                   help="run even when the memory estimate says it will not fit")
    p.add_argument("--print-every", type=count, default=50, help="progress line every N iterations (0: none)")
    g = p.add_argument_group("on a Dask cluster (pip install 'nstyle[batch]'; see `nstyle batch`)")
    g.add_argument("--workers", type=positive_int, metavar="N",
                   help="run the cells as batch jobs on a local cluster of N workers")
    g.add_argument("--scheduler", metavar="tcp://HOST:PORT", type=scheduler,
                   help="run the cells as batch jobs on this Dask scheduler")
    p.set_defaults(run=run)


def grid_options(args):
    """``make_grid``'s keywords from the command line: every one that a flag sets, read off its
    signature (so a keyword given a flag travels, with no second list of names to keep)."""
    return {k: getattr(args, k) for k in DEFAULTS if hasattr(args, k)}


def run(args):
    def progress(cell, rec, _get_x):
        if args.print_every and rec["iter"] % args.print_every == 0:
            print(f"{cell.label}: iter {rec['iter']:5d}  loss {rec['loss']:.4e}  content {rec['content']:.3e}  "
                  f"style {rec['style']:.3e}  {rec['seconds']:.1f}s", file=sys.stderr, flush=True)

    check_run(reads=[args.content, args.style], weights=args.weights, device=args.device,
              outputs=[(args.output, "sheet", True)])
    try:
        make_grid(args.content, args.style, out=args.output, callback=progress, log=say,
                  batch={k: v for k, v in (("workers", args.workers), ("scheduler", args.scheduler)) if v} or None,
                  **grid_options(args))
    except (CellsInterrupted, BatchInterrupted) as exc:
        say(exc.message)
        return 130
    print_path(args.output)
    return 0
