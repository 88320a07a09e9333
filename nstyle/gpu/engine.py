"""The GPU engine: the reference engine's layer loop over the GPU ops.

The loop, the traces and the losses are the reference engine's (``reference/engine.py``); what runs
is this package's: convolutions as cuBLAS products over bands of rows, im2col or Winograd
(``conv.py``, ``blas.py``), and pooling and ReLU as single kernel launches (``pool.py``, ``relu.py``).
The kernels are CUDA source in ``cuda/*.cu`` (compiled by ``program.py``), launched by ``kernels.py``.
With CuPy arrays they run on the device; with NumPy arrays each kernel and each cuBLAS call is carried
out by its NumPy emulation instead (``emulation.py``, ``blas.py``), address by address -- which is how
the tests hold this engine to the reference on a machine without a GPU.

The network's weights are constants, so the engine makes each layer's Winograd transforms (the forward's
and the backward's, ``conv.transformed_weights``) once, on first use, and keeps them: no evaluation
transforms weights again (nor copies the transform's constant from the host, which a captured CUDA
graph, ``graph.py``, could not replay). They take 32/9 of the weights' memory.
"""
from ..reference.engine import ReferenceEngine
from . import conv as conv_gpu
from .conv import conv2d_backward_gpu, conv2d_forward_gpu, transformed_weights
from .pool import avg_pool2d_backward_gpu, avg_pool2d_forward_gpu, max_pool2d_backward_gpu, max_pool2d_forward_gpu
from .relu import relu_backward_gpu, relu_forward_gpu


class GpuEngine(ReferenceEngine):
    name = "gpu"

    conv_backward = staticmethod(conv2d_backward_gpu)
    relu_forward = staticmethod(relu_forward_gpu)
    relu_backward = staticmethod(relu_backward_gpu)
    pool_forward = {"avg": avg_pool2d_forward_gpu, "max": max_pool2d_forward_gpu}
    pool_backward = {"avg": avg_pool2d_backward_gpu, "max": max_pool2d_backward_gpu}

    def __init__(self, params, pooling="avg"):
        super().__init__(params, pooling)
        self._weights = {id(w): w for w, _ in params.values()}  # this engine's own weight arrays
        self._transforms = {}  # id(w) -> (U, U_dx), made on first use

    def conv_forward(self, x, w, b=None, stride=1, padding=0, keep_input=True):
        """:func:`conv.conv2d_forward_gpu`, with the layer's Winograd transforms when the weights are this
        engine's own (made once) and Winograd applies."""
        transformed = None
        if self._weights.get(id(w)) is w and conv_gpu.winograd_applies(w.shape[2], w.shape[3], stride, padding):
            transformed = self._transforms.get(id(w))
            if transformed is None:
                transformed = self._transforms[id(w)] = transformed_weights(w)
        return conv2d_forward_gpu(x, w, b, stride, padding, keep_input, transformed=transformed)
