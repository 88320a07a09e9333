"""Time and memory of each style loss against the Gram loss, in one run (docs/style_losses.md, "Cost").

For each size (default 256 and 512) and each loss -- the Gram loss first, then the others -- with the real
VGG-19 on the CPU engine in float32, the default layers and weights, content photo and painting at the
same size:

- loss only: one call of every style layer's term (value and gradient with respect to the layer's
  features, the five layers summed) on the features of x = the photo -- the part the loss itself adds;
- evaluation: one whole ``value_and_grad`` (forward to relu5_1, content and style terms, backward to the
  pixels);
- build: making the objective (style forward, targets, draws, q tables);
- peak: tracemalloc's peak during one evaluation, above what was allocated before it (NumPy reports its
  buffers to tracemalloc), and during the build.

Each time is the minimum over ``--repeats`` runs after one warm-up, taken round-robin over the losses so
that a burst of load on a shared machine hits them alike, on two clocks: the wall clock and the
process's CPU time (all its threads; much less sensitive to other processes on a busy machine). The
table gives ratios to the Gram loss from the same run. The machine (CPU model and flags) goes with the
numbers.

    python3 bench/bench_style_losses.py --out RESULTS_DIR [--sizes 256 512] [--repeats 5]
"""
import argparse
import json
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibrate_style_losses import fit  # noqa: E402 -- bench/calibrate_style_losses.py

import nstyle  # noqa: E402
from nstyle.app.figures.samples import bundled_photo, swirl_painting  # noqa: E402
from nstyle.model.style_loss import style_losses  # noqa: E402
from nstyle.model.terms import Taps  # noqa: E402

LOSSES = tuple(style_losses())


def cpu_line():
    model, flags = "unknown CPU", []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            flags = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_fp16") if f in have]
    return model, flags


def peak_of(fn):
    """(result, bytes): fn() and tracemalloc's peak above what was allocated when it started."""
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    out = fn()
    return out, tracemalloc.get_traced_memory()[1] - before


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--losses", nargs="+", default=list(LOSSES))
    args = ap.parse_args(argv)
    model, flags = cpu_line()
    print(f"CPU: {model} ({', '.join(flags)}); {nstyle.__file__}", flush=True)
    vgg = nstyle.VGG19.load()
    tracemalloc.start()
    results = {}
    for size in args.sizes:
        xc = nstyle.preprocess(fit(bundled_photo("chelsea"), size))
        xs = nstyle.preprocess(fit(swirl_painting(seed=0), size))
        warm = nstyle.StyleObjective(vgg, content=xc, styles=[xs])  # the engine's buffers and weight forms,
        warm.value_and_grad(xc)                                      # made once, before anything is measured
        del warm
        objectives, build, build_peak = {}, {}, {}
        for loss in args.losses:
            t0 = time.perf_counter()
            objectives[loss], build_peak[loss] = peak_of(lambda: nstyle.StyleObjective(
                vgg, content=xc, styles=[xs], style_loss=loss, seed=0))
            build[loss] = time.perf_counter() - t0
        times = {loss: {"loss": [], "eval": [], "loss_cpu": [], "eval_cpu": []} for loss in args.losses}
        peaks = {}
        for rep in range(args.repeats + 1):  # round 0 warms up
            for loss, obj in objectives.items():
                feats, trace = vgg.forward(xc, obj.taps)
                taps = Taps({k: v.copy() for k, v in feats.items()}, trace, vgg.engine)
                style = [t for t in obj.terms if t.group == "style"]
                c0, t0 = time.process_time(), time.perf_counter()
                for term in style:
                    term.evaluate(taps)
                c1, t1 = time.process_time(), time.perf_counter()
                del feats, trace, taps
                _, peak = peak_of(lambda: obj.value_and_grad(xc))
                c2, t2 = time.process_time(), time.perf_counter()
                if rep:
                    times[loss]["loss"].append(t1 - t0)
                    times[loss]["eval"].append(t2 - t1)
                    times[loss]["loss_cpu"].append(c1 - c0)
                    times[loss]["eval_cpu"].append(c2 - c1)
                    peaks[loss] = max(peaks.get(loss, 0), peak)
        rows = {}
        for loss in args.losses:
            rows[loss] = {"loss_s": min(times[loss]["loss"]), "eval_s": min(times[loss]["eval"]),
                          "loss_cpu_s": min(times[loss]["loss_cpu"]), "eval_cpu_s": min(times[loss]["eval_cpu"]),
                          "build_s": build[loss], "eval_peak_bytes": peaks[loss], "build_peak_bytes": build_peak[loss]}
        gram = rows.get("gram")
        print(f"\nsize {size}: minimum of {args.repeats} runs (ratios to gram from this run)")
        print(f"{'loss':<20} {'loss only':>10} {'ratio':>6} {'cpu':>7} {'ratio':>6} {'evaluation':>11} {'ratio':>6} "
              f"{'cpu':>7} {'ratio':>6} {'build':>7} {'eval peak':>10} {'ratio':>6} {'build peak':>11}")
        for loss, r in rows.items():
            ratio = (lambda k: r[k] / gram[k]) if gram else (lambda k: float("nan"))
            print(f"{loss:<20} {r['loss_s']:>9.3f}s {ratio('loss_s'):>6.2f} {r['loss_cpu_s']:>6.2f}s "
                  f"{ratio('loss_cpu_s'):>6.2f} {r['eval_s']:>10.3f}s {ratio('eval_s'):>6.2f} {r['eval_cpu_s']:>6.2f}s "
                  f"{ratio('eval_cpu_s'):>6.2f} {r['build_s']:>6.1f}s {r['eval_peak_bytes'] / 2**20:>8.0f}Mi "
                  f"{ratio('eval_peak_bytes'):>6.2f} {r['build_peak_bytes'] / 2**20:>9.0f}Mi", flush=True)
        results[size] = rows
        del objectives
        vgg.release_buffers()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "style_losses_timing.json").write_text(json.dumps(
        {"cpu": model, "flags": flags, "repeats": args.repeats, "results": results}, indent=1))
    print(f"\nwrote {out / 'style_losses_timing.json'}")


if __name__ == "__main__":
    main()
