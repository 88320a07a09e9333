"""Optical flow between consecutive input frames (OpenCV), and what the temporal loss takes from it.

``--flow medium`` (default) and ``fast`` are OpenCV's DIS (Kroeger et al. 2016, ``cv2.DISOpticalFlow``)
at those presets; ``farneback`` is Farneback's polynomial-expansion flow. Each pair of frames gets the
forward and the backward flow, each checked against standing still (set to 0 where no motion
explains the frames at least as well); that check, the warping and Ruder et al.'s reliability checks
are plain NumPy in ``reference/temporal.py``. Flows are computed on the input frames (at the output
size), never on the stylised ones: the motion is the video's, not the painting's.
"""
import numpy as np

from ...errors import InputError
from ...reference.temporal import new_content, prefer_still, reliability, temporal_error, warp

FLOWS = ("medium", "fast", "farneback")


def require_cv2():
    """Import OpenCV, or raise InputError saying how to get it (exit 2)."""
    try:
        import cv2  # noqa: PLC0415
    except ImportError:
        raise InputError("nstyle video needs PyAV and OpenCV, which are not installed",
                         hint="pip install 'nstyle[video]'") from None
    return cv2


class FlowEstimator:
    """flows(a, b) -> (forward a->b, backward b->a), each (H, W, 2) float64, for RGB uint8 frames."""

    def __init__(self, method="medium"):
        if method not in FLOWS:
            raise InputError(f"unknown flow method {method!r}; choose one of {', '.join(FLOWS)}")
        self.cv2 = require_cv2()
        self.method = method
        if method != "farneback":
            preset = {"medium": self.cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
                      "fast": self.cv2.DISOPTICAL_FLOW_PRESET_FAST}[method]
            self.dis = self.cv2.DISOpticalFlow_create(preset)

    def _grey(self, frame):
        return self.cv2.cvtColor(np.ascontiguousarray(np.asarray(frame, dtype=np.uint8)), self.cv2.COLOR_RGB2GRAY)

    def _flow(self, a, b):
        if self.method == "farneback":
            return self.cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return self.dis.calc(a, b, None)

    def flows(self, a, b):
        """The estimated flows, each set to 0 where standing still explains the frames at least as well
        (``temporal.prefer_still``: no drag around moving objects, no noise on a still background)."""
        ga, gb = self._grey(a), self._grey(b)
        return prefer_still(self._flow(ga, gb), a, b), prefer_still(self._flow(gb, ga), b, a)


class Link:
    """How frame i relates to a neighbour j (the previous one, or the next in a backward pass): the
    backward flow from i to j, the reliability c of warping j onto i, and ``new``, where frame i shows
    what j did not (disoccluded, or come in over the border: ``temporal.new_content``)."""

    def __init__(self, forward, backward):
        self.flow = np.asarray(backward, dtype=np.float64)
        self.c = reliability(forward, backward)
        self.new = new_content(forward, backward).astype(np.float64)

    @classmethod
    def between(cls, estimator, neighbour, frame):
        """The link that warps ``neighbour`` onto ``frame`` (RGB uint8 arrays)."""
        forward, backward = estimator.flows(neighbour, frame)
        return cls(forward, backward)

    def warp_network(self, x):
        """A (1, 3, H, W) network-space image of the neighbour, warped onto this frame (float32)."""
        warped, _ = warp(np.asarray(x, dtype=np.float64)[0], self.flow)
        return warped[None].astype(np.float32)

    def error(self, frame, neighbour):
        """Temporal error between two output frames (RGB uint8 (H, W, 3)): ``temporal.temporal_error``."""
        a = np.asarray(frame, dtype=np.float64).transpose(2, 0, 1)
        b, _ = warp(np.asarray(neighbour, dtype=np.float64).transpose(2, 0, 1), self.flow)
        return temporal_error(a, b, self.c)
