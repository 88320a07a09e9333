"""Video inputs and outputs (issue 26, items 2, 3, 8), through PyAV and the real command line: a video's
declared frame size is checked before any frame is decoded; writing a video holds one frame at a time;
every file a video run reads -- masks and the init image included -- is protected from the frames it
writes; clips of a batch never write over each other's inputs; --dry-run creates nothing."""
import gc
import weakref

import pytest
from PIL import Image

pytest.importorskip("av", reason="needs the video extra: pip install 'nstyle[video]'")
pytest.importorskip("cv2", reason="needs the video extra: pip install 'nstyle[video]'")

from nstyle.app.video import media  # noqa: E402
from nstyle.app.video.media import open_source, write_video  # noqa: E402
from nstyle.errors import InputError  # noqa: E402

from .clitools import FAST_LAYERS, assert_one_line_error, nstyle, random_weights_file, stripes_image  # noqa: E402
from .test_video_clip import clip_images  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights_file(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def clip(tmp_path):
    stripes_image(48, 48).save(tmp_path / "style.png")
    return write_video(tmp_path / "clip.mp4", clip_images(frames=4, width=48, height=36), 10)


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- the declared frame size, before decoding -------------------------------------------------------

def test_a_declared_frame_size_above_the_limit_is_refused_before_any_frame_is_decoded(tmp_path, monkeypatch):
    path = write_video(tmp_path / "big.mp4", clip_images(frames=2, width=160, height=120), 10)

    def no_decoding(*args, **kwargs):
        raise AssertionError("a frame was decoded before the declared size was checked")

    monkeypatch.setattr(media, "_decode_piece", no_decoding)
    with pytest.raises(InputError, match=r"declared as 160x120, above the limit of 0\.01 megapixels"):
        open_source(path, max_pixels=10_000)


def test_the_command_line_names_the_limit_flag(tmp_path, weights):
    stripes_image(48, 48).save(tmp_path / "style.png")
    write_video(tmp_path / "big.mp4", clip_images(frames=2, width=160, height=120), 10)
    result = nstyle(tmp_path, "video", "big.mp4", "style.png", "-o", "out.mp4", "--weights", weights,
                    "--max-pixels", 10000, "--dry-run")
    assert_one_line_error(result, 2, "big.mp4", "declared as 160x120", "--max-pixels")


# --- writing holds one frame at a time ---------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_writing_a_video_holds_one_frame_at_a_time(tmp_path, suffix):
    frames = clip_images(frames=40, width=48, height=36)
    refs, most = [], [0]

    def load(i):
        gc.collect()
        most[0] = max(most[0], sum(r() is not None for r in refs))
        img = frames[i].copy()
        refs.append(weakref.ref(img))
        return img

    path = write_video(tmp_path / f"out{suffix}", media.FrameSequence(len(frames), load), 10)
    # a GIF samples 16 frames for its palette first, then lets them go
    assert most[0] <= (17 if suffix == ".gif" else 2), f"{most[0]} frames held at once"
    assert open_source(path).count == 40


def test_a_run_writes_its_container_from_the_frames_folder_one_frame_at_a_time(tmp_path, clip, rng, monkeypatch):
    from nstyle.app.video import stylize_video
    from nstyle.app.video.store import FrameStore
    from nstyle.model.gradcheck import random_vgg_params
    from nstyle.model.vgg import VGG19
    refs, most, original = [], [0], FrameStore.load

    def load(self, *args, **kwargs):
        gc.collect()
        most[0] = max(most[0], sum(r() is not None for r in refs))
        img = original(self, *args, **kwargs)
        refs.append(weakref.ref(img))
        return img

    monkeypatch.setattr(FrameStore, "load", load)
    result = stylize_video(clip, tmp_path / "style.png", tmp_path / "out.mp4", size=48, iters=1,
                           vgg=VGG19(random_vgg_params(rng)), content_layers=("relu2_1",),
                           style_layers=("relu1_1", "relu2_1"))
    assert result.frames == 4 and open_source(tmp_path / "out.mp4").count == 4
    assert len(refs) >= 4 and most[0] <= 2, f"{most[0]} frames held at once while writing"


# --- every file read is protected from the frames written --------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("option", ["--init", "--content-mask"])
def test_a_frame_the_store_would_replace_may_not_be_an_input(tmp_path, clip, weights, option):
    """The user picks a finished frame of an earlier run as the init image (or a mask, here one colour)
    for a run with other settings into the same folder: that run would remove it as a stale frame."""
    common = ["video", clip, "style.png", "--size", 48, "--iters", 1, "--weights", weights, "--frames", 2,
              *FAST_LAYERS]
    first = nstyle(tmp_path, *common, "-o", "frames")
    assert first.code == 0, first
    picked = tmp_path / "frames" / "frame_000001.png"
    if option == "--content-mask":
        Image.new("RGB", Image.open(picked).size, (255, 0, 0)).save(picked)
        extra = [option, picked, "--region-styles", "red=1"]
    else:
        extra = [option, picked]
    before = picked.read_bytes()
    second = nstyle(tmp_path, *common, "-o", "frames", "--seed", 5, *extra)
    assert_one_line_error(second, 2, "frames folder", "frame_000001.png")
    assert picked.read_bytes() == before


@pytest.mark.slow
def test_no_clip_writes_over_a_mask_of_the_batch(tmp_path, weights):
    pytest.importorskip("distributed")
    (tmp_path / "src").mkdir()
    (tmp_path / "out").mkdir()
    stripes_image(48, 48).save(tmp_path / "style.png")
    write_video(tmp_path / "src" / "a.mp4", clip_images(frames=2, width=48, height=36), 10)
    mask = tmp_path / "out" / "a.gif"  # a one-colour GIF mask, right where clip a's output goes
    Image.new("RGB", (48, 36), (255, 0, 0)).save(mask)
    before = mask.read_bytes()
    result = nstyle(tmp_path, "video", "style.png", "--clips", "src/a.mp4", "-o", "out", "--clip-suffix", ".gif",
                    "--content-mask", mask, "--region-styles", "red=1", "--size", 48, "--iters", 1,
                    "--weights", weights, *FAST_LAYERS, "--workers", 1)
    assert_one_line_error(result, 2, "a.gif")
    assert mask.read_bytes() == before


# --- --dry-run creates nothing ----------------------------------------------------------------------

@pytest.mark.parametrize("command", ["video to a folder", "video to a file", "clips", "stylize"])
def test_dry_run_creates_nothing(tmp_path, clip, weights, command):
    if command == "clips":
        pytest.importorskip("distributed")
        args = ["video", "style.png", "--clips", clip, "-o", tmp_path / "new" / "outdir"]
    elif command == "stylize":
        Image.open(tmp_path / "style.png").save(tmp_path / "photo.png")
        args = ["stylize", "photo.png", "style.png", "-o", tmp_path / "new.png", "--tile", 32, "--size", 64]
    else:
        args = ["video", clip, "style.png", "-o", "out/" if command == "video to a folder" else "out.mp4"]
    before = tree(tmp_path)
    result = nstyle(tmp_path, *args, "--size", 48, "--iters", 2, *FAST_LAYERS, "--dry-run", "--weights", weights)
    assert result.code == 0, result
    assert tree(tmp_path) == before, f"{command}: a dry run created {set(tree(tmp_path)) - set(before)}"
    if command == "clips":
        assert "clip.mp4: 4 frames at 48x36" in result.out, result


# --- frame rates: malformed values name where they came from ----------------------------------------

@pytest.mark.parametrize("fps", ["1e-300", "1e300", "0.001"])
def test_an_unusable_frame_rate_flag_is_one_line_naming_the_flag(tmp_path, clip, weights, fps):
    result = nstyle(tmp_path, "video", clip, "style.png", "-o", "out.mp4", "--fps", fps, "--dry-run",
                    "--weights", weights, timeout=60)
    assert_one_line_error(result, 2, "--fps", fps)


@pytest.mark.parametrize("fps", [1e-300, 1e300])
def test_an_unusable_frame_rate_from_the_api_is_refused(clip, fps):
    with pytest.raises(InputError, match="frames per second"):
        open_source(clip, fps=fps)
