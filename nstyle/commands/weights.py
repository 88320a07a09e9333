"""``nstyle weights``: where the VGG-19 weights live and what a weights file holds."""
from ..weights import default_weights_path, read_hdf5


def add_parser(sub):
    p = sub.add_parser("weights", help="manage the VGG-19 weights")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION")
    wsub.required = True
    path = wsub.add_parser("path", help="print where the default weights file lives")
    path.set_defaults(run=run_path)
    info = wsub.add_parser("info", help="show a weights file's source and layer shapes")
    info.add_argument("file", nargs="?", help="weights file (default: the default file)")
    info.set_defaults(run=run_info)


def run_path(args):
    print(default_weights_path())
    return 0


def run_info(args):
    path = args.file or default_weights_path()
    params, attrs = read_hdf5(path, require_all=False)
    print(f"file: {path}")
    for key in sorted(attrs):
        print(f"{key}: {attrs[key]}")
    for name, (w, b) in params.items():
        print(f"{name}: weight {tuple(w.shape)}  bias {tuple(b.shape)}")
    return 0
