"""Regenerate the performance tables and plots of docs/performance.md from fresh runs, with one command.

    python3 bench/reproduce.py --out DIR [--weights FILE] [--whole-runs] [--extras] [--gpu]
                               [--only NAME ...] [--update-results] [--quick] [--list]

Each figure runs its own script (the command is printed and recorded) with its results sent to
DIR/<figure>/ (``NSTYLE_BENCH_RESULTS``, or the script's --out), its output logged there; every
markdown table it writes gets a first line naming the command, the machine (CPU model, logical CPUs),
the date, the commit and the load average. DIR/figures.md lists every figure, the section of
docs/performance.md it feeds, its files and whether it ran. Nothing under bench/results/ changes
unless --update-results is given, which copies the new files over the committed ones (refused with
--quick).

The default figures are docs/performance.md's: one evaluation against every framework (with memory
and plot; five more rounds at 128 px), the per-layer race at 128, 256 and 512, the optimizer's own
cost, memory at 1024 and 2048. --whole-runs adds the 100-iteration L-BFGS-B runs (128 and 512; tens of
minutes), --extras the other sections' measurements (batch, video, tiles, memory estimate at small
sizes; hours, and real weights), --gpu the GPU check (a CUDA machine). --quick runs every chosen figure
at toy sizes, to prove the pipeline works; its numbers mean nothing. The page's text is not edited:
copy the new tables into it by hand, with their stamp.

Not regenerated: the page's before/after comparisons of two commits (use ``asv continuous``, see
bench/README.md) and the history in bench/NOTES.md.
"""
import argparse
import datetime
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rivals_common as rc  # noqa: E402

ROOT = rc.ROOT
RESULTS = ROOT / "bench" / "results"  # the committed results (not the NSTYLE_BENCH_RESULTS override)

# name: (docs/performance.md section, script and arguments, arguments for --quick or None (no toy mode), group,
#        whether the script takes --weights). "{dir}" is the figure's output folder.
FIGURES = {
    "rivals": ("Performance on the CPU: against every framework (table, memory table, plot)",
               ["bench/bench_rivals.py", "--sizes", "128", "256", "512", "1024", "--rounds", "2", "--reps", "5"],
               ["bench/bench_rivals.py", "--sizes", "64", "--rounds", "1", "--reps", "1"], "default", True),
    "rivals_128": ("Performance on the CPU: the lead at 128 px (five rounds: the size where the lead is thinnest)",
                   ["bench/bench_rivals.py", "--sizes", "128", "--rounds", "5", "--reps", "9", "--out", "rivals_128"],
                   ["bench/bench_rivals.py", "--sizes", "64", "--rounds", "1", "--reps", "1", "--out", "rivals_128"],
                   "default", True),
    "layers": ("Performance on the CPU: where the time goes, layer by layer (bench/README.md)",
               ["bench/bench_layers.py", "--sizes", "128", "256", "512", "--rounds", "3", "--out", "{dir}"],
               ["bench/bench_layers.py", "--sizes", "64", "--rounds", "1", "--reps", "1", "--out", "{dir}"],
               "default", True),
    "lbfgs": ("Performance on the CPU: the optimizer's own share",
              ["bench/bench_lbfgs.py", "--sizes", "256", "512", "1024", "--iters", "25", "--reps", "2"],
              ["bench/bench_lbfgs.py", "--sizes", "64", "--iters", "3", "--reps", "1"], "default", False),
    "eval_mem": ("Performance on the CPU: memory beyond 1024",
                 ["bench/bench_eval.py", "--sizes", "--memory-sizes", "1024", "2048",
                  "--torch-memory-sizes", "1024", "2048", "--out", "eval_mem"],
                 ["bench/bench_eval.py", "--sizes", "--memory-sizes", "64", "--torch-memory-sizes", "64",
                  "--out", "eval_mem"], "default", True),
    "rivals_run": ("Performance on the CPU: whole runs (100 L-BFGS-B iterations)",
                   ["bench/bench_rivals.py", "--whole-run", "--sizes", "128", "512", "--iters", "100"],
                   ["bench/bench_rivals.py", "--whole-run", "--sizes", "64", "--iters", "3",
                    "--frameworks", "nstyle", "torch"], "whole-runs", True),
    "batch": ("Many pictures at once: what it buys",
              ["bench/bench_batch.py", "--out", "{dir}/batch.json"],
              ["bench/bench_batch.py", "--contents", "1", "--styles", "1", "--style-weights", "1e3", "--size", "32",
               "--iters", "2", "--reps", "1", "--noop", "5", "--out", "{dir}/batch.json"], "extras", True),
    "video": ("Video without flicker: the temporal weight sweep",
              ["bench/bench_video.py", "--out", "{dir}/video"], None, "extras", False),
    "tiles": ("Prints beyond one machine's memory: seams, measured", ["bench/bench_tiles.py"], None, "extras", True),
    "tiles_print": ("Prints beyond one machine's memory: a 4096 px print",
                    ["bench/bench_tiles.py", "--print", "4096", "--tile", "1024", "--print-base", "1024", "--iters",
                     "30", "--print-tile-iters", "10"], None, "extras", True),
    "memory_small": ("Exit codes and limits: the memory estimate at small sizes",
                     ["bench/memory_small_sizes.py", "--sizes", "64,128,256,512,1024", "--out",
                      "{dir}/memory_small_sizes.md"], None, "extras", False),
    "gpu_check": ("GPU: measured against PyTorch + cuDNN", ["bench/gpu_check.py", "--out", "{dir}"],
                  ["bench/gpu_check.py", "--dry-run", "--out", "{dir}"], "gpu", False),
}


def chosen(args):
    if args.only:
        return args.only
    groups = {"default"} | {g for g, on in (("whole-runs", args.whole_runs), ("extras", args.extras),
                                            ("gpu", args.gpu)) if on}
    return [name for name, spec in FIGURES.items() if spec[3] in groups]


def stamp(cmd, started, load_before):
    cpu = rc.cpu_info()
    commit = (rc.source_commit() or "unknown")[:10]
    return (f"> Regenerated by `{' '.join(['python3'] + [Path(sys.argv[0]).as_posix()] + sys.argv[1:])}`: "
            f"`{' '.join(cmd)}` on {cpu['model']} ({cpu['logical_cpus']} logical CPUs), "
            f"{started.strftime('%Y-%m-%d %H:%M %Z')}, commit {commit}, load average {load_before} at the start.")


def run_figure(name, args, out):
    section, full, quick, _, takes_weights = FIGURES[name]
    argv = quick if args.quick else full
    folder = out / name
    if argv is None:
        return {"name": name, "section": section, "status": "skipped (no --quick mode)", "files": []}
    folder.mkdir(parents=True, exist_ok=True)
    cmd = ["python3"] + [a.replace("{dir}", str(folder)) for a in argv]
    if takes_weights and args.weights:
        cmd += ["--weights", args.weights]
    env = dict(os.environ, NSTYLE_BENCH_RESULTS=str(folder), PYTHONUNBUFFERED="1")
    started, load_before = datetime.datetime.now().astimezone(), rc.load_average()
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(folder / f"{name}.log", "w") as log:
        proc = subprocess.Popen([sys.executable] + cmd[1:], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log.write(line)
            if args.verbose:
                print("   " + line, end="", flush=True)
        rc_ = proc.wait()
    seconds = time.perf_counter() - t0
    line = stamp(cmd, started, load_before)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix != ".log")
    for p in files:
        if p.suffix == ".md":
            p.write_text(line + "\n\n" + p.read_text())
    if rc_ == 0 and not any(p.suffix == ".md" for p in files):  # a script that prints its table (bench_batch)
        printed = [ln for ln in (folder / f"{name}.log").read_text().splitlines() if not ln.startswith("wrote ")]
        (folder / f"{name}.md").write_text(line + "\n\n```text\n" + "\n".join(printed) + "\n```\n")
        files = sorted(files + [folder / f"{name}.md"])
    status = "ok" if rc_ == 0 else f"failed (exit {rc_}; see {name}/{name}.log)"
    print(f"   {status} in {seconds:.0f} s: {', '.join(p.name for p in files) or 'no files'}", flush=True)
    return {"name": name, "section": section, "status": status, "files": files, "seconds": seconds,
            "command": " ".join(cmd), "stamp": line}


def index(rows, out, args):
    lines = [f"# Performance figures, regenerated{' (--quick: toy sizes, numbers mean nothing)' if args.quick else ''}",
             "", f"`{' '.join(['python3'] + sys.argv)}`; {rc.cpu_info()['model']}; "
             f"{datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}.", "",
             "| figure | section of docs/performance.md | status | time | files |", "| --- | --- | --- | --- | --- |"]
    for r in rows:
        files = ", ".join(f"[{p.name}]({r['name']}/{p.name})" for p in r["files"])
        secs = f"{r['seconds']:.0f} s" if "seconds" in r else ""
        lines.append(f"| {r['name']} | {r['section']} | {r['status']} | {secs} | {files} |")
    lines += ["", "Not regenerated: before/after comparisons of two commits (`asv continuous`, bench/README.md) "
              "and the history in bench/NOTES.md."]
    (out / "figures.md").write_text("\n".join(lines) + "\n")
    return out / "figures.md"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for the fresh results (one subfolder per figure)")
    ap.add_argument("--weights", default=os.environ.get("NSTYLE_WEIGHTS"),
                    help="VGG-19 weights for the figures that take them (default: $NSTYLE_WEIGHTS, else seeded "
                         "random weights of VGG-19's widths)")
    ap.add_argument("--whole-runs", action="store_true", help="also the 100-iteration runs at 128 and 512")
    ap.add_argument("--extras", action="store_true", help="also batch, video, tiles and the memory estimate")
    ap.add_argument("--gpu", action="store_true", help="also the GPU check (needs CUDA and CuPy)")
    ap.add_argument("--only", nargs="+", choices=list(FIGURES), help="just these figures")
    ap.add_argument("--quick", action="store_true", help="toy sizes: proves the pipeline, measures nothing")
    ap.add_argument("--update-results", action="store_true", help="copy the new files into bench/results/")
    ap.add_argument("--verbose", "-v", action="store_true", help="echo every script's output")
    ap.add_argument("--list", action="store_true", help="list the figures and their commands, run nothing")
    args = ap.parse_args()
    if args.list:
        for name, (section, full, _quick, group, _) in FIGURES.items():
            print(f"{name:13s} [{group}] {section}\n{'':14s}python3 {' '.join(full)}")
        return 0
    if not args.out:
        print("reproduce: --out DIR is required (the committed results change only with --update-results)",
              file=sys.stderr)
        return 2
    if args.quick and args.update_results:
        print("reproduce: --update-results with --quick would replace the committed results with toy ones; "
              "refused", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = [run_figure(name, args, out) for name in chosen(args)]
    print(f"index: {index(rows, out, args)}")
    if args.update_results:
        copied = [shutil.copy(p, RESULTS / p.name) for r in rows if r["status"] == "ok" for p in r["files"]]
        print(f"copied {len(copied)} files into {RESULTS}")
    return 0 if all(r["status"] == "ok" or r["status"].startswith("skipped") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
