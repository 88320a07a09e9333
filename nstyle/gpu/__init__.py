"""The GPU engine (``engine.py``): cuBLAS products over bands of rows (``conv.py``, ``blas.py``) and CUDA
kernels (source in ``cuda/*.cu``, compiled by ``program.py``, launched by ``kernels.py``), each with its
NumPy emulation (``emulation.py``, ``blas.py``), so that the same code is tested without a device.

Imports: ``backend`` and ``reference`` (shapes checks, the Winograd algebra), never ``cpu``.
"""
