"""The report of bench/gpu_check.py: the issue's targets, JSON and Markdown files, the closing table."""
import json
import os
import threading

import numpy as np

from nstyle.gpu import blas as gpu_blas


def write_atomic(path, text):
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def fmt(v, spec=".3g"):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return format(v, spec)
    return str(v)


def _target(text, measured, met):
    return {"target": text, "measured": measured, "met": bool(met)}


def optimizer_targets(results):
    """Issue 19's targets: the optimizer's cost and a whole run at 1024, time to PyTorch's final loss at
    1024 and 2048, the evaluation at 512 (op by op and as a CUDA graph) and at 1024 with TF32 on both
    sides. The sizes are the run's (a dry run's tiny ones stand in for them)."""
    out = []
    opt = results.get("optimizer", {})
    own = next((row for row in opt.get("rows", []) if row["impl"] == "nstyle + nstyle"), None)
    if own:
        per = 1e3 * own["optimizer_per_iteration_s"]
        out.append(_target(f"optimizer cost per iteration at {opt.get('size')} <= 5 ms (nstyle's L-BFGS-B)",
                           f"{per:.2f} ms", per <= 5.0))
        if opt.get("whole_run_s") is not None:
            out.append(_target(f"{opt.get('iters')} iterations at {opt.get('size')}, whole run, <= 10 s",
                               f"{opt['whole_run_s']:.2f} s", opt["whole_run_s"] <= 10.0))
    tt = results.get("to_target", {})
    for row in tt.get("rows", []):
        if row["impl"] == "nstyle + nstyle" and row["size"] in tt.get("sizes", ())[1:]:
            measured = f"{row['time_ratio']:.2f}x" if row.get("reached") else \
                f"not reached in {row['wall_s']:.1f} s (loss {row['final_loss']:.4g} > {row['target_loss']:.4g})"
            out.append(_target(f"time to PyTorch + LBFGS's final loss at {row['size']} <= 1.0x PyTorch's",
                               measured, row.get("reached") and row["time_ratio"] <= 1.0))
    graphs = results.get("graphs", {}).get("rows", [])
    if graphs:
        first = graphs[0]
        out.append(_target(f"evaluation at {first['size']} <= 1.0x PyTorch (op by op)", f"{first['eager_ratio']:.2f}x",
                           first["eager_ratio"] <= 1.0))
        out.append(_target(f"evaluation at {first['size']} <= 1.0x PyTorch (CUDA graph)",
                           f"{first['graph_ratio']:.2f}x" if first["graph_ratio"] is not None else
                           f"no graph: {first['fallback']}", (first["graph_ratio"] or 99.0) <= 1.0))
    tf32 = results.get("timing_tf32", {}).get("rows", [])
    if len(tf32) > 1 and tf32[1].get("time_ratio") is not None:
        out.append(_target(f"evaluation at {tf32[1]['size']} with TF32 allowed on both sides <= 1.5x PyTorch",
                           f"{tf32[1]['time_ratio']:.2f}x", tf32[1]["time_ratio"] <= 1.5))
    return out


def targets(results):
    """The issues' targets, from whatever has been measured so far."""
    out = optimizer_targets(results)
    timing = results.get("timing_fp32", {}).get("rows", [])
    for row in timing:
        if row.get("size") in ("1024", "2048") and row.get("time_ratio") is not None:
            out.append({"target": f"evaluation time at {row['size']} <= 1.5x PyTorch (goal <= 1.0x)",
                        "measured": f"{row['time_ratio']:.2f}x", "met": row["time_ratio"] <= 1.5})
    ratios = [row["memory_ratio"] for row in timing if row.get("memory_ratio") is not None]
    if ratios:
        out.append({"target": "peak memory <= 1.2x PyTorch's (worst size)", "measured": f"{max(ratios):.2f}x",
                    "met": max(ratios) <= 1.2})
    uhd = results.get("uhd", {})
    if "nstyle_fits" in uhd:
        out.append({"target": "a 3840x2160 evaluation fits (80 GB card)", "measured":
                    "fits" if uhd["nstyle_fits"] else "out of memory", "met": uhd["nstyle_fits"]})
    return out


def _md_table(rows, columns):
    if not rows:
        return "(no rows)\n"
    head = "| " + " | ".join(title for title, _ in columns) + " |\n"
    sep = "| " + " | ".join("---" for _ in columns) + " |\n"
    body = "".join("| " + " | ".join(fmt(row.get(key)) for _, key in columns) + " |\n" for row in rows)
    return head + sep + body


def render_markdown(report):
    res = report["sections"]
    env = res.get("environment", {})
    dry = " (DRY RUN: CPU, emulated kernels; numbers mean nothing)" if report["dry_run"] else ""
    lines = [f"# nstyle GPU check{dry}\n",
             f"Device: **{env.get('gpu', '?')}**, driver {env.get('driver', '-')}, CUDA runtime "
             f"{env.get('cuda_runtime', '-')}, CuPy {env.get('cupy', '-')}, PyTorch {env.get('torch', '-')} "
             f"(cuDNN {env.get('cudnn', '-')}). Run took {report['elapsed_s']:.0f} s of a "
             f"{report['budget_s']:.0f} s budget. "
             f"GEMM mode: {report.get('gemm_mode')}.\n"]
    lines.append("## Targets\n")
    lines.append(_md_table(targets(res), [("target", "target"), ("measured", "measured"), ("met", "met")]))
    lines.append("## Sections\n")
    lines.append(_md_table([{"section": k, **v} for k, v in report["status"].items()],
                           [("section", "section"), ("status", "status"), ("seconds", "seconds"), ("note", "note")]))
    for name in ("timing_fp32", "timing_tf32"):
        rows = res.get(name, {}).get("rows")
        if rows:
            lines.append(f"## {name} (one evaluation: forward to relu5_1 + backward to the pixels)\n")
            lines.append(_md_table(rows, [("size", "size"), ("lowering", "lowering"),
                                          ("nstyle median s", "nstyle_median_s"),
                                          ("torch median s", "torch_median_s"), ("time ratio", "time_ratio"),
                                          ("nstyle peak MB", "nstyle_peak_mb"), ("torch peak MB", "torch_peak_mb"),
                                          ("torch reserved MB", "torch_reserved_mb"), ("memory ratio", "memory_ratio"),
                                          ("loss rel. diff", "loss_rel_diff"), ("grad rel. diff", "grad_rel_error")]))
    prof = res.get("profile", {})
    if prof.get("variants"):
        lines.append(f"## Convolution lowering and GEMM mode (one evaluation; the run used "
                     f"{prof.get('chosen_lowering')})\n")
        lines.append(_md_table(prof["variants"], [("lowering", "lowering"), ("GEMM", "gemm_mode"), ("size", "size"),
                                                  ("median s", "median_s"), ("min s", "min_s"),
                                                  ("peak MB", "peak_mb")]))
        for what in ("op", "layer"):
            if prof.get(f"{what}_breakdown"):
                lines.append(f"### Where the time goes, by {what} (each call synchronised)\n")
                lines.append(_md_table(prof[f"{what}_breakdown"], [("what", "what"), ("calls", "calls"),
                                                                   ("seconds", "seconds"), ("share", "share")]))
    for name, title in (("uhd", "3840x2160"), ("max_size", "largest square size")):
        rows = res.get(name, {}).get("rows")
        if rows:
            lines.append(f"## {title}\n")
            lines.append(_md_table(rows, [("impl", "impl"), ("lowering", "lowering"), ("size", "size"), ("ok", "ok"),
                                          ("seconds", "seconds"), ("peak MB", "peak_mb"), ("error", "error")]))
    lines += optimizer_markdown(res)
    tr = res.get("transfer", {})
    if "per_evaluation_s" in tr:
        lines.append(f"## Host<->device copies per L-BFGS-B evaluation at {tr['size']}\n")
        lines.append(_md_table([tr], [("host->device s", "host_to_device_s"), ("device->host s", "device_to_host_s"),
                                      ("per evaluation s", "per_evaluation_s"),
                                      ("torch h->d s", "torch_host_to_device_s"),
                                      ("torch d->h s", "torch_device_to_host_s")]))
    for name, cols in (("ops", [("op", "op"), ("case", "case"), ("dtype", "dtype"), ("rel. error", "rel_error"),
                                ("tol", "tol"), ("ok", "ok")]),
                       ("objective", [("check", "check"), ("pooling", "pooling"), ("size", "size"),
                                      ("rel. error", "rel_error"), ("tol", "tol"), ("ok", "ok")]),
                       ("gradcheck64", [("op", "op"), ("shape", "shape"), ("rel. error", "rel_error"), ("tol", "tol"),
                                        ("ok", "ok")])):
        rows = res.get(name, {}).get("rows")
        if rows:
            lines.append(f"## {name}\n")
            lines.append(_md_table(rows, cols))
    smoke = res.get("smoke", {})
    if smoke.get("steps"):
        lines.append("## smoke (child process)\n")
        lines.append("```\n" + json.dumps(smoke["steps"], indent=1, default=str)[:6000] + "\n```\n")
    lines.append("## Environment\n")
    lines.append(_md_table([{"key": k, "value": v} for k, v in env.items() if k != "ok"],
                           [("key", "key"), ("value", "value")]))
    errors = {k: v for k, v in report["status"].items() if v.get("traceback")}
    if errors:
        lines.append("## Errors\n")
        for name, st in errors.items():
            lines.append(f"### {name}\n```\n{st['traceback'][-4000:]}\n```\n")
    return "\n".join(lines)


def optimizer_markdown(res):
    """The optimizer, to_target and graphs sections as Markdown (lines)."""
    lines = []
    opt = res.get("optimizer", {})
    if opt.get("rows"):
        lines.append(f"## L-BFGS-B at {opt.get('size')}: the optimizer's own time\n")
        lines.append(_md_table(opt["rows"], [
            ("impl", "impl"), ("wall s", "wall_s"), ("iterations", "iterations"), ("evaluations", "evaluations"),
            ("in evaluations s", "eval_total_s"), ("optimizer s", "optimizer_s"),
            ("optimizer per iteration s", "optimizer_per_iteration_s"), ("final loss", "final_loss"),
            ("stop", "stop")]))
    tt = res.get("to_target", {})
    if tt.get("rows"):
        lines.append(f"## Time to PyTorch's final loss (torch.optim.LBFGS, strong Wolfe, clamped; {tt.get('iters')} "
                     f"iterations, history {tt.get('history')})\n")
        lines.append("Each nstyle run stops at its first iteration with a loss at or below PyTorch's final loss "
                     "(target); 'ratio' is its time to that loss over PyTorch's whole run.\n")
        lines.append(_md_table(tt["rows"], [
            ("size", "size"), ("impl", "impl"), ("time to target s", "time_to_target_s"), ("ratio", "time_ratio"),
            ("iterations", "iterations_to_target"), ("evaluations", "evaluations_to_target"), ("reached", "reached"),
            ("target loss", "target_loss"), ("final loss", "final_loss"), ("wall s", "wall_s"), ("stop", "stop")]))
        if tt.get("skipped"):
            lines.append(f"Skipped for time: {', '.join(map(str, tt['skipped']))}.\n")
    gr = res.get("graphs", {})
    if gr.get("rows"):
        lines.append("## One evaluation as a CUDA graph (nstyle/gpu/graph.py)\n")
        lines.append(_md_table(gr["rows"], [
            ("size", "size"), ("op by op s", "eager_median_s"), ("graph s", "graph_median_s"), ("speed-up", "speedup"),
            ("torch s", "torch_median_s"), ("op by op / torch", "eager_ratio"), ("graph / torch", "graph_ratio"),
            ("capture s", "capture_s"), ("loss rel. diff", "loss_rel_diff"), ("grad rel. diff", "grad_rel_diff"),
            ("fallback", "fallback")]))
        lines.append(f"Make graphs the default (replayed exactly, >= 1.1x at some size, never slower): "
                     f"**{'yes' if gr.get('make_default') else 'no'}**.\n")
    return lines


class Reporter:
    """Holds the report; rewrites gpu_check.json and gpu_check.md whole (atomically) on every write."""

    def __init__(self, out, budget, dry):
        self.out, self.budget, self.dry = out, budget, dry
        self.report = {"dry_run": dry, "budget_s": budget.seconds, "elapsed_s": 0.0, "status": {}, "sections": {}}
        self.lock = threading.Lock()

    def write(self):
        with self.lock:
            self.report["elapsed_s"] = self.budget.elapsed()
            self.report["gemm_mode"] = gpu_blas.MODE
            self.report["targets"] = targets(self.report["sections"])
            write_atomic(os.path.join(self.out, "gpu_check.json"),
                         json.dumps(self.report, indent=1, default=_json_default))
            write_atomic(os.path.join(self.out, "gpu_check.md"), render_markdown(self.report))

    def summary(self):
        lines = ["", "=" * 78, f"nstyle GPU check {'(DRY RUN) ' if self.dry else ''}-- "
                 f"{self.report['sections'].get('environment', {}).get('gpu', '?')}", "-" * 78]
        for name, st in self.report["status"].items():
            lines.append(f"{name:<13} {st['status']:<8} {st.get('seconds', 0):6.1f} s  {st.get('note', '')[:60]}")
        for t in self.report.get("targets") or targets(self.report["sections"]):
            lines.append(f"{'MET ' if t['met'] else 'MISS'} {t['target']}: {t['measured']}")
        for row in self.report["sections"].get("timing_fp32", {}).get("rows", []):
            lines.append(f"  fp32 {row.get('size'):>9}: nstyle {fmt(row.get('nstyle_median_s'))} s, torch "
                         f"{fmt(row.get('torch_median_s'))} s, x{fmt(row.get('time_ratio'))}; memory "
                         f"{fmt(row.get('nstyle_peak_mb'))} / {fmt(row.get('torch_peak_mb'))} MB")
        for row in self.report["sections"].get("to_target", {}).get("rows", []):
            lines.append(f"  to L {row['size']:>5} {row['impl'][:32]:<32} "
                         + (f"{fmt(row.get('time_to_target_s'))} s, x{fmt(row.get('time_ratio'))}" if row.get("reached")
                            else f"not reached ({fmt(row.get('wall_s'))} s)"))
        lines.append(f"results: {os.path.join(self.out, 'gpu_check.md')} (+ .json)")
        lines.append("=" * 78)
        return "\n".join(lines)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def note(name, result):
    """A few words on a finished section for the status table."""
    if name == "timing_fp32" or name == "timing_tf32":
        rows = result.get("rows", [])
        return ", ".join(f"{r['size']}: x{fmt(r.get('time_ratio'))}" for r in rows)
    if "rows" in result and result["rows"] and "ok" in result["rows"][0]:
        rows = result["rows"]
        return f"{sum(bool(r['ok']) for r in rows)}/{len(rows)} ok"
    if name == "smoke":
        return f"gemm mode {result.get('gemm_mode_chosen')}"
    if name == "profile" and result.get("chosen_lowering"):
        return "; ".join(f"{r['lowering']}+{r['gemm_mode']} {r['median_s'] * 1e3:.0f} ms"
                         for r in result.get("variants", [])) + f" -> {result['chosen_lowering']}"
    if name == "optimizer" and result.get("per_iteration_ms"):
        return "; ".join(f"{k} {v:.1f} ms/it" for k, v in result["per_iteration_ms"].items()) + (
            f"; {result['iters']} its {result['whole_run_s']:.1f} s" if result.get("whole_run_s") else "")
    if name == "to_target" and result.get("rows"):
        return ", ".join(f"{r['size']}: x{fmt(r.get('time_ratio'))}" for r in result["rows"]
                         if r["impl"] == "nstyle + nstyle")
    if name == "graphs" and result.get("rows"):
        return ", ".join(f"{r['size']}: x{fmt(r.get('speedup'))}" for r in result["rows"]) + (
            "; default: yes" if result.get("make_default") else "; default: no")
    if name == "transfer" and "per_evaluation_s" in result:
        return f"{result['per_evaluation_s'] * 1e3:.2f} ms per evaluation"
    return ""
