"""`nstyle batch` against a plain shell loop of `nstyle stylize` calls, on the same jobs, on this machine;
and what the Dask scheduler costs per task.

    python3 bench/bench_batch.py [--contents 2] [--styles 2] [--style-weights 1e3,1e4] [--size 64]
                                 [--iters 30] [--weights FILE] [--noop 200] [--out bench/results/batch.json]

The jobs: every content x every style x every style weight (default 2 x 2 x 2 = 8), seeded synthetic
images, the default layers (content relu4_2, style relu1_1..relu5_1), L-BFGS-B from the content image.
Weights: --weights, else nstyle's default file when it is cached, else random weights of VGG-19's shapes
(the timing is the same; the pictures are not). Each configuration runs in a fresh output folder,
timed from the command's start to its exit (so the batch's times include starting its cluster), with the
CPU time of the command and every process it started (the workers too); each configuration runs --reps
times, taking turns, and the fastest repetition is reported (all are in the JSON):

- loop: one `nstyle stylize` process per job, one after another (each uses every core, and each loads
  Python, NumPy and the weights again: what a shell loop costs);
- batch, 1 worker: `nstyle batch --workers 1` (one worker with every core as nstyle threads);
- batch, 2 workers: `nstyle batch --workers 2` (each worker one core; two jobs at once).

Scheduler overhead: on a LocalCluster of one worker (the batch's own settings, nstyle.app.batch.cluster),
the round trip of a task that does nothing, submitted one at a time (latency), and 200 of them in
flight at once (throughput); and the time to start and stop a two-worker cluster.

Writes the table to stdout and everything (with the CPU, the core count and the load average before and
after each run) to --out.
"""
import argparse
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def make_inputs(folder, n_contents, n_styles):
    from tests.clitools import gradient_image, stripes_image
    contents, styles = [], []
    for i in range(n_contents):
        path = folder / f"photo{i + 1}.png"
        gradient_image(96, 72, seed=i).save(path)
        contents.append(path)
    for i in range(n_styles):
        path = folder / f"painting{i + 1}.png"
        stripes_image(80, 80, seed=10 + i).save(path)
        styles.append(path)
    return contents, styles


def find_weights(given, folder):
    if given:
        return given, "given"
    from nstyle.weights.paths import default_weights_path
    if default_weights_path().is_file():
        return str(default_weights_path()), "nstyle default (cached)"
    from tests.clitools import random_weights_file
    return str(random_weights_file(folder)), "random, VGG-19 shapes"


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    return e


def children_cpu():
    """CPU seconds of every finished child process and their own children (a batch's workers included):
    unlike the wall-clock time, hardly moved by other programs on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd):
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nstyle", *map(str, cmd)], env=env(), capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr}")
    return seconds, load, os.getloadavg()[0]


def run_loop(contents, styles, weights_list, args, weights, out):
    out.mkdir()
    load, cpu = os.getloadavg()[0], children_cpu()
    start = time.perf_counter()
    n = 0
    for c in contents:
        for s in styles:
            for w in weights_list:
                timed(["stylize", c, s, "-o", out / f"{c.stem}__{s.stem}__{w}.png", "--size", args.size,
                       "--iters", args.iters, "--style-weight", w, "--weights", weights, "-q"])
                n += 1
    return time.perf_counter() - start, load, os.getloadavg()[0], n, children_cpu() - cpu


def run_batch(contents, styles, args, weights, out, workers):
    cmd = ["batch", "--contents", *contents, "--styles", *styles, "--style-weight", args.style_weights,
           "--size", args.size, "--iters", args.iters, "--weights", weights, "-o", out, "--workers", workers, "-q"]
    cpu = children_cpu()
    seconds, before, after = timed(cmd)
    cpu = children_cpu() - cpu
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert all(r["status"] == "done" for r in rows), rows
    job_seconds = [float(r["seconds"]) for r in rows]
    return seconds, before, after, len(rows), job_seconds, cpu


def noop():
    return None


def scheduler_overhead(n):
    from nstyle.app.batch.cluster import local_client, quiet_dask_logs
    start = time.perf_counter()
    with quiet_dask_logs(), local_client(workers=2, threads=1, memory_limit=None):
        started = time.perf_counter() - start
    start_stop = time.perf_counter() - start
    with quiet_dask_logs(), local_client(workers=1, threads=1, memory_limit=None) as client:
        client.submit(noop, pure=False).result()  # warm: the worker has imported what it needs
        latencies = []
        for _ in range(n):
            t = time.perf_counter()
            client.submit(noop, pure=False).result()
            latencies.append(time.perf_counter() - t)
        t = time.perf_counter()
        client.gather([client.submit(noop, pure=False) for _ in range(n)])
        pipelined = (time.perf_counter() - t) / n
    return {"cluster_start_s": started, "cluster_start_and_stop_s": start_stop,
            "task_round_trip_ms_median": statistics.median(latencies) * 1e3,
            "task_round_trip_ms_mean": statistics.mean(latencies) * 1e3, "task_pipelined_ms": pipelined * 1e3,
            "tasks": n}


def _record(results, name, run):
    run["jobs_per_minute"] = 60 * run["jobs"] / run["seconds"]
    run["cpu_seconds_per_job"] = run["cpu_seconds"] / run["jobs"]
    results.setdefault(name, []).append(run)


def _best(reps):
    """The fastest repetition (the one the machine's other load disturbed least), with all of them."""
    best = dict(min(reps, key=lambda r: r["seconds"]))
    best["repetitions"] = reps
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--contents", type=int, default=2)
    ap.add_argument("--styles", type=int, default=2)
    ap.add_argument("--style-weights", default="1e3,1e4")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--weights")
    ap.add_argument("--noop", type=int, default=200)
    ap.add_argument("--reps", type=int, default=2, help="runs of each configuration; the fastest is reported")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "batch.json"))
    args = ap.parse_args()
    from nstyle.cpu.threads import available_cores
    with tempfile.TemporaryDirectory(prefix="nstyle-bench-batch-") as tmp:
        tmp = Path(tmp)
        contents, styles = make_inputs(tmp, args.contents, args.styles)
        weights, weights_note = find_weights(args.weights, tmp)
        weights_list = args.style_weights.split(",")
        results = {}
        for rep in range(args.reps):  # the configurations take turns, so a burst of load hits each alike
            s, b, a, n, cpu = run_loop(contents, styles, weights_list, args, weights, tmp / f"loop{rep}")
            _record(results, "loop of nstyle stylize", {"seconds": s, "jobs": n, "load_before": b,
                                                        "load_after": a, "cpu_seconds": cpu})
            for workers in (1, 2):
                s, b, a, n, per_job, cpu = run_batch(contents, styles, args, weights, tmp / f"batch{workers}-{rep}",
                                                     workers)
                _record(results, f"nstyle batch, {workers} worker{'s' if workers > 1 else ''}", {
                    "seconds": s, "jobs": n, "load_before": b, "load_after": a, "cpu_seconds": cpu,
                    "job_seconds_sum": sum(per_job), "job_seconds_median": statistics.median(per_job)})
        overhead = scheduler_overhead(args.noop)
    results = {name: _best(reps) for name, reps in results.items()}
    report = {"machine": {"cpu": cpu_model(), "cores": available_cores(), "python": platform.python_version(),
                          "load_average_end": list(os.getloadavg())},
              "jobs": {"contents": args.contents, "styles": args.styles, "style_weights": weights_list,
                       "size": args.size, "iters": args.iters, "weights": weights_note},
              "runs": results, "scheduler": overhead}
    print(f"{report['machine']['cpu']}, {report['machine']['cores']} cores; {n} jobs at {args.size} px, "
          f"{args.iters} iterations; weights: {weights_note}")
    print(f"{'configuration':<26} {'wall s':>7} {'jobs/min':>9} {'CPU s/job':>10} {'load before/after':>18}")
    for name, r in results.items():
        print(f"{name:<26} {r['seconds']:7.1f} {r['jobs_per_minute']:9.1f} {r['cpu_seconds_per_job']:10.2f} "
              f"{r['load_before']:9.2f}/{r['load_after']:<8.2f}")
    print(f"scheduler: task round trip {overhead['task_round_trip_ms_median']:.1f} ms (median of "
          f"{overhead['tasks']}), {overhead['task_pipelined_ms']:.1f} ms per task with {overhead['tasks']} "
          f"in flight; a 2-worker local cluster starts in {overhead['cluster_start_s']:.1f} s "
          f"({overhead['cluster_start_and_stop_s']:.1f} s with its stop)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
