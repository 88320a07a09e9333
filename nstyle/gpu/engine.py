"""The GPU engine: the reference engine's layer loop over the GPU ops.

The loop, the traces and the losses are the reference engine's (``reference/engine.py``); what runs
is this package's: convolutions as cuBLAS products over bands of rows, im2col or Winograd
(``conv.py``, ``blas.py``), and pooling and ReLU as single kernel launches (``pool.py``, ``relu.py``).
The kernels are CUDA source in ``cuda/*.cu`` (compiled by ``program.py``), launched by ``kernels.py``.
With CuPy arrays they run on the device; with NumPy arrays each kernel and each cuBLAS call is carried
out by its NumPy emulation instead (``emulation.py``, ``blas.py``), address by address -- which is how
the tests hold this engine to the reference on a machine without a GPU.
"""
from ..reference.engine import ReferenceEngine
from .conv import conv2d_backward_gpu, conv2d_forward_gpu
from .pool import avg_pool2d_backward_gpu, avg_pool2d_forward_gpu, max_pool2d_backward_gpu, max_pool2d_forward_gpu
from .relu import relu_backward_gpu, relu_forward_gpu


class GpuEngine(ReferenceEngine):
    name = "gpu"

    conv_forward = staticmethod(conv2d_forward_gpu)
    conv_backward = staticmethod(conv2d_backward_gpu)
    relu_forward = staticmethod(relu_forward_gpu)
    relu_backward = staticmethod(relu_backward_gpu)
    pool_forward = {"avg": avg_pool2d_forward_gpu, "max": max_pool2d_forward_gpu}
    pool_backward = {"avg": avg_pool2d_backward_gpu, "max": max_pool2d_backward_gpu}
