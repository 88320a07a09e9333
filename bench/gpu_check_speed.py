"""The speed sections of bench/gpu_check.py: profile, graphs, timing_fp32/tf32, transfer, uhd, max_size
(see its docstring). nstyle runs its GPU engine on the rig's arrays; the rival is PyTorch on the rig's
torch device.
"""
import contextlib
import time

import numpy as np
from gpu_report import fmt
from gpu_rig import Problem, conv_setup, mb, median_time, nstyle_eval, ratio, torch_eval

from nstyle import backend
from nstyle.gpu import blas as gpu_blas
from nstyle.gpu import conv as conv_gpu
from nstyle.gpu import kernels as gpu_kernels
from nstyle.gpu.engine import GpuEngine
from nstyle.gpu.graph import GraphedObjective
from nstyle.model.gradcheck import rel_error

# --- profile ---------------------------------------------------------------------------------------

def _timer(rig, table, name, fn):
    """fn wrapped: synchronise before and after each call and add its time to table[name] = [calls, s].
    Synchronising makes each share honest and the evaluation as a whole slower: the shares are the point,
    not the total."""
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


@contextlib.contextmanager
def timed_calls(rig, module, names, table):
    """Replace module.<name> by its :func:`_timer` (restored on exit): the kernel launches and GEMMs, which
    the GPU ops look up in their modules at each call."""
    saved = {name: getattr(module, name) for name in names}
    for name, fn in saved.items():
        setattr(module, name, _timer(rig, table, name, fn))
    try:
        yield table
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)


def timed_engine(rig, table):
    """The GPU engine with each of its ops timed (:func:`_timer`): a class for ``VGG19(engine=...)``.
    (conv_forward is a method -- it finds the layer's kept Winograd transforms -- the others functions.)"""
    ops = {name: staticmethod(_timer(rig, table, label, getattr(GpuEngine, name)))
           for name, label in (("conv_backward", "conv2d_backward"), ("relu_forward", "relu_forward"),
                               ("relu_backward", "relu_backward"))}
    ops["conv_forward"] = _timer(rig, table, "conv2d_forward", GpuEngine.conv_forward)
    for name in ("pool_forward", "pool_backward"):
        ops[name] = {kind: _timer(rig, table, f"{kind}_{name.replace('pool', 'pool2d')}", fn)
                     for kind, fn in getattr(GpuEngine, name).items()}
    return type("TimedGpuEngine", (GpuEngine,), ops)


def _breakdown(ctx, what, table, evaluate):
    """Time one evaluation while ``table`` collects the timed calls; record and log the shares."""
    ctx.need(10, f"the {what} breakdown")
    table.clear()
    t0 = time.perf_counter()
    evaluate()
    total = time.perf_counter() - t0
    breakdown = [{"what": name, "calls": calls, "seconds": sec, "share": sec / total}
                 for name, (calls, sec) in sorted(table.items(), key=lambda kv: -kv[1][1])]
    rest = total - sum(row["seconds"] for row in breakdown)
    breakdown.append({"what": "everything else (losses, bias, copies, Python)", "calls": None, "seconds": rest,
                      "share": rest / total})
    ctx.result[f"{what}_breakdown"] = breakdown
    ctx.log(f"profile ({what}s, synchronised, {total * 1e3:.0f} ms): " + ", ".join(
        f"{row['what']} {100 * row['share']:.0f}%" for row in breakdown[:6]))


KERNEL_LAUNCHES = ("im2col_band", "col2im_band", "winograd_input", "winograd_output", "relu_forward",
                   "avg_pool_forward", "avg_pool_backward", "max_pool_forward", "max_pool_backward")


def section_profile(ctx):
    """Which convolution lowering is fastest here (kept for the rest of the run), what writing GEMM bands
    in place saves over cupy.matmul, and where one evaluation spends its time."""
    rig, r, cfg = ctx.rig, ctx.result, ctx.cfg
    n = cfg["profile_size"]
    rig.set_tf32(False)
    prob = Problem(rig, n, n, cfg["widths"], seed=10)
    x_dev = rig.to_dev(prob.x)
    mode = gpu_blas.MODE
    library_default = conv_gpu.LOWERING
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
    r["chosen_lowering"], r["library_default_lowering"] = chosen, library_default
    ctx.log(f"profile: the rest of the run uses the {chosen} lowering (library default: {library_default})")
    # where the time goes: every kernel launch and GEMM timed alone, then every layer
    table = {}
    obj = prob.nstyle_objective()
    nstyle_eval(rig, obj, x_dev)
    with contextlib.ExitStack() as stack:
        for module, names in ((gpu_kernels, KERNEL_LAUNCHES), (gpu_blas, ("gemm",)), (conv_gpu, ("batched_gemm",))):
            stack.enter_context(timed_calls(rig, module, names, table))
        _breakdown(ctx, "op", table, lambda: nstyle_eval(rig, obj, x_dev))
    obj = prob.nstyle_objective(engine=timed_engine(rig, table))
    nstyle_eval(rig, obj, x_dev)
    _breakdown(ctx, "layer", table, lambda: nstyle_eval(rig, obj, x_dev))
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


# --- graphs ----------------------------------------------------------------------------------------

def section_graphs(ctx):
    """One evaluation replayed as a CUDA graph (nstyle/gpu/graph.py) against the same evaluation launched
    op by op, and PyTorch's, at the sizes where launch overhead matters (512, 1024)."""
    rig, r, cfg = ctx.rig, ctx.result, ctx.cfg
    rig.set_tf32(False)
    rows = r.setdefault("rows", [])
    for n in cfg["graph_sizes"]:
        ctx.need(10 + 12 * (n / 1024) ** 2, f"the graph timing at {n}")
        rig.free()
        prob = Problem(rig, n, n, cfg["widths"], seed=12)
        x_dev = rig.to_dev(prob.x)
        obj = prob.nstyle_objective()
        row = {"size": n}
        row["eager_median_s"] = median_time(lambda: nstyle_eval(rig, obj, x_dev), cfg["repeats"], cfg["warmup"])[0]
        f_e, g_e = nstyle_eval(rig, obj, x_dev)
        graphed = GraphedObjective(obj)
        t0 = time.perf_counter()
        nstyle_eval(rig, graphed, x_dev)  # eager + capture + the checked replay
        row["capture_s"] = time.perf_counter() - t0
        row["graph_median_s"] = median_time(lambda: nstyle_eval(rig, graphed, x_dev), cfg["repeats"], 1)[0]
        f_g, g_g = nstyle_eval(rig, graphed, x_dev)
        row.update({"graph": graphed.fallback is None, "fallback": graphed.fallback,
                    "loss_rel_diff": abs(f_g - f_e) / max(abs(f_e), 1e-30),
                    "grad_rel_diff": float(np.linalg.norm(backend.to_host(g_g) - backend.to_host(g_e))
                                           / max(np.linalg.norm(backend.to_host(g_e)), 1e-30))})
        graphed = obj = g_e = g_g = x_dev = None
        rig.free()
        tloss = prob.torch_objective()
        xt = rig.torch.tensor(prob.x, device=rig.tdev, requires_grad=True)
        row["torch_median_s"] = median_time(lambda: torch_eval(rig, tloss, xt), cfg["repeats"], cfg["warmup"])[0]
        tloss = xt = None
        rig.free()
        row["speedup"] = ratio(row["eager_median_s"], row["graph_median_s"])
        row["eager_ratio"] = ratio(row["eager_median_s"], row["torch_median_s"])
        row["graph_ratio"] = ratio(row["graph_median_s"], row["torch_median_s"]) if row["graph"] else None
        rows.append(row)
        how = "replayed" if row["graph"] else f"FELL BACK: {row['fallback']}"
        ctx.log(f"graphs at {n}: eager {1e3 * row['eager_median_s']:.1f} ms, graph "
                f"{1e3 * row['graph_median_s']:.1f} ms ({how}; capture {row['capture_s']:.2f} s), torch {1e3 * row['torch_median_s']:.1f} ms; "
                f"x{fmt(row['speedup'])} from the graph")
    pays = [row for row in rows if row["graph"]]
    r["make_default"] = bool(pays) and all(row["speedup"] >= 1.1 and row["grad_rel_diff"] < 1e-5 for row in pays)
    return r
