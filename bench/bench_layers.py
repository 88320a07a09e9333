"""Where the time goes: VGG-19 layer by layer, forward and input gradient, nstyle against every framework.

    python3 bench/bench_layers.py [--sizes 256 512] [--frameworks nstyle nstyle_ref torch tf jax]
                                  [--rounds 3] [--reps 5] [--threads 2] [--weights FILE]
                                  [--out DIR] [--update-results]

For every layer up to relu5_1 (13 convolutions, 13 ReLUs, 4 average pools) and every framework --
nstyle's fast CPU engine ("nstyle"), its reference engine ("nstyle_ref"), PyTorch, TensorFlow, JAX --
the time of the layer's forward and of its input gradient (the weights need none in style transfer),
then the losses' share (content loss at relu4_2, Gram losses at relu1_1..relu5_1: their values, and
values with the gradients with respect to the taps), then one whole evaluation of the objective
(bench/rival_*.py, the objective bench/bench_rivals.py races) for the sum check below.

Method, as bench/bench_rivals.py: every (framework, size, round) runs in its own fresh process, pinned
to --threads CPUs with every library set to that many threads, frameworks in an order that rotates and
reverses from round to round. Each layer's inputs are seeded, the same bits in every process (a
convolution reads ReLU-like input, conv1_1 the benchmark's start image). Before any layer is timed its
output and input gradient are checked against a float64 reference (nstyle's reference ops in float64,
computed once per size by a reference child): max |y - y64| / max |y64| below rivals_common.GRAD_TOL
(1e-3), the losses' total within LOSS_TOL (1e-4); a layer that fails is reported and not timed. Then
--warmup untimed calls and --reps timed calls of the forward, the same of the backward; medians over
all rounds' calls. A layer alone runs with its inputs in cache, and without what a network adds
around it.

The sum check: the layers' forward + backward medians plus the losses (values and gradients) against
the median whole evaluation of the same processes; the ratio is recorded and the table says where it
is off by more than 10%. nstyle's fast engine fuses ReLUs into the convolutions' epilogues (and the
backward's ReLU masks into the convolution and pool below them): its table also gives each layer as
the network runs it, and a second sum of those (layers_nstyle.py says what is fused).

Writes layers.json (everything: machine, CPU flags, versions, thread settings, BLAS, load, date,
command, every timing), layers.csv (one row per framework, size, layer and direction), layers.md (the
tables, by layers_report.py) and layers.png (matplotlib, if installed) into --out (default: a new
temporary folder, printed at the end); with --update-results also into bench/results/ -- the committed
results change only then.
"""
import argparse
import datetime
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_rivals as br  # noqa: E402  (the child protocol, framework rotation, install checks)
import layers_common as lc  # noqa: E402
import layers_report  # noqa: E402
import rivals_common as rc  # noqa: E402

# (key, label, import name, distributions): rivals_common.FRAMEWORKS with nstyle's reference engine added.
FRAMEWORKS = (rc.FRAMEWORKS[:1] + (("nstyle_ref", "nstyle (reference engine)", "nstyle", ()),)
              + rc.FRAMEWORKS[1:])
LABELS = {**rc.LABELS, "nstyle": "nstyle (fast engine)", "nstyle_ref": "nstyle (reference engine)"}


def sides(key):
    """(per-layer module, its engine argument or None, whole-evaluation rival module, its build kwargs)."""
    if key in ("nstyle", "nstyle_ref"):
        engine = "cpu" if key == "nstyle" else "reference"
        return (importlib.import_module("layers_nstyle"), engine, importlib.import_module("rival_nstyle"),
                {"engine": engine})
    return importlib.import_module("layers_" + key), None, importlib.import_module("rival_" + key), {}


# --- the children -----------------------------------------------------------------------------------

def make_reference(args, params, start):
    """The float64 outputs and input gradients of every layer and the losses', saved into args.refdir."""
    import layers_nstyle as ln
    p64 = {k: (w.astype(np.float64), b.astype(np.float64)) for k, (w, b) in params.items()}
    for i, entry in enumerate(lc.layer_plan()):
        x, dy = lc.layer_inputs(entry, i, args.size, args.seed, image=start)
        op = ln.layer("reference", entry[0], entry[1], p64, x.astype(np.float64), dy.astype(np.float64))
        op.backward()
        np.save(os.path.join(args.refdir, f"{entry[1]}.fwd.npy"), op.out_forward().astype(np.float32))
        np.save(os.path.join(args.refdir, f"{entry[1]}.bwd.npy"), op.out_backward().astype(np.float32))
    taps, P, A = lc.loss_inputs(args.size, args.seed)
    up = [{k: v.astype(np.float64) for k, v in d.items()} for d in (taps, P, A)]
    op = ln.losses("reference", *up)
    op.backward()
    np.savez(os.path.join(args.refdir, "losses.npz"), total=np.float64(op.out_forward()),
             **{k: v.astype(np.float32) for k, v in op.out_backward().items()})
    return {"framework": "reference", "size": args.size}


def timed(op, args):
    """{"forward_s": [...], "backward_s": [...]} of an Op already called once (checked)."""
    return {"forward_s": lc.clock(op.forward, args.reps, args.warmup),
            "backward_s": lc.clock(op.backward, args.reps, args.warmup)}


def run_layers(args, mod, engine, params, start):
    rows = []
    for i, (kind, name, chans, scale) in enumerate(lc.layer_plan()):
        x, dy = lc.layer_inputs((kind, name, chans, scale), i, args.size, args.seed, image=start)
        extra = (engine,) if engine else ()
        op = mod.layer(*extra, kind, name, params, x, dy, below_relu=i > 0)
        op.forward()
        op.backward()
        y64 = np.load(os.path.join(args.refdir, f"{name}.fwd.npy"))
        dx64 = np.load(os.path.join(args.refdir, f"{name}.bwd.npy"))
        row = {"layer": name, "kind": kind, "input_shape": list(x.shape),
               "check": {"forward": lc.rel_diff(op.out_forward(), y64),
                         "backward": lc.rel_diff(op.out_backward(), dx64)}}
        fused = getattr(op, "fused", None)
        if fused is not None:  # nstyle's fast engine: the layer as the network runs it, checked as well
            fused.forward()
            fused.backward()
            row["check"]["fused_forward"] = lc.rel_diff(fused.out_forward(), np.maximum(y64, 0) if kind == "conv"
                                                        else y64)
            row["check"]["fused_backward"] = lc.rel_diff(fused.out_backward(), dx64 * (x > 0) if i > 0 else dx64)
        row["ok"] = all(v < rc.GRAD_TOL for v in row["check"].values())
        if row["ok"]:
            row.update(timed(op, args))
            if fused is not None:
                row["fused"] = timed(fused, args)
        rows.append(row)
        del op, fused, x, dy, y64, dx64
    return rows


def run_losses(args, mod, engine):
    taps, P, A = lc.loss_inputs(args.size, args.seed)
    op = mod.losses(*((engine,) if engine else ()), taps, P, A)
    ref = dict(np.load(os.path.join(args.refdir, "losses.npz")))
    op.forward()
    values_only = op.out_forward()
    op.backward()
    total = float(ref.pop("total"))
    check = {"total": abs(op.out_forward() - total) / abs(total), "values_only": abs(values_only - total) / abs(total)}
    check.update({f"grad/{n}": lc.rel_diff(g, ref[n]) for n, g in op.out_backward().items()})
    ok = all(v < (rc.LOSS_TOL if k in ("total", "values_only") else rc.GRAD_TOL) for k, v in check.items())
    out = {"check": check, "ok": ok}
    if ok:
        t = timed(op, args)
        out.update(values_s=t["forward_s"], values_and_grads_s=t["backward_s"])
    return out


def run_whole(args, rival, kwargs, params, content, style, start):
    t0 = time.perf_counter()
    fn = rival.build(params, content, style, start.shape, **kwargs)
    loss, _ = fn(start)  # tracing / compilation / weight forms: not timed
    first = time.perf_counter() - t0
    return {"loss": float(loss), "build_and_first_call_s": first,
            "times_s": lc.clock(lambda: fn(start), args.reps, args.warmup)}


def child(args):
    out = {"framework": args.child, "size": args.size, "load_at_start": rc.load_average(),
           "cpu_affinity": rc.pin_cpus(args.threads)}
    params = rc.vgg_params(args.seed, args.weights)
    content, style, start = rc.images(args.size, args.seed + 1)
    if args.child == "reference":
        return br.emit(make_reference(args, params, start))
    mod, engine, rival, kwargs = sides(args.child)
    out["config"] = rival.configure(args.threads)
    out["layers"] = run_layers(args, mod, engine, params, start)
    out["losses"] = run_losses(args, mod, engine)
    out["whole"] = run_whole(args, rival, kwargs, params, content, style, start)
    out["blas"] = rc.blas_config()
    out["peak_rss_mb"] = rc.proc_status_mb("VmHWM")
    out["load_at_end"] = rc.load_average()
    return br.emit(out)


# --- the parent ---------------------------------------------------------------------------------------

def spawn(args, fw, size, refdir):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", fw, "--size", str(size), "--refdir", refdir,
           "--seed", str(args.seed), "--threads", str(args.threads), "--reps", str(args.reps),
           "--warmup", str(args.warmup)] + (["--weights", args.weights] if args.weights else [])
    return rc.spawn_child(cmd, args.threads, args.child_timeout, {"framework": fw, "size": size}, br.MARK)


def describe(r):
    head = f"{LABELS.get(r['framework'], r['framework']):26s} {r['size']:5d}: "
    if "error" in r:
        return head + "FAILED " + r["error"][-300:]
    bad = [x["layer"] for x in r["layers"] if not x["ok"]] + ([] if r["losses"]["ok"] else ["losses"])
    fwd = sum(rc.median(x["forward_s"]) for x in r["layers"] if x["ok"])
    bwd = sum(rc.median(x["backward_s"]) for x in r["layers"] if x["ok"])
    losses = rc.median(r["losses"].get("values_and_grads_s", []))
    whole = rc.median(r["whole"]["times_s"])
    return (head + f"layers forward {fwd:.4f} s, backward {bwd:.4f} s, losses {losses:.4f} s, whole {whole:.4f} s"
            + (f"; REFUSED (check failed): {', '.join(bad)}" if bad else ""))


def machine():
    cpu = rc.cpu_info()
    cpu["all_flags"] = (rc._cpuinfo_field("flags") or "").split()
    try:
        cpu["usable_cpus"] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpu["usable_cpus"] = None
    return cpu


def out_dir(args):
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        return Path(args.out)
    return Path(tempfile.mkdtemp(prefix="nstyle-layers-"))


def main():
    keys = [k for k, *_ in FRAMEWORKS]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--frameworks", nargs="+", default=keys, choices=keys)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5, help="timed calls of each layer's forward and backward")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls after the checked first call")
    ap.add_argument("--threads", type=int, default=rc.THREADS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", help="VGG-19 weights file (default: seeded random weights of real widths)")
    ap.add_argument("--out", help="folder for layers.json/.csv/.md/.png (default: a new temporary folder)")
    ap.add_argument("--update-results", action="store_true", help="also write them into bench/results/")
    ap.add_argument("--child-timeout", type=int, default=3600)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--refdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    now = datetime.datetime.now(datetime.UTC).astimezone()
    data = {"kind": "layers", "command": " ".join([Path(sys.executable).name] + sys.argv),
            "date": now.isoformat(timespec="seconds"), "cpu": machine(), "versions": rc.versions(),
            "nstyle_src": rc.NSTYLE_SRC, "repo_commit": rc.source_commit(), "threads": args.threads,
            "load_average_before": rc.load_average(),
            "settings": {k: getattr(args, k) for k in ("sizes", "rounds", "reps", "warmup", "seed", "weights")},
            "tolerances": {"array_max_abs_rel": rc.GRAD_TOL, "loss_rel": rc.LOSS_TOL},
            "labels": LABELS,
            "child_env": {k: v for k, v in rc.thread_env(args.threads).items()
                          if k.endswith("THREADS") or k.startswith(("XLA_", "OPENBLAS_"))}}
    print(f"{data['cpu']['model']} ({', '.join(f for f, on in data['cpu']['flags'].items() if on)}), "
          f"{args.threads} threads per framework, load average {data['load_average_before']}", flush=True)
    frameworks = br.available(args.frameworks, FRAMEWORKS)
    data["skipped"] = [k for k in args.frameworks if k not in frameworks]
    results = []
    with tempfile.TemporaryDirectory(prefix="nstyle-layers-ref-") as tmp:
        refs = {}
        for size in args.sizes:
            refdir = os.path.join(tmp, str(size))
            os.mkdir(refdir)
            r = spawn(args, "reference", size, refdir)
            if "error" in r:
                print(f"float64 reference at {size}: FAILED {r['error']}", flush=True)
            else:
                refs[size] = refdir
        for rnd in range(args.rounds):
            for size in [s for s in args.sizes if s in refs]:
                for fw in br.order(frameworks, rnd):
                    r = spawn(args, fw, size, refs[size])
                    r["round"] = rnd
                    results.append(r)
                    print(f"round {rnd + 1}/{args.rounds}  " + describe(r), flush=True)
    data["load_average_after"] = rc.load_average()
    data["results"] = results
    data["summary"] = layers_report.summarise(results, frameworks, args.sizes)
    folder = out_dir(args)
    paths = layers_report.write(data, folder)
    print(layers_report.markdown(data), end="")
    if args.update_results:
        rc.RESULTS.mkdir(parents=True, exist_ok=True)
        for p in paths:
            shutil.copy(p, rc.RESULTS / p.name)
        print(f"copied into {rc.RESULTS}")
    print("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
