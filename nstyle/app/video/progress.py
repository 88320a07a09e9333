"""A video run's progress over frames: a bar on a terminal (frame, pass, iteration, ETA), one line per
finished frame elsewhere (losses, temporal error, seconds, ETA).

The ETA is the frames left times the mean time of the frames computed so far in this run; frames kept
from an earlier run cost nothing and do not count.
"""
import sys
import time

from ..files.progress import StatusLine, _clock, breakdown_line


class VideoProgress(StatusLine):
    """frames: frames per pass; passes; mode "bar", "lines", "quiet" or "auto"; breakdown_every: print
    the per-term line every N iterations (0: never)."""

    def __init__(self, frames, passes=1, stream=None, mode="auto", breakdown_every=0):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode, self.frames, self.passes = mode, frames, passes
        self.breakdown_every = breakdown_every
        self.total = frames * passes
        self.finished = self.computed = 0
        self.compute_seconds = 0.0
        self.frame_started = time.monotonic()
        self.bar_shown, self.last_draw = False, 0.0

    def log(self, message):
        if self.mode != "quiet":
            self._clear_bar()
            self._write(f"nstyle: {message}\n")

    def eta(self):
        if self.computed == 0:
            return None
        return self.compute_seconds / self.computed * (self.total - self.finished)

    def _label(self, frame, pass_):
        label = f"frame {frame}/{self.frames}"
        return label + (f" pass {pass_}/{self.passes}" if self.passes > 1 else "")

    def start_frame(self):
        self.frame_started = time.monotonic()

    def kept(self, count):
        """``count`` frames were kept from an earlier run with the same settings."""
        self.finished += count
        if count:
            self.log(f"{count} frames are already done (same settings): kept")

    def update(self, rec, frame, pass_=1):
        """One iteration of a frame."""
        if self.mode == "quiet":
            return
        if self.breakdown_every and rec["step"] % self.breakdown_every == 0:
            self._clear_bar()
            self._write(f"{self._label(frame, pass_)}  {breakdown_line(rec)}\n")  # the temporal term too
        if self.mode != "bar":
            return
        now = time.monotonic()
        if now - self.last_draw < 0.1:
            return
        self.last_draw = now
        eta = self.eta()
        frac = min(1.0, (self.finished + rec["step"] / max(1, rec.get("total_steps", 1))) / max(1, self.total))
        tail = (f" {self._label(frame, pass_)}  iter {rec['step']}/{rec.get('total_steps', '?')}  "
                f"loss {rec['loss']:.3e}  ETA {_clock(eta) if eta is not None else '?'}")
        self._draw_bar(frac, tail)

    def frame_done(self, frame, record, pass_=1):
        """A frame was stylised (record: its losses and, from the second frame on, its temporal error)."""
        seconds = time.monotonic() - self.frame_started
        self.finished += 1
        self.computed += 1
        self.compute_seconds += seconds
        if self.mode != "lines":
            return
        error = record.get("temporal_error")
        eta = self.eta()
        parts = [f"[{self.finished}/{self.total}] {self._label(frame, pass_)}", f"loss {record['loss']:.4e}",
                 f"style {record['style']:.3e}", f"temporal {record.get('temporal', 0.0):.3e}"]
        if error is not None:
            parts.append(f"temporal error {error:.2f}")
        parts.append(f"{seconds:.1f}s")
        if eta is not None and self.finished < self.total:
            parts.append(f"ETA {_clock(eta)}")
        self._write("  ".join(parts) + "\n")

    def close(self):
        if self.bar_shown:
            self._write("\n")
            self.bar_shown = False
