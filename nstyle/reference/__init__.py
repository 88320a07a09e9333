"""The reference engine: the readable code a learner starts from, and what every faster engine is held to.

Each op is a ``*_forward(...) -> (out, cache)`` / ``*_backward(dout, cache)`` pair, each loss a
``*_loss(...) -> (value, gradient)``, with its derivation in the docstring and a ``*_naive`` loop twin the
tests compare it against: ``relu.py``, ``pool.py``, ``conv.py`` (im2col, ``im2col.py``), ``losses.py``,
``temporal.py`` (and ``guides.py``'s masks). ``engine.py`` strings them into VGG-19's forward and
backward. The ops are written with ``xp = get_xp(x)`` and run on NumPy and CuPy arrays alike (the
naive twins loop over small NumPy arrays); nothing here imports a faster path.
"""
# re-exported (``__all__`` below is read off these names, which pyflakes cannot follow)
from .conv import conv2d_backward, conv2d_backward_naive, conv2d_forward, conv2d_forward_naive, conv_output_size  # noqa: F401
from .pool import (  # noqa: F401
                   avg_pool2d_backward,
                   avg_pool2d_backward_naive,
                   avg_pool2d_forward,
                   avg_pool2d_forward_naive,
                   max_pool2d_backward,
                   max_pool2d_backward_naive,
                   max_pool2d_forward,
                   max_pool2d_forward_naive,
)
from .relu import relu_backward, relu_backward_naive, relu_forward, relu_forward_naive  # noqa: F401

__all__ = [name for name in dir() if name.endswith(("_forward", "_backward", "_naive", "_size"))]
