"""Small shared helpers for the cross-framework benchmark (bench/bench_rivals.py and bench/rival_*.py).

What lives here: the objective's constants, seeded weights and images (from bench/shared.py, which has
no side effects on import), the VGG-19 layer plan up to relu5_1 that every rival walks, the L-BFGS-B
pixel box, the correctness check, and facts about the machine (CPU model and flags, peak RSS, load
average, thread settings), and the child-process runner.

Not a script: imported by the benchmark. It imports nothing of nstyle but its public API, and no deep
learning framework at all (each rival module imports its own, inside a fresh child process).

Where nstyle comes from: the checkout this file lives in, unless the environment variable NSTYLE_SRC
names another directory holding an ``nstyle`` package (to benchmark a different checkout or snapshot).
"""
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Where the scripts write their tables: bench/results/, unless NSTYLE_BENCH_RESULTS names another folder
# (bench/reproduce.py sends fresh runs there, so that the committed results change only on request).
RESULTS = Path(os.environ.get("NSTYLE_BENCH_RESULTS") or ROOT / "bench" / "results")
NSTYLE_SRC = os.environ.get("NSTYLE_SRC") or str(ROOT)
if NSTYLE_SRC not in sys.path:
    sys.path.insert(0, NSTYLE_SRC)

# --- the objective (nstyle's defaults for the benchmarks): bench/shared.py, re-exported here ------------

from shared import (CONTENT_LAYERS, CONTENT_WEIGHT, MEAN_BGR, STYLE_LAYER_WEIGHT, STYLE_LAYERS,  # noqa: E402, F401
                    STYLE_WEIGHT, VGG19_BLOCKS, images, pixel_box, random_vgg_params)

THREADS = 2
LOSS_TOL = 1e-4  # relative difference of the loss to nstyle's
GRAD_TOL = 1e-3  # max |g - g_ref| / max |g_ref|
FLIP_PIXELS = 0.01  # share of pixels the float64 arbitration lets differ by more (see compare)

# Each framework: (key, label in tables, import name, distributions whose versions are reported).
FRAMEWORKS = (
    ("nstyle", "nstyle", "nstyle", ("numpy", "scipy", "threadpoolctl")),
    ("torch", "PyTorch", "torch", ("torch",)),
    ("tf", "TensorFlow", "tensorflow", ("tensorflow-cpu", "tensorflow", "keras")),
    ("jax", "JAX", "jax", ("jax", "jaxlib")),
)
LABELS = {key: label for key, label, _, _ in FRAMEWORKS}


def layer_plan(last="relu5_1"):
    """[(kind, name, conv shape or None)] through ``last``; kind is "conv", "relu" or "pool".
    Conv shapes are (out, in, 3, 3): nstyle's (and PyTorch's) OIHW weight layout."""
    plan, cin = [], 3
    for block, n_conv, width in VGG19_BLOCKS:
        for i in range(1, n_conv + 1):
            plan.append(("conv", f"conv{block}_{i}", (width, cin, 3, 3)))
            plan.append(("relu", f"relu{block}_{i}", None))
            cin = width
            if plan[-1][1] == last:
                return plan
        plan.append(("pool", f"pool{block}", None))
        if plan[-1][1] == last:
            return plan
    return plan


def vgg_params(seed=0, weights=None):
    """{conv name: (W (O, C, 3, 3) float32, b (O,) float32)} for the convolutions up to relu5_1.

    From a weights file (anything ``nstyle.VGG19.load`` reads) when given, else He-initialised random
    weights of VGG-19's real widths from ``seed`` (``shared.random_vgg_params``: the same in every process)."""
    if not weights:
        return random_vgg_params(seed)
    import nstyle
    loaded = nstyle.VGG19.load(weights, pooling="avg", device="cpu").params
    return {name: (np.ascontiguousarray(np.asarray(loaded[name][0]), dtype=np.float32),
                   np.ascontiguousarray(np.asarray(loaded[name][1]), dtype=np.float32))
            for kind, name, _ in layer_plan() if kind == "conv"}


def lbfgs_bounds(shape):
    """(lower, upper) float64 arrays, one entry per element of a (1, 3, H, W) image in C order."""
    lo, hi = pixel_box()
    per = int(np.prod(shape[2:]))
    return np.repeat(lo, per), np.repeat(hi, per)


# --- the check against nstyle ----------------------------------------------------------------------------

def _diffs(loss, grad, ref_loss, ref_grad):
    grad, ref_grad = np.asarray(grad, np.float64), np.asarray(ref_grad, np.float64)
    scale = max(np.abs(ref_grad).max(), 1e-30)
    off = np.abs(grad - ref_grad) > GRAD_TOL * scale
    return {"loss_rel_diff": abs(float(loss) - float(ref_loss)) / max(abs(float(ref_loss)), 1e-30),
            "grad_rel_diff": float(np.abs(grad - ref_grad).max() / scale),
            "grad_rel_l2": float(np.linalg.norm(grad - ref_grad) / max(np.linalg.norm(ref_grad), 1e-30)),
            "grad_off_pixels": float(off.reshape(off.shape[0], off.shape[1], -1).any(1).mean())}


def compare(loss, grad, ref, strict=False):
    """Does (loss, grad) compute nstyle's objective? ``ref``: the reference .npz's arrays (see below).

    First test, against nstyle's float32 result: relative loss difference < LOSS_TOL and gradient
    max-abs relative difference < GRAD_TOL. Any two float32 implementations can fail the gradient part,
    however right: a pre-activation within rounding of zero lands on different sides of a ReLU in the
    two, and the pixels in that unit's receptive field get a visibly different gradient (measured: a
    patch of 112 of 128 x 128 pixels 8.7e-3 off; nstyle's own float32 gradient is 2.8e-3 (256) and
    9.6e-3 (512) from its float64 one, at such patches). Whether two float32 codes flip the same units
    depends on their order of summation, not on what they compute.
    So, unless ``strict``, a rival that fails only the gradient part is judged against nstyle's float64
    objective instead: it passes when its loss is within LOSS_TOL of it and its gradient within
    GRAD_TOL of it (max-abs relative) at all but FLIP_PIXELS of the pixels. An implementation of
    another objective -- another weighting, normalisation, padding or pooling -- moves the loss or the
    gradient everywhere, not in a few receptive fields."""
    grad = np.asarray(grad)
    if grad.shape != ref["grad"].shape:
        return {"ok": False, "verdict": "refused", "why": f"gradient shape {grad.shape}, expected {ref['grad'].shape}"}
    out = _diffs(loss, grad, ref["loss"], ref["grad"])
    finite = bool(np.isfinite(loss) and np.isfinite(grad).all())
    loss_ok = finite and out["loss_rel_diff"] < LOSS_TOL
    out["ok"] = loss_ok and out["grad_rel_diff"] < GRAD_TOL
    out["verdict"] = "passed" if out["ok"] else "refused"
    if "grad64" in ref:
        out["vs_float64"] = _diffs(loss, grad, ref["loss64"], ref["grad64"])
        out["nstyle_float32_vs_float64"] = _diffs(ref["loss"], ref["grad"], ref["loss64"], ref["grad64"])
        far = out["vs_float64"]
        if loss_ok and not out["ok"] and not strict and far["loss_rel_diff"] < LOSS_TOL \
                and far["grad_off_pixels"] <= FLIP_PIXELS:
            out["ok"], out["verdict"] = True, "passed (float64 arbitration)"
    if not out["ok"]:
        out["why"] = (f"loss rel diff {out['loss_rel_diff']:.2e} (limit {LOSS_TOL:.0e}), grad max-abs rel diff "
                      f"{out['grad_rel_diff']:.2e} (limit {GRAD_TOL:.0e})"
                      + (f"; against nstyle float64 {out['vs_float64']['grad_off_pixels']:.2%} of the pixels beyond "
                         f"that (limit {FLIP_PIXELS:.0%})" if "vs_float64" in out else ""))
    return out


# --- the machine and the process -------------------------------------------------------------------------

def thread_env(n=THREADS):
    """Environment for a child process so that every library starts with n compute threads."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NSTYLE_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS"):
        env[var] = str(n)
    env["TF_NUM_INTEROP_THREADS"] = "1"
    env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={n}"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"  # TensorFlow's start-up chatter
    env["NSTYLE_SRC"] = NSTYLE_SRC
    return env


def pin_cpus(n=THREADS):
    """Restrict this process to n of the CPUs it may use (JAX/XLA size their pools from this mask)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, allowed[:n])
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _cpuinfo_field(field):
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == field:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_info():
    flags = set((_cpuinfo_field("flags") or "").split())
    return {"model": _cpuinfo_field("model name") or platform.processor() or platform.machine(),
            "flags": {f: f in flags for f in ("avx2", "fma", "avx512f")},
            "logical_cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def proc_status_mb(key):
    """A /proc/self/status memory field (VmHWM: peak RSS, VmRSS: current) in MB; NaN off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def blas_info():
    """threadpoolctl's view of the native thread pools loaded in this process (BLAS, OpenMP)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return [{k: v for k, v in pool.items() if k in ("user_api", "internal_api", "version", "num_threads",
                                                       "architecture", "filepath", "threading_layer")}
            for pool in threadpool_info()]


def blas_config():
    """The BLAS as threadpoolctl sees it in this process; where threadpoolctl is missing, what NumPy was
    built against (``numpy.show_config``): at least the library and its version are recorded."""
    pools = blas_info()
    if not isinstance(pools, str):
        return {"threadpoolctl": pools}
    try:
        build = np.show_config(mode="dicts").get("Build Dependencies", {})
    except (TypeError, ValueError):  # NumPy < 1.25 prints instead
        build = "numpy.show_config(mode='dicts') not available"
    return {"threadpoolctl": pools, "numpy_build": build}


def quiet_scipy_blas():
    """Give SciPy's own bundled BLAS one thread; returns the libraries changed.

    L-BFGS-B's vector work is tiny next to an evaluation, but the idle threads of SciPy's OpenBLAS copy
    spin after each call and, on 2 cores, steal time from the framework's threads (measured: PyTorch's
    evaluation 2-3x slower inside scipy.optimize.minimize than outside it). NumPy's BLAS (the one nstyle
    uses) is a separate library and keeps its threads."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return "threadpoolctl not installed: SciPy's BLAS left as it is"
    changed = []
    for lib in ThreadpoolController().lib_controllers:
        if lib.user_api == "blas" and "scipy" in os.path.basename(os.path.dirname(lib.filepath)):
            lib.set_num_threads(1)
            changed.append(lib.filepath)
    return changed


def versions():
    """Installed versions of every framework and helper, read from package metadata (nothing imported)."""
    from importlib import metadata
    out = {"python": platform.python_version()}
    names = {d for _, _, _, dists in FRAMEWORKS for d in dists} | {"nstyle", "matplotlib"}
    for name in sorted(names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def source_commit():
    """The commit checked out in this repository (read-only ``git rev-parse``), or None."""
    import subprocess
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def spawn_child(cmd, threads, timeout, label, mark):
    """Run one benchmark child (``cmd``: a script with --child ...) in a fresh process with ``threads``
    compute threads (:func:`thread_env`); returns the JSON of its last line starting with ``mark``, or
    ``{**label, "error": why}``."""
    import json
    import subprocess
    try:
        proc = subprocess.run(cmd, env=thread_env(threads), capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return {**label, "error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(mark)]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        return {**label, "error": f"exit {proc.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1][len(mark):])


def median(values):
    return float(statistics.median(values)) if values else float("nan")
