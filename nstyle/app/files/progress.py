"""Showing a run's progress: a one-line bar on a terminal, plain periodic lines everywhere else.

On a terminal the bar is redrawn in place (iteration, loss, elapsed time, ETA); notices and the
``--print-every`` breakdown lines are printed above it. When the output is a file or a pipe (logs, CI)
there is no bar: one plain line every ``every`` iterations and at the end of each stage.

The ETA counts work as iterations times pixels, so a coarse-to-fine run's later, larger stages weigh
more than its first ones; the rate is measured on the stage that is running.
"""
import shutil
import sys
import time


def say(message):
    """A notice line on standard error, for commands and steps that show no progress bar."""
    print(f"nstyle: {message}", file=sys.stderr, flush=True)


def _clock(seconds):
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def breakdown_line(rec):
    """One line with the loss and every term: content, each style layer, tv, then any other group of
    terms the objective reported (a video frame's temporal term, a term of your own): the record holds
    each group's weighted sum beside its unweighted one, ``"paper/<group>"``."""
    parts = [f"iter {rec.get('step', rec['iter']):5d}", f"loss {rec['loss']:.4e}", f"content {rec['content']:.3e}",
             f"style {rec['style']:.3e}"]
    layers = [(k.split("/", 1)[1], v) for k, v in rec.items() if k.startswith("style/")]
    if layers:
        parts.append("(" + " ".join(f"{name} {v:.2e}" for name, v in layers) + ")")
    parts.append(f"tv {rec['tv']:.3e}")
    parts += [f"{k} {v:.3e}" for k, v in rec.items()
              if k not in ("content", "style", "tv") and "/" not in k and f"paper/{k}" in rec]
    parts.append(f"{rec['seconds']:.1f}s")
    return "  ".join(parts)


class StatusLine:
    """What every progress display here shares: writes that a closed stream or pipe cannot turn into an
    error (a progress line must never stop a run), and the bar's clearing before a notice line.
    Subclasses set ``stream``, ``mode`` and ``bar_shown``."""

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):  # a closed pipe must not stop the run
            pass

    def _clear_bar(self):
        if self.bar_shown:
            self._write("\r\x1b[2K")
            self.bar_shown = False

    def _draw_bar(self, frac, tail, fill="#"):
        """Redraw the bar line: the percentage, a bar of ``fill`` characters ``frac`` full, then ``tail``,
        cut to the terminal's width."""
        width = shutil.get_terminal_size((80, 20)).columns
        bar_w = max(5, min(30, width - len(tail) - 8))
        filled = int(round(frac * bar_w))
        line = f"{frac * 100:3.0f}% |{fill * filled}{' ' * (bar_w - filled)}|{tail}"
        self._write("\r\x1b[2K" + line[:max(10, width - 1)])
        self.bar_shown = True


class Progress(StatusLine):
    """Receives every iteration's record; draws a bar or prints lines.

    stages: [(iterations, pixels)] per stage (for the ETA). stream: where to write (stderr).
    mode: "bar", "lines" or "quiet" ("auto" picks bar on a terminal, else lines).
    every: plain-line interval (0: about 20 lines per run). breakdown_every: print the per-term line
    every N iterations (0: never).
    """

    def __init__(self, stages, stream=None, mode="auto", every=0, breakdown_every=0):
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode = mode
        self.stages = list(stages) or [(0, 1)]
        self.total = sum(n for n, _ in self.stages)
        self.every = every or max(1, self.total // 20)
        self.breakdown_every = breakdown_every
        self.bar_shown = False
        self.last_draw = 0.0
        self.stage_start = None  # (stage number, time, seconds value) when the current stage began
        self.fill = "#"
        try:
            "\u2588".encode(getattr(self.stream, "encoding", None) or "ascii")
            self.fill = "\u2588"
        except (UnicodeEncodeError, LookupError):
            pass

    def log(self, message):
        """A notice line (printed above the bar)."""
        if self.mode == "quiet":
            return
        self._clear_bar()
        self._write(f"nstyle: {message}\n")

    def eta(self, rec):
        """Seconds left: this stage's rate (seconds per pixel-iteration) times the work left."""
        k = rec.get("stage", 1)
        if self.stage_start is None or self.stage_start[0] != k:
            # the first record of a stage: the time before it covers its setup, so measure from here
            self.stage_start = (k, rec["seconds"], rec["iter"])
            return None
        _, t0, it0 = self.stage_start
        done_here = rec["iter"] - it0
        if done_here <= 0:
            return None
        pixels = self.stages[min(k, len(self.stages)) - 1][1]
        rate = (rec["seconds"] - t0) / (done_here * pixels)
        stage_iters = self.stages[min(k, len(self.stages)) - 1][0]
        left = (stage_iters - rec["iter"]) * pixels
        left += sum(n * p for n, p in self.stages[k:])
        return rate * left

    def update(self, rec):
        if self.mode == "quiet":
            return
        step = rec.get("step", rec["iter"])
        eta = self.eta(rec)
        last_of_stage = rec["iter"] == self.stages[min(rec.get("stage", 1), len(self.stages)) - 1][0]
        if self.breakdown_every and step % self.breakdown_every == 0:
            self._clear_bar()
            self._write(breakdown_line(rec) + "\n")
        if self.mode == "lines":
            if step % self.every == 0 or last_of_stage or step == 1:
                eta_text = f"  ETA {_clock(eta)}" if eta is not None else ""
                stage = f"  stage {rec['stage']}/{rec['stages']}" if rec.get("stages", 1) > 1 else ""
                if not (self.breakdown_every and step % self.breakdown_every == 0):
                    self._write(f"iter {step}/{self.total}  loss {rec['loss']:.4e}  "
                                f"{_clock(rec['seconds'])} elapsed{eta_text}{stage}\n")
            return
        now = time.monotonic()
        if now - self.last_draw < 0.1 and step != self.total:
            return
        self.last_draw = now
        self._draw(rec, step, eta)

    def _draw(self, rec, step, eta):
        frac = min(1.0, step / max(1, self.total))
        stage = f" {rec['stage']}/{rec['stages']}" if rec.get("stages", 1) > 1 else ""
        eta_text = _clock(eta) if eta is not None else "?"
        tail = (f" {step}/{self.total}  loss {rec['loss']:.3e}  {_clock(rec['seconds'])} elapsed  ETA {eta_text}"
                f"{'  stage' + stage if stage else ''}")
        self._draw_bar(frac, tail, self.fill)

    def close(self):
        """End the bar's line so that what follows starts on a fresh one."""
        if self.bar_shown:
            self._write("\n")
            self.bar_shown = False
