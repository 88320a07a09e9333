"""The optimizer sections of bench/gpu_check.py: optimizer and to_target (see its docstring).

optimizer   at 1024: 100 iterations of nstyle's own L-BFGS-B (the whole run's wall time, and the time
            outside objective evaluations per iteration), and a few iterations with SciPy's (its cost per
            iteration, one-off bound setup included): the issue's "optimizer cost per iteration" and
            "100 iterations at 1024" targets
to_target   at 512, 1024, 2048: PyTorch with torch.optim.LBFGS(line_search_fn="strong_wolfe") on the
            device, pixels clamped to the box after each step, runs N iterations: its final loss L (at
            the final, clamped image); then nstyle with its own L-BFGS-B and nstyle with SciPy's, from the
            same start on the same objective and weights, each stopped by its callback at the first
            iteration whose loss is <= L (capped in iterations and seconds): time to L, iterations,
            evaluations

PyTorch's recipe is neural-style-pt's (lr 1, history 100, tolerances -1 so that only the iteration
count stops it) with one LBFGS step per iteration (max_iter=1), so that the clamp can follow each step:
each step evaluates once at its (clamped) start and once or more in its line search. nstyle's runs use
the bounds of its own optimizers (L-BFGS-B: every evaluated point is in the box).
"""
import time

import numpy as np
from gpu_rig import Problem, TimedObjective, nstyle_eval, ratio

import nstyle
from nstyle.app.files.imageio import pixel_bounds

LBFGS_IMPLS = ("nstyle", "scipy")


def _nstyle_run(ctx, obj, x0, impl, iters, target=None, seconds=None):
    """nstyle.lbfgs(lbfgs_impl=impl) on ``obj`` from x0 for ``iters`` iterations -- or, given ``target``,
    until the first iteration whose loss is <= target -- stopped after ``seconds`` at the latest. A row:
    wall time, time in evaluations, the rest per iteration, iterations, evaluations, loss, reached."""
    rig = ctx.rig
    timed = TimedObjective(rig, obj)
    state = {"reached": None, "capped": False}
    t0 = time.perf_counter()

    def callback(rec, _get_x):
        if target is not None and rec["loss"] <= target:
            state["reached"] = {"seconds": time.perf_counter() - t0, "iterations": rec["iter"],
                                "evaluations": rec["evaluations"], "loss": rec["loss"]}
            return True
        if seconds is not None and time.perf_counter() - t0 > seconds:
            state["capped"] = True
            return True
        return False

    res = nstyle.lbfgs(timed, x0, iters=iters, callback=callback, impl=impl)
    wall = time.perf_counter() - t0
    in_evals = sum(timed.seconds)
    row = {"impl": f"nstyle + {impl}", "wall_s": wall, "iterations": res.iterations, "evaluations": res.evaluations,
           "eval_total_s": in_evals, "optimizer_s": wall - in_evals,
           "optimizer_per_iteration_s": (wall - in_evals) / max(1, res.iterations),
           "final_loss": res.loss, "stop": "time cap" if state["capped"] else res.stop}
    if target is not None:
        reached = state["reached"]
        row.update({"target_loss": target, "reached": reached is not None,
                    "time_to_target_s": reached["seconds"] if reached else None,
                    "iterations_to_target": reached["iterations"] if reached else None,
                    "evaluations_to_target": reached["evaluations"] if reached else None})
    verdict = "" if target is None else f", target {target:.6g} {'reached' if state['reached'] else 'NOT reached'}"
    ctx.log(f"{row['impl']}: {wall:.2f} s, {res.iterations} iterations, {res.evaluations} evaluations "
            f"({in_evals:.2f} s in them; optimizer {1e3 * row['optimizer_per_iteration_s']:.1f} ms per "
            f"iteration), loss {res.loss:.6g}{verdict}")
    return row


def torch_lbfgs(rig, prob, x0, iters, history=100, seconds=None):
    """neural-style-pt's recipe on the rig's torch device (module docstring): returns a row with the wall
    time of ``iters`` steps (fewer if ``seconds`` runs out), evaluations, and the loss at the final image."""
    torch = rig.torch
    tloss = prob.torch_objective()
    lo, hi = (torch.tensor(b, dtype=torch.float32, device=rig.tdev).view(1, 3, 1, 1) for b in pixel_bounds())
    img = torch.tensor(np.asarray(x0, dtype=np.float32), device=rig.tdev)
    img = torch.maximum(torch.minimum(img, hi), lo).requires_grad_(True)
    opt = torch.optim.LBFGS([img], lr=1.0, max_iter=1, history_size=history, tolerance_grad=-1.0,
                            tolerance_change=-1.0, line_search_fn="strong_wolfe")
    evals = [0]

    def closure():
        opt.zero_grad()
        loss = tloss(img)
        loss.backward()
        evals[0] += 1
        return loss

    closure()  # warm: cuDNN's autotuning for this size (cudnn.benchmark) stays out of the timed run
    opt.zero_grad()
    evals[0] = 0
    rig.tsync()
    t0 = time.perf_counter()
    done = 0
    while done < iters and (seconds is None or time.perf_counter() - t0 < seconds):
        opt.step(closure)
        with torch.no_grad():
            img.copy_(torch.maximum(torch.minimum(img, hi), lo))
        done += 1
    rig.tsync()
    wall = time.perf_counter() - t0
    with torch.no_grad():
        final = float(tloss(img).item())
    return {"impl": "torch.optim.LBFGS", "wall_s": wall, "iterations": done,
            "evaluations": evals[0], "final_loss": final, "history": history,
            "stop": "done" if done >= iters else "time cap"}


# --- optimizer -------------------------------------------------------------------------------------

def section_optimizer(ctx):
    rig, r, cfg = ctx.rig, ctx.result, ctx.cfg
    n = cfg["lbfgs_size"]
    rig.set_tf32(False)
    ctx.need(cfg["optimizer_need_s"], "the optimizer runs")
    prob = Problem(rig, n, n, cfg["widths"], seed=9)
    obj = prob.nstyle_objective()
    x0 = prob.content  # stylize's default start
    rows = r.setdefault("rows", [])
    r["size"], r["iters"] = n, cfg["lbfgs_iters"]
    nstyle_eval(rig, obj, rig.to_dev(x0))  # warm: this size's first backward (memory pool, cuBLAS)
    own = _nstyle_run(ctx, obj, x0, "nstyle", cfg["lbfgs_iters"], seconds=cfg["optimizer_caps"][0])
    rows.append(own)
    r["whole_run_s"] = own["wall_s"] if own["iterations"] >= cfg["lbfgs_iters"] else None
    ctx.need(5 + cfg["optimizer_caps"][1], "SciPy's iterations")
    rows.append(_nstyle_run(ctx, obj, x0, "scipy", cfg["scipy_iters"], seconds=cfg["optimizer_caps"][1]))
    r["per_iteration_ms"] = {row["impl"]: 1e3 * row["optimizer_per_iteration_s"] for row in rows}
    del obj
    rig.free()
    return r


# --- to_target -------------------------------------------------------------------------------------

def section_to_target(ctx):
    rig, r, cfg = ctx.rig, ctx.result, ctx.cfg
    rig.set_tf32(False)
    rows = r.setdefault("rows", [])
    r["iters"], r["history"], r["sizes"] = cfg["target_iters"], cfg["torch_history"], list(cfg["target_sizes"])
    deadline = time.perf_counter() + min(cfg["to_target_s"], ctx.budget.left() - cfg["to_target_reserve_s"])
    for size in cfg["target_sizes"]:
        caps = cfg["target_caps"][size]  # seconds: torch, nstyle's own, SciPy's
        left = deadline - time.perf_counter()
        if left < cfg["target_min_s"][size]:
            r.setdefault("skipped", []).append(size)
            ctx.log(f"to_target: {size} skipped ({left:.0f} s left of the section's allotment)")
            continue
        scale = min(1.0, left / sum(caps) + 0.05)
        rig.free()
        prob = Problem(rig, size, size, cfg["widths"], seed=11)
        x0 = prob.content
        torch_row = torch_lbfgs(rig, prob, x0, cfg["target_iters"], cfg["torch_history"], seconds=scale * caps[0])
        target = torch_row["final_loss"]
        torch_row.update({"size": size, "target_loss": target, "reached": True, "time_to_target_s": torch_row["wall_s"],
                          "iterations_to_target": torch_row["iterations"],
                          "evaluations_to_target": torch_row["evaluations"]})
        rows.append(torch_row)
        ctx.log(f"to_target {size}: torch {torch_row['iterations']} iterations in {torch_row['wall_s']:.2f} s "
                f"({torch_row['evaluations']} evaluations), final loss {target:.6g}")
        rig.free()
        obj = prob.nstyle_objective()
        nstyle_eval(rig, obj, rig.to_dev(x0))  # warm, as PyTorch was
        cap_iters = cfg["target_iters"] * cfg["target_iter_factor"]
        for impl, cap in zip(LBFGS_IMPLS, caps[1:]):
            seconds = max(1.0, min(scale * cap, deadline - time.perf_counter()))
            row = _nstyle_run(ctx, obj, x0, impl, cap_iters, target=target, seconds=seconds)
            row["size"] = size
            row["time_ratio"] = ratio(row["time_to_target_s"], torch_row["wall_s"])
            rows.append(row)
        obj = prob = None
        rig.free()
    return r
