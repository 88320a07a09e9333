#!/usr/bin/env python3
"""nstyle on the GPU, checked and measured against PyTorch + cuDNN in one run (issue 6, item 4).

    PYTHONUNBUFFERED=1 PYTHONPATH=. python bench/gpu_check.py --out OUT_DIR          # on a GPU machine
    python bench/gpu_check.py --dry-run --out /tmp/gpucheck                          # anywhere (CI)

Sections, run in this order, each in its own try/except (an error is recorded with its traceback and the
run goes on); a global time budget (--budget-s, default 420 s) skips what no longer fits:

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
  timing_fp32   one evaluation (forward to relu5_1 + backward to the pixels, content + 5 Gram losses) at
                512, 1024, 2048: median of >= 10 after warm-up, synchronised; TF32 off for both; peak memory
  transfer      the host<->device copies one L-BFGS-B evaluation makes, timed
  uhd           one evaluation at 3840x2160 each
  lbfgs         100 L-BFGS-B iterations at 1024, nstyle vs PyTorch + SciPy (same bounds, same options)
  timing_tf32   timing_fp32 again with TF32 allowed for both
  max_size      the largest square each can evaluate (2048, 3072, 4096; stops at the first OOM)

Weights are random with VGG-19's real widths (the real file is not needed for timing); the rival is
tests/torch_reference.py's objective (torch.nn.functional, cuDNN enabled, cudnn.benchmark on).
Results are rewritten after every section into OUT_DIR/gpu_check.json and OUT_DIR/gpu_check.md; the
last thing printed is a short table. Exit code 0 when every section ran and every check passed.

--dry-run runs the whole script on the CPU at tiny sizes and narrow widths: NumPy stands in for CuPy
(the layers take their GPU path with each kernel and cuBLAS call emulated in NumPy) and PyTorch on the
CPU stands in for cuDNN; it keeps this script from rotting (tests/test_gpu_check.py runs it).
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
import scipy.optimize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import nstyle  # noqa: E402
from gpu_report import Reporter, fmt, note  # noqa: E402
from gpu_rig import (ALPHA, BETA, CONTENT_LAYERS, STYLE_LAYERS, VGG_WIDTHS, Problem, Rig,  # noqa: E402
                     TimedObjective, mb, median_time, nstyle_eval, ratio, torch_eval)
from nstyle import backend  # noqa: E402
from nstyle.model.gradcheck import (directional_check, numerical_vjp, random_image, random_vgg_params, rel_error)  # noqa: E402
from nstyle.reference import (avg_pool2d_backward, avg_pool2d_forward, conv2d_backward, conv2d_forward, max_pool2d_backward, max_pool2d_forward, relu_backward, relu_forward)
from nstyle.gpu import conv as conv_gpu, blas as gpu_blas, kernels as gpu_kernels
from nstyle.model.objective import StyleObjective  # noqa: E402
from nstyle.app.optimize import _bounds_vector  # noqa: E402
from nstyle.model.vgg import VGG19  # noqa: E402

SECTIONS = ("smoke", "environment", "ops", "objective", "gradcheck64", "profile", "timing_fp32", "transfer",
            "uhd", "lbfgs", "timing_tf32", "max_size")

# What each run size means, full (on the GPU) and dry (on the CPU, emulated).
FULL = dict(sizes=(512, 1024, 2048), repeats=10, warmup=2, lbfgs_size=1024, lbfgs_iters=100,
            max_sizes=(2048, 3072, 4096), uhd=(2160, 3840), widths=VGG_WIDTHS, check_size=(64, 80),
            gradcheck_size=(40, 52), transfer_repeats=20, profile_size=1024, profile_repeats=5)
DRY = dict(sizes=(16, 24), repeats=2, warmup=1, lbfgs_size=16, lbfgs_iters=3, max_sizes=(16, 24),
           uhd=(16, 28), widths=None, check_size=(24, 32), gradcheck_size=(24, 28), transfer_repeats=3,
           profile_size=16, profile_repeats=2)


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


class SkipRest(Exception):
    """Raised inside a section when the budget runs out: the section keeps what it measured."""


# ---------------------------------------------------------------------------------------------------
# Sections. Each takes (ctx) and returns a dict; ctx.result is that dict, filled as the section goes so a
# budget stop keeps what was measured.

class Context:
    def __init__(self, args, rig, budget, log, cfg):
        self.args, self.rig, self.budget, self.log, self.cfg = args, rig, budget, log, cfg
        self.result = None

    def need(self, seconds, what):
        if self.budget.left() < seconds:
            raise SkipRest(f"budget: {self.budget.left():.0f} s left, {what} needs ~{seconds:.0f} s")


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
    cublas_ok = steps.get("gemm_cublas", {}).get("ok") and steps.get("conv_cublas", {}).get("ok")
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


# --- ops -------------------------------------------------------------------------------------------

@contextlib.contextmanager
def conv_setup(lowering, small_bands=False, c=1, o=1, k=3, w=1):
    """Run the block with this convolution lowering and, if asked, bands of a few rows (restored after)."""
    names = ("BAND_MIN_ELEMS", "BAND_MAX_ELEMS", "WINOGRAD_BAND_MIN_ELEMS", "WINOGRAD_BAND_MAX_ELEMS")
    saved = {name: getattr(conv_gpu, name) for name in names}
    before = conv_gpu.set_lowering(lowering)
    if small_bands:
        conv_gpu.BAND_MIN_ELEMS = conv_gpu.BAND_MAX_ELEMS = c * k * k * w * 3
        conv_gpu.WINOGRAD_BAND_MIN_ELEMS = conv_gpu.WINOGRAD_BAND_MAX_ELEMS = 16 * (c + o) * (w // 2 + 1) * 2
    try:
        yield
    finally:
        conv_gpu.set_lowering(before)
        for name, value in saved.items():
            setattr(conv_gpu, name, value)


def _op_cases(dry):
    conv = [("vgg 3x3 p1", (1, 64, 64, 64, 128, 3, 1, 1)), ("rgb input", (1, 3, 96, 80, 64, 3, 1, 1)),
            ("stride 2 p0", (2, 16, 33, 31, 24, 3, 2, 0)), ("5x5 p2", (1, 8, 21, 19, 12, 5, 1, 2))]
    pool = [("2x2 s2", (2, 2, (1, 64, 64, 64))), ("3x3 s2 odd", (3, 2, (2, 16, 33, 47)))]
    act = (2, 16, 33, 47)
    if dry:
        conv = [("vgg 3x3 p1", (1, 8, 12, 12, 16, 3, 1, 1)), ("stride 2 p0", (2, 3, 9, 11, 4, 3, 2, 0)),
                ("5x5 p2", (1, 2, 9, 7, 3, 5, 1, 2))]
        pool = [("2x2 s2", (2, 2, (1, 4, 8, 8))), ("3x3 s2 odd", (3, 2, (1, 3, 9, 11)))]
        act = (1, 3, 5, 7)
    return conv, pool, act


def section_ops(ctx):
    rig, r = ctx.rig, ctx.result
    rows = r.setdefault("rows", [])
    rng = np.random.default_rng(2)
    conv_cases, pool_cases, act_shape = _op_cases(rig.dry)

    def add(op, case, dtype, err, tol):
        rows.append({"op": op, "case": case, "dtype": np.dtype(dtype).name, "rel_error": float(err), "tol": tol,
                     "ok": bool(err < tol)})
        if err >= tol:
            ctx.log(f"ops: FAIL {op} [{case}] {np.dtype(dtype).name}: rel. error {err:.2e} >= {tol:.0e}")

    for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
        for lowering in conv_gpu.LOWERINGS:
            for bands in ("default bands", "small bands"):
                for label, (n, c, h, w, o, k, s, p) in conv_cases:
                    if lowering == "winograd" and (k != 3 or s != 1):
                        continue  # im2col either way
                    ctx.need(5, "the next op check")
                    x = rng.standard_normal((n, c, h, w))
                    wt = rng.standard_normal((o, c, k, k)) * np.sqrt(2.0 / (c * k * k))
                    b = rng.standard_normal(o)
                    ref, ref_cache = conv2d_forward(x, wt, b, s, p)
                    dout = rng.standard_normal(ref.shape)
                    rdx, rdw, rdb = conv2d_backward(dout, ref_cache, weight_grads=True)
                    # small bands: a few rows per band, the multi-band path on real sizes
                    with conv_setup(lowering, small_bands=bands == "small bands", c=c, o=o, k=k, w=w):
                        with rig.on_device():
                            out, cache = conv2d_forward(*(rig.to_dev(a.astype(dtype)) for a in (x, wt, b)), s, p)
                            dx, dw, db = conv2d_backward(rig.to_dev(dout.astype(dtype)), cache, weight_grads=True)
                    case = f"{label}, {lowering}, {bands}, x{n}x{c}x{h}x{w} w{o}x{c}x{k}x{k}"
                    for name, got, want in (("conv fwd", out, ref), ("conv dx", dx, rdx), ("conv dw", dw, rdw),
                                            ("conv db", db, rdb)):
                        add(name, case, dtype, rel_error(backend.to_host(got), want), tol)
        x = rng.standard_normal(act_shape)
        x[0, 0, 0, :2] = 0.0
        ref, ref_mask = relu_forward(x)
        dout = rng.standard_normal(x.shape)
        ref_dx = relu_backward(dout, ref_mask)
        with rig.on_device():
            out, mask = relu_forward(rig.to_dev(x.astype(dtype)))
            dx = relu_backward(rig.to_dev(dout.astype(dtype)), mask)
        case = "x" + "x".join(map(str, act_shape))
        add("relu fwd", case, dtype, rel_error(backend.to_host(out), ref), tol)
        add("relu mask", case, dtype, float((backend.to_host(mask) != ref_mask).sum()), 0.5)
        add("relu bwd", case, dtype, rel_error(backend.to_host(dx), ref_dx), tol)
        for kind, fwd, bwd in (("avg", avg_pool2d_forward, avg_pool2d_backward),
                               ("max", max_pool2d_forward, max_pool2d_backward)):
            for label, (k, s, shape) in pool_cases:
                x = rng.permutation(int(np.prod(shape))).reshape(shape) / np.prod(shape)  # distinct: no ties
                ref, ref_cache = fwd(x, k, s)
                dout = rng.standard_normal(ref.shape)
                ref_dx = bwd(dout, ref_cache)
                with rig.on_device():
                    out, cache = fwd(rig.to_dev(x.astype(dtype)), k, s)
                    dx = bwd(rig.to_dev(dout.astype(dtype)), cache)
                case = f"{label}, x" + "x".join(map(str, shape))
                add(f"{kind} pool fwd", case, dtype, rel_error(backend.to_host(out), ref), tol)
                add(f"{kind} pool bwd", case, dtype, rel_error(backend.to_host(dx), ref_dx), tol)
    r["ok"] = all(row["ok"] for row in rows)
    worst = max(rows, key=lambda row: row["rel_error"] / row["tol"])
    ctx.log(f"ops: {sum(row['ok'] for row in rows)}/{len(rows)} pass; worst {worst['op']} [{worst['case']}] "
            f"{worst['dtype']} {worst['rel_error']:.2e}")
    return r


# --- objective -------------------------------------------------------------------------------------

def section_objective(ctx):
    rig, r = ctx.rig, ctx.result
    rows = r.setdefault("rows", [])
    h, w = ctx.cfg["check_size"]
    widths = ctx.cfg["widths"]
    for pooling in ("avg", "max"):
        ctx.need(20, "the next objective comparison")
        prob = Problem(rig, h, w, widths, seed=3, pooling=pooling)
        ref_obj = StyleObjective(VGG19(prob.params, pooling=pooling, dtype=np.float64), content=prob.content,
                                 styles=[prob.style], content_weight=ALPHA, style_weight=BETA,
                                 content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS)
        f_ref, g_ref = ref_obj.value_and_grad(prob.x.astype(np.float64))
        for lowering in conv_gpu.LOWERINGS:
            for dtype, tol in ((np.float32, 1e-4), (np.float64, 1e-10)):
                with conv_setup(lowering):
                    obj = prob.nstyle_objective(dtype)
                    f, g = nstyle_eval(rig, obj, rig.to_dev(prob.x.astype(dtype)))
                g = backend.to_host(g)
                for what, err in (("value", abs(f - f_ref) / abs(f_ref)), ("gradient", rel_error(g, g_ref))):
                    rows.append({"check": f"objective {what}: device {np.dtype(dtype).name} ({lowering}) vs "
                                          "NumPy float64", "pooling": pooling, "size": f"{h}x{w}",
                                 "rel_error": float(err), "tol": tol, "ok": bool(err < tol)})
        # and against the PyTorch oracle on the same device (float32, TF32 off)
        rig.set_tf32(False)
        torch = rig.torch
        tloss = prob.torch_objective()
        xt = torch.tensor(prob.x, device=rig.tdev, requires_grad=True)
        tf, tg = torch_eval(rig, tloss, xt)
        tg = tg.detach().cpu().numpy()
        for what, err in (("value", abs(tf - f_ref) / abs(f_ref)), ("gradient", rel_error(tg, g_ref))):
            rows.append({"check": f"PyTorch float32 {what} vs NumPy float64 (oracle sanity)", "pooling": pooling,
                         "size": f"{h}x{w}", "rel_error": float(err), "tol": 1e-4, "ok": bool(err < 1e-4)})
    r["ok"] = all(row["ok"] for row in rows)
    worst = max(rows, key=lambda row: row["rel_error"] / row["tol"])
    ctx.log(f"objective: {sum(row['ok'] for row in rows)}/{len(rows)} pass; worst {worst['check']} "
            f"({worst['pooling']}) {worst['rel_error']:.1e}")
    return r


# --- gradcheck64 -----------------------------------------------------------------------------------

def section_gradcheck64(ctx):
    rig, r = ctx.rig, ctx.result
    rows = r.setdefault("rows", [])
    rng = np.random.default_rng(4)

    def on_dev(fn):
        """f(z) for central differences: z (host float64) to the device, fn there, back to the host."""
        def wrapped(z, *rest):
            with rig.on_device():
                return backend.to_host(fn(rig.to_dev(z), *rest))
        return wrapped

    def add(op, shape, err, tol=1e-7):
        rows.append({"op": op, "shape": "x".join(map(str, shape)), "rel_error": float(err), "tol": tol,
                     "ok": bool(err < tol)})

    conv_cases = [("im2col", (1, 3, 7, 9, 4, 3, 1, 1)), ("winograd", (1, 3, 7, 9, 4, 3, 1, 1)),
                  ("im2col", (2, 2, 6, 5, 3, 3, 2, 2)), ("im2col", (1, 2, 6, 7, 3, 5, 1, 2))]
    for lowering, (n, c, h, w, o, k, s, p) in conv_cases:
        ctx.need(5, "the next gradient check")
        x, wt, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, k, k)), rng.standard_normal(o)
        xd, wd, bd = rig.to_dev(x), rig.to_dev(wt), rig.to_dev(b)
        with conv_setup(lowering):  # the lowering also applies inside the finite differences
            with rig.on_device():
                out, cache = conv2d_forward(xd, wd, bd, s, p)
                dout = rng.standard_normal(out.shape)
                dx, dw, db = (backend.to_host(g) for g in conv2d_backward(rig.to_dev(dout), cache, weight_grads=True))
            tag = f"conv2d k{k} s{s} p{p} {lowering}"
            fwd_x = on_dev(lambda z: conv2d_forward(z, wd, bd, s, p)[0])
            fwd_w = on_dev(lambda z: conv2d_forward(xd, z, bd, s, p)[0])
            fwd_b = on_dev(lambda z: conv2d_forward(xd, wd, z, s, p)[0])
            add(tag + " dx", x.shape, rel_error(dx, numerical_vjp(fwd_x, x, dout)))
            add(tag + " dw", wt.shape, rel_error(dw, numerical_vjp(fwd_w, wt, dout)))
            add(tag + " db", b.shape, rel_error(db, numerical_vjp(fwd_b, b, dout)))
    x = rng.standard_normal((2, 3, 5, 7))
    x[np.abs(x) < 1e-3] = 0.5
    with rig.on_device():
        out, mask = relu_forward(rig.to_dev(x))
        dout = rng.standard_normal(out.shape)
        got = backend.to_host(relu_backward(rig.to_dev(dout), mask))
    add("relu", x.shape, rel_error(got, numerical_vjp(on_dev(lambda z: relu_forward(z)[0]), x, dout)))
    for name, fwd, bwd in (("avg_pool2d", avg_pool2d_forward, avg_pool2d_backward),
                           ("max_pool2d", max_pool2d_forward, max_pool2d_backward)):
        for k, s in ((2, 2), (3, 2)):
            x = rng.permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9) * 0.01
            with rig.on_device():
                out, cache = fwd(rig.to_dev(x), k, s)
                dout = rng.standard_normal(out.shape)
                got = backend.to_host(bwd(rig.to_dev(dout), cache))
            add(f"{name} k{k} s{s}", x.shape,
                rel_error(got, numerical_vjp(on_dev(lambda z, fwd=fwd, k=k, s=s: fwd(z, k, s)[0]), x, dout)))
    # the whole objective: small random weights, two blended styles, TV, both poolings, directional
    for pooling, lowering in (("avg", "im2col"), ("max", "im2col"), ("avg", "winograd")):
        ctx.need(10, "the objective's directional check")
        orng = np.random.default_rng(5)
        params = random_vgg_params(orng)
        h, w = ctx.cfg["gradcheck_size"]
        styles = [random_image(orng, h - 4, w - 8), random_image(orng, h + 4, max(16, w - 22))]
        with conv_setup(lowering), rig.on_device():
            vgg = VGG19(params, pooling=pooling, device=rig.device, dtype=np.float64)
            obj = StyleObjective(vgg, content=random_image(orng, h, w), styles=styles, style_blend=[0.3, 0.7],
                                 content_weight=1.0, style_weight=1e3, tv_weight=1e-2)
            x = random_image(orng, h, w)
            _, g = nstyle_eval(rig, obj, rig.to_dev(x))

            def value(z, obj=obj):
                with rig.on_device():
                    return obj.value(rig.to_dev(z))
            err = directional_check(value, backend.to_host(g), x, orng, eps=1e-3)
        add(f"objective ({pooling} pool, {lowering}, directional, on the device)", x.shape, err, tol=1e-6)
    r["ok"] = all(row["ok"] for row in rows)
    worst = max(rows, key=lambda row: row["rel_error"] / row["tol"])
    ctx.log(f"gradcheck64: {sum(row['ok'] for row in rows)}/{len(rows)} pass; "
            f"worst {worst['op']} {worst['rel_error']:.1e}")
    return r


# --- profile ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def timed_calls(rig, module, names, table):
    """Replace module.<name> by a wrapper that synchronises before and after each call and adds the time
    to table[name] = [calls, seconds] (restored on exit). Synchronising makes each share honest and the
    evaluation as a whole slower: the shares are the point, not the total."""
    saved = {name: getattr(module, name) for name in names}

    def wrap(name, fn):
        def timed(*args, **kwargs):
            rig.sync()
            t0 = time.perf_counter()
            result = fn(*args, **kwargs)
            rig.sync()
            entry = table.setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] += time.perf_counter() - t0
            return result
        return timed

    for name, fn in saved.items():
        setattr(module, name, wrap(name, fn))
    try:
        yield table
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)


def section_profile(ctx):
    """Which convolution lowering is fastest here (kept for the rest of the run), what writing GEMM bands
    in place saves over cupy.matmul, and where one evaluation spends its time."""
    import nstyle.model.vgg as vgg_module  # noqa: PLC0415
    rig, r, cfg = ctx.rig, ctx.result, ctx.cfg
    n = cfg["profile_size"]
    rig.set_tf32(False)
    prob = Problem(rig, n, n, cfg["widths"], seed=10)
    x_dev = rig.to_dev(prob.x)
    mode = gpu_blas.MODE
    variants = [("im2col", mode), ("winograd", mode)] + ([("im2col", "matmul")] if mode != "matmul" else [])
    rows = r.setdefault("variants", [])
    for lowering, gemm_mode in variants:
        ctx.need(10 + 4 * (n / 1024) ** 2, f"timing the {lowering} lowering")
        before = gpu_blas.set_mode(gemm_mode)
        try:
            with conv_setup(lowering):
                obj = prob.nstyle_objective()
                med, best, _ = median_time(lambda: nstyle_eval(rig, obj, x_dev), cfg["profile_repeats"], 1)
                _, peak = rig.nstyle_peak(lambda: nstyle_eval(rig, obj, x_dev))
        finally:
            gpu_blas.set_mode(before)
        rows.append({"lowering": lowering, "gemm_mode": gemm_mode, "size": n, "median_s": med, "min_s": best,
                     "peak_mb": mb(peak)})
        ctx.log(f"profile at {n}: {lowering} + {gemm_mode} GEMM: {med * 1e3:.1f} ms (min {best * 1e3:.1f}), "
                f"peak {mb(peak)} MB")
        obj = None
        rig.free()
    candidates = [row for row in rows if row["gemm_mode"] == mode and row["lowering"] not in rig.broken]
    chosen = min(candidates, key=lambda row: row["median_s"])["lowering"]
    conv_gpu.set_lowering(chosen)
    r["chosen_lowering"], r["library_default_lowering"] = chosen, "im2col"
    ctx.log(f"profile: the rest of the run uses the {chosen} lowering (library default: im2col)")
    # where the time goes: every kernel and GEMM timed alone, then every layer
    obj = prob.nstyle_objective()
    nstyle_eval(rig, obj, x_dev)
    for what, module, names in (
            ("op", gpu_kernels, ("im2col_band", "col2im_band", "winograd_input", "winograd_output", "relu_forward",
                                 "avg_pool_forward", "avg_pool_backward", "max_pool_forward", "max_pool_backward")),
            ("layer", vgg_module, ("conv2d_forward", "conv2d_backward", "relu_forward", "relu_backward",
                                   "avg_pool2d_forward", "avg_pool2d_backward", "max_pool2d_forward",
                                   "max_pool2d_backward"))):
        ctx.need(10, f"the {what} breakdown")
        table = {}
        extra = ((gpu_blas, ("gemm",)), (conv_gpu, ("batched_gemm",))) if what == "op" else ()
        with contextlib.ExitStack() as stack:
            stack.enter_context(timed_calls(rig, module, names, table))
            for mod, more in extra:
                stack.enter_context(timed_calls(rig, mod, more, table))
            t0 = time.perf_counter()
            nstyle_eval(rig, obj, x_dev)
            total = time.perf_counter() - t0
        breakdown = [{"what": name, "calls": calls, "seconds": sec, "share": sec / total}
                     for name, (calls, sec) in sorted(table.items(), key=lambda kv: -kv[1][1])]
        rest = total - sum(row["seconds"] for row in breakdown)
        breakdown.append({"what": "everything else (losses, bias, copies, Python)", "calls": None, "seconds": rest,
                          "share": rest / total})
        r[f"{what}_breakdown"] = breakdown
        ctx.log(f"profile ({what}s, synchronised, {total * 1e3:.0f} ms): " + ", ".join(
            f"{row['what']} {100 * row['share']:.0f}%" for row in breakdown[:6]))
    return r


# --- timing ----------------------------------------------------------------------------------------

def _time_size(ctx, size, tf32, rows):
    rig, cfg = ctx.rig, ctx.cfg
    h, w = size if isinstance(size, tuple) else (size, size)
    row = {"size": f"{w}x{h}" if h != w else str(h), "tf32": tf32, "lowering": conv_gpu.LOWERING,
           "gemm_mode": gpu_blas.MODE}
    rows.append(row)
    rig.free()
    prob = Problem(rig, h, w, cfg["widths"], seed=6)
    # nstyle
    obj = prob.nstyle_objective()
    x_dev = rig.to_dev(prob.x)
    med, best, times = median_time(lambda: nstyle_eval(rig, obj, x_dev), cfg["repeats"], cfg["warmup"])
    row.update({"nstyle_median_s": med, "nstyle_min_s": best, "nstyle_runs": len(times)})
    (f_n, g_n), peak = rig.nstyle_peak(lambda: nstyle_eval(rig, obj, x_dev))
    row["nstyle_peak_mb"] = mb(peak)
    g_n = backend.to_host(g_n)
    obj = x_dev = None  # drop the references before freeing the pool
    rig.free()
    ctx.log(f"timing {row['size']} tf32={tf32}: nstyle {med * 1e3:.1f} ms (min {best * 1e3:.1f}), peak {mb(peak)} MB")
    # torch
    torch = rig.torch
    tloss = prob.torch_objective()
    xt = torch.tensor(prob.x, device=rig.tdev, requires_grad=True)
    med_t, best_t, times_t = median_time(lambda: torch_eval(rig, tloss, xt), cfg["repeats"], cfg["warmup"])
    (f_t, g_t), peak_t, reserved_t = rig.torch_peak(lambda: torch_eval(rig, tloss, xt))
    g_t = g_t.detach().cpu().numpy()
    tloss = xt = None
    rig.free()
    row.update({"torch_median_s": med_t, "torch_min_s": best_t, "torch_runs": len(times_t),
                "torch_peak_mb": mb(peak_t), "torch_reserved_mb": mb(reserved_t),
                "time_ratio": ratio(med, med_t), "memory_ratio": ratio(peak, peak_t),
                "loss_rel_diff": abs(f_n - f_t) / max(abs(f_t), 1e-30), "grad_rel_error": rel_error(g_n, g_t)})
    ctx.log(f"timing {row['size']} tf32={tf32}: torch {med_t * 1e3:.1f} ms (min {best_t * 1e3:.1f}), peak "
            f"{mb(peak_t)} MB; ratio time {fmt(row['time_ratio'])} memory {fmt(row['memory_ratio'])}; "
            f"loss diff {row['loss_rel_diff']:.1e}, grad diff {row['grad_rel_error']:.1e}")
    return row


def _timing(ctx, tf32):
    rig, r = ctx.rig, ctx.result
    r["settings"] = rig.set_tf32(tf32)
    rows = r.setdefault("rows", [])
    last = None
    try:
        for size in ctx.cfg["sizes"]:
            # each size costs about 4x the previous one (pixels); the first needs a fixed allowance
            ctx.need(25 if last is None else 4.5 * last, f"timing at {size}")
            t0 = time.perf_counter()
            _time_size(ctx, size, tf32, rows)
            last = time.perf_counter() - t0
    finally:
        rig.set_tf32(False)
    return r


def section_timing_fp32(ctx):
    return _timing(ctx, False)


def section_timing_tf32(ctx):
    return _timing(ctx, True)


# --- transfer --------------------------------------------------------------------------------------

def section_transfer(ctx):
    """The copies of one L-BFGS-B evaluation (optimize.lbfgs's fun), timed apart from the evaluation."""
    rig, r = ctx.rig, ctx.result
    n = ctx.cfg["lbfgs_size"]
    rng = np.random.default_rng(7)
    flat = rng.standard_normal(3 * n * n)              # SciPy's float64 point
    g_dev = rig.to_dev(rng.standard_normal((1, 3, n, n)).astype(np.float32))

    def h2d():
        x = rig.to_dev(flat.reshape(1, 3, n, n).astype(np.float32))
        rig.sync()
        return x

    def d2h():
        return backend.to_host(g_dev).astype(np.float64).ravel()

    reps = ctx.cfg["transfer_repeats"]
    r["size"] = n
    r["bytes_each_way"] = 3 * n * n * 4
    r["host_to_device_s"] = median_time(h2d, reps, 2)[0]
    r["device_to_host_s"] = median_time(d2h, reps, 2)[0]
    r["per_evaluation_s"] = r["host_to_device_s"] + r["device_to_host_s"]
    torch = rig.torch
    tg = torch.tensor(np.asarray(backend.to_host(g_dev)), device=rig.tdev)

    def t_h2d():
        x = torch.from_numpy(flat.reshape(1, 3, n, n).astype(np.float32)).to(rig.tdev)
        rig.tsync()
        return x

    r["torch_host_to_device_s"] = median_time(t_h2d, reps, 2)[0]
    r["torch_device_to_host_s"] = median_time(lambda: tg.cpu().numpy().astype(np.float64).ravel(), reps, 2)[0]
    ms = {k: r[k] * 1e3 for k in ("host_to_device_s", "device_to_host_s", "torch_host_to_device_s",
                                  "torch_device_to_host_s")}
    ctx.log(f"transfer at {n}: nstyle h2d {ms['host_to_device_s']:.2f} ms + d2h {ms['device_to_host_s']:.2f} ms per "
            f"evaluation (torch {ms['torch_host_to_device_s']:.2f} + {ms['torch_device_to_host_s']:.2f} ms)")
    return r


# --- uhd and max size ------------------------------------------------------------------------------

def _one_eval(ctx, which, h, w):
    """One evaluation (after one warm-up) of nstyle or torch at h x w: seconds and peak memory, or OOM."""
    rig = ctx.rig
    rig.free()
    rec = {"impl": which, "size": f"{w}x{h}", "lowering": conv_gpu.LOWERING if which == "nstyle" else "cuDNN"}
    prob = Problem(rig, h, w, ctx.cfg["widths"], seed=8)
    try:
        if which == "nstyle":
            obj = prob.nstyle_objective()
            x_dev = rig.to_dev(prob.x)
            nstyle_eval(rig, obj, x_dev)
            t0 = time.perf_counter()
            _, peak = rig.nstyle_peak(lambda: nstyle_eval(rig, obj, x_dev))
            rec.update({"ok": True, "seconds": time.perf_counter() - t0, "peak_mb": mb(peak)})
        else:
            torch = rig.torch
            tloss = prob.torch_objective()
            xt = torch.tensor(prob.x, device=rig.tdev, requires_grad=True)
            torch_eval(rig, tloss, xt)
            t0 = time.perf_counter()
            _, peak, reserved = rig.torch_peak(lambda: torch_eval(rig, tloss, xt))
            rec.update({"ok": True, "seconds": time.perf_counter() - t0, "peak_mb": mb(peak),
                        "reserved_mb": mb(reserved)})
    except Exception as exc:
        if not rig.is_oom(exc):
            raise
        rec.update({"ok": False, "oom": True, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
    finally:
        prob = obj = x_dev = tloss = xt = None  # noqa: F841 -- drop references before freeing
        rig.free()
    ctx.log(f"{which} at {rec['size']}: " + (f"{rec['seconds']:.2f} s, peak {rec['peak_mb']} MB" if rec["ok"]
                                             else "out of memory"))
    return rec


def section_uhd(ctx):
    r = ctx.result
    h, w = ctx.cfg["uhd"]
    rows = r.setdefault("rows", [])
    for which in ("nstyle", "torch"):
        ctx.need(20, f"{which} at {w}x{h}")
        rows.append(_one_eval(ctx, which, h, w))
    r["nstyle_fits"] = bool(rows and rows[0]["ok"])
    return r


def section_max_size(ctx):
    r = ctx.result
    rows = r.setdefault("rows", [])
    for which in ("nstyle", "torch"):
        largest = None
        for size in ctx.cfg["max_sizes"]:
            ctx.need(15 + size * size / 4096 ** 2 * 30, f"{which} at {size}")
            rec = _one_eval(ctx, which, size, size)
            rows.append(rec)
            if not rec["ok"]:
                break
            largest = size
        r[f"{which}_largest"] = largest
    return r


# --- lbfgs -----------------------------------------------------------------------------------------

def section_lbfgs(ctx):
    rig, r, cfg = ctx.rig, ctx.result, ctx.cfg
    n, iters = cfg["lbfgs_size"], cfg["lbfgs_iters"]
    rig.set_tf32(False)
    prob = Problem(rig, n, n, cfg["widths"], seed=9)
    x0 = prob.content.copy()  # start from the content, as stylize does by default
    rows = r.setdefault("rows", [])
    ctx.need(30, "the nstyle L-BFGS-B run")
    obj = TimedObjective(rig, prob.nstyle_objective())
    t0 = time.perf_counter()
    res = nstyle.lbfgs(obj, x0, iters=iters)
    wall = time.perf_counter() - t0
    rows.append({"impl": f"nstyle ({conv_gpu.LOWERING})", "wall_s": wall, "iterations": res.iterations,
                 "evaluations": res.evaluations,
                 "final_loss": res.loss, "stop": res.stop, "eval_total_s": sum(obj.seconds),
                 "overhead_s": wall - sum(obj.seconds), "per_iteration_s": wall / max(1, res.iterations)})
    ctx.log(f"lbfgs nstyle at {n}: {wall:.1f} s, {res.iterations} iterations, {res.evaluations} evaluations "
            f"({sum(obj.seconds):.1f} s in evaluations), loss {res.loss:.4g}, stop={res.stop}")
    del obj, res
    rig.free()
    ctx.need(min(120, 1.2 * wall), "the PyTorch + SciPy L-BFGS-B run")
    torch = rig.torch
    tloss = prob.torch_objective()
    shape = x0.shape
    eval_s = []

    def fun(flat):
        t = time.perf_counter()
        xt = torch.from_numpy(flat.reshape(shape).astype(np.float32)).to(rig.tdev).requires_grad_(True)
        loss = tloss(xt)
        loss.backward()
        f = float(loss.item())
        g = xt.grad.detach().cpu().numpy().astype(np.float64).ravel()
        eval_s.append(time.perf_counter() - t)
        return f, g

    lb, ub = _bounds_vector(shape)
    start = np.clip(x0.astype(np.float64).ravel(), lb, ub)
    options = {"maxiter": iters, "maxcor": 10, "maxfun": 2 * iters + 20, "ftol": 0.0, "gtol": 0.0}
    t0 = time.perf_counter()
    tres = scipy.optimize.minimize(fun, start, jac=True, method="L-BFGS-B", bounds=scipy.optimize.Bounds(lb, ub),
                                   options=options)
    twall = time.perf_counter() - t0
    rows.append({"impl": "torch+scipy", "wall_s": twall, "iterations": int(tres.nit), "evaluations": int(tres.nfev),
                 "final_loss": float(tres.fun), "stop": str(tres.message), "eval_total_s": sum(eval_s),
                 "overhead_s": twall - sum(eval_s), "per_iteration_s": twall / max(1, int(tres.nit))})
    ctx.log(f"lbfgs torch+scipy at {n}: {twall:.1f} s, {tres.nit} iterations, {tres.nfev} evaluations, "
            f"loss {tres.fun:.4g}")
    r["time_ratio"] = ratio(wall, twall)
    r["size"], r["iters"] = n, iters
    return r


SECTION_FUNCS = {name: globals()[f"section_{name}"] for name in SECTIONS}


# ---------------------------------------------------------------------------------------------------
# Main

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for gpu_check.json / gpu_check.md / progress.log")
    p.add_argument("--dry-run", action="store_true", help="run on the CPU at tiny sizes (NumPy + emulated kernels)")
    p.add_argument("--budget-s", type=float, default=420.0, help="total time budget in seconds (default 420)")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated sections to run")
    p.add_argument("--skip", default="", help="comma-separated sections to skip")
    p.add_argument("--sizes", default=None, help="timing sizes, e.g. 512,1024,2048")
    p.add_argument("--repeats", type=int, default=None, help="timed evaluations per size (default 10)")
    p.add_argument("--lbfgs-iters", type=int, default=None, help="L-BFGS-B iterations (default 100)")
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
        log("watchdog: budget exceeded by 60 s; writing results and exiting")
        reporter.report["status"]["watchdog"] = {"status": "fired", "seconds": budget.elapsed(),
                                                 "note": "a section ran past the budget"}
        try:
            reporter.write()
            print(reporter.summary(), flush=True)
        finally:
            os._exit(3)
    timer = threading.Timer(args.budget_s + 60, watchdog)
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
