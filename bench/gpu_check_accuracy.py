"""The accuracy sections of bench/gpu_check.py: ops, objective, gradcheck64 (see its docstring).

The GPU ops and the GPU engine run on the rig's arrays (CuPy; NumPy in a dry run, their kernels
emulated); the references are the reference ops and the CPU engine on NumPy in float64.
"""
import numpy as np
from gpu_rig import ALPHA, BETA, CONTENT_LAYERS, STYLE_LAYERS, Problem, conv_setup, nstyle_eval, torch_eval

from nstyle import backend
from nstyle.gpu import conv as conv_gpu
from nstyle.gpu.conv import conv2d_backward_gpu, conv2d_forward_gpu
from nstyle.gpu.pool import (
    avg_pool2d_backward_gpu,
    avg_pool2d_forward_gpu,
    max_pool2d_backward_gpu,
    max_pool2d_forward_gpu,
)
from nstyle.gpu.relu import relu_backward_gpu, relu_forward_gpu
from nstyle.model.gradcheck import directional_check, numerical_vjp, random_image, random_vgg_params, rel_error
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19
from nstyle.reference import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    conv2d_backward,
    conv2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
    relu_backward,
    relu_forward,
)

GPU_POOLS = {"avg": (avg_pool2d_forward_gpu, avg_pool2d_backward_gpu),
             "max": (max_pool2d_forward_gpu, max_pool2d_backward_gpu)}


# --- ops -------------------------------------------------------------------------------------------

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
                    with conv_setup(lowering, band_rows=3 if bands == "small bands" else None):
                        out, cache = conv2d_forward_gpu(*(rig.to_dev(a.astype(dtype)) for a in (x, wt, b)), s, p)
                        dx, dw, db = conv2d_backward_gpu(rig.to_dev(dout.astype(dtype)), cache, weight_grads=True)
                    case = f"{label}, {lowering}, {bands}, x{n}x{c}x{h}x{w} w{o}x{c}x{k}x{k}"
                    for name, got, want in (("conv fwd", out, ref), ("conv dx", dx, rdx), ("conv dw", dw, rdw),
                                            ("conv db", db, rdb)):
                        add(name, case, dtype, rel_error(backend.to_host(got), want), tol)
        x = rng.standard_normal(act_shape)
        x[0, 0, 0, :2] = 0.0
        ref, ref_mask = relu_forward(x)
        dout = rng.standard_normal(x.shape)
        ref_dx = relu_backward(dout, ref_mask)
        out, mask = relu_forward_gpu(rig.to_dev(x.astype(dtype)))
        dx = relu_backward_gpu(rig.to_dev(dout.astype(dtype)), mask)
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
                out, cache = GPU_POOLS[kind][0](rig.to_dev(x.astype(dtype)), k, s)
                dx = GPU_POOLS[kind][1](rig.to_dev(dout.astype(dtype)), cache)
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
            out, cache = conv2d_forward_gpu(xd, wd, bd, s, p)
            dout = rng.standard_normal(out.shape)
            dx, dw, db = (backend.to_host(g) for g in conv2d_backward_gpu(rig.to_dev(dout), cache, weight_grads=True))
            tag = f"conv2d k{k} s{s} p{p} {lowering}"
            fwd_x = on_dev(lambda z: conv2d_forward_gpu(z, wd, bd, s, p)[0])
            fwd_w = on_dev(lambda z: conv2d_forward_gpu(xd, z, bd, s, p)[0])
            fwd_b = on_dev(lambda z: conv2d_forward_gpu(xd, wd, z, s, p)[0])
            add(tag + " dx", x.shape, rel_error(dx, numerical_vjp(fwd_x, x, dout)))
            add(tag + " dw", wt.shape, rel_error(dw, numerical_vjp(fwd_w, wt, dout)))
            add(tag + " db", b.shape, rel_error(db, numerical_vjp(fwd_b, b, dout)))
    x = rng.standard_normal((2, 3, 5, 7))
    x[np.abs(x) < 1e-3] = 0.5
    out, mask = relu_forward_gpu(rig.to_dev(x))
    dout = rng.standard_normal(out.shape)
    got = backend.to_host(relu_backward_gpu(rig.to_dev(dout), mask))
    add("relu", x.shape, rel_error(got, numerical_vjp(on_dev(lambda z: relu_forward_gpu(z)[0]), x, dout)))
    for kind in ("avg", "max"):
        name, (fwd, bwd) = f"{kind}_pool2d", GPU_POOLS[kind]
        for k, s in ((2, 2), (3, 2)):
            x = rng.permutation(2 * 3 * 7 * 9).reshape(2, 3, 7, 9) * 0.01
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
        with conv_setup(lowering):
            vgg = VGG19(params, pooling=pooling, device=rig.device, dtype=np.float64, engine="gpu")
            obj = StyleObjective(vgg, content=random_image(orng, h, w), styles=styles, style_blend=[0.3, 0.7],
                                 content_weight=1.0, style_weight=1e3, tv_weight=1e-2)
            x = random_image(orng, h, w)
            _, g = nstyle_eval(rig, obj, rig.to_dev(x))

            def value(z, obj=obj):
                return obj.value(rig.to_dev(z))
            err = directional_check(value, backend.to_host(g), x, orng, eps=1e-3)
        add(f"objective ({pooling} pool, {lowering}, directional, on the device)", x.shape, err, tol=1e-6)
    r["ok"] = all(row["ok"] for row in rows)
    worst = max(rows, key=lambda row: row["rel_error"] / row["tol"])
    ctx.log(f"gradcheck64: {sum(row['ok'] for row in rows)}/{len(rows)} pass; "
            f"worst {worst['op']} {worst['rel_error']:.1e}")
    return r
