"""The optimizers that move the pixels: SciPy's L-BFGS-B driver and nstyle's own L-BFGS-B (its Cauchy
point, its Moré-Thuente line search), and a handwritten Adam. They minimise any objective with
``value_and_grad(x)`` inside a box the caller gives (one bound per channel); they know nothing of images.

    optimize.py       minimize: the one entry point every run calls (lbfgs and adam its short forms),
                      and which L-BFGS-B runs (resolve_lbfgs_impl)
    records.py        the stop reasons, the result, the per-iteration records and the best point kept
    scipy_driver.py   SciPy's L-BFGS-B, fed through the records
    nstyle_driver.py  nstyle's L-BFGS-B, fed through the records (single-threaded between evaluations)
    adam.py           Adam
    lbfgsb.py         nstyle's L-BFGS-B (x, g and the history on the objective's device)
    cauchy.py         its generalised Cauchy point, parallel and as the textbook's sequential loop
    linesearch.py     its Moré-Thuente line search (MINPACK-2's dcsrch/dcstep)

The device helpers (which array module, copies to the host) come from ``nstyle/backend.py``.
"""
from .optimize import LBFGS_IMPLS, adam, lbfgs, minimize  # noqa: F401 -- the entry point and its short forms
