"""Tables, CSV and plot of the per-layer race (bench/bench_layers.py), from its JSON.

    python3 bench/layers_report.py layers.json [--out DIR]      # rewrite layers.md/.csv/.png from it

The markdown says where the time goes: by group of layers (the table for a README), then layer by
layer, each cell "forward / input gradient" in milliseconds, then the agreement checks; every table is
stamped with the command, the machine, the date and the commit. The sum check compares the sum of
the rows (layers + losses with their gradients) with the whole evaluation measured in the same
processes and says where they differ by more than SUM_TOLERANCE.
"""
import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layers_common as lc  # noqa: E402

SUM_TOLERANCE = 0.10
RIVALS = ("torch", "tf", "jax")


def _median(values):
    return float(statistics.median(values)) if values else float("nan")


def network_times(name, kind, index, row, plan):
    """(forward, backward) of a fast-engine layer as the network runs it (layers_nstyle.py's docstring):
    ReLUs forward inside their convolution's epilogue; backward, a ReLU's mask inside the backward of
    the layer after it, except for the last ReLU; convolutions and pools with their fused variants."""
    fused_f, fused_b = row.get("fused_forward_s", row["forward_s"]), row.get("fused_backward_s", row["backward_s"])
    if kind == "relu":
        return 0.0, (row["backward_s"] if index == len(plan) - 1 else 0.0)
    return (fused_f if kind == "conv" else row["forward_s"]), fused_b


def summarise(results, frameworks, sizes):
    """{framework: {size: {...}}}: medians over every round's timed calls, the sums and their ratio."""
    plan = lc.layer_plan()
    out = {}
    for fw in frameworks:
        for size in sizes:
            rs = [r for r in results if r["framework"] == fw and r["size"] == size]
            ok = [r for r in rs if "error" not in r]
            if not rs:
                continue
            if not ok:
                out.setdefault(fw, {})[str(size)] = {"status": "failed", "why": rs[-1]["error"]}
                continue
            layers, refused = {}, []
            for i, (kind, name, _, _) in enumerate(plan):
                rows = [x for r in ok for x in r["layers"] if x["layer"] == name]
                checks = {k: max(x["check"][k] for x in rows) for k in rows[0]["check"]}
                good = [x for x in rows if x["ok"]]
                if len(good) < len(rows):
                    refused.append(name)
                    layers[name] = {"kind": kind, "ok": False, "check": checks}
                    continue
                row = {"kind": kind, "ok": True, "check": checks, "input_shape": rows[0]["input_shape"],
                       "forward_s": _median([t for x in good for t in x["forward_s"]]),
                       "backward_s": _median([t for x in good for t in x["backward_s"]])}
                if "fused" in good[0]:
                    row["fused_forward_s"] = _median([t for x in good for t in x["fused"]["forward_s"]])
                    row["fused_backward_s"] = _median([t for x in good for t in x["fused"]["backward_s"]])
                row["network_forward_s"], row["network_backward_s"] = network_times(name, kind, i, row, plan)
                layers[name] = row
            loss_rows = [r["losses"] for r in ok]
            losses = {"ok": all(x["ok"] for x in loss_rows),
                      "check": {k: max(x["check"][k] for x in loss_rows) for k in loss_rows[0]["check"]}}
            if losses["ok"]:
                losses["values_s"] = _median([t for x in loss_rows for t in x["values_s"]])
                losses["values_and_grads_s"] = _median([t for x in loss_rows for t in x["values_and_grads_s"]])
            s = {"status": "ok" if not refused and losses["ok"] else "refused", "refused": refused,
                 "layers": layers, "losses": losses, "rounds": len(ok),
                 "whole_s": _median([t for r in ok for t in r["whole"]["times_s"]]),
                 "whole_loss": ok[0]["whole"]["loss"], "peak_rss_mb": max(r["peak_rss_mb"] for r in ok)}
            if s["status"] == "ok":
                timed = list(layers.values())
                s["sum_s"] = sum(x["forward_s"] + x["backward_s"] for x in timed) + losses["values_and_grads_s"]
                s["ratio"] = s["sum_s"] / s["whole_s"]
                if any("fused_forward_s" in x for x in timed):
                    s["network_sum_s"] = (sum(x["network_forward_s"] + x["network_backward_s"] for x in timed)
                                          + losses["values_and_grads_s"])
                    s["network_ratio"] = s["network_sum_s"] / s["whole_s"]
            out.setdefault(fw, {})[str(size)] = s
    return out


# --- markdown -------------------------------------------------------------------------------------------

def stamp(d):
    cpu = d["cpu"]
    flags = ", ".join(f for f, on in cpu["flags"].items() if on) or "no AVX2/AVX-512"
    v = d["versions"]
    vers = ", ".join(f"{k} {v[k]}" for k in ("nstyle", "numpy", "scipy", "torch", "tensorflow-cpu", "jax")
                     if k in v)
    load = f"load average {d['load_average_before']} before, {d.get('load_average_after')} after"
    pools = next((r.get("blas", {}).get("threadpoolctl") for r in d.get("results", [])
                  if r.get("framework") == "nstyle" and "blas" in r), None)
    blas = [f"{p['internal_api']} {p['version']} ({p.get('architecture')} kernels)" for p in pools or []
            if isinstance(p, dict) and p.get("user_api") == "blas"]
    return (f"Command: `{d['command']}`. Machine: {cpu['model']} ({flags}), {cpu['logical_cpus']} logical CPUs; "
            f"{d['threads']} threads per framework. Date: {d['date']}, commit {str(d.get('repo_commit'))[:10]}. "
            f"{vers}" + (f"; NumPy's BLAS {', '.join(blas)}" if blas else "") + f"; {load}.")


def ms(v):
    return "" if v is None or math.isnan(v) else f"{v * 1e3:.2f}"


def _fb(row, prefix=""):
    if row is None:
        return "not run"
    if not row.get("ok", True):
        return "refused"
    return f"{ms(row[prefix + 'forward_s'])} / {ms(row[prefix + 'backward_s'])}"


def groups():
    """[(label, [layer names])]: the convolutions block by block, then all ReLUs, all pools."""
    plan = lc.layer_plan()
    out = []
    for block, n, width in lc.VGG19_BLOCKS:
        names = [nm for k, nm, _, _ in plan if k == "conv" and nm.startswith(f"conv{block}_")]
        if names:
            out.append((f"conv{block}_x ({len(names)} x {width} ch)" if len(names) > 1 else names[0], names))
    out.append((f"ReLUs ({sum(k == 'relu' for k, *_ in plan)})", [nm for k, nm, _, _ in plan if k == "relu"]))
    out.append((f"pools ({sum(k == 'pool' for k, *_ in plan)})", [nm for k, nm, _, _ in plan if k == "pool"]))
    return out


def _group_time(s, names, prefix=""):
    if s is None or s.get("status") != "ok":
        return None
    return sum(s["layers"][n][prefix + "forward_s"] + s["layers"][n][prefix + "backward_s"] for n in names)


def _row_time(ok, f, names, prefix=""):
    """A group's forward + backward (names None: the losses with their gradients), None if not timed."""
    if f not in ok:
        return None
    return ok[f]["losses"]["values_and_grads_s"] if names is None else _group_time(ok[f], names, prefix)


def _ratio(ours, rivals):
    rivals = [r for r in rivals if r is not None and not math.isnan(r)]
    return f"{ours / min(rivals):.2f}" if ours and rivals and min(rivals) > 0 else ""


def size_tables(d, size):
    fws = [f for f in d["summary"] if str(size) in d["summary"][f]]
    S = {f: d["summary"][f][str(size)] for f in fws}
    labels = d["labels"]
    ok = {f: s for f, s in S.items() if s.get("status") == "ok"}
    has_net = "nstyle" in ok and "network_sum_s" in ok["nstyle"]
    cols = [labels[f] for f in fws] + (["nstyle as the network runs it"] if has_net else [])
    rivals = [f for f in fws if f in RIVALS]
    lines = [f"**{size} x {size}**, forward + input gradient in ms (median):", "",
             "| layers | " + " | ".join(cols) + " | nstyle / fastest rival | share of nstyle's sum |",
             "| --- " * (len(cols) + 3) + "|"]
    total = ok["nstyle"]["sum_s"] if "nstyle" in ok else None
    rows = groups() + [("losses (values and gradients)", None)]
    for label, names in rows:
        cells = [ms(_row_time(ok, f, names)) if f in ok else S[f]["status"] for f in fws]
        if has_net:
            cells.append(ms(_row_time(ok, "nstyle", names, "network_")))
        ours = _row_time(ok, "nstyle", names)
        share = f"{ours / total:.0%}" if ours is not None and total else ""
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_ratio(ours, [_row_time(ok, f, names) for f in rivals])}"
                     f" | {share} |")
    cells = [ms(ok[f]["sum_s"]) if f in ok else "" for f in fws] + ([ms(ok["nstyle"]["network_sum_s"])] if has_net else [])
    lines.append("| **sum of the rows** | " + " | ".join(cells) + " | | |")
    whole = [ms(S[f]["whole_s"]) if f in ok else "" for f in fws] + ([ms(ok["nstyle"]["whole_s"])] if has_net else [])
    ours_whole = ok["nstyle"]["whole_s"] if "nstyle" in ok else None
    lines.append("| **one whole evaluation** | " + " | ".join(whole) + f" | "
                 f"{_ratio(ours_whole, [ok[f]['whole_s'] for f in rivals if f in ok])} | |")
    ratios = [f"{ok[f]['ratio']:.2f}" if f in ok else "" for f in fws]
    if has_net:
        ratios.append(f"{ok['nstyle']['network_ratio']:.2f}")
    lines += ["| sum / whole | " + " | ".join(ratios) + " | | |", ""]
    # layer by layer
    lines += [f"Layer by layer at {size}, forward / input gradient in ms:", "",
              "| layer | input | " + " | ".join(cols) + " | nstyle / fastest rival |", "| --- " * (len(cols) + 3) + "|"]
    for kind, name, _, _ in lc.layer_plan():
        rows_f = {f: ok[f]["layers"].get(name) if f in ok else None for f in fws}
        shape = next((r["input_shape"] for r in rows_f.values() if r and r.get("ok")), None)
        cells = [_fb(rows_f[f]) for f in fws] + ([_fb(rows_f["nstyle"], "network_")] if has_net else [])
        both = {f: r["forward_s"] + r["backward_s"] for f, r in rows_f.items() if r and r.get("ok")}
        shape_s = f"{shape[1]} x {shape[2]} x {shape[3]}" if shape else ""
        lines.append(f"| {name} | {shape_s} | " + " | ".join(cells)
                     + f" | {_ratio(both.get('nstyle'), [both.get(f) for f in rivals])} |")
    losses = [f"{ms(ok[f]['losses']['values_s'])} / +{ms(ok[f]['losses']['values_and_grads_s'] - ok[f]['losses']['values_s'])}"
              if f in ok else "" for f in fws]
    lines.append("| losses (values / + gradients) | | " + " | ".join(losses + ([losses[fws.index('nstyle')]] if has_net else []))
                 + " | |")
    return lines + [""]


def notes(d):
    out = [f"{d['labels'].get(f, f)}: not installed, skipped" for f in d["skipped"]]
    for f, per in d["summary"].items():
        for size, s in per.items():
            label = d["labels"].get(f, f)
            if s.get("status") == "failed":
                out.append(f"{label} at {size}: failed: {s['why']}")
            elif s.get("status") == "refused":
                bad = s["refused"] + ([] if s["losses"]["ok"] else ["losses"])
                out.append(f"{label} at {size}: refused by the check (not timed): {', '.join(bad)}")
            else:
                for key, what in (("ratio", "layers alone"), ("network_ratio", "as the network runs them")):
                    if key in s and abs(s[key] - 1) > SUM_TOLERANCE:
                        out.append(f"{label} at {size}: the rows ({what}) add up to {s[key]:.2f}x the whole "
                                   f"evaluation, beyond the {SUM_TOLERANCE:.0%} the check allows")
    return out


def markdown(d):
    intro = ("Each layer alone, in its own framework's fresh process, inputs in the framework's layout and in "
             "cache; 'forward / input gradient' per cell; the losses are the content and five Gram losses "
             "with their gradients with respect to the taps. Checked against float64 before timing "
             f"(max-abs relative difference < {d['tolerances']['array_max_abs_rel']:.0e}). nstyle as the network "
             "runs it: ReLUs inside the convolutions' epilogues, each ReLU's mask inside the backward of the "
             "layer after it (bench/layers_nstyle.py).")
    lines = [stamp(d), "", intro, ""]
    for size in d["settings"]["sizes"]:
        lines += size_tables(d, size)
    lines += [("Largest difference from the float64 reference over all layers (forward, input gradient) and "
               "the losses' total:"), "", "| size | framework | forward | input gradient | losses | verdict |",
              "| --- " * 6 + "|"]
    for f, per in d["summary"].items():
        for size, s in per.items():
            if "layers" not in s:
                continue
            ch = [r["check"] for r in s["layers"].values()]
            lines.append(f"| {size} | {d['labels'].get(f, f)} | {max(c['forward'] for c in ch):.1e} | "
                         f"{max(c['backward'] for c in ch):.1e} | {s['losses']['check']['total']:.1e} | "
                         f"{'passed' if s['status'] == 'ok' else 'refused'} |")
    extra = notes(d)
    return "\n".join(lines + ([""] + [f"- {n}" for n in extra] if extra else [])) + "\n"


# --- CSV, plot, files -------------------------------------------------------------------------------------

CSV_FIELDS = ("size", "framework", "layer", "kind", "direction", "median_s", "check_max_abs_rel", "status")


def csv_rows(d):
    for f, per in d["summary"].items():
        for size, s in per.items():
            for name, r in s.get("layers", {}).items():
                for direction in ("forward", "backward", "fused_forward", "fused_backward"):
                    if r.get("ok") and direction + "_s" in r:
                        yield (size, f, name, r["kind"], direction, r[direction + "_s"],
                               r["check"].get(direction, ""), "ok")
                if not r.get("ok"):
                    yield (size, f, name, r["kind"], "", "", max(r["check"].values()), "refused")
            losses = s.get("losses", {})
            for direction in ("values", "values_and_grads"):
                if direction + "_s" in losses:
                    yield (size, f, "losses", "losses", direction, losses[direction + "_s"],
                           losses["check"]["total"], "ok")
            if "whole_s" in s:
                yield (size, f, "whole evaluation", "whole", "forward+backward", s["whole_s"], "", s["status"])
            for key in ("sum_s", "network_sum_s"):
                if key in s:
                    yield (size, f, key[:-2], "sum", "forward+backward", s[key], "", s["status"])


def plot(d, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sizes = d["settings"]["sizes"]
    names = [n for _, n, _, _ in lc.layer_plan()] + ["losses"]
    fig, axes = plt.subplots(len(sizes), 1, figsize=(12, 3.6 * len(sizes)), squeeze=False)
    for ax, size in zip(axes[:, 0], sizes):
        for f, per in d["summary"].items():
            s = per.get(str(size))
            if not s or s.get("status") != "ok":
                continue
            ys = [s["layers"][n]["forward_s"] + s["layers"][n]["backward_s"] for n in names[:-1]]
            ys.append(s["losses"]["values_and_grads_s"])
            ax.plot(range(len(names)), [y * 1e3 for y in ys], "o-", ms=3, label=d["labels"].get(f, f))
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
        ax.set_ylabel("forward + input gradient (ms)")
        ax.set_title(f"{size} x {size}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{d['cpu']['model']}, {d['threads']} threads per framework, {d['date'][:10]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(d, folder, stem="layers"):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.json", folder / f"{stem}.csv", folder / f"{stem}.md"]
    paths[0].write_text(json.dumps(d, indent=1) + "\n")
    with open(paths[1], "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["# " + stamp(d)])
        w.writerow(CSV_FIELDS)
        w.writerows(csv_rows(d))
    paths[2].write_text(markdown(d))
    try:
        plot(d, folder / f"{stem}.png")
        paths.append(folder / f"{stem}.png")
    except ImportError as exc:
        print(f"no plot: {exc}")
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", help="a layers.json written by bench/bench_layers.py")
    ap.add_argument("--out", help="folder for the rewritten files (default: the JSON's folder)")
    args = ap.parse_args()
    d = json.loads(Path(args.json).read_text())
    for p in write(d, args.out or Path(args.json).parent, Path(args.json).stem):
        print(p)


if __name__ == "__main__":
    main()
