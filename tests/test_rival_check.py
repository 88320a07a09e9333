"""The benchmark's check that a rival computes nstyle's objective (bench/rivals_common.compare).

A rival whose float32 gradient differs from nstyle's only in the receptive field of a flipped ReLU
passes (by the float64 arbitration); one that computes another objective -- a scaled loss, a gradient
off everywhere, or off in more than a few patches -- is refused.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import rivals_common as rc  # noqa: E402


@pytest.fixture
def ref():
    rng = np.random.default_rng(0)
    grad64 = rng.standard_normal((1, 3, 64, 64))
    grad32 = (grad64 + 1e-7 * rng.standard_normal(grad64.shape)).astype(np.float32)
    return {"loss": np.float64(1e10 * (1 + 1e-7)), "grad": grad32, "loss64": np.float64(1e10), "grad64": grad64}


def flipped_patch(grad, side):
    """grad with a side x side patch moved by 1% of the largest entry: what a ReLU flip does."""
    out = np.array(grad, dtype=np.float32, copy=True)
    out[:, :, 10:10 + side, 20:20 + side] += 0.01 * np.abs(grad).max()
    return out


def test_a_rival_equal_to_nstyle_passes(ref):
    check = rc.compare(1e10, ref["grad"].copy(), ref)
    assert check["ok"] and check["verdict"] == "passed"


def test_a_flipped_relu_patch_passes_by_the_float64_arbitration(ref):
    check = rc.compare(1e10, flipped_patch(ref["grad64"], 6), ref)  # 36 of 4096 pixels
    assert check["ok"] and check["verdict"] == "passed (float64 arbitration)", check
    assert not rc.compare(1e10, flipped_patch(ref["grad64"], 6), ref, strict=True)["ok"]


def test_patches_beyond_the_limit_are_refused(ref):
    side = int(np.ceil(np.sqrt(2 * rc.FLIP_PIXELS * 64 * 64)))  # twice the pixels the arbitration allows
    check = rc.compare(1e10, flipped_patch(ref["grad64"], side), ref)
    assert not check["ok"] and "of the pixels" in check["why"]


@pytest.mark.parametrize("how", ["scaled gradient", "loss off", "shape", "nan"])
def test_another_objective_is_refused(ref, how):
    loss, grad = 1e10, ref["grad64"].astype(np.float32)
    if how == "scaled gradient":
        grad = grad * np.float32(1.01)
    elif how == "loss off":
        loss = 1e10 * 1.001
    elif how == "shape":
        grad = grad[:, :, :32]
    else:
        grad = grad.copy()
        grad[0, 0, 0, 0] = np.nan
    assert not rc.compare(loss, grad, ref)["ok"], how
