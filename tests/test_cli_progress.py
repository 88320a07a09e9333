"""Progress display: a bar with iteration, loss and ETA on a terminal; plain lines elsewhere; silence."""
import io

import pytest

from nstyle.app.files.progress import Progress, breakdown_line


class FakeTerminal(io.StringIO):
    encoding = "utf-8"

    def isatty(self):
        return True


def records(n, stage=1, stages=1, start_step=0, seconds_per_iter=1.0, t0=0.0):
    for i in range(1, n + 1):
        yield {"iter": i, "step": start_step + i, "stage": stage, "stages": stages, "loss": 1000.0 / i,
               "content": 1.0, "style": 2.0, "tv": 0.0, "style/relu1_1": 1.5, "style/relu2_1": 0.5,
               "seconds": t0 + i * seconds_per_iter}


def test_bar_on_a_terminal_shows_iteration_loss_and_eta():
    term = FakeTerminal()
    p = Progress([(10, 100)], stream=term)
    assert p.mode == "bar"
    for rec in records(10):
        p.last_draw = 0  # draw every update (the bar otherwise redraws at most ten times a second)
        p.update(rec)
    p.close()
    text = term.getvalue()
    frames = text.split("\r\x1b[2K")
    assert "100% |" in frames[-1] and "10/10" in frames[-1] and "loss 1.000e+02" in frames[-1], frames[-1]
    assert " 50% |" in text and "5/10" in text
    assert "ETA 0:05" in text, "after 5 of 10 iterations at 1 s each, 5 s are left"
    assert text.endswith("\n") and "\n" not in text[:-1], "the bar redraws in place"


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    p = Progress([(40, 100)], stream=out)
    assert p.mode == "lines"
    for rec in records(40):
        p.update(rec)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("iter 1/40") and lines[-1].startswith("iter 40/40"), lines
    assert len(lines) == 1 + 40 // 2, "one line every 5% (every 2 iterations here) plus the first"
    assert "\r" not in out.getvalue()


def test_eta_weighs_later_larger_stages_by_their_pixels():
    p = Progress([(10, 100), (10, 400)], stream=io.StringIO())
    etas = [p.eta(rec) for rec in records(5, stage=1, stages=2)]
    # stage 1 runs at 1 s per iteration of 100 pixels; after 5 of them: 5 s left here + 10*4 s in stage 2
    assert etas[0] is None and etas[-1] == pytest.approx(5 + 40)


def test_breakdown_lines_name_every_term_and_notices_clear_the_bar():
    term = FakeTerminal()
    p = Progress([(4, 100)], stream=term, breakdown_every=2)
    for rec in records(4):
        p.last_draw = 0
        p.update(rec)
        if rec["iter"] == 3:
            p.log("a notice")
    p.close()
    text = term.getvalue()
    assert "relu1_1 1.50e+00" in text and "relu2_1 5.00e-01" in text and "content 1.000e+00" in text
    assert "\r\x1b[2Knstyle: a notice\n" in text
    line = breakdown_line(next(records(1)))
    assert line.split()[:2] == ["iter", "1"] and "tv 0.000e+00" in line


def test_quiet_prints_nothing():
    out = FakeTerminal()
    p = Progress([(5, 100)], stream=out, mode="quiet", breakdown_every=1)
    for rec in records(5):
        p.update(rec)
    p.log("hello")
    p.close()
    assert out.getvalue() == ""


class ClosedPipe(io.StringIO):
    """A stream whose reader has gone: every write fails as a closed pipe does."""

    def __init__(self):
        super().__init__()
        self.attempts = 0

    def write(self, text):
        self.attempts += 1
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stream_does_not_stop_the_run():
    for out in (io.StringIO(), ClosedPipe()):
        p = Progress([(3, 100)], stream=out, mode="lines", breakdown_every=1)
        if not isinstance(out, ClosedPipe):
            out.close()
        seen = []
        for rec in records(3):
            p.update(rec)  # a write error must not escape into the optimiser's callback
            seen.append(rec["iter"])
        p.log("a notice")
        p.close()
        assert seen == [1, 2, 3]
    assert out.attempts > 0, "the progress tried to write, and its failures were absorbed"
