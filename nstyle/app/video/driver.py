"""``stylize_video``: a video (or a folder of frames) and one or more paintings in, a stylised video out,
without flicker (Ruder, Dosovitskiy & Brox 2016).

Like ``stylize`` a run has two halves. :func:`prepare_video` checks everything before any weights
load: every option, the whole input piece (``media.open_source`` decodes it once), the styles, the
output (not an input, writable, a known format) and the frames folder. :func:`run_video` then runs the
frames in order: the first as ``stylize`` would; each next one starting from the previous result
warped onto it by the optical flow (its content where the content is new: disoccluded, or come in over
the border) with the temporal term ``temporal_weight * L_t`` in its loss. Each finished frame is
written before the next starts (``store.py``), so a rerun with the same settings continues, and Ctrl-C
keeps the frames done: the container is written from them (:class:`VideoInterrupted`).

``passes > 1`` runs Ruder et al.'s multi-pass variant: after the first, forward pass, the passes go
backward and forward in turn; each frame starts from ``blend * c * omega + (1 - blend * c) * x`` (x its
result of the previous pass, omega the neighbour already done in this pass, warped) and keeps the
temporal term towards that neighbour.

Size rule for the temporal weight: none -- the weight is used as given at every size and every
coarse-to-fine stage, with ``weight_scaling="invariant"`` (and, literally, with ``"paper"``). Under the
invariant scaling each of Gatys et al.'s terms has a gradient per pixel that goes as 1/P for P pixels
(``app/run/weighting.py``); L_t is a mean over the D = 3P pixel values, so its gradient 2/D * c o
(x - omega) goes as 1/P too, and the balance of the temporal term against the others is the same at
every size. Measured (``bench/bench_video_still.py``): on a still background beside a moving square
the default keeps about the same fraction of independent frames' flicker at 64, 128 and 256 pixels.

The consistency reported is the temporal error (``reference/temporal.temporal_error``): for each pair of
consecutive output frames, the mean squared difference (8-bit values) between a frame and its
predecessor warped onto it, over the pixels the flow finds reliable; averaged over the pairs.
"""
import os
import re
from dataclasses import dataclass, field

from ...errors import InputError
from ...validate import finite_number, whole_number
from ..batch.worker import file_sha256
from ..figures.cells import image_fingerprint
from ..files.outputs import check_output_path, read_paths, same_file
from ..run.plan import input_fingerprint
from ..run.settings import DEFAULTS, INITS
from ..run.stylize import prepare
from .flow import FLOWS, require_cv2
from .media import check_fps, check_writable_video, open_source, output_kind, require_av
from .run import VideoInterrupted, VideoResult, run_video  # noqa: F401 -- re-exported
from .store import STATE_FILE, FrameStore, work_folder

# bench/bench_video_still.py: still pixels keep under a tenth of independent frames' flicker at 64-256 px
# with the style loss within 1%; bench/bench_video.py: the largest of its sweep within 5% on a panning clip
DEFAULT_TEMPORAL_WEIGHT = 3e7
DEFAULT_BLEND = 0.5             # Ruder et al.'s delta for the multi-pass start
MIN_FLOW_SIDE = 12              # OpenCV's DIS refuses smaller frames


@dataclass
class VideoPlan:
    source: object            # media.Source
    output: str
    kind: str                 # "video" or "folder"
    plan: object              # the first frame's stylize plan (sizes, memory, notes)
    options: dict             # stylize keywords for every frame
    temporal_weight: float
    flow: str
    passes: int
    blend: float
    keep_frames: bool
    store: object             # store.FrameStore
    settings: dict = field(default_factory=dict)

    @property
    def frames(self):
        return self.source.count

    def describe(self):
        s, (w, h) = self.source, self.plan.output_size
        lines = [f"input            {s.path}: {s.count} frames of {s.size[0]}x{s.size[1]} at {float(s.fps):g} fps"
                 f"{' from ' + format(s.start, 'g') + ' s' if s.start else ''}{', with audio' if s.audio else ''}",
                 f"temporal         weight {self.temporal_weight:g}, flow {self.flow}, {self.passes} pass(es)",
                 f"frames folder    {self.store.folder if self.store else '(no output given)'}"]
        return lines + [line for line in self.plan.describe() if not line.startswith("output size")] + \
            [f"output size      {w}x{h}" + (f", {self.kind} {self.output}" if self.output else "")]


def _video_options(temporal_weight, flow, passes, blend, fps, start, frames):
    weight = finite_number("temporal weight", temporal_weight)
    if weight < 0:
        raise InputError(f"temporal weight must be >= 0 (got {weight:g})")
    if flow not in FLOWS:
        raise InputError(f"unknown flow method {flow!r}; choose one of {', '.join(FLOWS)}")
    passes = whole_number("passes", passes, 1)
    if passes > 1 and weight == 0:
        raise InputError("--passes above 1 needs a temporal weight above 0 (the passes tie frames together)")
    blend = finite_number("blend", blend)
    if not 0 <= blend <= 1:
        raise InputError(f"blend must lie in 0..1 (got {blend:g})")
    fps = None if fps is None else check_fps(finite_number("fps", fps, positive=True))
    start = finite_number("start", start or 0.0)
    if start < 0:
        raise InputError(f"start must be >= 0 seconds (got {start:g})")
    frames = None if frames is None else whole_number("frames", frames, 1)
    return weight, passes, blend, fps, start, frames


def input_files(input, styles, options):
    """Every file a video run reads: the input (a file, or a folder and its frames), the style images,
    the init image, the masks, and the weights (``outputs.read_paths``: named, $NSTYLE_WEIGHTS or cached)."""
    paths = [input, *styles]
    init = options.get("init")
    if init is not None and not (isinstance(init, str) and init in INITS):
        paths.append(init)
    paths += [options.get("content_mask"), *(options.get("style_masks") or [])]
    return read_paths([p for p in paths if p is not None], options.get("weights"))


# What a frames folder holds that nstyle writes (``store.py``): frames, the state file, pass folders.
_STORE_NAME = re.compile(r"^(pass\d+[/\\])?(frame_\d{6}\.png|" + re.escape(STATE_FILE) + r")$")


def check_frames_folder(folder, reads):
    """InputError when a file this run reads is one the frames folder's store may write or delete
    (a frame name or the state file, in the folder or a pass folder), or is the folder itself."""
    real = os.path.realpath(folder)
    for src in reads:
        if not src or not isinstance(src, (str, bytes, os.PathLike)):
            continue
        path = os.path.realpath(os.fspath(src))
        rel = os.path.relpath(path, real)
        if path == real or _STORE_NAME.match(rel):
            raise InputError(f"frames folder {folder}: nstyle writes {rel if path != real else 'it'} there, and "
                             f"this run reads {os.fspath(src)}", hint="choose another output")


def _check_output(output, kind, reads):
    if kind == "video":
        check_output_path(output, "output", reads, image=False)
        check_writable_video(output)
        return
    path = os.fspath(output)
    for src in reads:
        if src and same_file(path, src):
            raise InputError(f"output folder {path}: is also what this run reads; nstyle never overwrites an input",
                             hint="choose another output folder")
    parent = os.path.dirname(os.path.abspath(path.rstrip("/\\")))
    if not os.path.isdir(parent):
        raise InputError(f"output folder {path}: the folder {parent} does not exist", hint="create it first")


def _fingerprint(source):
    if source.kind == "video":
        return "sha256:" + file_sha256(source.path)
    return ["sha256:" + file_sha256(f) for f in source.files]


def prepare_video(input, style, output, *, temporal_weight=DEFAULT_TEMPORAL_WEIGHT, flow="medium", passes=1,
                  blend=DEFAULT_BLEND, fps=None, start=0.0, frames=None, keep_frames=False, **options):
    """Check everything and plan the run; loads no weights. Options: as :func:`stylize_video`."""
    weight, passes, blend, fps, start, frames = _video_options(temporal_weight, flow, passes, blend, fps,
                                                               start, frames)
    require_av()
    require_cv2()
    kind = output_kind(output) if output is not None else "video"
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    reads = input_files(input, styles, options)
    if output is not None:  # None: only checking (--dry-run)
        _check_output(output, kind, reads)
    max_pixels = options.get("max_pixels", DEFAULTS.max_pixels)
    source = open_source(input, start, frames, fps, max_pixels)
    plan = prepare(next(source.frames()), style, **options)   # every stylize option checked, styles decoded
    if getattr(plan, "tiles", None):
        raise InputError("tiled runs are not available for video: a frame is stylised in one piece",
                         hint="use a smaller --size, or a machine with more memory")
    if min(plan.output_size) < MIN_FLOW_SIDE:
        w, h = plan.output_size
        raise InputError(f"frames of {w}x{h} are too small for the optical flow, which needs {MIN_FLOW_SIDE} "
                         "pixels on each side", hint="use a larger --size")
    picture = plan.settings.picture(lambda item: input_fingerprint(item, plan.settings.max_pixels))
    settings = {"input": _fingerprint(source), "start": start, "frames": source.count, "fps": str(source.fps),
                "styles": [image_fingerprint(s) for s in plan.styles], "options": picture,
                "temporal_weight": weight, "flow": flow, "passes": passes, "blend": blend,
                "weights": _weights_id(plan.settings.weights)}
    store = None
    if output is not None:
        store = FrameStore(work_folder(output, kind), settings, passes)
        if any(same_file(store.folder, r) for r in reads + source.files):
            raise InputError(f"frames folder {store.folder}: is also what this run reads",
                             hint="choose another output")
        check_frames_folder(store.folder, reads + source.files)
        store.check()
    return VideoPlan(source, output if output is None else os.fspath(output), kind, plan, options, weight, flow,
                     passes, blend, bool(keep_frames), store, settings)


def _weights_id(weights):
    path = read_paths([], weights)[-1]
    try:
        st = os.stat(path)
        return [os.path.realpath(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return [os.path.realpath(path)]


def stylize_video(input, style, output, *, temporal_weight=DEFAULT_TEMPORAL_WEIGHT, flow="medium", passes=1,
                  blend=DEFAULT_BLEND, fps=None, start=0.0, frames=None, keep_frames=False, vgg=None,
                  callback=None, log=None, **options):
    """Stylise a video without flicker (Ruder et al. 2016); returns a :class:`VideoResult`.

    input: a video file (anything FFmpeg reads) or a folder of numbered frames; output: .mp4, .webm or
    .gif (the input's audio copied through where the container takes it), or a folder (numbered PNG
    frames). style: one image or a list, as for ``stylize``; every ``stylize`` keyword applies per frame
    (size, iters, weights, layers, colours, ...).
    temporal_weight: lambda of the temporal term (0: every frame on its own). flow: "medium", "fast"
    (OpenCV's DIS presets) or "farneback". passes: Ruder et al.'s multi-pass (1: one forward pass);
    blend: its delta. fps, start (seconds), frames: the piece of the input to stylise.
    keep_frames: keep a video output's frames folder (``OUTPUT.frames``) after the container is written.
    callback(record, get_image): after every iteration (record as ``stylize``'s, plus frame, frames and
    pass); True stops the run after the frames done. log(message): one-line notices.
    Raises InputError before any frame is stylised for bad input, and VideoInterrupted (the frames done
    are written) on Ctrl-C.
    """
    vplan = prepare_video(input, style, output, temporal_weight=temporal_weight, flow=flow, passes=passes,
                          blend=blend, fps=fps, start=start, frames=frames, keep_frames=keep_frames, **options)
    if options.get("check_memory", True):
        vplan.plan.check_memory()
    return run_video(vplan, vgg=vgg, callback=callback, log=log)
