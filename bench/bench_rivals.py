"""nstyle against PyTorch, TensorFlow and JAX on the CPU: one objective evaluation, and (optionally) whole runs.

    python3 bench/bench_rivals.py [--sizes 128 256 512] [--rounds 3] [--reps 5] [--frameworks nstyle torch tf jax]
                                  [--threads 2] [--weights FILE] [--content IMG --style IMG]
    python3 bench/bench_rivals.py --whole-run [--sizes 512] [--iters 100]

The objective is nstyle's: VGG-19 to relu5_1 with average pooling, content loss at relu4_2, Gram losses at
relu1_1..relu5_1 (w_l = 1/5), content weight 1, style weight 1e3, float32, Caffe BGR mean-subtracted
input; weights are seeded random ones of VGG-19's real widths unless --weights names a file. The rivals
(bench/rival_torch.py, rival_tf.py, rival_jax.py; nstyle's side in rival_nstyle.py) each expose
``build(params, content, style, x_shape) -> fn(x) -> (loss, gradient)``.

Method: every (framework, size) runs in its own fresh process (this script with --child), so no
framework shares memory, thread pools or caches with another; the order of the frameworks rotates and
reverses from round to round so that slow drifts in the machine's load hit all alike. Every child pins
itself to --threads CPUs and sets each library's thread count to it. A child builds the objective,
evaluates it once (compilation/tracing happens here and is not timed), and checks loss and gradient
against nstyle's (computed once per size by a reference child and passed as an .npz): a relative loss
difference of 1e-4 or more, or a gradient max-abs relative difference of 1e-3 or more, and the rival is
refused, reported as such and not timed -- except that a rival failing only the gradient part is judged
against nstyle's float64 objective instead (ReLUs flipping at rounding level make any two float32
implementations differ by more than 1e-3 at a few pixels from 256 up; rivals_common.compare says how;
--strict-check turns this off). Then one more warm-up call and --reps timed calls (median
kept); peak RSS is the child's VmHWM. A framework that is not installed is skipped with one line.

Writes bench/results/rivals.json, rivals.md and rivals.png (time per evaluation and peak memory vs size).
With --whole-run: each framework's gradient drives scipy.optimize.minimize(method="L-BFGS-B", jac=True)
for --iters iterations from the content image inside the pixel box (0..255 minus the Caffe mean per BGR
channel); writes bench/results/rivals_run.json and rivals_run.md. Slow: minutes per framework at 512.
"""
import argparse
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rivals_common as rc  # noqa: E402

MARK = "RIVAL-RESULT "


# --- the child: one framework, one size, in a fresh process ----------------------------------------------

def child(args):
    out = {"framework": args.child, "size": args.size, "load_at_start": rc.load_average()}
    out["cpu_affinity"] = rc.pin_cpus(args.threads)
    mod = importlib.import_module("rival_" + args.child)
    out["config"] = mod.configure(args.threads)
    out["thread_pools"] = rc.blas_info()
    params = rc.vgg_params(args.seed, args.weights)
    content, style, x = rc.images(args.size, args.seed + 1, args.content, args.style)
    t0 = time.perf_counter()
    fn = mod.build(params, content, style, x.shape)
    loss, grad = fn(x)  # first call: tracing / compilation / lazy initialisation, not timed
    out["build_and_first_call_s"] = time.perf_counter() - t0
    if args.make_ref:  # nstyle: float32 (the reference) and float64 (the arbiter, see rc.compare)
        loss64, grad64 = mod.build(params, content, style, x.shape, dtype=np.float64)(x)
        np.savez(args.make_ref, loss=np.float64(loss), grad=grad, loss64=np.float64(loss64), grad64=grad64)
        out["ref_loss"], out["ref_loss64"] = float(loss), float(loss64)
        return emit(out)
    del params
    ref = dict(np.load(args.ref))
    out["check"] = rc.compare(loss, grad, ref, strict=args.strict_check)
    if not out["check"]["ok"]:
        out["refused"] = True
        return emit(out)
    if args.whole_run:
        out.update(whole_run(fn, content, args.iters))
        if args.child == "nstyle":  # the same objective driven by nstyle's own L-BFGS-B as well
            out["own_lbfgsb"] = whole_run(fn, content, args.iters, own=True)
    else:
        for _ in range(args.warmup):
            fn(x)
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
        out.update(times_s=times, median_s=rc.median(times))
    out["peak_rss_mb"] = rc.proc_status_mb("VmHWM")
    out["load_at_end"] = rc.load_average()
    return emit(out)


def whole_run(fn, content, iters, own=False):
    """scipy's L-BFGS-B (own: nstyle's, ``nstyle.optim.lbfgsb``, with SciPy's default options) on the
    pixels from the content image, inside the pixel box, fn's gradient."""
    from scipy.optimize import Bounds, minimize
    shape = content.shape
    if own:
        from nstyle.cpu.threads import blas_thread_control
        from nstyle.optim.lbfgsb import minimize_lbfgsb
        lo, hi = rc.lbfgs_bounds(shape)
        x0 = content.astype(np.float64).ravel()
        # as nstyle's own driver runs it (optim/nstyle_driver.py): the optimizer's vector work with
        # NumPy's BLAS on one thread -- a second BLAS thread would poll through the evaluations
        set_threads = blas_thread_control()
        usual = set_threads(1) if set_threads else None

        def own_fn(v):
            if set_threads:
                set_threads(usual)
            try:
                loss, grad = fn(v.reshape(shape).astype(np.float32))
            finally:
                if set_threads:
                    set_threads(1)
            return loss, np.asarray(grad, np.float64).ravel()

        t0 = time.perf_counter()
        try:
            res = minimize_lbfgsb(own_fn, x0, lo, hi, maxiter=iters, maxfun=iters * 4)
        finally:
            if set_threads:
                set_threads(usual)
        seconds = time.perf_counter() - t0
        return {"run_s": seconds, "final_loss": float(res.fun), "start_loss": float(fn(content)[0]),
                "nit": int(res.nit), "nfev": int(res.nfev), "message": str(res.message),
                "s_per_eval": seconds / max(int(res.nfev), 1)}

    def fun(v):
        loss, grad = fn(v.reshape(shape).astype(np.float32))
        return loss, np.asarray(grad, np.float64).ravel()

    quietened = rc.quiet_scipy_blas()  # scipy.optimize (imported above) has loaded SciPy's BLAS
    bounds, x0 = Bounds(*rc.lbfgs_bounds(shape)), content.astype(np.float64).ravel()
    fn(content)  # the start point once more (compiled already; fills any per-input caches)
    t0 = time.perf_counter()
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": iters, "maxfun": iters * 4})
    seconds = time.perf_counter() - t0
    return {"run_s": seconds, "final_loss": float(res.fun), "start_loss": float(fun(content.ravel())[0]),
            "nit": int(res.nit), "nfev": int(res.nfev), "message": str(res.message),
            "s_per_eval": seconds / max(int(res.nfev), 1), "scipy_blas_set_to_1_thread": quietened}


def emit(out):
    print(MARK + json.dumps(out), flush=True)


# --- the report -----------------------------------------------------------------------------------------

def summarise(results, frameworks, sizes):
    """{framework: {size: {...}}}: medians over all timed calls of all rounds, or the whole runs."""
    out = {}
    for fw in frameworks:
        for size in sizes:
            rs = [r for r in results if r["framework"] == fw and r["size"] == size]
            if not rs:
                continue
            ok = [r for r in rs if "error" not in r and not r.get("refused")]
            row = {"status": "ok" if ok else ("refused" if any(r.get("refused") for r in rs) else "failed")}
            checked = [r for r in rs if "check" in r]
            if checked:
                row["check"] = checked[0]["check"]
            if not ok:
                row["why"] = rs[-1].get("error") or rs[-1]["check"].get("why")
            elif "run_s" in ok[0]:
                row.update({k: ok[0][k] for k in ("run_s", "s_per_eval", "final_loss", "start_loss", "nit",
                                                  "nfev", "message", "peak_rss_mb")})
                if "own_lbfgsb" in ok[0]:
                    row["own_lbfgsb"] = dict(ok[0]["own_lbfgsb"], peak_rss_mb=ok[0]["peak_rss_mb"])
            else:
                row.update(median_s=rc.median([t for r in ok for t in r["times_s"]]),
                           round_medians_s=[r["median_s"] for r in ok],
                           peak_rss_mb=rc.median([r["peak_rss_mb"] for r in ok]),
                           first_call_s=rc.median([r["build_and_first_call_s"] for r in ok]))
            out.setdefault(fw, {})[str(size)] = row
    return out


def machine_line(d):
    flags = ", ".join(f"{f} {'yes' if on else 'no'}" for f, on in d["cpu"]["flags"].items())
    v = d["versions"]
    vers = ", ".join(f"{k} {v[k]}" for k in ("nstyle", "numpy", "torch", "tensorflow-cpu", "jax", "jaxlib") if k in v)
    pools = d["frameworks"].get("nstyle", {}).get("thread_pools", [])
    blas = [f"{p['internal_api']} {p['version']} ({p['architecture']} kernels)" for p in pools
            if isinstance(p, dict) and p.get("user_api") == "blas"]
    coretype = d["child_env"].get("OPENBLAS_CORETYPE", "unset")
    vers += f"; NumPy's BLAS {', '.join(blas) or 'unknown'}, OPENBLAS_CORETYPE={coretype}"
    seen = [r["load_at_start"][0] for r in d["results"] if r.get("load_at_start")]
    during = f", 1-minute load seen by the children {min(seen):.1f}..{max(seen):.1f}" if seen else ""
    return (f"CPU: {d['cpu']['model']} ({flags}), {d['cpu']['logical_cpus']} logical CPUs; {d['threads']} "
            f"threads per framework. {vers}. Load average before {d['load_average_before']}, after "
            f"{d['load_average_after']}{during} (shared machine: expect noise).")


def cell(row, key, fmt):
    if row is None:
        return "not run"
    return fmt.format(row[key]) if row["status"] == "ok" else row["status"]


def markdown(d):
    fws, summ = [k for k, *_ in rc.FRAMEWORKS], d["summary"]
    lines = [machine_line(d), ""]
    sizes = [str(s) for s in d["settings"]["sizes"]]
    if d["kind"] == "evaluation":
        lines += [f"One evaluation (forward to relu5_1 + backward to the pixels), median of {d['settings']['reps']} "
                  f"timed calls x {d['settings']['rounds']} rounds, each framework in a fresh process:", "",
                  "| size | " + " | ".join(rc.LABELS[f] for f in fws) + " | nstyle / fastest rival |",
                  "| --- " * (len(fws) + 2) + "|"]
        for s in sizes:
            rows = [summ.get(f, {}).get(s) for f in fws]
            rivals = [r["median_s"] for f, r in zip(fws, rows) if f != "nstyle" and r and r["status"] == "ok"]
            ours = rows[0]["median_s"] if rows[0] and rows[0]["status"] == "ok" else None
            ratio = f"{ours / min(rivals):.2f}" if ours and rivals else ""
            lines.append(f"| {s} | " + " | ".join(cell(r, "median_s", "{:.3f} s") for r in rows) + f" | {ratio} |")
        lines += ["", "Peak RSS of each child process (VmHWM: interpreter, framework, weights, targets, "
                  "evaluations):", "", "| size | " + " | ".join(rc.LABELS[f] for f in fws) + " |",
                  "| --- " * (len(fws) + 1) + "|"]
        for s in sizes:
            rows = [summ.get(f, {}).get(s) for f in fws]
            lines.append(f"| {s} | " + " | ".join(cell(r, "peak_rss_mb", "{:.0f} MB") for r in rows) + " |")
    else:
        lines += [f"Whole runs: scipy L-BFGS-B, {d['settings']['iters']} iterations from the content image, "
                  "pixel box bounds, each framework's gradient:", "",
                  "| size | framework | time | s / evaluation | iterations | evaluations | start loss | final loss |"
                  " peak RSS |", "| --- " * 9 + "|"]
        for s in sizes:
            for f in fws:
                r = summ.get(f, {}).get(s)
                if r and r["status"] == "ok":
                    for label, x in ((rc.LABELS[f], r), (f"{rc.LABELS[f]} (own L-BFGS-B)", r.get("own_lbfgsb"))):
                        if x:
                            lines.append(f"| {s} | {label} | {x['run_s']:.1f} s | {x['s_per_eval']:.3f} s | "
                                         f"{x['nit']} | {x['nfev']} | {x['start_loss']:.6g} | {x['final_loss']:.6g} | "
                                         f"{x['peak_rss_mb']:.0f} MB |")
                elif r:
                    lines.append(f"| {s} | {rc.LABELS[f]} | {r['status']} | | | | | | |")
    lines += ["", f"Check against nstyle's float32 result (relative loss difference < {rc.LOSS_TOL:.0e}, gradient "
              f"max-abs relative difference < {rc.GRAD_TOL:.0e}); where only the gradient part fails, the float64 "
              "arbitration of rivals_common.compare decides"
              + (" (arbitration off: --strict-check)" if d["settings"].get("strict_check") else "") + ":", "",
              "| size | framework | loss rel diff | grad max-abs rel diff | grad diff from nstyle float64 "
              "(nstyle float32's own) | pixels off from float64 (nstyle float32's own) | verdict |", "| --- " * 7 + "|"]
    for s in sizes:
        for f in fws:
            c = summ.get(f, {}).get(s, {}).get("check")
            if c and "loss_rel_diff" in c:
                v64, own = c.get("vs_float64", {}), c.get("nstyle_float32_vs_float64", {})
                arb = f"{v64['grad_rel_diff']:.1e} ({own['grad_rel_diff']:.1e})" if v64 else ""
                off = f"{v64['grad_off_pixels']:.2%} ({own['grad_off_pixels']:.2%})" if v64 else ""
                lines.append(f"| {s} | {rc.LABELS[f]} | {c['loss_rel_diff']:.1e} | {c['grad_rel_diff']:.1e} | {arb} | "
                             f"{off} | {c['verdict']} |")
    notes = [f"{rc.LABELS[f]}: not installed, skipped" for f in d["skipped"]]
    notes += [f"{rc.LABELS[f]} at {s}: {r['status']}: {r.get('why')}" for f in fws for s, r in summ.get(f, {}).items()
              if r["status"] != "ok"]
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"


def plot(d, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for f in [k for k, *_ in rc.FRAMEWORKS]:
        pts = sorted((int(s), r) for s, r in d["summary"].get(f, {}).items() if r["status"] == "ok")
        if pts:
            xs = [s for s, _ in pts]
            ax_t.plot(xs, [r["median_s"] for _, r in pts], "o-", label=rc.LABELS[f])
            ax_m.plot(xs, [r["peak_rss_mb"] for _, r in pts], "o-", label=rc.LABELS[f])
    for ax, title in ((ax_t, "time per evaluation (s)"), (ax_m, "peak RSS of the process (MB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(d["settings"]["sizes"], [str(s) for s in d["settings"]["sizes"]])
        ax.set_xlabel("image size (pixels per side)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"{d['cpu']['model']}, {d['threads']} threads per framework", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(stem, d):
    rc.RESULTS.mkdir(parents=True, exist_ok=True)
    paths = [rc.RESULTS / (stem + ".json"), rc.RESULTS / (stem + ".md")]
    paths[0].write_text(json.dumps(d, indent=1) + "\n")
    paths[1].write_text(markdown(d))
    if d["kind"] == "evaluation":
        try:
            plot(d, rc.RESULTS / (stem + ".png"))
            paths.append(rc.RESULTS / (stem + ".png"))
        except ImportError as exc:
            print(f"no plot: {exc}")
    return paths


# --- the parent -----------------------------------------------------------------------------------------

def run_child(args, fw, size, extra):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", fw, "--size", str(size), "--seed", str(args.seed),
           "--threads", str(args.threads), "--reps", str(args.reps), "--warmup", str(args.warmup),
           "--iters", str(args.iters)] + extra
    cmd += [f"--{o}" for o in ("strict-check", "whole-run") if getattr(args, o.replace("-", "_"))]
    for opt in ("weights", "content", "style"):
        if getattr(args, opt):
            cmd += [f"--{opt}", getattr(args, opt)]
    return rc.spawn_child(cmd, args.threads, args.child_timeout, {"framework": fw, "size": size}, MARK)


def available(frameworks, table=rc.FRAMEWORKS):
    """The keys of ``frameworks`` whose module is installed; a line for each that is skipped."""
    keep = []
    for key, label, module, _ in table:
        if key not in frameworks:
            continue
        if importlib.util.find_spec(module) is None:
            extra = {"torch": "bench", "tf": "bench-tf", "jax": "bench-jax"}.get(key, "")
            print(f"skipping {label}: '{module}' is not installed (pip install -e '.[{extra}]')", flush=True)
        else:
            keep.append(key)
    return keep


def order(frameworks, rnd):
    """Round r: the list rotated by r, reversed on odd rounds."""
    k = rnd % len(frameworks)
    rotated = frameworks[k:] + frameworks[:k]
    return rotated[::-1] if rnd % 2 else rotated


def describe(r):
    fw, size = rc.LABELS[r["framework"]], r["size"]
    if "error" in r:
        return f"{fw:10s} {size:5d}: FAILED {r['error'][-300:]}"
    c = r["check"]
    nan = float("nan")
    check = f"loss diff {c.get('loss_rel_diff', nan):.1e}, grad diff {c.get('grad_rel_diff', nan):.1e}"
    if "vs_float64" in c:
        check += (f"; from nstyle float64 {c['vs_float64']['grad_rel_diff']:.1e}, nstyle float32's own "
                  f"{c['nstyle_float32_vs_float64']['grad_rel_diff']:.1e}: {c['verdict']}")
    if r.get("refused"):
        return f"{fw:10s} {size:5d}: REFUSED (computes something else: {c['why']})"
    if "run_s" in r:
        return (f"{fw:10s} {size:5d}: {r['run_s']:.1f} s for {r['nit']} iterations ({r['nfev']} evaluations), "
                f"final loss {r['final_loss']:.6g}, peak {r['peak_rss_mb']:.0f} MB ({check})")
    return (f"{fw:10s} {size:5d}: median {r['median_s']:.3f} s, peak {r['peak_rss_mb']:.0f} MB, "
            f"first call {r['build_and_first_call_s']:.2f} s, load {r['load_at_start'][0]:.2f} ({check})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+")
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls after the checked first call")
    ap.add_argument("--frameworks", nargs="+", default=[k for k, *_ in rc.FRAMEWORKS],
                    choices=[k for k, *_ in rc.FRAMEWORKS])
    ap.add_argument("--threads", type=int, default=rc.THREADS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", help="VGG-19 weights file (default: seeded random weights of real widths)")
    ap.add_argument("--content", help="content image file (default: seeded synthetic image)")
    ap.add_argument("--style", help="style image file (default: seeded synthetic image)")
    ap.add_argument("--whole-run", action="store_true", help="L-BFGS-B runs instead of single evaluations")
    ap.add_argument("--iters", type=int, default=100, help="L-BFGS-B iterations for --whole-run")
    ap.add_argument("--strict-check", action="store_true",
                    help="refuse on the float32 tolerances alone (no float64 arbitration, see rivals_common.compare)")
    ap.add_argument("--child-timeout", type=int, default=3600)
    ap.add_argument("--out", help="stem of the output files in bench/results/ (default rivals / rivals_run)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ref", help=argparse.SUPPRESS)
    ap.add_argument("--make-ref", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    args.sizes = args.sizes or ([512] if args.whole_run else [128, 256, 512])
    args.rounds = args.rounds or (1 if args.whole_run else 3)
    stem = args.out or ("rivals_run" if args.whole_run else "rivals")
    data = {"kind": "whole_run" if args.whole_run else "evaluation", "cpu": rc.cpu_info(),
            "versions": rc.versions(), "nstyle_src": rc.NSTYLE_SRC, "repo_commit": rc.source_commit(),
            "threads": args.threads, "load_average_before": rc.load_average(),
            "settings": {k: getattr(args, k) for k in ("sizes", "rounds", "reps", "warmup", "seed", "weights",
                                                       "content", "style", "iters", "whole_run",
                                                       "strict_check")},
            "tolerances": {"loss_rel": rc.LOSS_TOL, "grad_max_abs_rel": rc.GRAD_TOL},
            "child_env": {k: v for k, v in rc.thread_env(args.threads).items()
                          if k.endswith("THREADS") or k.startswith(("XLA_", "OPENBLAS_"))}}
    print(f"{data['cpu']['model']} ({', '.join(f for f, on in data['cpu']['flags'].items() if on)}), "
          f"{args.threads} threads per framework, load average {data['load_average_before']}", flush=True)
    frameworks = available(args.frameworks)
    data["skipped"] = [k for k in args.frameworks if k not in frameworks]
    results, configs = [], {}
    with tempfile.TemporaryDirectory(prefix="nstyle-rivals-") as tmp:
        refs = {}
        for size in args.sizes:
            path = os.path.join(tmp, f"ref{size}.npz")
            r = run_child(args, "nstyle", size, ["--make-ref", path])
            if "error" in r:
                print(f"reference (nstyle) at {size}: FAILED {r['error']}", flush=True)
                continue
            refs[size] = path
        refused = set()
        for rnd in range(args.rounds):
            for size in [s for s in args.sizes if s in refs]:
                for fw in order(frameworks, rnd):
                    if (fw, size) in refused:
                        continue
                    r = run_child(args, fw, size, ["--ref", refs[size]])
                    r["round"] = rnd
                    results.append(r)
                    print(f"round {rnd + 1}/{args.rounds}  " + describe(r), flush=True)
                    if r.get("refused") or "error" in r:
                        refused.add((fw, size))
                    if "config" in r:
                        configs.setdefault(fw, {"config": r["config"], "thread_pools": r["thread_pools"],
                                                "cpu_affinity": r["cpu_affinity"]})
    data["load_average_after"] = rc.load_average()
    data["frameworks"] = configs
    data["results"] = results
    data["summary"] = summarise(results, frameworks, args.sizes)
    paths = write(stem, data)
    print(markdown(data), end="")
    print("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
