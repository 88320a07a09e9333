"""A batch's progress over jobs: a one-line bar on a terminal, one plain line per finished job elsewhere.

The bar counts jobs, not iterations: done, skipped (finished by an earlier run) and failed, the time
spent and an ETA. The ETA is the jobs left times the wall-clock time per job computed so far (which
already reflects how many workers run at once); skipped jobs cost nothing and do not count. Notices
(the cluster, a retried job) and failed jobs are printed above the bar, as ``progress.Progress`` does for
one run.
"""
import sys
import time

from ..files.progress import StatusLine, _clock


class JobsProgress(StatusLine):
    """mode: "bar", "lines" or "quiet" (only failures), or "auto" (bar on a terminal, else lines)."""

    def __init__(self, stream=None, mode="auto"):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self.total = self.skipped = self.done = self.failed = 0
        self.started_at = time.monotonic()
        self.bar_shown = False
        self.last_draw = 0.0

    def log(self, message):
        """A notice line (above the bar)."""
        if self.mode != "quiet":
            self._clear_bar()
            self._write(f"nstyle: {message}\n")

    def start(self, total, skipped):
        self.total, self.skipped, self.started_at = total, skipped, time.monotonic()
        if skipped:
            self.log(f"{skipped} of {total} jobs are already done (their outputs match their settings): "
                     "skipped")
        self.tick(force=True)

    def finished(self, p):
        """A job of this run ended (p: batch.PlannedJob with its result)."""
        status = p.result.get("status", "cancelled")
        if status == "done":
            self.done += 1
        elif status == "failed":
            self.failed += 1
        count = f"[{self.done + self.failed + self.skipped}/{self.total}]"
        if status == "failed":
            if self.mode == "quiet":
                self._write(f"nstyle: job {p.name} failed: {p.result.get('error')}\n")
            else:
                self._clear_bar()
                self._write(f"{count} failed  {p.name}: {p.result.get('error')}\n")
        elif self.mode == "lines" and status == "done":
            loss = p.result.get("final_loss")
            loss_text = f", final loss {loss:.4e}" if isinstance(loss, float) else ""
            self._write(f"{count} done    {p.name} ({p.result.get('seconds', 0):.1f}s{loss_text})\n")
        self.tick(force=True)

    def eta(self):
        computed = self.done + self.failed
        left = self.total - self.skipped - computed
        if computed == 0:
            return None
        return (time.monotonic() - self.started_at) / computed * left

    def tick(self, force=False):
        """Redraw the bar (at most ten times a second unless ``force``)."""
        if self.mode != "bar":
            return
        now = time.monotonic()
        if not force and now - self.last_draw < 0.1:
            return
        self.last_draw = now
        finished = self.done + self.skipped + self.failed
        frac = finished / max(1, self.total)
        eta = self.eta()
        tail = (f" {finished}/{self.total} jobs  done {self.done}  skipped {self.skipped}  failed {self.failed}  "
                f"{_clock(now - self.started_at)} elapsed  ETA {_clock(eta) if eta is not None else '?'}")
        self._draw_bar(frac, tail)

    def close(self):
        if self.bar_shown:
            self._write("\n")
            self.bar_shown = False
