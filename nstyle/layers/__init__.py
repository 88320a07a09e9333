"""Handwritten layers: each op is a ``*_forward(...) -> (out, cache)`` / ``*_backward(dout, cache)`` pair,
with a ``*_naive`` loop twin that the tests use as the reference. CPU fast kernels for VGG's 3x3
convolutions live in ``conv3x3.py`` / ``winograd.py`` (chosen by ``fastconv.py``), on the padded layout of
``padded.py``, threaded by ``threads.py``."""
from .conv import (conv2d_backward, conv2d_backward_im2col, conv2d_backward_naive, conv2d_forward,
                   conv2d_forward_im2col, conv2d_forward_naive, conv_output_size)
from .pool import (avg_pool2d_backward, avg_pool2d_backward_naive, avg_pool2d_forward,
                   avg_pool2d_forward_naive, max_pool2d_backward, max_pool2d_backward_naive,
                   max_pool2d_forward, max_pool2d_forward_naive)
from .relu import relu_backward, relu_backward_naive, relu_forward, relu_forward_naive

__all__ = [name for name in dir() if name.endswith(("_forward", "_backward", "_naive", "_im2col", "_size"))]
