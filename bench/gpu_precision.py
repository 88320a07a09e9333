"""Follow-up device check: how far is each float32 gradient from a float64 one, and does TF32 pay?

The first device run (bench/gpu_check.py) found nstyle's and PyTorch's float32 gradients at 1024-2048
differing by ~1e-2 in the max norm while the losses agreed to ~1e-9. This script measures each float32
gradient (nstyle im2col, nstyle Winograd, PyTorch/cuDNN) against PyTorch's float64 gradient of the same
objective, in the max norm and the 2-norm, and times nstyle's im2col and Winograd lowerings with TF32
on and off beside PyTorch's.

    PYTHONPATH=. python bench/gpu_precision.py --out DIR [--size 1024] [--dry-run]
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gpu_rig import VGG_WIDTHS, Problem, Rig, median_time, nstyle_eval, torch_eval  # noqa: E402

from nstyle import backend  # noqa: E402
from nstyle.gpu import conv as conv_gpu  # noqa: E402
from nstyle.model.gradcheck import rel_error  # noqa: E402


def norms(g, ref):
    g, ref = np.asarray(g, np.float64), np.asarray(ref, np.float64)
    d = g - ref
    # share of pixels whose error exceeds 1e-3 of the largest reference entry: few -> isolated kinks
    frac = float((np.abs(d) > 1e-3 * np.abs(ref).max()).mean())
    return {"max_norm": rel_error(g, ref), "two_norm": float(np.linalg.norm(d) / np.linalg.norm(ref)),
            "share_above_1e-3": frac}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--time-sizes", default="1024,2048")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rig = Rig(args.dry_run, print)
    torch = rig.torch
    size = 24 if args.dry_run else args.size
    widths = None if args.dry_run else VGG_WIDTHS
    results = {"device": "dry run" if args.dry_run else torch.cuda.get_device_name(), "size": size}

    def save():
        with open(os.path.join(args.out, "gpu_precision.json"), "w") as fh:
            json.dump(results, fh, indent=1)

    rig.set_tf32(False)
    prob = Problem(rig, size, size, widths, seed=5)
    t64 = prob.torch_objective(torch.float64)
    x64 = torch.tensor(prob.x, dtype=torch.float64, device=rig.tdev, requires_grad=True)
    f64, g64 = torch_eval(rig, t64, x64)
    g64 = g64.cpu().numpy()
    del t64, x64
    rig.free()
    rows = {}
    t32 = prob.torch_objective()
    x32 = torch.tensor(prob.x, device=rig.tdev, requires_grad=True)
    f, g = torch_eval(rig, t32, x32)
    rows["torch float32 (cuDNN)"] = dict(norms(g.cpu().numpy(), g64), loss_rel=abs(f - f64) / abs(f64))
    del t32, x32
    rig.free()
    for lowering in conv_gpu.LOWERINGS:
        conv_gpu.set_lowering(lowering)
        obj = prob.nstyle_objective()
        f, g = nstyle_eval(rig, obj, rig.to_dev(prob.x))
        rows[f"nstyle float32 ({lowering})"] = dict(norms(backend.to_host(g), g64), loss_rel=abs(f - f64) / abs(f64))
        del obj
        rig.free()
    conv_gpu.set_lowering("im2col")
    obj = prob.nstyle_objective(np.float64)
    f, g = nstyle_eval(rig, obj, rig.to_dev(prob.x.astype(np.float64)))
    rows["nstyle float64 (im2col)"] = dict(norms(backend.to_host(g), g64), loss_rel=abs(f - f64) / abs(f64))
    del obj
    rig.free()
    results["gradient_vs_torch_float64"] = rows
    save()
    for name, r in rows.items():
        print(f"{name:28s} max-norm {r['max_norm']:.2e}  2-norm {r['two_norm']:.2e}  "
              f"share>1e-3 {r['share_above_1e-3']:.2e}  loss {r['loss_rel']:.1e}", flush=True)

    timing = []
    sizes = [16, 24] if args.dry_run else [int(s) for s in args.time_sizes.split(",")]
    for n in sizes:
        p = Problem(rig, n, n, widths, seed=6)
        for tf32 in (False, True):
            rig.set_tf32(tf32)
            row = {"size": n, "tf32": tf32}
            for lowering in conv_gpu.LOWERINGS:
                conv_gpu.set_lowering(lowering)
                obj = p.nstyle_objective()
                xd = rig.to_dev(p.x)
                row[f"nstyle_{lowering}_s"] = median_time(lambda obj=obj, xd=xd: nstyle_eval(rig, obj, xd), 10, 2)[0]
                del obj, xd
                rig.free()
            tl = p.torch_objective()
            xt = torch.tensor(p.x, device=rig.tdev, requires_grad=True)
            row["torch_s"] = median_time(lambda tl=tl, xt=xt: torch_eval(rig, tl, xt), 10, 3)[0]
            del tl, xt
            rig.free()
            timing.append(row)
            results["timing"] = timing
            save()
            print(f"{n} tf32={tf32}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in row.items()
                                                  if k.endswith("_s")), flush=True)
    rig.set_tf32(False)
    conv_gpu.set_lowering("im2col")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"done in {time.time() - t0:.0f} s")
