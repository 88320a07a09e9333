"""The fast CPU engine (``engine.py``): zero-bordered layout, 3x3 direct and Winograd kernels, a thread
pool, reused buffers, and the style loss on bordered taps with a factored gradient. Held to the
reference engine by the tests."""
