"""One objective evaluation (forward to relu5_1, content + five Gram losses, backward to the pixels):
nstyle vs PyTorch, same weights, same images, same loss, same process, interleaved.

    python3 bench/bench_eval.py [--sizes 128 256 512 1024] [--reps 5] [--memory-sizes 1024 2048]
                                [--torch-memory-sizes 1024] [--weights FILE]

Timing: after warm-up, the two sides alternate (nstyle, torch, nstyle, ...) so that noise from other
work on the machine hits both alike; each gets the median of --reps. Memory: each side runs in a fresh
subprocess per size; it reports the process's peak RSS (VmHWM: everything -- interpreter, libraries,
weights, targets, one evaluation) and the part of it the evaluation added (VmHWM reset just before it).
Writes bench/results/eval.json and eval.md.
"""
import argparse
import json
import subprocess
import sys

import common
import numpy as np


def time_sizes(args, torch, info):
    params = common.vgg_params(args.weights)
    rows = []
    for size in args.sizes:
        content, style, x = common.images(size)
        ours = common.nstyle_objective(params, content, style)
        theirs = common.torch_objective(torch, params, content, style)
        reps = args.reps
        warm = 2 if size <= 256 else 1
        for _ in range(warm):
            f_ours, g_ours = ours(x)
            f_theirs, g_theirs = theirs(x)
        loss_diff = abs(f_ours - f_theirs) / abs(f_theirs)
        grad_diff = float(np.abs(g_ours - g_theirs).max() / np.abs(g_theirs).max())
        t_ours, t_theirs = [], []
        for _ in range(reps):
            t, _ = common.clock(ours, x)
            t_ours.append(t)
            t, _ = common.clock(theirs, x)
            t_theirs.append(t)
        row = {"size": size, "nstyle_s": common.median(t_ours), "torch_s": common.median(t_theirs),
               "nstyle_all_s": t_ours, "torch_all_s": t_theirs, "loss_rel_diff": loss_diff,
               "grad_rel_diff": grad_diff}
        row["ratio"] = row["nstyle_s"] / row["torch_s"]
        rows.append(row)
        print(f"{size:5d}: nstyle {row['nstyle_s']:.3f} s  torch {row['torch_s']:.3f} s  ratio {row['ratio']:.2f}"
              f"  (loss diff {loss_diff:.1e}, grad diff {grad_diff:.1e})", flush=True)
        del ours, theirs
    return rows


def child(args):
    """One side, one size, in this fresh process: report memory and the time of one evaluation."""
    torch = common.import_torch() if args.child == "torch" else None
    params = common.vgg_params(args.weights)
    content, style, x = common.images(args.size)
    if torch is None:
        fn = common.nstyle_objective(params, content, style)
    else:
        fn = common.torch_objective(torch, params, content, style)
    del content, style
    before = common.current_rss_mb()
    setup_peak = common.vm_hwm_mb()
    resettable = common.reset_peak_rss()
    seconds, _ = common.clock(fn, x)
    eval_peak = common.vm_hwm_mb()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec, so a
    # child of a big benchmark process would report its parent's peak.
    out = {"side": args.child, "size": args.size, "rss_before_eval_mb": before,
           "eval_peak_mb": eval_peak if resettable else float("nan"),
           "process_peak_mb": max(setup_peak, eval_peak), "eval_s": seconds}
    print(json.dumps(out))


def memory(args):
    rows = []
    plan = [(s, side) for s in args.memory_sizes for side in ("nstyle", "torch")
            if side == "nstyle" or s in args.torch_memory_sizes]
    for size, side in plan:
        cmd = [sys.executable, __file__, "--child", side, "--size", str(size)]
        if args.weights:
            cmd += ["--weights", args.weights]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append({"side": side, "size": size, "error": proc.stderr.strip().splitlines()[-1:]})
            print(f"{side} {size}: FAILED {proc.stderr.strip()[-300:]}", flush=True)
            continue
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{side:6s} {size:5d}: process peak {row['process_peak_mb']:.0f} MB, evaluation added "
              f"{row['eval_peak_mb'] - row['rss_before_eval_mb']:.0f} MB, {row['eval_s']:.1f} s", flush=True)
    return rows


def markdown(info, timing, mem):
    lines = [f"Machine: {common.machine_line(info)}.", ""]
    if timing:
        lines += ["One evaluation (forward to relu5_1 + backward to the pixels; content relu4_2 + five Gram"
                  " losses), median of the interleaved repetitions:", "",
                  "| size | nstyle | PyTorch | nstyle / PyTorch |", "| --- | --- | --- | --- |"]
    for r in timing:
        lines.append(f"| {r['size']} | {r['nstyle_s']:.3f} s | {r['torch_s']:.3f} s | {r['ratio']:.2f} |")
    if mem:
        lines += ["", "Memory, each side alone in a fresh process (peak RSS of the whole process; in brackets what"
                  " one evaluation added above the RSS before it):", "",
                  "| size | nstyle | PyTorch | nstyle / PyTorch |", "| --- | --- | --- | --- |"]
        by = {(r["side"], r["size"]): r for r in mem}
        for size in sorted({r["size"] for r in mem}):
            cells = []
            for side in ("nstyle", "torch"):
                r = by.get((side, size))
                if r is None:
                    cells.append("not run")
                elif "error" in r:
                    cells.append("failed")
                else:
                    cells.append(f"{r['process_peak_mb'] / 1024:.2f} GB "
                                 f"({(r['eval_peak_mb'] - r['rss_before_eval_mb']) / 1024:.2f} GB)")
            ours, theirs = by.get(("nstyle", size)), by.get(("torch", size))
            ratio = (f"{ours['process_peak_mb'] / theirs['process_peak_mb']:.2f}"
                     if ours and theirs and "error" not in ours and "error" not in theirs else "")
            lines.append(f"| {size} | {cells[0]} | {cells[1]} | {ratio} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 512, 1024])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--memory-sizes", type=int, nargs="*", default=[1024, 2048])
    ap.add_argument("--torch-memory-sizes", type=int, nargs="*", default=[1024])
    ap.add_argument("--weights", default=None, help="VGG-19 weights file (default: seeded random weights)")
    ap.add_argument("--child", choices=["nstyle", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="eval", help="stem of the output files in bench/results/")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    torch = common.import_torch()
    info = common.machine(torch)
    print(common.machine_line(info), flush=True)
    mem = memory(args) if args.memory_sizes else []  # first, while this process is still small
    timing = time_sizes(args, torch, info) if args.sizes else []
    info["load_average_end"] = list(__import__("os").getloadavg())
    data = {"machine": info, "timing": timing, "memory": mem, "reps": args.reps,
            "weights": args.weights or "seeded random (He), real VGG-19 widths"}
    path = common.write_outputs(args.out, data, markdown(info, timing, mem))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
