"""Tiled prints, larger than memory allows in one piece: the plan and geometry (plan.py), the shared
style targets and one tile's work (work.py), the assembly with blending weights (blend.py), and the run
over passes and tiles, locally or on Dask (run.py)."""
