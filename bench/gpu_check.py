#!/usr/bin/env python3
"""nstyle on the GPU, checked and measured against PyTorch + cuDNN in one run (issues 6 and 19).

    PYTHONUNBUFFERED=1 PYTHONPATH=. python bench/gpu_check.py --out OUT_DIR          # on a GPU machine
    python bench/gpu_check.py --dry-run --out /tmp/gpucheck                          # anywhere (CI)

Sections, run in this order -- checks first, then the figures by importance -- each in its own
try/except (an error is recorded with its traceback and the run goes on); a global time budget
(--budget-s, default 400 s) skips what no longer fits, and the sections that could run long cap
themselves (seconds on an H200, from the last run's figures, in brackets). A watchdog writes the results
and exits 45 s past the budget: with imports, the whole run stays inside one 8-minute device call.

  smoke         a child process runs every kernel, the Winograd path and every cuBLAS call shape once
                against NumPy; if the direct cuBLAS call fails there, the rest of the run uses the
                cupy.matmul fallback (first, before this process holds a CUDA context of its own)
  environment   GPU, driver, CUDA, CuPy, PyTorch/cuDNN versions
  ops           every op (conv fwd / dx / dw / db, relu, avg/max pool fwd/bwd) on the device vs the NumPy
                path: float32 relative error < 1e-4, float64 < 1e-10
  objective     the whole objective on the device vs the NumPy path (float32 < 1e-4, float64 < 1e-10),
                and vs the same objective in PyTorch on the device
  gradcheck64   float64 on the device: central differences of small ops element by element, and a
                directional check of the whole objective
  profile       one evaluation at 1024 with each convolution lowering (im2col, Winograd F(2x2,3x3)) and
                with the cupy.matmul GEMM; the fastest lowering is kept for the rest of the run; then
                where the time goes, kernel by kernel and layer by layer (each call synchronised)
                [smoke to profile: ~25 together; smoke's child at most 150]
  optimizer     at 1024: 100 iterations with nstyle's own L-BFGS-B (whole-run time; optimizer time per
                iteration, outside evaluations) and 10 with SciPy's (its time per iteration) [~25; caps
                30 + 20]
  graphs        one evaluation replayed as a CUDA graph vs launched op by op, and PyTorch's, at 512 and
                1024; whether the graph pays (nstyle/gpu/graph.py) [~15]
  to_target     time to reach PyTorch's final loss at 512, 1024, 2048: torch.optim.LBFGS(strong_wolfe)
                on the device, clamped after each step, for 100 iterations gives the loss L; nstyle with
                its own L-BFGS-B and with SciPy's, from the same start, stop at the first iteration
                with loss <= L (gpu_check_optim.py) [~140; the section caps itself at 200]
  timing_tf32   one evaluation with TF32 allowed for both (PyTorch's cuDNN and matmul, nstyle's cuBLAS
                calls, the Winograd batched products included) at 512, 1024, 2048 [~25]
  timing_fp32   one evaluation (forward to relu5_1 + backward to the pixels, content + 5 Gram losses) at
                512, 1024, 2048: median of >= 10 after warm-up, synchronised; TF32 off for both; peak
                memory [~50]
  transfer      the host<->device copies one SciPy L-BFGS-B evaluation makes, timed [~1]
  uhd           one evaluation at 3840x2160 each [~65]
  max_size      the largest square each can evaluate (2048, 3072, 4096; stops at the first OOM) [~80;
                what is left of the budget]

Weights are random with VGG-19's real widths (the real file is not needed for timing); the rival is
tests/torch_reference.py's objective (torch.nn.functional, cuDNN enabled, cudnn.benchmark on).
Results are rewritten after every section into OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md; the
last thing printed is a short table. Exit code 0 when every section ran and every check passed.

--dry-run runs the whole script on the CPU at tiny sizes and narrow widths: NumPy stands in for CuPy
(the GPU engine and ops, given NumPy arrays, carry out each kernel and cuBLAS call by its NumPy
emulation) and PyTorch on the CPU stands in for cuDNN; it keeps this script from rotting
(tests/test_gpu_check.py runs it).

The sections live in gpu_check_accuracy.py (ops, objective, gradcheck64), gpu_check_optim.py (optimizer,
to_target) and gpu_check_speed.py (the rest); the rig, the problem and the section context in gpu_rig.py;
the report, with the issue's targets each marked met or not, in gpu_report.py.
"""
import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
import traceback

import numpy as np
import scipy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from gpu_check_accuracy import section_gradcheck64, section_objective, section_ops  # noqa: E402
from gpu_check_optim import section_optimizer, section_to_target  # noqa: E402
from gpu_check_speed import (  # noqa: E402
    section_graphs,
    section_max_size,
    section_profile,
    section_timing_fp32,
    section_timing_tf32,
    section_transfer,
    section_uhd,
)
from gpu_report import Reporter, note  # noqa: E402
from gpu_rig import VGG_WIDTHS, Context, Rig, SkipRest, mb  # noqa: E402

import nstyle  # noqa: E402
from nstyle import backend  # noqa: E402
from nstyle.gpu import blas as gpu_blas  # noqa: E402

SECTIONS = ("smoke", "environment", "ops", "objective", "gradcheck64", "profile", "optimizer", "graphs",
            "to_target", "timing_tf32", "timing_fp32", "transfer", "uhd", "max_size")

WATCHDOG_GRACE_S = 45

# What each run size means, full (on the GPU) and dry (on the CPU, emulated). to_target: target_caps are
# the seconds allowed at each size to PyTorch's N iterations, to nstyle's own L-BFGS-B and to SciPy's
# (each stops at its cap; all shrink together when the section's allotment, to_target_s, runs short, and
# a size is skipped below target_min_s); to_target_reserve_s is kept for the sections after it.
FULL = dict(sizes=(512, 1024, 2048), repeats=10, warmup=2, lbfgs_size=1024, lbfgs_iters=100, scipy_iters=10,
            optimizer_need_s=30, optimizer_caps=(30, 20), graph_sizes=(512, 1024),
            target_sizes=(512, 1024, 2048), target_iters=100, torch_history=100, target_iter_factor=3,
            target_caps={512: (15, 15, 12), 1024: (25, 25, 15), 2048: (60, 45, 15)},
            target_min_s={512: 15, 1024: 30, 2048: 60}, to_target_s=200, to_target_reserve_s=60,
            max_sizes=(2048, 3072, 4096), uhd=(2160, 3840), widths=VGG_WIDTHS, check_size=(64, 80),
            gradcheck_size=(40, 52), transfer_repeats=20, profile_size=1024, profile_repeats=5)
DRY = dict(sizes=(16, 24), repeats=2, warmup=1, lbfgs_size=16, lbfgs_iters=3, scipy_iters=2,
           optimizer_need_s=5, optimizer_caps=(30, 30), graph_sizes=(16, 24),
           target_sizes=(16, 24, 32), target_iters=4, torch_history=100, target_iter_factor=3,
           target_caps={16: (10, 10, 10), 24: (10, 10, 10), 32: (10, 10, 10)},
           target_min_s={16: 1, 24: 1, 32: 1}, to_target_s=60, to_target_reserve_s=5,
           max_sizes=(16, 24), uhd=(16, 28), widths=None, check_size=(24, 32), gradcheck_size=(24, 32),
           transfer_repeats=3, profile_size=16, profile_repeats=2)


# ---------------------------------------------------------------------------------------------------
# Small utilities

class Budget:
    def __init__(self, seconds):
        self.start = time.perf_counter()
        self.seconds = float(seconds)

    def elapsed(self):
        return time.perf_counter() - self.start

    def left(self):
        return self.seconds - self.elapsed()


class Log:
    def __init__(self, budget, path):
        self.budget, self.path = budget, path

    def __call__(self, message):
        line = f"[{self.budget.elapsed():7.1f}s] {message}"
        print(line, flush=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


# ---------------------------------------------------------------------------------------------------
# Sections. Each takes a Context (gpu_rig.py) and returns a dict; ctx.result is that dict, filled as the
# section goes so a budget stop keeps what was measured. The accuracy sections are in
# gpu_check_accuracy.py, the speed sections in gpu_check_speed.py; environment and smoke are here.

def section_environment(ctx):
    rig, r = ctx.rig, ctx.result
    r.update({"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
              "nstyle": nstyle.__version__, "platform": platform.platform(), "dry_run": rig.dry,
              "gemm_mode": gpu_blas.MODE})
    try:
        r["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                         text=True, timeout=10).stdout.strip() or None
    except Exception:
        r["git_commit"] = None
    if rig.dry:
        r["gpu"] = "none (dry run: NumPy stands in for CuPy, PyTorch runs on the CPU)"
        try:
            with open("/proc/cpuinfo") as fh:
                r["cpu"] = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
        except Exception:
            r["cpu"] = platform.processor()
    else:
        info = backend.gpu_device_info()
        r.update({"gpu": info["name"], "gpu_memory_mb": mb(info["memory_total"]),
                  "compute_capability": info["compute_capability"], "multiprocessors": info["multiprocessors"],
                  "cuda_runtime": info["cuda_runtime"], "cuda_driver_api": info["cuda_driver_api"],
                  "cupy": info["cupy"]})
        r["driver"] = _driver_version()
    torch = rig.torch
    r["torch"] = torch.__version__
    r["torch_cuda"] = getattr(torch.version, "cuda", None)
    if not rig.dry:
        r["cudnn"] = torch.backends.cudnn.version()
        r["torch_device"] = torch.cuda.get_device_name(0)
        r["cudnn_benchmark"] = bool(torch.backends.cudnn.benchmark)
    ctx.log(f"environment: {r.get('gpu')} | driver {r.get('driver')} | CUDA runtime {r.get('cuda_runtime')} | "
            f"CuPy {r.get('cupy')} | torch {r['torch']} (CUDA {r['torch_cuda']}, cuDNN {r.get('cudnn')})")
    return r


def _driver_version():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout.strip()
        if out:
            return out.splitlines()[0].strip()
    except Exception:
        pass
    try:
        with open("/proc/driver/nvidia/version") as fh:
            return fh.readline().strip()
    except Exception:
        return None


# --- smoke (child process) -------------------------------------------------------------------------

def section_smoke(ctx):
    r = ctx.result
    smoke = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_smoke.py")
    cmd = [sys.executable, smoke] + (["--dry-run"] if ctx.rig.dry else [])
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    timeout = min(150.0, max(30.0, ctx.budget.left() - 30))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        rc, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out, err = "timeout", exc.stdout or "", exc.stderr or ""
        out = out.decode() if isinstance(out, bytes) else out
        err = err.decode() if isinstance(err, bytes) else err
    steps = {}
    for line in out.splitlines():
        if line.startswith("SMOKE "):
            rec = json.loads(line[6:])
            steps[rec.pop("step")] = rec
    r.update({"returncode": rc, "steps": steps, "stderr_tail": err[-3000:] if rc != 0 else ""})
    cublas_ok = all(steps.get(name, {}).get("ok") for name in ("gemm_cublas", "gemm_batched_cublas", "conv_cublas",
                                                                "conv_winograd_cublas"))
    matmul_ok = steps.get("conv_matmul", {}).get("ok")
    mode = "cublas" if cublas_ok or not matmul_ok else "matmul"
    gpu_blas.set_mode(mode)
    if "conv_winograd" in steps and not steps["conv_winograd"].get("ok"):
        ctx.rig.broken.add("winograd")  # the profile will not pick it
    r["gemm_mode_chosen"] = mode
    r["ok"] = bool(cublas_ok and all(s.get("ok") for s in steps.values()) and "done" in steps)
    verdicts = ", ".join(f"{k}={'ok' if v.get('ok') else 'FAIL'}" for k, v in steps.items())
    ctx.log(f"smoke: child rc={rc}; steps {verdicts}"
            + f"; GEMM mode for the run: {mode}")
    if rc != 0:
        ctx.log("smoke: child stderr tail:\n" + err[-1500:])
    return r


SECTION_FUNCS = {"smoke": section_smoke, "environment": section_environment, "ops": section_ops,
                 "objective": section_objective, "gradcheck64": section_gradcheck64, "profile": section_profile,
                 "optimizer": section_optimizer, "graphs": section_graphs, "to_target": section_to_target,
                 "timing_tf32": section_timing_tf32, "timing_fp32": section_timing_fp32,
                 "transfer": section_transfer, "uhd": section_uhd, "max_size": section_max_size}
assert tuple(SECTION_FUNCS) == SECTIONS


# ---------------------------------------------------------------------------------------------------
# Main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.json / gpu_check.md / progress.log")
    p.add_argument("--dry-run", action="store_true", help="run on the CPU at tiny sizes (NumPy + emulated kernels)")
    p.add_argument("--budget-s", type=float, default=400.0, help="total time budget in seconds (default 400)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated sections to run")
    p.add_argument("--skip", default="", help="comma-separated sections to skip")
    p.add_argument("--sizes", default=None, help="timing sizes, e.g. 512,1024,2048")
    p.add_argument("--repeats", type=int, default=None, help="timed evaluations per size (default 10)")
    p.add_argument("--lbfgs-iters", type=int, default=None, help="L-BFGS-B iterations at 1024 (default 100)")
    p.add_argument("--target-iters", type=int, default=None,
                   help="PyTorch's L-BFGS iterations in to_target (default 100)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    cfg = dict(DRY if args.dry_run else FULL)
    if args.sizes:
        cfg["sizes"] = tuple(int(s) for s in args.sizes.split(","))
    if args.repeats:
        cfg["repeats"] = args.repeats
    if args.lbfgs_iters:
        cfg["lbfgs_iters"] = args.lbfgs_iters
    if args.target_iters:
        cfg["target_iters"] = args.target_iters
    os.makedirs(args.out, exist_ok=True)
    budget = Budget(args.budget_s)
    log = Log(budget, os.path.join(args.out, "progress.log"))
    reporter = Reporter(args.out, budget, args.dry_run)
    wanted = [s for s in args.sections.split(",") if s and s not in args.skip.split(",")]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        print(f"unknown section(s): {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2

    # A watchdog: if a section hangs past the budget (plus grace), write what we have and leave.
    def watchdog():
        log(f"watchdog: budget exceeded by {WATCHDOG_GRACE_S} s; writing results and exiting")
        reporter.report["status"]["watchdog"] = {"status": "fired", "seconds": budget.elapsed(),
                                                 "note": "a section ran past the budget"}
        try:
            reporter.write()
            print(reporter.summary(), flush=True)
        finally:
            os._exit(3)
    timer = threading.Timer(args.budget_s + WATCHDOG_GRACE_S, watchdog)
    timer.daemon = True
    timer.start()

    log(f"nstyle GPU check: {'DRY RUN on the CPU' if args.dry_run else 'GPU run'}, budget {args.budget_s:.0f} s, "
        f"sections {', '.join(wanted)}")
    try:
        rig = Rig(args.dry_run, log)
    except Exception as exc:  # no CuPy or no device: nothing else can run
        reporter.report["status"]["setup"] = {"status": "error", "seconds": 0.0, "note": str(exc)[:200],
                                              "traceback": traceback.format_exc()}
        reporter.write()
        print(reporter.summary(), flush=True)
        return 1
    all_ok = True
    for name in SECTIONS:
        if name not in wanted:
            continue
        status = reporter.report["status"][name] = {"status": "running", "seconds": 0.0, "note": ""}
        result = reporter.report["sections"][name] = {}
        ctx = Context(args, rig, budget, log, cfg)
        ctx.result = result
        t0 = time.perf_counter()
        if budget.left() < 5:
            status.update(status="skipped", note="time budget used up")
            log(f"{name}: skipped (time budget used up)")
            reporter.write()
            continue
        log(f"--- {name}")
        try:
            SECTION_FUNCS[name](ctx)
            status["status"] = "ok" if result.get("ok", True) else "FAIL"
        except SkipRest as stop:
            status.update(status="partial", note=str(stop))
            log(f"{name}: stopped early ({stop})")
        except Exception as exc:
            status.update(status="error", note=f"{type(exc).__name__}: {str(exc)[:160]}",
                          traceback=traceback.format_exc())
            log(f"{name}: ERROR {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            with contextlib.suppress(Exception):
                rig.set_tf32(False) if rig._torch is not None else backend.set_tf32(False)
                rig.free()
        status["seconds"] = round(time.perf_counter() - t0, 2)
        if not status["note"]:
            status["note"] = note(name, result)
        all_ok &= status["status"] in ("ok", "partial")
        reporter.write()
    timer.cancel()
    reporter.write()
    print(reporter.summary(), flush=True)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
