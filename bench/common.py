"""Shared pieces of the nstyle-vs-PyTorch benchmarks: the machine, the rival, timing, memory, output.

Both sides get the same float32 weights, the same images and the same loss (content relu4_2,
Gram losses at relu1_1..relu5_1 with w_l = 1/5, alpha = 1, beta = 1e3, average pooling). The PyTorch side
is what a careful user would write: torch.nn.functional, in-place ReLU, autograd for the gradient with
respect to the pixels only (weights do not require grad), targets computed under no_grad.
"""
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nstyle  # noqa: E402
from nstyle.cpu import threads  # noqa: E402
from nstyle.model.arch import CONV_SHAPES, LAYER_NAMES  # noqa: E402
from tests.torch_reference import torch_objective as reference_objective  # noqa: E402

CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
ALPHA, BETA = 1.0, 1e3
# bench/results/, unless NSTYLE_BENCH_RESULTS names another folder (bench/reproduce.py's fresh runs)
RESULTS = Path(os.environ.get("NSTYLE_BENCH_RESULTS") or ROOT / "bench" / "results")


# --- the machine --------------------------------------------------------------------------------------

def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return [f for f in ("avx2", "fma", "avx512f") if f in flags]
    except OSError:
        pass
    return []


def blas_info():
    try:
        from threadpoolctl import threadpool_info  # bench-only helper, if installed
        for entry in threadpool_info():
            if entry.get("user_api") == "blas" and "numpy" in entry.get("filepath", ""):
                return f"{entry['internal_api']} {entry['version']} ({entry.get('architecture')})"
    except Exception:
        pass
    return "unknown"


def machine(torch=None):
    info = {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": threads.available_cores(),
            "threads": threads.num_threads(), "python": platform.python_version(),
            "numpy": np.__version__, "blas": blas_info(), "nstyle": getattr(nstyle, "__version__", "0.1.0")}
    import scipy
    info["scipy"] = scipy.__version__
    if torch is not None:
        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    info["load_average"] = list(os.getloadavg())
    return info


def import_torch():
    import torch
    torch.set_num_threads(threads.num_threads())
    return torch


# --- weights and images -----------------------------------------------------------------------------

def vgg_params(weights=None, seed=0, depth="conv5_1"):
    """Real VGG-19 widths. From a weights file when given, else seeded He-initialised random weights."""
    if weights:
        from nstyle.weights.store import load_params
        params = load_params(weights)
    else:
        rng = np.random.default_rng(seed)
        params = {}
        for name, (o, c, kh, kw) in CONV_SHAPES.items():
            std = np.sqrt(2.0 / (9 * c))
            params[name] = ((rng.standard_normal((o, c, kh, kw)) * std).astype(np.float32),
                            (rng.standard_normal(o) * 0.1).astype(np.float32))
    keep = [n for n in CONV_SHAPES if LAYER_NAMES.index(n) <= LAYER_NAMES.index(depth)]
    return {n: (np.asarray(params[n][0], np.float32), np.asarray(params[n][1], np.float32)) for n in keep}


def images(size, seed=1, content=None, style=None):
    """(content, style, start) as (1, 3, size, size) float32 network-space arrays."""
    rng = np.random.default_rng(seed)
    out = []
    for path in (content, style):
        if path:
            from PIL import Image
            img = Image.open(path).convert("RGB").resize((size, size), Image.LANCZOS)
            out.append(nstyle.preprocess(img).astype(np.float32))
        else:
            out.append(rng.uniform(-110, 130, size=(1, 3, size, size)).astype(np.float32))
    start = out[0] + rng.normal(0, 10, size=out[0].shape).astype(np.float32)
    return out[0], out[1], start


# --- the two objectives --------------------------------------------------------------------------------

def nstyle_objective(params, content, style):
    vgg = nstyle.VGG19(params, pooling="avg")
    obj = nstyle.StyleObjective(vgg, content=content, styles=[style], content_weight=ALPHA, style_weight=BETA,
                                content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS)
    return obj.value_and_grad


def torch_objective(torch, params, content, style):
    """value_and_grad(x numpy) -> (float, numpy gradient): tests/torch_reference.py's objective, ReLU in
    place, through torch autograd."""
    tp = {k: (torch.from_numpy(w), torch.from_numpy(b)) for k, (w, b) in params.items()}
    loss = reference_objective(torch, tp, torch.from_numpy(content), [torch.from_numpy(style)], [1.0],
                               CONTENT_LAYERS, STYLE_LAYERS, [1.0 / len(STYLE_LAYERS)] * len(STYLE_LAYERS),
                               ALPHA, BETA, 0.0, inplace=True)

    def value_and_grad(x_np):
        x = torch.from_numpy(x_np).requires_grad_(True)
        total = loss(x)
        total.backward()
        return float(total.detach()), x.grad.numpy()

    return value_and_grad


# --- timing and memory ----------------------------------------------------------------------------------

def clock(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


def median(values):
    return float(statistics.median(values))


def peak_rss_mb():
    """Peak resident set size of this process so far, in MB (Linux reports ru_maxrss in kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb():
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def reset_peak_rss():
    """Let VmHWM restart from the current RSS (Linux >= 4.0); returns False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def vm_hwm_mb():
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def write_outputs(stem, data, markdown):
    RESULTS.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(data, indent=2) + "\n"), (".md", markdown)):
        path = RESULTS / (stem + suffix)
        tmp = path.with_suffix(suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return RESULTS / (stem + ".md")


def machine_line(info):
    torch_part = f", torch {info['torch']} ({info.get('torch_threads')} threads)" if "torch" in info else ""
    return (f"{info['cpu']} ({', '.join(info['cpu_flags'])}), {info['cores']} cores, {info['threads']} threads; "
            f"Python {info['python']}, NumPy {info['numpy']} with {info['blas']}, SciPy {info['scipy']}{torch_part}; "
            f"load average at start {info['load_average'][0]:.2f}")
