"""The optimizers that move the pixels: SciPy's L-BFGS-B driver and nstyle's own L-BFGS-B (its Cauchy
point, its Moré-Thuente line search), and a handwritten Adam. They minimise any objective with
``value_and_grad(x)`` inside a box the caller gives (one bound per channel); they know nothing of images.

    optimize.py   lbfgs and adam: the entry points every run calls, the stop reasons, the records
    lbfgsb.py     nstyle's L-BFGS-B (x, g and the history on the objective's device)
    cauchy.py     its generalised Cauchy point, parallel and as the textbook's sequential loop
    linesearch.py its Moré-Thuente line search (MINPACK-2's dcsrch/dcstep)
"""
