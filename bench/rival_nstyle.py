"""The nstyle side of the cross-framework benchmark: nstyle's own objective through its public API.

    build(params, content, style, x_shape) -> fn(x) -> (loss float, gradient ndarray (1, 3, H, W) float32)

Used by bench/bench_rivals.py in a fresh child process (run that script, not this module). The thread
count comes from the environment the parent sets (NSTYLE_NUM_THREADS / OPENBLAS_NUM_THREADS = 2), read
by nstyle at first use; ``configure`` reports it together with the BLAS that NumPy loaded.
"""
import os

import numpy as np

import rivals_common as rc

KEY = "nstyle"


def configure(threads):
    """Thread settings for this process (already set through the environment); returns what is in force."""
    import nstyle  # noqa: F401  (loads NumPy's BLAS so that threadpoolctl sees it)
    return {"version": nstyle.__version__, "source": os.path.dirname(nstyle.__file__), "numpy": np.__version__,
            "env_threads": {v: os.environ.get(v) for v in ("NSTYLE_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                          "OMP_NUM_THREADS")},
            "threads": threads, "blas": rc.blas_info()}


def build(params, content, style, x_shape, dtype=np.float32, engine="auto"):
    """nstyle.StyleObjective on the CPU, average pooling; x_shape is not needed (any size works).

    dtype=np.float64 gives the float64 reference the benchmark's check falls back on (see rivals_common);
    engine="reference" the reference engine's layer loop (bench/bench_layers.py races both)."""
    import nstyle
    params = {k: (w.astype(dtype), b.astype(dtype)) for k, (w, b) in params.items()}
    vgg = nstyle.VGG19(params, pooling="avg", device="cpu", dtype=dtype, engine=engine)
    content, style = content.astype(dtype), style.astype(dtype)
    obj = nstyle.StyleObjective(vgg, content=content, styles=[style], content_weight=rc.CONTENT_WEIGHT,
                                style_weight=rc.STYLE_WEIGHT, content_layers=rc.CONTENT_LAYERS,
                                style_layers=rc.STYLE_LAYERS)

    def fn(x):
        loss, grad = obj.value_and_grad(np.asarray(x, dtype))
        return float(loss), np.asarray(grad, dtype)

    return fn
