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


def targets(results):
    """The issue's targets, from whatever has been measured so far."""
    out = []
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
    for name, cols in (("timing_fp32", None), ("timing_tf32", None)):
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
    if res.get("lbfgs", {}).get("rows"):
        lines.append(f"## L-BFGS-B, {res['lbfgs'].get('iters')} iterations at {res['lbfgs'].get('size')}\n")
        lines.append(_md_table(res["lbfgs"]["rows"], [
            ("impl", "impl"), ("wall s", "wall_s"), ("iterations", "iterations"), ("evaluations", "evaluations"),
            ("in evaluations s", "eval_total_s"), ("overhead s", "overhead_s"), ("final loss", "final_loss"),
            ("stop", "stop")]))
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
    if name == "lbfgs" and result.get("time_ratio") is not None:
        return f"wall time x{result['time_ratio']:.2f}"
    if name == "transfer" and "per_evaluation_s" in result:
        return f"{result['per_evaluation_s'] * 1e3:.2f} ms per evaluation"
    return ""
