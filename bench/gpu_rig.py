"""The machine under test in bench/gpu_check.py, and the two objectives it compares.

``Rig`` says where each side runs -- nstyle's GPU engine on CuPy and the rival on CUDA PyTorch, or in a
dry run the same engine on NumPy (its kernels and cuBLAS calls emulated) and PyTorch on the CPU -- and
how to synchronise, free memory and read peak memory on each. ``Problem`` builds nstyle's and PyTorch's objective from the same random
weights and images. ``Context`` is what each section of the check gets, ``conv_setup`` the GPU
convolution settings a section runs under.
"""
import contextlib
import gc
import importlib.util
import os
import statistics
import time
import tracemalloc

import numpy as np

from nstyle import backend
from nstyle.gpu import conv as conv_gpu
from nstyle.model.gradcheck import random_image, random_vgg_params
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VGG_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)
CONTENT_LAYERS = ("relu4_2",)
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
ALPHA, BETA = 1.0, 1e3
MB = 1 << 20


def load_torch_reference():
    spec = importlib.util.spec_from_file_location("nstyle_torch_reference",
                                                  os.path.join(ROOT, "tests", "torch_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SkipRest(Exception):
    """Raised inside a section when the budget runs out: the section keeps what it measured."""


class Context:
    """What a section gets: the arguments, the rig, the time budget, the log, the run's sizes (cfg) and
    its result dict, which the section fills as it goes so that a budget stop keeps what was measured."""

    def __init__(self, args, rig, budget, log, cfg):
        self.args, self.rig, self.budget, self.log, self.cfg = args, rig, budget, log, cfg
        self.result = None

    def need(self, seconds, what):
        if self.budget.left() < seconds:
            raise SkipRest(f"budget: {self.budget.left():.0f} s left, {what} needs ~{seconds:.0f} s")


@contextlib.contextmanager
def conv_setup(lowering, band_rows=None):
    """Run the block with this GPU convolution lowering and, if given, bands of at most ``band_rows``
    output rows (tile rows for Winograd) -- the multi-band code on small maps. Restored after."""
    before = conv_gpu.set_lowering(lowering), conv_gpu.set_band_rows(band_rows)
    try:
        yield
    finally:
        conv_gpu.set_lowering(before[0])
        conv_gpu.set_band_rows(before[1])


def mb(nbytes):
    return None if nbytes is None else round(nbytes / MB, 1)


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


class Rig:
    """Where each side runs: nstyle's GPU engine on CuPy (or, dry, on NumPy, its kernels emulated) and the
    PyTorch rival on CUDA (or, dry, on the CPU)."""

    def __init__(self, dry, log):
        self.dry, self.log = dry, log
        self.device = "cpu" if dry else "gpu"
        self.xp = np if dry else backend.cupy_module()
        self._torch = None
        self._tref = None
        self.broken = set()  # code paths the smoke test found failing on this device ("winograd")

    # nstyle side -------------------------------------------------------------------------------------
    def to_dev(self, a):
        return backend.to_device(np.asarray(a), self.device)

    def sync(self):
        backend.synchronize(self.xp)

    def free(self):
        gc.collect()
        backend.free_gpu_memory()
        if self._torch is not None and not self.dry:
            self._torch.cuda.empty_cache()

    def nstyle_peak(self, fn):
        """(fn(), peak bytes in use while it ran): CuPy's pool through a memory hook, or tracemalloc."""
        if self.dry:
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                result = fn()
                peak = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            return result, peak
        cp = self.xp
        pool = cp.get_default_memory_pool()

        class PeakHook(cp.cuda.MemoryHook):
            name = "nstyle_gpu_check_peak"

            def __init__(self):
                self.peak = pool.used_bytes()

            def malloc_postprocess(self, **kwargs):  # used_bytes() already counts the new block here
                used = pool.used_bytes()
                if used > self.peak:
                    self.peak = used

        hook = PeakHook()
        with hook:
            result = fn()
            self.sync()
        return result, hook.peak

    def is_oom(self, exc):
        """Out of device memory, however it surfaced (CuPy's pool, PyTorch's allocator, or a library that
        failed to allocate its workspace, such as cuBLAS with CUBLAS_STATUS_ALLOC_FAILED)."""
        if isinstance(exc, MemoryError):
            return True
        text = str(exc).lower()
        if "out of memory" in text or "alloc_failed" in text:
            return True
        if not self.dry and isinstance(exc, self.xp.cuda.memory.OutOfMemoryError):
            return True
        torch = self._torch
        oom = (getattr(torch, "OutOfMemoryError", None)
               or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None))
        return oom is not None and isinstance(exc, oom)

    # torch side ---------------------------------------------------------------------------------------
    @property
    def torch(self):
        if self._torch is None:
            import torch  # noqa: PLC0415 -- the rival; never imported by the package
            self._torch = torch
            if self.dry:
                torch.set_num_threads(1)  # two threads on a busy 2-core machine spin for seconds
            else:
                torch.backends.cudnn.enabled = True
                torch.backends.cudnn.benchmark = True
        return self._torch

    @property
    def tref(self):
        if self._tref is None:
            self._tref = load_torch_reference()
        return self._tref

    @property
    def tdev(self):
        return "cpu" if self.dry else "cuda"

    def tsync(self):
        if not self.dry:
            self.torch.cuda.synchronize()

    def torch_peak(self, fn):
        """(fn(), peak bytes allocated, peak bytes reserved) on CUDA; no peaks on the CPU."""
        if self.dry:
            return fn(), None, None
        torch = self.torch
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        result = fn()
        torch.cuda.synchronize()
        return result, torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()

    def set_tf32(self, enabled):
        """TF32 for both sides: nstyle's switch, and PyTorch's conv and matmul precision.

        PyTorch >= 2.9 has ``fp32_precision`` settings and refuses to read the legacy ``allow_tf32`` flags
        once they are used, so only the new API is touched where it exists."""
        backend.set_tf32(enabled)
        settings = {"nstyle_tf32": backend.tf32_enabled()}
        if self.dry:  # PyTorch on the CPU has no TF32 (and its 'ieee' setting slows CPU convolutions down)
            return settings
        torch = self.torch
        mode = "tf32" if enabled else "ieee"
        if hasattr(torch.backends.cudnn, "conv") and hasattr(torch.backends.cudnn.conv, "fp32_precision"):
            torch.backends.cudnn.conv.fp32_precision = mode
            torch.backends.cuda.matmul.fp32_precision = mode
            settings.update({"torch_cudnn_conv_fp32_precision": torch.backends.cudnn.conv.fp32_precision,
                             "torch_matmul_fp32_precision": torch.backends.cuda.matmul.fp32_precision})
        else:
            torch.backends.cudnn.allow_tf32 = enabled
            torch.backends.cuda.matmul.allow_tf32 = enabled
            settings.update({"torch_cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
                             "torch_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32)})
        return settings


# ---------------------------------------------------------------------------------------------------
# The two objectives, built from the same random weights and images

class Problem:
    """Random VGG-19 weights (real widths on the GPU), a content, a style and a start image of one size."""

    def __init__(self, rig, h, w, widths, seed=0, pooling="avg"):
        rng = np.random.default_rng(seed)
        self.params = random_vgg_params(rng, widths) if widths else random_vgg_params(rng)
        self.content = random_image(rng, h, w).astype(np.float32)
        self.style = random_image(rng, h, w).astype(np.float32)
        self.x = random_image(rng, h, w).astype(np.float32)
        self.rig, self.h, self.w, self.pooling = rig, h, w, pooling

    def nstyle_objective(self, dtype=np.float32, engine="gpu"):
        """nstyle's objective on the GPU engine (or ``engine``: a name or factory, see VGG19)."""
        rig = self.rig
        vgg = VGG19(self.params, pooling=self.pooling, device=rig.device, dtype=dtype, engine=engine)
        return StyleObjective(vgg, content=self.content, styles=[self.style], content_weight=ALPHA,
                              style_weight=BETA, content_layers=CONTENT_LAYERS, style_layers=STYLE_LAYERS)

    def torch_objective(self, dtype=None):
        rig, torch = self.rig, self.rig.torch
        dtype = dtype or torch.float32
        tparams = {k: (torch.tensor(w, dtype=dtype, device=rig.tdev),
                       torch.tensor(b, dtype=dtype, device=rig.tdev)) for k, (w, b) in self.params.items()}
        return rig.tref.torch_objective(
            torch, tparams, torch.tensor(self.content, dtype=dtype, device=rig.tdev),
            [torch.tensor(self.style, dtype=dtype, device=rig.tdev)], [1.0], CONTENT_LAYERS, STYLE_LAYERS,
            [1.0 / len(STYLE_LAYERS)] * len(STYLE_LAYERS), ALPHA, BETA, 0.0, self.pooling)


def nstyle_eval(rig, obj, x_dev):
    f, g = obj.value_and_grad(x_dev)
    rig.sync()
    return f, g


def torch_eval(rig, tloss, x_t):
    x_t.grad = None
    loss = tloss(x_t)
    loss.backward()
    f = float(loss.item())
    rig.tsync()
    return f, x_t.grad


def median_time(fn, repeats, warmup):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), times


class TimedObjective:
    """Wraps an objective: synchronises after each evaluation and keeps its duration."""

    def __init__(self, rig, obj):
        self.rig, self.obj, self.vgg, self.seconds = rig, obj, obj.vgg, []
        self.last_breakdown = None

    def value_and_grad(self, x):
        t0 = time.perf_counter()
        f, g = self.obj.value_and_grad(x)
        self.rig.sync()
        self.seconds.append(time.perf_counter() - t0)
        self.last_breakdown = self.obj.last_breakdown
        return f, g
