"""Running a prepared video plan (``driver.py`` says what a run does): the passes over the frames, the
frames folder, the container at the end -- and on Ctrl-C, the container of the frames done; the
result (:class:`VideoResult`) with the consistency figures."""
import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ... import backend, interrupts
from ..run.network import load_network
from ..run.stops import StylizeInterrupted
from ..run.stylize import prepare
from ..run.weighting import attach_normalization
from .flow import FlowEstimator, Link
from .frame import FrameStopped, stylize_frame, to_network
from .media import FrameSequence, write_video
from .objective import TemporalTerm
from .progress import VideoProgress


@dataclass
class VideoResult:
    output: str
    frames: int               # final frames written
    records: list             # one per final frame: loss, content, style, tv, temporal, temporal_error, ...
    seconds: float = 0.0
    status: str = "done"      # "done", "interrupted" or "stopped"
    iterations: list = field(default_factory=list)   # every iteration's record (frame, pass, losses)

    @property
    def temporal_error(self):
        errors = [r["temporal_error"] for r in self.records if r.get("temporal_error") is not None]
        return float(np.mean(errors)) if errors else None

    @property
    def style_loss(self):
        return float(np.mean([r["style"] for r in self.records])) if self.records else None

    @property
    def seconds_per_frame(self):
        timed = [r["seconds"] for r in self.records if r.get("seconds")]
        return float(np.mean(timed)) if timed else None


class VideoInterrupted(KeyboardInterrupt):
    """Ctrl-C (or the callback) during a video run: the frames done are kept, and ``result`` says how many."""

    def __init__(self, result, message):
        super().__init__(message)
        self.result, self.message = result, message


class _Runner:
    def __init__(self, vplan, vgg, callback, progress, log):
        self.v, self.vgg, self.callback, self.progress, self.log = vplan, vgg, callback, progress, log
        self.size = vplan.plan.output_size
        self.mode = vplan.plan.settings.original_colors
        self.estimator = FlowEstimator(vplan.flow)
        self.small = []        # the input frames at the output size (kept for the later passes)
        self.links = {}        # (a, b) -> Link warping frame a onto frame b (kept for the later passes)
        self.notes = list(vplan.plan.notes)
        self.iterations = []   # every iteration's record, for the JSON log
        # whose L-BFGS-B every frame runs: resolved once, for this network (and recorded per frame)
        self.options = {**vplan.options, "lbfgs_impl": vplan.plan.on_network(vgg).settings.lbfgs_impl}

    # -- helpers ------------------------------------------------------------------------------------
    def _small(self, frame):
        return np.asarray(frame if frame.size == self.size else frame.resize(self.size, Image.Resampling.LANCZOS))

    def link(self, a, b):
        """The Link that warps frame a onto frame b (1-based), from the kept input frames."""
        if (a, b) not in self.links:
            forward, backward = self.estimator.flows(self.small[a - 1], self.small[b - 1])
            self.links[(a, b)] = Link(forward, backward)
            if self.v.passes > 1:  # the other direction comes free from the same two flows
                self.links[(b, a)] = Link(backward, forward)
        return self.links[(a, b)]

    def _network(self, img):
        return to_network(img, self.mode)

    def _stylize(self, content, start, term, k, p):
        v = self.v
        plan = prepare(content, v.plan.styles, **self.options)
        plan.notes = self.notes  # said once for the run, not once per frame
        self.progress.start_frame()
        began = time.perf_counter()

        def on_iteration(rec, get_image):
            rec.update({"frame": k, "frames": v.frames, "pass": p})
            self.iterations.append(rec)
            self.progress.update(rec, k, p)
            return bool(self.callback(rec, get_image)) if self.callback is not None else False

        image, x, last = stylize_frame(plan, self.vgg, start, term, v.temporal_weight if term else 0.0,
                                       on_iteration, self.log)
        record = {key: float(last.get(key, 0.0)) for key in ("loss", "content", "style", "tv", "temporal")}
        record.update(iterations=int(last.get("step", 0)), seconds=time.perf_counter() - began,
                      temporal_error=None, lbfgs_impl=last.get("lbfgs_impl"))
        return image, x, record

    def _save(self, k, p, image, record):
        self.v.store.save(k, image, record, p)
        self.progress.frame_done(k, record, p)

    # -- the passes ---------------------------------------------------------------------------------
    def first_pass(self):
        """Frames in order, streamed from the input: frame k starts from frame k - 1's result warped."""
        v, store, weight = self.v, self.v.store, self.v.temporal_weight
        prev_x = prev_out = None
        for k, frame in enumerate(v.source.frames(), 1):
            self.small.append(self._small(frame))
            if len(self.small) > 2 and v.passes == 1:
                self.small[-3] = None  # one pass needs only the last two frames
            if store.done(k, 1):  # kept from an earlier run with the same settings
                image = store.load(k, 1)
                x = self._network(image)
            else:
                link = self.link(k - 1, k) if k > 1 else None
                start = term = None
                if link is not None and weight > 0:
                    omega, c = link.warp_network(prev_x), link.c
                    content = self._network(Image.fromarray(self.small[-1]))
                    # the warped previous result (Ruder et al.'s start), with the content where that is
                    # new: a pixel the flow only doubts (c = 0 at a motion boundary) keeps last frame's paint
                    start = (link.new * content + (1 - link.new) * omega).astype(np.float32)
                    term = TemporalTerm(omega, c)
                image, x, record = self._stylize(frame, start, term, k, 1)
                if link is not None and v.passes == 1:
                    record["temporal_error"] = link.error(np.asarray(image), prev_out)
                self._save(k, 1, image, record)
            prev_x, prev_out = x, np.asarray(image)
            if v.passes == 1 and k > 1:
                self.links.pop((k - 1, k), None)

    def later_pass(self, p):
        """Pass p (2, 3, ...): backward when p is even, forward when odd (Ruder et al.'s multi-pass)."""
        v, store, n = self.v, self.v.store, self.v.frames
        order = list(range(1, n + 1)) if p % 2 else list(range(n, 0, -1))
        prev_x = None
        for i, k in enumerate(order):
            if store.done(k, p):
                prev_x = self._network(store.load(k, p))
                continue
            x_before = self._network(store.load(k, p - 1))
            start, term = x_before, None
            if i > 0:
                link = self.link(order[i - 1], k)
                omega, c = link.warp_network(prev_x), link.c
                mix = v.blend * c
                start = (mix * omega + (1 - mix) * x_before).astype(np.float32)
                term = TemporalTerm(omega, c)
            image, prev_x, record = self._stylize(Image.fromarray(self.small[k - 1]), start, term, k, p)
            self._save(k, p, image, record)

    def measure(self):
        """The temporal error of each final frame against its predecessor (after a multi-pass run)."""
        store, previous = self.v.store, None
        for k in range(1, self.v.frames + 1):
            current = np.asarray(store.load(k))
            record = store.record(k)
            if previous is not None and record.get("temporal_error") is None:
                record["temporal_error"] = self.link(k - 1, k).error(current, previous)
            previous = current
        store.save_state()


@contextlib.contextmanager
def _tf32(options):
    """TensorFloat-32 for this run only, as ``stylize.run`` allows it (where this nstyle has the option)."""
    set_tf32 = getattr(backend, "set_tf32", None)
    if set_tf32 is None or "tf32" not in options:
        yield
        return
    before = set_tf32(options["tf32"])
    try:
        yield
    finally:
        set_tf32(before)


def _frames_done(vplan):
    """(pass, count): the pass whose frames 1..count are done, count largest (the last pass on ties)."""
    best = (vplan.passes, 0)
    for p in range(vplan.passes, 0, -1):
        count = 0
        while count < vplan.frames and vplan.store.done(count + 1, p):
            count += 1
        if count > best[1]:
            best = (p, count)
    return best


def _write_output(vplan, log):
    """The container of the frames done (all of them, or those before an interruption)."""
    p, count = _frames_done(vplan)
    records = [vplan.store.record(k, p) for k in range(1, count + 1)]
    if count and vplan.kind == "video":
        interrupts.defer()  # the frames are done: a signal now waits until the file is written
        images = FrameSequence(count, lambda i: vplan.store.load(i + 1, p))  # one frame in memory at a time
        write_video(vplan.output, images, vplan.source.fps, vplan.source, log)
    return VideoResult(vplan.output, count, records)


def run_video(vplan, vgg=None, callback=None, log=None, progress=None):
    """Run a prepared video plan; returns a VideoResult. Raises VideoInterrupted (holding
    the result of the frames done, which are written) on Ctrl-C or when the callback returns True."""
    o = vplan.plan.settings
    progress = progress or VideoProgress(vplan.frames, vplan.passes, mode="quiet")
    log = log or progress.log
    began = time.perf_counter()
    runner = None
    try:
        progress.kept(vplan.store.open(log))
        if vgg is None:
            vgg = load_network(o.weights, pooling=o.pooling, device=o.device, engine=o.engine, log=log)
        if not hasattr(vgg, "normalization"):
            attach_normalization(vgg, o.weights)
        runner = _Runner(vplan, vgg, callback, progress, log)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"), _tf32(o):
            runner.first_pass()
            for p in range(2, vplan.passes + 1):
                runner.later_pass(p)
            if vplan.passes > 1:
                runner.measure()
    except (StylizeInterrupted, FrameStopped, KeyboardInterrupt) as exc:
        progress.close()
        result = _write_output(vplan, log)
        result.status = "stopped" if isinstance(exc, FrameStopped) else "interrupted"
        result.seconds = time.perf_counter() - began
        result.iterations = runner.iterations if runner else []
        what = "stopped by the callback" if isinstance(exc, FrameStopped) else "interrupted"
        kept = (f"the {result.frames} frames done were written to {vplan.output}" if result.frames else
                "no frame was finished")
        raise VideoInterrupted(result, f"{what}; {kept} (frames folder {vplan.store.folder}: run the same "
                                       "command again to continue)") from None
    progress.close()
    result = _write_output(vplan, log)
    result.seconds = time.perf_counter() - began
    result.iterations = runner.iterations
    if not vplan.keep_frames:
        vplan.store.clean(remove_all=vplan.kind == "video")
    return result
