"""The CPU engine's buffer pool: blocks reused across shapes and dtypes, nothing foreign kept, nothing
given back while a view of it lives, and no allocation once an evaluation has run."""
import numpy as np
import pytest

from nstyle.cpu.buffers import BufferPool
from nstyle.model.gradcheck import random_image, random_vgg_params
from nstyle.model.objective import StyleObjective
from nstyle.model.vgg import VGG19


def test_a_block_serves_other_shapes_and_dtypes_that_fit():
    pool = BufferPool(slack=2)
    a = pool.take((4, 10, 10), np.float32)      # 1600 bytes
    assert a.shape == (4, 10, 10) and a.dtype == np.float32 and a.flags.c_contiguous
    pool.give(a)
    b = pool.take((3, 10, 10), np.float64)      # 2400 bytes: does not fit, a new block
    c = pool.take((1000,), np.uint8)            # 1000 bytes: fits the first block (within 2x)
    assert pool.blocks_made == 2
    assert np.shares_memory(c, a) and not np.shares_memory(b, a)
    pool.give(b)
    pool.give(c)
    assert pool.block_sizes() == [2400, 1600]
    tiny = pool.take((10,), np.uint8)           # far smaller than any free block: a block of its own
    assert pool.blocks_made == 3 and not np.shares_memory(tiny, a) and not np.shares_memory(tiny, b)


def test_best_fit_and_no_double_keeping():
    pool = BufferPool(slack=4)
    big, small = pool.take((400,), np.uint8), pool.take((120,), np.uint8)
    pool.give(big)
    pool.give(small)
    pool.give(small)  # given twice: kept once
    assert pool.block_sizes() == [400, 120]
    x = pool.take((100,), np.uint8)             # both fit within the slack: the smaller one
    assert np.shares_memory(x, small)
    assert pool.nbytes() == 400
    pool.clear()
    assert pool.nbytes() == 0


def test_foreign_arrays_are_not_kept():
    pool = BufferPool()
    pool.give(np.empty(1000, np.float32))
    pool.give(None)
    assert pool.nbytes() == 0
    assert pool.give_if_unused(np.empty(10), known_refs=1) is True  # nothing to keep, nothing kept
    assert pool.nbytes() == 0


def test_give_if_unused_sees_other_views_of_the_block():
    pool = BufferPool()
    buf = pool.take((2, 3, 4), np.float32)
    kept = buf[:, 1:3, 1:3][None]               # like a feature map the caller holds
    assert pool.give_if_unused(buf, known_refs=1) is False
    assert pool.nbytes() == 0
    del kept
    assert pool.give_if_unused(buf, known_refs=1) is True
    assert pool.nbytes() == buf.nbytes
    other = pool.take((2, 3, 4), np.float32)
    alias = other
    assert pool.give_if_unused(other, known_refs=1) is False  # two references where one was declared
    del alias


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_evaluations_after_the_first_allocate_nothing(rng, pooling):
    vgg = VGG19(random_vgg_params(rng), pooling=pooling, dtype=np.float32)
    content, style = (random_image(rng, 24, 20).astype(np.float32) for _ in range(2))
    obj = StyleObjective(vgg, content, [style], style_layers=["relu1_1", "relu2_1", "relu3_1"],
                         content_layers=["relu2_2"])
    x = content.copy()
    first = obj.value_and_grad(x)
    made = vgg.engine.buffers.blocks_made
    for _ in range(2):
        again = obj.value_and_grad(x)
    assert vgg.engine.buffers.blocks_made == made
    assert again[0] == first[0] and np.array_equal(again[1], first[1])
