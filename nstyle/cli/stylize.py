"""``nstyle stylize CONTENT STYLE [STYLE ...] -o OUT``: the main job.

Every default is the API's: ``app/run/settings.py`` declares them once, and ``nstyle.stylize``'s keyword
arguments read them from there. Before any weights load, the command checks every number (at parse
time), the output path (format, folder, writability, not an input), every input image, and the memory
the run will need -- so a run that cannot finish fails in its first second.
"""
import sys

from ..app.files.imageio import save_image
from ..app.files.outputs import snapshot_path
from ..app.files.progress import Progress
from ..app.files.runlog import plot_losses, write_log
from ..app.run.settings import DEFAULTS, INITS, OPTIMIZERS, ORIGINAL_COLORS
from ..app.run.stylize import NonFiniteLoss, StylizeInterrupted, prepare
from ..app.run.stylize import run as run_plan
from ..app.tiles.run import discard, tiles_folder
from ..errors import InputError
from .args import (
    add_lbfgs_impl_option,
    add_network_options,
    add_reporting_options,
    add_style_loss_option,
    count,
    iters_list,
    join,
    layers,
    list_of,
    positive_float,
    positive_int,
    print_path,
    weight,
)
from .checks import check_run
from .commands import summary


def tile_size(text):
    """--tile: a number of pixels, or auto."""
    return "auto" if text.strip().lower() == "auto" else positive_int(text)

# ---------------------------------------------------------------------------------------------------
# The parser.

def add_run_options(p):
    """Options shared by ``stylize`` and ``demo``: the network, and reporting."""
    g = p.add_argument_group("network")
    add_network_options(g, DEFAULTS)
    g.add_argument("--no-memory-check", dest="check_memory", action="store_false",
                   help="run even when the memory estimate says it will not fit")
    g = p.add_argument_group("reporting")
    add_reporting_options(g)


def add_parser(sub):
    d = DEFAULTS
    p = sub.add_parser(
        "stylize", help=summary("stylize"),
        description="Paint CONTENT in the style of STYLE (Gatys et al.). Defaults follow the paper unless "
                    "noted; 'paper:' gives the paper's value where ours differs.")
    p.add_argument("content", help="content image (the photo)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s) (the paintings)")
    p.add_argument("-o", "--output", metavar="OUT", help="output image (.png, .jpg, .webp, .tif, .bmp); "
                   "required unless --dry-run")
    g = p.add_argument_group("size and iterations")
    g.add_argument("--size", type=positive_int, default=None, metavar="N",
                   help=f"longest side of the output in pixels (default: {d['size']})")
    g.add_argument("--iters", type=iters_list, default=d["iters"], metavar="N[,N...]",
                   help=f"L-BFGS/Adam iterations, one value or one per --scales stage (default: {d['iters']})")
    g.add_argument("--scales", type=list_of(positive_int), default=d["scales"], metavar="N,N,...",
                   help="coarse-to-fine stage sizes, e.g. 256,512; each stage starts from the previous "
                        "result upsampled, and the last is the output size (default: one stage at --size)")
    g = p.add_argument_group("loss")
    g.add_argument("--content-weight", type=weight, default=d["content_weight"], metavar="W",
                   help=f"alpha (default: {d['content_weight']:g})")
    g.add_argument("--style-weight", type=weight, default=d["style_weight"], metavar="W",
                   help=f"beta (default: {d['style_weight']:g}; the paper's alpha/beta is 1e-3 or 1e-4)")
    g.add_argument("--tv-weight", type=weight, default=d["tv_weight"], metavar="W",
                   help=f"total-variation smoothing (default: {d['tv_weight']:g}; the paper has none). Measured at "
                        "the defaults, at any size: 1 smooths slightly (-9%% total variation), 10 visibly (-40%%), "
                        "100 heavily (-75%%)")
    g.add_argument("--content-layers", type=layers, default=d["content_layers"], metavar="L,...",
                   help=f"by VGG name (default: {join(d['content_layers'])}; paper: conv4_2, taken after its ReLU)")
    g.add_argument("--style-layers", type=layers, default=d["style_layers"], metavar="L,...",
                   help=f"by VGG name (default: {join(d['style_layers'])})")
    g.add_argument("--style-layer-weights", type=list_of(weight), default=d["style_layer_weights"],
                   metavar="W,...", help="one weight per style layer (default: equal, 1/number of layers)")
    g.add_argument("--style-blend", type=list_of(weight), default=d["style_blend"], metavar="W,...",
                   help="one weight per style image, normalised to sum to 1 (default: equal)")
    g.add_argument("--style-scale", type=positive_float, default=d["style_scale"], metavar="F",
                   help=f"style image size relative to the content's (default: {d['style_scale']:g})")
    g.add_argument("--original-colors", "--original-colours", choices=ORIGINAL_COLORS,
                   default=d["original_colors"],
                   help="keep the photo's colours: luminance-only transfer, or the style's colours matched "
                        f"to the photo's (Gatys et al. 2017) (default: {d['original_colors']})")
    g.add_argument("--weight-scaling", choices=("invariant", "paper"), default=d["weight_scaling"],
                   help="invariant: the weights mean at every size (and on a normalised network) what they "
                        "mean at 512 pixels; paper: the paper's loss literally, whose balance moves with the "
                        f"size (default: {d['weight_scaling']})")
    add_style_loss_option(g, d)
    g = p.add_argument_group("spatial control (Gatys et al. 2017)")
    g.add_argument("--content-mask", default=d["content_mask"], metavar="SEG",
                   help="colour-coded segmentation of the content image, one flat colour per region")
    g.add_argument("--style-masks", type=list_of(str, "list of files"), default=d["style_masks"],
                   metavar="SEG[,SEG...]", help="one segmentation per style image, in the STYLE order: a "
                   "region takes its style from the regions of its colour in the style images")
    g.add_argument("--region-styles", default=d["region_styles"], metavar="COLOR=I[,...]",
                   help="without style masks: region COLOR takes the whole of style image I (1-based); "
                        "colours by name (red, green, blue, black, white, yellow, grey, cyan, magenta) or #rrggbb")
    g.add_argument("--mask-mode", choices=("inside", "all", "simple"), default=d["mask_mode"],
                   help="how masks follow the network: inside (erode: whole receptive field in the region), "
                        f"all (dilate), simple (resize) (default: {d['mask_mode']})")
    g.add_argument("--region-weights", default=d["region_weights"], metavar="COLOR=W[,...]",
                   help="weight of each region's style term, normalised to sum to 1 (default: equal)")
    g = p.add_argument_group("tiles: prints larger than memory allows in one piece")
    g.add_argument("--tile", type=tile_size, default=d["tile"], metavar="N|auto",
                   help="stylise at --tile-base, upsample, and refine overlapping N-pixel tiles at full size; "
                        "auto: only when the run does not fit in memory in one piece (default: one piece)")
    g.add_argument("--tile-base", type=positive_int, default=d["tile_base"], metavar="N",
                   help="longest side of the base the tiles start from (default: half the size, or the "
                        "largest size that fits)")
    g.add_argument("--tile-overlap", type=weight, default=d["tile_overlap"], metavar="F|PX",
                   help=f"overlap of neighbouring tiles: a fraction of the tile below 1, or pixels "
                        f"(default: {d['tile_overlap']:g})")
    g.add_argument("--tile-passes", type=int, choices=(1, 2), default=d["tile_passes"],
                   help="2: a second pass on a grid shifted by half a tile (default: 1)")
    g.add_argument("--tile-iters", type=count, default=d["tile_iters"], metavar="N",
                   help="iterations per tile (default: --iters)")
    g.add_argument("--keep-tiles", action="store_true",
                   help="keep OUT's stem + _tiles/ (the finished tiles) after the output is written; an "
                        "interrupted run always keeps it, and the same command resumes from it")
    g.add_argument("--tile-workers", type=positive_int, metavar="N",
                   help="run the tiles as tasks on a local Dask cluster of N workers (pip install 'nstyle[batch]')")
    g.add_argument("--tile-scheduler", metavar="tcp://HOST:PORT", help="run the tiles as tasks on this Dask scheduler")
    g = p.add_argument_group("optimisation")
    g.add_argument("--init", default=d["init"], metavar="|".join(INITS) + "|PATH",
                   help=f"starting image (default: {d['init']}; paper: noise)")
    g.add_argument("--seed", type=count, default=d["seed"], metavar="N",
                   help=f"random seed for the noise start and the style losses' random draws; same seed and "
                        f"inputs give the same bytes on the CPU (default: {d['seed']})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d["optimizer"],
                   help=f"default: {d['optimizer']} (L-BFGS-B; the paper used L-BFGS)")
    add_lbfgs_impl_option(g, d)
    g.add_argument("--lr", type=positive_float, default=d["lr"], metavar="F",
                   help=f"Adam step size in pixel units (default: {d['lr']:g})")
    g.add_argument("--no-bounds", dest="bounds", action="store_false",
                   help="let pixels leave 0..255 during the optimisation (default: keep them in)")
    g = p.add_argument_group("outputs and safety")
    g.add_argument("--save-every", type=count, default=0, metavar="N",
                   help="also write OUT's stem + _iterN + suffix every N iterations (default: 0, off)")
    g.add_argument("--log-json", metavar="PATH", help="write the settings and one record per iteration as JSON")
    g.add_argument("--plot", metavar="PATH", help="write a PNG of the loss curves per term (needs matplotlib)")
    g.add_argument("--dry-run", action="store_true",
                   help="check everything, print the sizes and the memory estimate, and stop")
    g.add_argument("--max-pixels", type=positive_int, default=d["max_pixels"], metavar="N",
                   help=f"refuse input images above N pixels (default: {d['max_pixels']:,}; a guard against "
                        "decompression bombs)")
    add_run_options(p)
    p.set_defaults(run=run)


# ---------------------------------------------------------------------------------------------------
# Checks made before anything heavy happens (the shared ones: checks.py).

def outputs_of(args):
    """(path, what, is_image) for every file a stylize run writes."""
    if args.output is None:
        raise InputError("no output file given", hint="add -o OUT.png (or --dry-run to only check)")
    # --save-every's snapshots sit beside the output, in its format: check_run checks their names
    return [(args.output, "output", True), (args.log_json, "log file", False), (args.plot, "plot", True)]


def input_paths(args):
    """The image files a stylize run reads (the weights file is added by the checks)."""
    paths = [args.content, *args.styles]
    if args.init not in INITS:
        paths.append(args.init)
    paths += [m for m in [getattr(args, "content_mask", None), *(getattr(args, "style_masks", None) or [])] if m]
    return paths


def options_from_args(args):
    """stylize keyword arguments from the parsed command line."""
    options = {k: getattr(args, k) for k in DEFAULTS if hasattr(args, k) and k not in ("size",)}
    if args.scales is not None:
        if args.size is not None and args.size != args.scales[-1]:
            raise InputError(f"--size {args.size} and --scales {join(args.scales)} disagree",
                             hint="the last scale is the output size; drop --size or make them match")
        options["scales"] = args.scales
    elif isinstance(args.iters, list):
        raise InputError(f"--iters gives {len(args.iters)} counts but there is one stage",
                         hint="give one count, or add --scales with one size per count")
    options["size"] = args.size if args.size is not None else DEFAULTS["size"]
    if getattr(args, "tile_workers", None) or getattr(args, "tile_scheduler", None):  # tiles as Dask tasks
        if args.tile is None:
            raise InputError("--tile-workers and --tile-scheduler run the tiles of a tiled run", hint="add --tile N")
        options["tile_cluster"] = {"workers": args.tile_workers, "scheduler": args.tile_scheduler}
    if getattr(args, "tile", None) is not None and args.output is not None:
        options["tile_dir"] = str(tiles_folder(args.output))
    return options


# ---------------------------------------------------------------------------------------------------
# Running, with the outputs that go beside the image.

def execute(plan, output, *, progress, save_every=0, log_json=None, plot=None, vgg=None, settings=None,
            say=print):
    """Run ``plan`` and write OUT (+ the --save-every images, the JSON log, the plot).

    On Ctrl-C the best image so far is written to OUT and 130 returned; on a NaN/Inf loss it is
    written too and NonFiniteLoss re-raised with the file named. Returns the exit code.
    """
    records = []

    def on_iteration(rec, get_image):
        records.append(rec)
        progress.update(rec)
        if save_every and rec["step"] % save_every == 0:
            save_image(get_image(), snapshot_path(output, rec["step"]))

    def write_side_outputs(status, message=""):
        if log_json:
            write_log(log_json, settings or plan.settings, records, status, message, output)
        if plot and records:
            plot_losses(records, plot)

    try:
        image = run_plan(plan, vgg=vgg, callback=on_iteration, log=progress.log)
    except StylizeInterrupted as exc:
        progress.close()
        save_image(exc.image, output)
        write_side_outputs("interrupted", exc.message)
        print(f"nstyle: {exc.message}; the best image so far ({exc.iteration} iterations) was written "
              f"to {output}", file=sys.stderr)
        return 130
    except NonFiniteLoss as exc:
        progress.close()
        save_image(exc.image, output)
        write_side_outputs("nonfinite", exc.message)
        kept = f"the best image before it was written to {output}"
        said = "kept the best image so far"
        exc.message = exc.message.replace(said, kept) if said in exc.message else f"{exc.message}; {kept}"
        raise
    except Exception as exc:
        progress.close()
        if log_json:
            try:
                write_log(log_json, settings or plan.settings, records, "failed", str(exc), None)
            except Exception:  # the original error matters more than the log
                pass
        raise
    progress.close()
    save_image(image, output)
    write_side_outputs("done")
    say(output)
    return 0


def run(args):
    options = options_from_args(args)
    plan = prepare(args.content, args.styles, **options)
    check_run(reads=input_paths(args), weights=args.weights, device=args.device,
              outputs=[] if args.dry_run else outputs_of(args), plans=[plan],
              check_memory=args.check_memory and not args.dry_run,
              snapshots_of=args.output if args.save_every and not args.dry_run else None,
              snapshot_every=args.save_every,
              plot=None if args.dry_run else args.plot)
    if args.dry_run:
        for line in plan.describe():
            print(line)
        if args.check_memory:
            plan.check_memory()  # exit code 2, saying why, when the run would not fit
        return 0
    stages = [(st.iters, st.content_size[0] * st.content_size[1]) for st in plan.stages]
    if plan.tiles:
        if args.save_every:
            raise InputError("--save-every does not apply to a tiled run", hint="its tiles are kept in "
                             f"{plan.settings.tile_dir} as they finish")
        stages += [(plan.tiles.iters, t.size[0] * t.size[1]) for t in plan.tiles.all_tiles()]
    progress = Progress(stages, mode="quiet" if args.quiet else "auto", breakdown_every=args.print_every)
    settings = {"content": args.content, "styles": args.styles, "output": args.output, **plan.settings,
                "engine": plan.engine, "lbfgs_impl": plan.lbfgs_impl}
    code = execute(plan, args.output, progress=progress, save_every=args.save_every, log_json=args.log_json,
                   plot=args.plot, settings=settings, say=(lambda *_: None) if args.quiet else print_path)
    if plan.tiles and code == 0 and not args.keep_tiles:
        discard(plan.settings.tile_dir)  # the output is written: its tiles are no longer needed
    return code
