"""``nstyle stylize CONTENT STYLE [STYLE ...] -o OUT``: the main job."""
import sys

from ..imageio import save_image
from ..stylize import StylizeInterrupted, NonFiniteLoss, stylize

DEFAULTS = stylize.__kwdefaults__


def _layers(text):
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _floats(text):
    return [float(t) for t in text.split(",") if t.strip()]


def add_parser(sub):
    d = DEFAULTS
    p = sub.add_parser("stylize", help="paint a photo in the style of one or more paintings")
    p.add_argument("content", help="content image (the photo)")
    p.add_argument("styles", nargs="+", metavar="style", help="style image(s) (the paintings)")
    p.add_argument("-o", "--output", required=True, help="output image path (.png, .jpg, ...)")
    p.add_argument("--size", type=int, default=d["size"], help=f"longest side of the output (default {d['size']})")
    p.add_argument("--iters", type=int, default=d["iters"], help=f"iterations (default {d['iters']})")
    p.add_argument("--content-weight", type=float, default=d["content_weight"])
    p.add_argument("--style-weight", type=float, default=d["style_weight"])
    p.add_argument("--tv-weight", type=float, default=d["tv_weight"])
    p.add_argument("--init", default=d["init"], help="content, noise, style, or an image path")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default=d["optimizer"])
    p.add_argument("--lr", type=float, default=d["lr"], help="Adam step size in pixel units")
    p.add_argument("--no-bounds", dest="bounds", action="store_false", help="let pixels leave 0..255")
    p.add_argument("--pooling", choices=("avg", "max"), default=d["pooling"])
    p.add_argument("--content-layers", type=_layers, default=d["content_layers"])
    p.add_argument("--style-layers", type=_layers, default=d["style_layers"])
    p.add_argument("--style-layer-weights", type=_floats, default=d["style_layer_weights"])
    p.add_argument("--style-blend", type=_floats, default=d["style_blend"])
    p.add_argument("--style-scale", type=float, default=d["style_scale"])
    p.add_argument("--device", choices=("auto", "cpu", "gpu"), default=d["device"])
    p.add_argument("--weights", default=d["weights"], help="VGG-19 weights file (default: the cached file)")
    p.add_argument("--print-every", type=int, default=10)
    p.set_defaults(run=run)


def run(args):
    def progress(rec, _get_x):
        if args.print_every and rec["iter"] % args.print_every == 0:
            print(f"iter {rec['iter']:5d}  loss {rec['loss']:.4e}  content {rec['content']:.3e}  "
                  f"style {rec['style']:.3e}  tv {rec['tv']:.3e}  {rec['seconds']:.1f}s", flush=True)

    kwargs = {k: getattr(args, k) for k in DEFAULTS if hasattr(args, k)}
    try:
        image = stylize(args.content, args.styles, callback=progress,
                        log=lambda m: print(f"nstyle: {m}", file=sys.stderr), **kwargs)
    except StylizeInterrupted as exc:
        save_image(exc.image, args.output)
        print(f"nstyle: interrupted at iteration {exc.iteration}; best image so far written to {args.output}",
              file=sys.stderr)
        return 130
    except NonFiniteLoss as exc:
        save_image(exc.image, args.output)
        raise
    save_image(image, args.output)
    print(args.output)
    return 0
