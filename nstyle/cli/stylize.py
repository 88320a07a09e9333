"""``nstyle stylize CONTENT STYLE [STYLE ...] -o OUT``: the main job.

Every default comes from ``nstyle.stylize``'s keyword arguments. Before any weights load, the command
checks every number (at parse time), the output path (format, folder, writability, not an input), every
input image, and the memory the run will need -- so a run that cannot finish fails in its first second.
"""
import os
import re
import signal
import sys
import tempfile

from ..app.imageio import output_format, save_image
from ..app.progress import Progress
from ..app.runlog import plot_losses, require_matplotlib, write_log
from ..app.stylize import (INITS, OPTIMIZERS, ORIGINAL_COLORS, NonFiniteLoss, StylizeInterrupted, prepare,
                           run as run_plan, stylize)
from ..errors import InputError, WeightsError
from .args import (add_network_options, add_reporting_options, count, iters_list, join, layers, list_of,
                   positive_float, positive_int, weight)

DEFAULTS = stylize.__kwdefaults__

# ---------------------------------------------------------------------------------------------------
# The parser.

def add_run_options(p):
    """Options shared by ``stylize`` and ``demo``: the network, and reporting."""
    g = p.add_argument_group("network")
    add_network_options(g, DEFAULTS)
    g = p.add_argument_group("reporting")
    add_reporting_options(g)


def add_parser(sub):
    d = DEFAULTS
    p = sub.add_parser(
        "stylize", help="paint a photo in the style of one or more paintings",
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
                   help=f"total-variation smoothing (default: {d['tv_weight']:g}; the paper has none)")
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
    g = p.add_argument_group("optimisation")
    g.add_argument("--init", default=d["init"], metavar="|".join(INITS) + "|PATH",
                   help=f"starting image (default: {d['init']}; paper: noise)")
    g.add_argument("--seed", type=count, default=d["seed"], metavar="N",
                   help=f"random seed for the noise start; same seed and inputs give the same bytes on "
                        f"the CPU (default: {d['seed']})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d["optimizer"],
                   help=f"default: {d['optimizer']} (SciPy's L-BFGS-B; the paper used L-BFGS)")
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
    g.add_argument("--no-memory-check", dest="check_memory", action="store_false",
                   help="run even when the memory estimate says it will not fit")
    add_run_options(p)
    p.set_defaults(run=run)


# ---------------------------------------------------------------------------------------------------
# Checks made before anything heavy happens.

def _same_file(a, b):
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_writable(path, what, inputs):
    """InputError unless ``path`` can be written: its folder exists and is writable, it is not a folder,
    and it is none of ``inputs`` (files nstyle must never overwrite)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise InputError(f"{what} {path}: is a folder; give a file name")
    for src in inputs:
        if src and _same_file(path, src):
            raise InputError(f"{what} {path}: is also an input file; nstyle never overwrites an input",
                             hint="choose another output name")
    if not os.path.isdir(folder):
        raise InputError(f"{what} {path}: the folder {folder} does not exist", hint="create it first")
    try:  # os.access can be wrong (read-only mounts, ACLs): try it for real
        with tempfile.TemporaryFile(dir=folder, prefix=".nstyle-check-"):
            pass
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot write in {folder} ({exc.strerror or exc})") from None


def save_every_path(output, step):
    stem, suffix = os.path.splitext(output)
    return f"{stem}_iter{step}{suffix}"


def check_outputs(args, inputs):
    """Every file this run will write: format, folder, writability, not an input, no two the same."""
    if args.output is None:
        raise InputError("no output file given", hint="add -o OUT.png (or --dry-run to only check)")
    output_format(args.output)
    check_writable(args.output, "output", inputs)
    others = [(p, w) for p, w in ((args.log_json, "log file"), (args.plot, "plot")) if p]
    if args.save_every:
        others.append((save_every_path(args.output, args.save_every), "--save-every file"))
        # the later snapshots too: OUT_iter<N><suffix> for any N must not be an input
        stem, suffix = os.path.splitext(os.path.realpath(args.output))
        pattern = re.compile(re.escape(stem) + r"_iter\d+" + re.escape(suffix) + "$")
        for src in inputs:
            if src and pattern.match(os.path.realpath(src)):
                raise InputError(f"--save-every would write over the input {src}; nstyle never overwrites "
                                 "an input", hint="choose another output name")
    for path, what in others:
        check_writable(path, what, inputs)
        if _same_file(path, args.output):
            raise InputError(f"{what} {path}: is the same file as the output image")
    if args.log_json and args.plot and _same_file(args.log_json, args.plot):
        raise InputError(f"--log-json and --plot name the same file {args.plot}")
    if args.plot:
        output_format(args.plot)
        require_matplotlib()


def check_weights_file(path):
    """A --weights file that is not there fails now, not after the images have been read."""
    if path and not os.path.isfile(path):
        raise WeightsError(f"weights file not found: {path}" + (" (it is a folder)" if os.path.isdir(path) else ""),
                           hint="run `nstyle weights fetch` for the default weights, or give another --weights")


def input_paths(args):
    paths = [args.content, *args.styles]
    if args.init not in INITS:
        paths.append(args.init)
    if args.weights:
        paths.append(args.weights)
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
    return options


# ---------------------------------------------------------------------------------------------------
# Running, with the outputs that go beside the image.

class _TermAsInterrupt:
    """Treat SIGTERM (a scheduler or `timeout` stopping us) like Ctrl-C: keep the best image."""

    def __enter__(self):
        self.saved = None
        try:
            self.saved = signal.signal(signal.SIGTERM, self._raise)
        except (ValueError, OSError):  # not the main thread
            pass
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.saved is not None:
            signal.signal(signal.SIGTERM, self.saved)


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
            save_image(get_image(), save_every_path(output, rec["step"]))

    def write_side_outputs(status, message=""):
        if log_json:
            write_log(log_json, settings or plan.options, records, status, message, output)
        if plot and records:
            plot_losses(records, plot)

    try:
        with _TermAsInterrupt():
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
                write_log(log_json, settings or plan.options, records, "failed", str(exc), None)
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
    inputs = input_paths(args)
    check_weights_file(args.weights)
    if not args.dry_run:
        check_outputs(args, inputs)
    plan = prepare(args.content, args.styles, **options)
    if args.dry_run:
        for line in plan.describe():
            print(line)
        return 0
    if args.check_memory:
        plan.check_memory()
    stages = [(st.iters, st.content_size[0] * st.content_size[1]) for st in plan.stages]
    progress = Progress(stages, mode="quiet" if args.quiet else "auto", breakdown_every=args.print_every)
    settings = {"content": args.content, "styles": args.styles, "output": args.output, **plan.options,
                "engine": plan.engine}
    return execute(plan, args.output, progress=progress, save_every=args.save_every, log_json=args.log_json,
                   plot=args.plot, settings=settings, say=(lambda *_: None) if args.quiet else print)
