"""``nstyle gradcheck``: float64 numerical gradient checks of every op, every registered loss term, the
backward sweep and the whole objective -- or of the ops named with ``--op``. ``docs/backprop.md`` walks through them in order."""
import json
import sys

from ..model.gradcheck import ALIASES, ENGINE_OPS, OP_NAMES, format_table, run_all
from ..model.vgg import ENGINES
from .commands import summary


def add_parser(sub):
    p = sub.add_parser("gradcheck", help=summary("gradcheck"),
                       description="Compare each backward pass with central differences (small ops: element "
                                   "by element; the network: along random directions) in float64 on random "
                                   "data and print op, shape, relative error and pass/fail. Exits 1 if any "
                                   "check fails. docs/backprop.md derives every gradient checked here.")
    p.add_argument("--op", action="append", choices=OP_NAMES + tuple(ALIASES), metavar="NAME",
                   help=f"check only this op or loss term (repeat for several): {', '.join(OP_NAMES)} "
                        "(default: all)")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help=f"engine the network-level checks ({', '.join(ENGINE_OPS)}) run on: reference (the "
                        "readable layer loop) or fast / auto (the CPU engine, with its own kernels and "
                        "with Winograd forced on) (default: auto)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.set_defaults(run=run)


def run(args):
    rows = run_all(seed=args.seed, ops=args.op, engine=args.engine)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows))
    failed = [r["op"] for r in rows if not r["ok"]]
    if failed:
        print(f"{len(failed)} of {len(rows)} checks FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("1 check passed" if len(rows) == 1 else f"all {len(rows)} checks passed")
    return 0
