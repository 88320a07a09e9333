"""The project's test clip (made here, from a seed: a textured square moving over a textured background
that pans), and PyAV reading and writing it: MP4, WebM, GIF, folders of frames, the piece (--start,
--frames, --fps), audio copied through, and every bad input refused in one InputError.

``moving_square_clip`` is also the clip of ``bench/bench_video.py``.
"""
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from nstyle.app.video.media import open_source, output_kind, write_video
from nstyle.errors import InputError

try:
    import av
except ImportError:  # the clip itself needs only NumPy: test_video_temporal uses it without PyAV
    av = None
needs_av = pytest.mark.skipif(av is None, reason="needs the video extra: pip install 'nstyle[video]'")

SQUARE_STEP = (2, 1)  # the square moves 2 right and 1 down per frame


def texture(height, width, seed, waves=12):
    """A smooth, colourful, non-repeating RGB texture (float 0..255): a sum of random plane waves, which
    optical flow can follow everywhere."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    out = np.zeros((height, width, 3))
    for _ in range(waves):
        k = rng.uniform(0.08, 0.5, 2) * rng.choice([-1, 1], 2)
        out += np.sin(k[0] * xx + k[1] * yy + rng.uniform(0, 2 * np.pi))[..., None] * rng.uniform(0.3, 1, 3)
    return (out - out.min()) / (out.max() - out.min()) * 255


def moving_square_clip(frames=10, width=64, height=48, seed=0):
    """[(height, width, 3) uint8] frames: a reddish textured square (width * 5/16 on a side) moving by
    SQUARE_STEP per frame over a textured background that pans left by a pixel per frame."""
    side = max(4, width * 5 // 16)
    background = texture(height, width + frames, seed)
    square = texture(side, side, seed + 1) * 0.5 + np.array([150.0, 30.0, 30.0]) * 0.5
    out = []
    for i in range(frames):
        f = background[:, i:i + width].copy()   # frame i + 1 shows what frame i showed one pixel to the right
        x0, y0 = width // 10 + SQUARE_STEP[0] * i, height // 6 + SQUARE_STEP[1] * i
        h, w = min(side, height - y0), min(side, width - x0)
        if h > 0 and w > 0:
            f[y0:y0 + h, x0:x0 + w] = square[:h, :w]
        out.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
    return out


def clip_images(**kw):
    return [Image.fromarray(a, "RGB") for a in moving_square_clip(**kw)]


def still_background_clip(frames=6, width=64, height=48, seed=0):
    """A still textured background and a reddish textured square (width * 5/16 on a side) moving by
    (width/32, width/64) pixels per frame (at least 1): the same motion at every size, in proportion.

    Returns (frames, still): the (height, width, 3) uint8 frames, and for each consecutive pair an
    (height, width) bool mask of the background the square covers in neither frame -- the pixels that
    stand still, where a stylisation should stand still too."""
    side = max(4, width * 5 // 16)
    step = (max(1, width // 32), max(1, width // 64))
    background = np.clip(np.rint(texture(height, width, seed)), 0, 255).astype(np.uint8)
    square = np.clip(np.rint(texture(side, side, seed + 1) * 0.5 + np.array([150.0, 30.0, 30.0]) * 0.5),
                     0, 255).astype(np.uint8)
    out, covered = [], []
    for i in range(frames):
        f, cover = background.copy(), np.zeros((height, width), bool)
        x0, y0 = width // 10 + step[0] * i, height // 6 + step[1] * i
        h, w = max(0, min(side, height - y0)), max(0, min(side, width - x0))
        f[y0:y0 + h, x0:x0 + w] = square[:h, :w]
        cover[y0:y0 + h, x0:x0 + w] = True
        out.append(f)
        covered.append(cover)
    return out, [~(a | b) for a, b in zip(covered, covered[1:])]


def still_flicker(frames, still):
    """The flicker of still pixels: for each consecutive pair of (H, W, 3) frames, the mean squared
    difference (8-bit values) over the pixels its ``still`` mask marks; averaged over the pairs."""
    frames = [np.asarray(f, dtype=np.float64) for f in frames]
    return float(np.mean([((b - a)[m] ** 2).mean() for a, b, m in zip(frames, frames[1:], still)]))


def write_clip_with_audio(path, images, fps=10, seconds=None):
    """An MP4 with the frames and a 440 Hz AAC tone as long as the video."""
    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=fps)
    v.width, v.height, v.pix_fmt = images[0].width, images[0].height, "yuv420p"
    a = out.add_stream("aac", rate=44100)
    for i, img in enumerate(images):
        frame = av.VideoFrame.from_ndarray(np.asarray(img), format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, fps)
        for p in v.encode(frame):
            out.mux(p)
    for p in v.encode():
        out.mux(p)
    n = int(44100 * (seconds or len(images) / fps))
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 44100)).astype(np.float32)
    for k in range(0, n, 1024):
        frame = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 44100, k, Fraction(1, 44100)
        for p in a.encode(frame):
            out.mux(p)
    for p in a.encode():
        out.mux(p)
    out.close()


def test_still_background_clip_moves_only_the_square():
    frames, still = still_background_clip(frames=4, width=64, height=48)
    assert len(frames) == 4 and len(still) == 3 and frames[0].shape == (48, 64, 3)
    for a, b, m in zip(frames, frames[1:], still):
        assert np.array_equal(a[m], b[m]), "the background stands still"
        assert not np.array_equal(a[~m], b[~m]), "the square moves"
        assert 0.6 < m.mean() < 0.95
    assert still_flicker(frames, still) == 0.0
    assert still_flicker(frames, [np.ones((48, 64), bool)] * 3) > 0.0


def test_clip_moves_as_stated():
    f = moving_square_clip(frames=3)
    assert f[0].shape == (48, 64, 3) and f[0].dtype == np.uint8
    # the background (bottom rows, left of the square's path) pans left by one pixel per frame
    assert np.array_equal(f[1][-4:, 0:40], f[0][-4:, 1:41])


@needs_av
@pytest.mark.parametrize("suffix,tolerance", [(".mp4", 8.0), (".webm", 8.0), (".gif", 8.0)])
def test_clip_written_and_read_back(tmp_path, suffix, tolerance):
    images = clip_images(frames=10)
    path = write_video(tmp_path / f"clip{suffix}", images, 10)
    source = open_source(path)
    assert (source.size, source.count, source.fps) == ((64, 48), 10, 10)
    back = list(source.frames())
    assert len(back) == 10
    for a, b in zip(images, back):
        assert np.abs(np.asarray(a, float) - np.asarray(b, float)).mean() < tolerance
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".nstyle-")]


@needs_av
def test_piece_start_frames_fps(tmp_path):
    path = write_video(tmp_path / "clip.mp4", clip_images(frames=10), 10)
    assert open_source(path, start=0.3).count == 7
    assert open_source(path, frames=4).count == 4
    doubled = open_source(path, fps=20, frames=6)
    assert doubled.count == 6 and doubled.fps == 20
    frames = [np.asarray(f) for f in doubled.frames()]
    assert np.array_equal(frames[0], frames[1]), "at twice the rate each frame shows twice"


@needs_av
def test_folder_of_frames(tmp_path):
    for i, img in enumerate(clip_images(frames=5), 1):
        img.save(tmp_path / f"f_{i:03d}.png")
    source = open_source(tmp_path, frames=3, fps=12)
    assert (source.kind, source.count, source.fps, source.size) == ("folder", 3, 12, (64, 48))
    assert [np.asarray(f).shape for f in source.frames()] == [(48, 64, 3)] * 3
    assert output_kind(tmp_path / "out") == "folder" and output_kind("x.webm") == "video"


@needs_av
def test_audio_copied_through(tmp_path):
    images = clip_images(frames=10)
    write_clip_with_audio(tmp_path / "in.mp4", images)
    source = open_source(tmp_path / "in.mp4", start=0.2, frames=5)
    assert source.audio
    for suffix in (".mp4", ".webm"):  # copied unchanged into MP4, re-encoded as Opus into WebM
        out = write_video(tmp_path / f"out{suffix}", list(source.frames()), source.fps, source)
        with av.open(str(out)) as c:
            assert [s.type for s in c.streams] == ["video", "audio"]
            audio = sum(f.samples for f in c.decode(audio=0)) / c.streams.audio[0].rate
        assert 0.4 < audio < 0.65, audio


def _mpegts(path, w, h, n, first_pts):
    out = av.open(str(path), "w", format="mpegts")
    s = out.add_stream("mpeg2video", rate=10)
    s.width, s.height, s.pix_fmt = w, h, "yuv420p"
    for i in range(n):
        f = av.VideoFrame.from_ndarray(np.full((h, w, 3), 40 * i, np.uint8), format="rgb24")
        f.pts = first_pts + i
        for p in s.encode(f):
            out.mux(p)
    for p in s.encode():
        out.mux(p)
    out.close()
    return path.read_bytes()


@needs_av
def test_bad_inputs_are_one_input_error(tmp_path):
    good = write_video(tmp_path / "good.mkv", clip_images(frames=4), 10)
    bad = {
        "empty.mp4": b"",
        "text.mp4": b"not a video at all\n" * 20,
        "truncated.mp4": open(write_video(tmp_path / "t.mp4", clip_images(frames=4), 10), "rb").read()[:500],
        # an unknown Matroska codec id: FFmpeg has no decoder for it
        "codec.mkv": open(good, "rb").read().replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/AVC"),
        # two MPEG-TS pieces of different sizes, one after the other: the size changes at frame 5
        "sizes.ts": _mpegts(tmp_path / "a.ts", 64, 48, 4, 0) + _mpegts(tmp_path / "b.ts", 48, 32, 4, 4),
    }
    expected = {"empty.mp4": "not a video file", "text.mp4": "not a video file", "truncated.mp4": "not a video file",
                "codec.mkv": "codec is not supported", "sizes.ts": r"frame \d+ is 48x32 but the first frame is 64x48"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=expected[name]):
            open_source(tmp_path / name)
    with pytest.raises(InputError, match="no frames from 5 s on"):
        open_source(good, start=5)
    (tmp_path / "frames").mkdir()
    with pytest.raises(InputError, match="no numbered frames"):
        open_source(tmp_path / "frames")
    Image.new("RGB", (8, 8)).save(tmp_path / "frames" / "f1.png")
    Image.new("RGB", (9, 8)).save(tmp_path / "frames" / "f2.png")
    with pytest.raises(InputError, match="is 9x8 but the first frame is 8x8"):
        open_source(tmp_path / "frames")
