"""Keeping large work buffers for reuse instead of handing them back to the operating system.

A fresh NumPy array of a few megabytes or more is a fresh memory mapping: the kernel supplies zeroed
pages on first touch, and on a VGG evaluation those page faults cost as much as a tenth of the run
(bench/NOTES.md). The CPU hot path knows exactly when each of its buffers dies, so it gives them back
here and takes them again for the next layer or the next evaluation.

Only arrays the caller allocated itself belong here: a buffer must not be given back while anything
else can still read it.
"""
import sys

import numpy as np


class BufferPool:
    """Free buffers by (shape, dtype); at most ``per_shape`` kept of each."""

    def __init__(self, per_shape=1):
        self.per_shape = per_shape
        self._free = {}

    def take(self, shape, dtype):
        """An array of that shape and dtype, contents undefined (a kept one when there is one)."""
        key = (tuple(shape), np.dtype(dtype).str)
        free = self._free.get(key)
        if free:
            return free.pop()
        return np.empty(shape, dtype=dtype)

    def give(self, array):
        """Keep ``array`` for a later take (ignored unless it owns its C-contiguous memory)."""
        if array is None or array.base is not None or not array.flags.c_contiguous:
            return
        free = self._free.setdefault((array.shape, array.dtype.str), [])
        if len(free) < self.per_shape and all(a is not array for a in free):
            free.append(array)

    def give_if_unused(self, array, known_refs):
        """Give ``array`` back only if nothing but the ``known_refs`` references the caller holds see it.

        (CPython reference count: one for the argument of getrefcount, one for this call's parameter.)
        """
        if array is not None and sys.getrefcount(array) - 2 <= known_refs:
            self.give(array)
            return True
        return False

    def clear(self):
        self._free.clear()

    def nbytes(self):
        return sum(a.nbytes for free in self._free.values() for a in free)
