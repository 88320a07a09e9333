"""Keeping large work buffers for reuse instead of handing them back to the operating system.

A fresh NumPy array of a few megabytes or more is a fresh memory mapping: the kernel supplies zeroed
pages on first touch, and on a VGG evaluation those page faults cost as much as a fifth of the run
(bench/NOTES.md, sections 4 and 13). The CPU hot path knows exactly when each of its buffers dies, so it
gives them back here and takes them again for the next layer or the next evaluation.

The pool keeps memory *blocks* and hands out arrays of any shape and dtype that fit in one: a block
given back by one layer serves the next layer's output, a mask or a gradient, whatever its shape. So
the pool never holds more than the evaluation's largest set of buffers alive at one moment, and once
one evaluation has run the next allocates nothing. (Kept by shape, one per shape, a backward that
needs three maps of one size -- the tap, the gradient in, the gradient out -- allocated the third
anew every time; kept three per shape, the pool held every resolution's three at once.)

Only arrays taken from the pool go back to it, and a buffer must not be given back while anything
else can still read it.
"""
import bisect
import sys
import weakref

import numpy as np

# A block serves a request of at least 1/SLACK of its size: a small array does not tie up a big block.
SLACK = 2


class BufferPool:
    """Free memory blocks, handed out as arrays of the shape and dtype asked for."""

    def __init__(self, slack=SLACK):
        self.slack = slack
        self._free = []                             # blocks (1-D uint8 arrays owning their memory), by size
        self._sizes = []                            # their sizes, ascending (for bisect)
        self._free_ids = set()                      # id() of each free block
        self._ours = weakref.WeakValueDictionary()  # id -> block, every block this pool made
        self.blocks_made = 0

    def take(self, shape, dtype):
        """An array of that shape and dtype, contents undefined: a view of the smallest free block it
        fits in (within the slack), or of a new block."""
        dtype = np.dtype(dtype)
        need = dtype.itemsize
        for d in shape:
            need *= int(d)
        i = bisect.bisect_left(self._sizes, need)
        if i < len(self._sizes) and self._sizes[i] <= self.slack * max(need, 1):
            del self._sizes[i]
            block = self._free.pop(i)
            self._free_ids.discard(id(block))
        else:
            block = np.empty(max(need, 1), np.uint8)
            self._ours[id(block)] = block
            self.blocks_made += 1
        return block[:need].view(dtype).reshape(shape)

    def _block_of(self, array):
        if array is None:
            return None
        block = array if array.base is None else array.base
        return block if self._ours.get(id(block)) is block else None

    def give(self, array):
        """Keep the block under ``array`` (taken from this pool) for a later take; anything else is
        ignored."""
        block = self._block_of(array)
        if block is not None and id(block) not in self._free_ids:
            i = bisect.bisect_right(self._sizes, block.nbytes)
            self._sizes.insert(i, block.nbytes)
            self._free.insert(i, block)
            self._free_ids.add(id(block))

    def give_if_unused(self, array, known_refs):
        """Give ``array`` back only if nothing but the ``known_refs`` references the caller holds see
        it -- nor any other view of its block (a feature map the caller kept, say).

        (CPython reference counts: getrefcount's own argument and this call's parameter or local,
        and for the block one more, the base of ``array``.)
        """
        if array is None or sys.getrefcount(array) - 2 > known_refs:
            return False
        block = self._block_of(array)
        if block is not None and block is not array and sys.getrefcount(block) - 2 > 1:
            return False
        self.give(array)
        return True

    def clear(self):
        self._free.clear()
        self._sizes.clear()
        self._free_ids.clear()

    def nbytes(self):
        return sum(block.nbytes for block in self._free)

    def block_sizes(self):
        """Sizes in bytes of the free blocks, largest first."""
        return sorted((block.nbytes for block in self._free), reverse=True)
