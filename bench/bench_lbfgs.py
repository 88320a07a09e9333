"""The optimizer's own cost: SciPy's L-BFGS-B against nstyle's (nstyle/optim/lbfgsb.py) on the CPU.

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
import time

import numpy as np

import common


def problem(n, seed=0):
    rng = np.random.default_rng(seed)
    curv = 10.0 ** rng.uniform(-2, 2, n)
    centre = rng.uniform(-60, 320, n)
    clock = [0.0]

    def fun_and_grad(x):
        start = time.perf_counter()
        d = x - centre
        f, g = 0.5 * float(np.dot(curv * d, d)), curv * d
        clock[0] += time.perf_counter() - start
        return f, g
    return fun_and_grad, clock


def run_scipy(n, iters):
    import scipy.optimize
    fun, clock = problem(n)
    x0 = np.full(n, 128.0)
    t0 = time.perf_counter()
    res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=scipy.optimize.Bounds(
        np.zeros(n), np.full(n, 255.0)), options={"maxiter": iters, "maxcor": 10, "ftol": 0.0, "gtol": 0.0,
                                                  "maxfun": 2 * iters + 20})
    return time.perf_counter() - t0 - clock[0], int(res.nit), float(res.fun)


def run_nstyle(n, iters):
    """As nstyle.lbfgs runs it on the CPU: the optimizer's own BLAS work on one thread (see optimize.py)."""
    from nstyle.optim.lbfgsb import minimize_lbfgsb
    from nstyle.cpu.threads import blas_thread_control
    fun, clock = problem(n)
    x0 = np.full(n, 128.0)
    set_threads = blas_thread_control()
    usual = set_threads(1) if set_threads else None
    t0 = time.perf_counter()
    try:
        res = minimize_lbfgsb(fun, x0, 0.0, 255.0, m=10, ftol=0.0, gtol=0.0, maxiter=iters, maxfun=2 * iters + 20)
    finally:
        if set_threads:
            set_threads(usual)
    return time.perf_counter() - t0 - clock[0], int(res.nit), float(res.fun)


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
