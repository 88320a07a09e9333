"""The GPU engine (``engine.py``): cuBLAS products over bands of rows, CUDA kernels (``kernels.py``)
and their NumPy emulation, so that the same code is tested without a device."""
