"""The optimizer's own cost: SciPy's L-BFGS-B against nstyle's on the CPU (the cases: lbfgs_cases.py).

    python3 bench/bench_lbfgs.py [--sizes 256 512 1024] [--iters 25] [--reps 2]

A cheap separable bounded quadratic over an image's worth of variables (3 x size x size; curvatures
spread over four decades, about a quarter of the minimisers outside the pixel box) so that nearly all
the time is the optimizer's: the objective's own time is measured and subtracted. Both run m = 10,
ftol = gtol = 0 and the same iteration count; SciPy's one-off setup (bound conversion) is included.
Writes bench/results/lbfgs.json and lbfgs.md.
"""
import argparse
import os
import statistics

import common
from lbfgs_cases import run_nstyle, run_scipy


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--iters", type=int, default=25)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    info = common.machine(None)
    print(common.machine_line(info), flush=True)
    rows = []
    for size in args.sizes:
        n = 3 * size * size
        times = {"scipy": [], "nstyle": []}
        for _ in range(args.reps):  # alternate, so that load on the machine hits both alike
            for name, run in (("scipy", run_scipy), ("nstyle", run_nstyle)):
                seconds, nit, fun = run(n, args.iters)
                times[name].append(seconds / max(1, nit))
        row = {"size": size, "variables": n, "iters": args.iters,
               **{f"{k}_s_per_iter": statistics.median(v) for k, v in times.items()},
               **{f"{k}_all": v for k, v in times.items()}}
        row["ratio"] = row["nstyle_s_per_iter"] / row["scipy_s_per_iter"]
        rows.append(row)
        print(f"{size:5d}: SciPy {row['scipy_s_per_iter'] * 1e3:7.1f} ms/iter  nstyle {row['nstyle_s_per_iter'] * 1e3:7.1f}"
              f" ms/iter  ratio {row['ratio']:.2f}", flush=True)
    info["load_average_end"] = list(os.getloadavg())
    lines = [f"Machine: {common.machine_line(info)}.", "",
             f"Optimizer's own time per iteration ({args.iters} iterations, setup included, median of {args.reps}):",
             "", "| size | variables | SciPy | nstyle | nstyle / SciPy |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['size']} | {r['variables']:,} | {r['scipy_s_per_iter'] * 1e3:.1f} ms | "
              f"{r['nstyle_s_per_iter'] * 1e3:.1f} ms | {r['ratio']:.2f} |" for r in rows]
    print(common.write_outputs("lbfgs", {"machine": info, "rows": rows}, "\n".join(lines) + "\n"))


if __name__ == "__main__":
    main()
