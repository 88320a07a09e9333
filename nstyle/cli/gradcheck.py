"""``nstyle gradcheck``: float64 numerical gradient checks of every op, loss and the whole objective."""
import json
import sys

from ..model.gradcheck import format_table, run_all


def add_parser(sub):
    p = sub.add_parser("gradcheck", help="check every hand-derived gradient numerically (float64)",
                       description="Compare each backward pass with central differences in float64 on random "
                                   "data and print op, shape, relative error and pass/fail. Exits 1 if any fails.")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    p.set_defaults(run=run)


def run(args):
    rows = run_all(seed=args.seed)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(format_table(rows))
    failed = [r["op"] for r in rows if not r["ok"]]
    if failed:
        print(f"{len(failed)} of {len(rows)} checks FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(rows)} checks passed")
    return 0
