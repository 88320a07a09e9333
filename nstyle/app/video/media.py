"""Frames in and out: a video file read and written with PyAV (MP4, WebM, GIF; any container FFmpeg reads
on the way in), or a folder of numbered image files.

:func:`open_source` checks the input completely before any frame is stylised -- the frame size the
container and codec declare against the pixel limit before a single frame is decoded (as ``stylize``
reads an image's header first), then the chosen piece decoded once, a frame at a time, so an unreadable
file, a zero-frame video, an undecodable codec or a frame size that changes mid-stream is one
InputError -- and returns a :class:`Source` whose :meth:`Source.frames` gives the same frames again, one
at a time, as RGB PIL images. :func:`write_video` encodes frames into a container atomically
(``atomic.py``), the input's audio copied through, taking one frame at a time from a sequence that may
load them on demand (:class:`FrameSequence`): a clip is never held whole in memory.

The piece: ``start`` seconds in, at most ``count`` frames, at ``fps`` frames per second (each output
instant takes the latest input frame at or before it: frames are repeated or dropped, never blended).
A folder's frames are ``fps`` frames per second (25 when not given).
"""
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from PIL import Image

from ...atomic import atomic_path
from ...errors import InputError
from ..files.imageio import DEFAULT_MAX_PIXELS, load_rgb

# suffix -> (PyAV container format, video codec, pixel format, audio codec when the audio is re-encoded)
VIDEO_FORMATS = {".mp4": ("mp4", "libx264", "yuv420p", "aac"), ".m4v": ("mp4", "libx264", "yuv420p", "aac"),
                 ".mov": ("mov", "libx264", "yuv420p", "aac"), ".mkv": ("matroska", "libx264", "yuv420p", "aac"),
                 ".webm": ("webm", "libvpx-vp9", "yuv420p", "libopus"), ".gif": ("gif", "gif", "pal8", None)}
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
FOLDER_FPS = 25
# Frame rates nstyle writes and reads: FFmpeg's rates are fractions with small denominators, and a
# rate outside these (1e-300 from a flag, 1e9 from a damaged header) is a mistake, not a video.
MIN_FPS, MAX_FPS = 0.01, 1000.0
_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def require_av():
    """Import PyAV, or raise InputError saying how to get it (exit 2)."""
    try:
        import av  # noqa: PLC0415
    except ImportError:
        raise InputError("nstyle video needs PyAV and OpenCV, which are not installed",
                         hint="pip install 'nstyle[video]'") from None
    return av


def output_kind(path):
    """"folder" (numbered PNG frames) or "video" for an output path; InputError for an unknown suffix."""
    path = os.fspath(path)
    suffix = os.path.splitext(path.rstrip("/\\"))[1].lower()
    if path.endswith(("/", os.sep)) or os.path.isdir(path) or not suffix:
        return "folder"
    if suffix in VIDEO_FORMATS:
        return "video"
    raise InputError(f"output {path}: cannot tell the video format from the suffix {suffix}",
                     hint="end the name with .mp4, .webm or .gif, or give a folder for numbered PNG frames")


@dataclass
class Source:
    path: str
    kind: str                  # "video" or "folder"
    size: tuple                # (width, height) of every frame
    count: int                 # frames in the chosen piece
    fps: Fraction              # frames per second of the piece (and of the output)
    start: float = 0.0
    codec: str = ""
    audio: bool = False        # the file has an audio stream (copied through to a video output)
    files: list = field(default_factory=list)   # a folder's frame files, in order
    max_pixels: int = DEFAULT_MAX_PIXELS

    def frames(self):
        """The piece's frames again, as RGB PIL images (the same ones the check decoded)."""
        if self.kind == "folder":
            for f in self.files:
                yield load_rgb(f, max_pixels=self.max_pixels, what="frame")
            return
        for _, arr in _decode_piece(self.path, self.start, self.count, self.fps):
            yield Image.fromarray(arr, "RGB")


def _folder_frames(path):
    """The numbered image files of a folder, in numeric order; InputError when there are none."""
    numbered = []
    for name in os.listdir(path):
        stem, suffix = os.path.splitext(name)
        match = _NUMBERED.match(stem)
        if suffix.lower() in FRAME_SUFFIXES and match and not name.startswith("."):
            numbered.append((match.group(1), int(match.group(2)), name))
    if not numbered:
        raise InputError(f"input {path}: the folder holds no numbered frames (frame_0001.png, ...)")
    prefixes = {p for p, _, _ in numbered}
    if len(prefixes) > 1:
        raise InputError(f"input {path}: the folder holds frames of {len(prefixes)} sequences "
                         f"({', '.join(sorted(repr(p) for p in prefixes)[:3])})", hint="keep one sequence per folder")
    return [os.path.join(path, name) for _, _, name in sorted(numbered, key=lambda t: t[1])]


def _open_container(path):
    av = require_av()
    try:
        container = av.open(os.fspath(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"input {path}: not a video file FFmpeg can read ({_detail(exc)})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"input {path}: the file holds no video stream")
    return container


def _detail(exc):
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return re.sub(r"^\[Errno -?\d+\] ", "", text)


def check_fps(fps, where="fps"):
    """``fps`` as a float, or InputError naming ``where`` when it is outside MIN_FPS..MAX_FPS."""
    value = float(fps)
    if not MIN_FPS <= value <= MAX_FPS:
        raise InputError(f"{where}: {value:g} frames per second is outside {MIN_FPS:g} to {MAX_FPS:g}")
    return value


def _frame_rate(stream):
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def _decode_piece(path, start, count, fps):
    """(index, (H, W, 3) uint8) for each frame of the piece: instant j = start + j / fps (seconds from the
    first frame) takes the latest frame shown at or before it; the last frame lasts one frame time. Raises the decoder's own errors (``open_source`` turns them into InputError)."""
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        step = 1.0 / float(_frame_rate(stream))
        j, held, t, t0 = 0, None, None, None   # held: [frame, its array once converted]

        def pixels(item):
            if item[1] is None:
                item[1] = item[0].to_ndarray(format="rgb24")
            return item[1]

        for n, frame in enumerate(container.decode(stream)):
            t = frame.time if frame.time is not None else n * step
            t0 = t if t0 is None else t0
            t -= t0  # times from the first frame (MPEG-TS and others start later than 0)
            current = [frame, None]
            while j < count and start + j / float(fps) < t - 1e-6:
                yield j, pixels(held if held is not None else current)
                j += 1
            if j >= count:
                return
            held = current
        while held is not None and j < count and start + j / float(fps) < t + step - 1e-6:
            yield j, pixels(held)
            j += 1
    finally:
        container.close()


def _check_declared_size(path, stream, max_pixels):
    """InputError when the frame size the container or the codec parameters declare is above the
    pixel limit: checked before any frame is decoded (a decoder allocates the whole frame first). The
    larger of the two declarations counts; frames are checked again as they are decoded."""
    if max_pixels is None:
        return
    ctx = stream.codec_context
    sizes = [(int(getattr(ctx, "width", 0) or 0), int(getattr(ctx, "height", 0) or 0)),
             (int(getattr(stream, "width", 0) or 0), int(getattr(stream, "height", 0) or 0))]
    w, h = max(sizes, key=lambda wh: wh[0] * wh[1])
    if w * h > max_pixels:
        raise InputError(f"input {path}: its frames are declared as {w}x{h}, above the limit of "
                         f"{max_pixels / 1e6:g} megapixels (nothing was decoded)",
                         hint="raise the limit with --max-pixels")


def open_source(path, start=0.0, frames=None, fps=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Check the input completely and describe the piece to stylise (see the module docstring)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"input {path}: no such file or folder")
    start = float(start or 0.0)
    if os.path.isdir(path):
        files = _folder_frames(path)
        rate = Fraction(check_fps(fps)).limit_denominator(1001) if fps else Fraction(FOLDER_FPS)
        first = int(round(start * rate))
        files = files[first:first + frames if frames else None]
        if not files:
            raise InputError(f"input {path}: no frames from {start:g} s on (the folder's frames at {float(rate):g} "
                             "frames per second)")
        size = None
        for f in files:  # every frame opened, so a broken or odd-sized one fails now, not at frame 900
            img = load_rgb(f, max_pixels=max_pixels, what="frame")
            if size is not None and img.size != size:
                raise InputError(f"frame {f} is {img.width}x{img.height} but the first frame is {size[0]}x{size[1]}",
                                 hint="every frame of a video must have the same size")
            size = img.size
        return Source(path, "folder", size, len(files), rate, start, files=files, max_pixels=max_pixels)
    if not os.path.isfile(path):
        raise InputError(f"input {path}: is not a regular file")
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise InputError(f"input {path}: its video codec is not supported (this FFmpeg has no decoder for it)",
                             hint="re-encode it as H.264 MP4")
        _check_declared_size(path, stream, max_pixels)
        codec = stream.codec_context.name
        if fps:
            rate = Fraction(check_fps(fps)).limit_denominator(1001)
        else:
            rate = _frame_rate(stream)
            check_fps(rate, f"input {path}: its declared frame rate")
        audio = bool(container.streams.audio)
    finally:
        container.close()
    limit = frames if frames else 1 << 62
    size, count = None, 0
    av = require_av()
    try:
        for j, arr in _decode_piece(path, start, limit, rate):
            h, w = arr.shape[:2]
            if max_pixels is not None and w * h > max_pixels:
                raise InputError(f"input {path}: frames of {w}x{h} are above the limit of {max_pixels / 1e6:g} "
                                 "megapixels", hint="raise the limit with --max-pixels")
            if size is not None and (w, h) != size:
                raise InputError(f"input {path}: frame {j + 1} is {w}x{h} but the first frame is {size[0]}x{size[1]}",
                                 hint="every frame must have the same size; re-encode the video at one size")
            size, count = (w, h), j + 1
    except av.FFmpegError as exc:
        raise InputError(f"input {path}: cannot decode its video (codec {codec}): {_detail(exc)}",
                         hint="re-encode it as H.264 MP4") from None
    if count == 0:
        where = f" from {start:g} s on" if start else ""
        raise InputError(f"input {path}: the video has no frames{where}")
    return Source(path, "video", size, count, rate, start, codec=codec, audio=audio, max_pixels=max_pixels)


# ---------------------------------------------------------------------------------------------------
# Writing.

def check_writable_video(path):
    """InputError unless this PyAV can encode the container and codec the suffix names."""
    av = require_av()
    fmt, codec, _, _ = VIDEO_FORMATS[os.path.splitext(os.fspath(path))[1].lower()]
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # av raises UnknownCodecError (a ValueError) or FFmpegError by version
        raise InputError(f"output {path}: this PyAV has no {codec} encoder for {fmt}",
                         hint="write .mp4, .webm or .gif, or a folder of frames") from None


class FrameSequence:
    """``count`` frames, each loaded when asked for (``load(i)``, i from 0): what :func:`write_video`
    takes to encode a clip holding one frame in memory at a time."""

    def __init__(self, count, load):
        self.count, self.load = count, load

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if not 0 <= i < self.count:
            raise IndexError(i)
        return self.load(i)


def _gif_palette(images):
    """One palette for the whole GIF (a palette per frame would flicker by itself): from up to 16 frames."""
    sample = [images[i] for i in range(0, len(images), max(1, len(images) // 16))[:16]]
    w, h = sample[0].size
    sheet = Image.new("RGB", (w, h * len(sample)))
    for i, img in enumerate(sample):
        sheet.paste(img, (0, i * h))
    return sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def _gif_frame(av, img, palette):
    index = img.quantize(palette=palette, dither=Image.Dither.NONE)
    rgb = np.asarray(palette.getpalette()[:768] + [0] * (768 - len(palette.getpalette()[:768])), np.uint8)
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), rgb.reshape(256, 3)], axis=1)
    return av.VideoFrame.from_ndarray((np.asarray(index, np.uint8), argb), format="pal8")


def _copy_audio(av, source, out, fmt, audio_codec, duration, log):
    """The source's audio over the piece (shifted to start at 0) as packets for ``out``: copied unchanged
    when the container takes the codec, else re-encoded as ``audio_codec``."""
    src = av.open(source.path)
    try:
        a_in = src.streams.audio[0]
        end = source.start + duration
        try:
            a_out = out.add_stream_from_template(a_in)
        except (av.FFmpegError, ValueError):
            return _transcode_audio(av, src, a_in, out, audio_codec, source.start, end)
        tb = a_in.time_base
        offset = int(round(source.start / tb)) if source.start else 0
        packets = []
        for packet in src.demux(a_in):
            if packet.pts is None or packet.dts is None:
                continue
            if not source.start - 1e-6 <= float(packet.pts * tb) < end:
                continue
            packet.pts -= offset
            packet.dts -= offset
            packet.stream = a_out
            packets.append(packet)
        return packets
    except av.FFmpegError as exc:
        if log:
            log(f"the audio could not be copied ({_detail(exc)}): the video is written without it")
        return None
    finally:
        src.close()


def _transcode_audio(av, src, a_in, out, codec, start, end):
    """Decode the audio of [start, end) and encode it as ``codec`` (WebM takes Opus, not AAC)."""
    rate = 48000 if codec == "libopus" else (a_in.rate or 44100)
    a_out = out.add_stream(codec, rate=rate)
    layout = "stereo" if a_in.codec_context.channels > 1 else "mono"
    a_out.layout = layout
    resampler = av.AudioResampler(format=av.codec.Codec(codec, "w").audio_formats[0].name, layout=layout, rate=rate)
    packets, written = [], 0

    def encode(frames):
        nonlocal written
        for f in frames:
            f.pts, f.time_base = written, Fraction(1, rate)
            written += f.samples
            packets.extend(a_out.encode(f))

    for frame in src.decode(a_in):
        if frame.time is None or not start - 1e-6 <= frame.time < end:
            continue
        frame.pts = None
        encode(resampler.resample(frame))
    encode(resampler.resample(None))
    packets.extend(a_out.encode(None))
    return packets


def write_video(path, images, fps, source=None, log=None):
    """Encode ``images`` (RGB PIL images, one size) into the container ``path``'s suffix names, atomically,
    with ``source``'s audio copied through when it has some and the container takes it. MP4 and WebM
    store 4:2:0 colour, which needs even sizes: an odd last row or column is dropped.

    images: a sequence -- a list, or a :class:`FrameSequence` that loads each frame when it is encoded,
    so that only one is in memory at a time (a GIF's palette reads up to 16 more first); any other
    iterable is made a list."""
    av = require_av()
    path = os.fspath(path)
    fmt, codec, pix_fmt, audio_codec = VIDEO_FORMATS[os.path.splitext(path)[1].lower()]
    if not (hasattr(images, "__len__") and hasattr(images, "__getitem__")):
        images = list(images)
    if not len(images):
        raise ValueError("no frames to write")
    w, h = images[0].size
    if pix_fmt == "yuv420p":
        w, h = max(2, w - w % 2), max(2, h - h % 2)
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        out = av.open(tmp, mode="w", format=fmt)
        try:
            stream = out.add_stream(codec, rate=rate)
            stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            if codec == "libx264":
                stream.options = {"crf": "18", "preset": "medium"}
            elif codec == "libvpx-vp9":
                stream.options = {"crf": "24", "b": "0"}
            packets = None
            if source is not None and source.audio and audio_codec:
                packets = _copy_audio(av, source, out, fmt, audio_codec, len(images) / float(rate), log)
            elif source is not None and source.audio and log:
                log(f"a {fmt.upper()} holds no sound: the input's audio is left out")
            palette = _gif_palette(images) if pix_fmt == "pal8" else None
            for i in range(len(images)):
                img = images[i]  # loaded now, encoded, and let go before the next
                if palette is not None:
                    frame = _gif_frame(av, img, palette)
                else:
                    frame = av.VideoFrame.from_ndarray(np.asarray(img.convert("RGB"))[:h, :w], format="rgb24")
                frame.pts = i
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
            for packet in packets or ():
                out.mux(packet)
        finally:
            out.close()
    return path
