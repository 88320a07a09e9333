"""Robustness through the real command line: bad input fails fast with one line, odd input just works,
nothing is overwritten or left half-written.

Every failure case runs `python -m nstyle stylize ... --iters 1000000` in a subprocess and checks the exit
code, the single error line, that no traceback is shown, that every input file is byte-identical
afterwards, that no output or temporary file appears, and that it failed within a few seconds of the
interpreter starting. NSTYLE_WEIGHTS points at a missing file and no --weights is given, so a case
that reached the weights (instead of failing first) would show a weights error instead of its own.
"""
import hashlib
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from nstyle.app.files.imageio import load_rgb
from nstyle.cli import main as cli
from nstyle.errors import InputError

from .clitools import (
    FAST_LAYERS,
    assert_one_line_error,
    gradient_image,
    leftovers,
    nstyle,
    random_weights_file,
    stripes_image,
)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights_file(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def startup_seconds(tmp_path_factory):
    """CPU seconds the interpreter needs to start nstyle (imports) on this machine."""
    folder = tmp_path_factory.mktemp("startup")
    result = nstyle(folder, "stylize", "--help")
    assert result.code == 0, result
    return result.cpu_seconds


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width, height, bit_depth=8, colour_type=2, idat=b""):
    """A PNG file's bytes with the given header; ``idat`` as its (possibly bogus) data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def noise_image(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


# --- bad input: each builder writes the case into a folder and returns the command-line arguments ---

def _missing(d):
    return ["nope.png", "style.png"], ["nope.png", "no such file"]


def _folder(d):
    (d / "photo.jpg").mkdir()
    return ["photo.jpg", "style.png"], ["photo.jpg", "folder"]


def _empty(d):
    (d / "empty.png").write_bytes(b"")
    return ["empty.png", "style.png"], ["empty.png", "empty"]


def _text(d):
    (d / "notes.jpg").write_text("these are my holiday notes, not a picture\n" * 20)
    return ["notes.jpg", "style.png"], ["notes.jpg", "not an image"]


def _truncated_jpeg(d):
    noise_image(96, 64).save(d / "cut.jpg", quality=95)
    data = (d / "cut.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(data[:len(data) // 2])
    return ["cut.jpg", "style.png"], ["cut.jpg", "truncated"]


def _truncated_png(d):
    noise_image(96, 64).save(d / "cut.png")
    data = (d / "cut.png").read_bytes()
    (d / "cut.png").write_bytes(data[:int(len(data) * 0.6)])
    return ["cut.png", "style.png"], ["cut.png", "truncated"]


def _bomb(d):
    # 60000 x 60000 declared in a 100-byte file: 3.6 gigapixels, 10 GB once decoded
    (d / "bomb.png").write_bytes(png_bytes(60000, 60000, idat=zlib.compress(b"\x00" * 1000)))
    return ["bomb.png", "style.png"], ["bomb.png", "megapixels", "--max-pixels"]


def _limit_flag(d):
    return ["content.png", "style.png", "--max-pixels", "1000"], ["content.png", "above the limit"]


def _too_small(d):
    gradient_image(400, 4).save(d / "strip.png")
    return ["strip.png", "style.png", "--size", "64"], ["strip.png", "too small", "relu5_1", "size of 1600"]


def _second_style_broken(d):
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return ["content.png", "style.png", "broken.png"], ["style image 2", "broken.png"]


def _init_missing(d):
    return ["content.png", "style.png", "--init", "start.png"], ["init image", "start.png", "no such file"]


def _out_is_input(d):
    return ["content.png", "style.png", "-o", "content.png"], ["never overwrites an input"]


def _out_is_style_by_another_name(d):
    return ["content.png", "style.png", "-o", "./sub/../style.png"], ["never overwrites an input"]


def _out_folder_missing(d):
    return ["content.png", "style.png", "-o", "no/such/dir/out.png"], ["does not exist"]


def _out_suffix(d):
    return ["content.png", "style.png", "-o", "out.xyz"], ["suffix", ".xyz"]


def _out_is_folder(d):
    (d / "results.png").mkdir()
    return ["content.png", "style.png", "-o", "results.png"], ["is a folder"]


def _out_unwritable(d):
    return ["content.png", "style.png", "-o", "/proc/nstyle-out.png"], ["cannot write"]


def _log_is_input(d):
    return ["content.png", "style.png", "--log-json", "style.png"], ["log file", "never overwrites"]


def _save_every_over_input(d):
    gradient_image(64, 48).save(d / "out_iter300.png")
    return ["out_iter300.png", "style.png", "--save-every", "100"], ["--save-every", "out_iter300.png"]


def _memory(d):
    return ["content.png", "style.png", "--size", "200000"], ["memory", "largest size that fits"]


def _nan_weight(d):
    return ["content.png", "style.png", "--style-weight", "nan"], ["--style-weight", "finite"]


def _negative_iters(d):
    return ["content.png", "style.png", "--iters", "-3"], ["--iters", ">= 0"]


def _iters_per_stage_mismatch(d):
    return ["content.png", "style.png", "--scales", "32,64", "--iters", "1,2,3"], ["3 iteration counts", "2 scales"]


def _unknown_layer(d):
    return ["content.png", "style.png", "--style-layers", "relu1_1,relu9_9"], ["relu9_9", "unknown"]


# The cases issue 7 lists run in a real subprocess; the rest go through the same code in this process
# (cli.main), which is faster and checks the same things.
SUBPROCESS_CASES = [_missing, _folder, _empty, _text, _truncated_jpeg, _truncated_png, _bomb, _too_small,
                    _out_is_input, _nan_weight, _negative_iters, _memory]
IN_PROCESS_CASES = [_limit_flag, _second_style_broken, _init_missing, _out_is_style_by_another_name,
                    _out_folder_missing, _out_suffix, _out_is_folder, _out_unwritable, _log_is_input,
                    _iters_per_stage_mismatch, _unknown_layer, _save_every_over_input]


def _setup_case(tmp_path, case):
    gradient_image(64, 48).save(tmp_path / "content.png")
    stripes_image(48, 48).save(tmp_path / "style.png")
    (tmp_path / "sub").mkdir()
    args, needles = case(tmp_path)
    if "-o" not in args:
        args = args + ["-o", "out.png"]
    if "--iters" not in args:
        args = args + ["--iters", "1000000"]
    if case is _out_unwritable and _proc_is_writable():
        pytest.skip("/proc is writable here")
    before = {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()}
    return args, needles, before


def _check_nothing_changed(tmp_path, before):
    after = {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()}
    assert after == before, "an input changed, or an output appeared"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=lambda f: f.__name__.strip("_"))
def test_bad_input_fails_fast_with_one_line(tmp_path, case, startup_seconds):
    args, needles, before = _setup_case(tmp_path, case)
    result = nstyle(tmp_path, "stylize", *args, NSTYLE_WEIGHTS=tmp_path / "weights-not-reached.h5")
    assert_one_line_error(result, 2, *needles)
    assert "weights-not-reached" not in result.err, f"it got as far as the weights: {result}"
    # fail fast: a couple of seconds of work beyond starting up, although --iters asks for a million
    assert result.cpu_seconds < startup_seconds + 3, f"{result!r} (startup {startup_seconds:.1f}s of CPU)"
    _check_nothing_changed(tmp_path, before)


class _Result:
    def __init__(self, code, err, seconds):
        self.code, self.err, self.seconds = code, err, seconds

    def __repr__(self):
        return f"exit {self.code} after {self.seconds:.1f}s: {self.err}"


@pytest.mark.parametrize("case", IN_PROCESS_CASES, ids=lambda f: f.__name__.strip("_"))
def test_more_bad_input_fails_fast_in_process(tmp_path, case, monkeypatch, capsys):
    args, needles, before = _setup_case(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NSTYLE_WEIGHTS", str(tmp_path / "weights-not-reached.h5"))
    start = time.perf_counter()
    try:
        code = cli.main(["stylize", *args])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    result = _Result(code, capsys.readouterr().err, time.perf_counter() - start)
    assert_one_line_error(result, 2, *needles)
    assert "weights-not-reached" not in result.err, f"it got as far as the weights: {result}"
    assert result.seconds < 5, result
    _check_nothing_changed(tmp_path, before)


def _proc_is_writable():
    try:
        with open("/proc/nstyle-probe", "w"):
            return True
    except OSError:
        return False


# --- weights files: every failure is one line, exit 2, and a previous OUT survives ------------------

def _weights_missing(d):
    return d / "nope.h5", ["nope.h5", "not found"]


def _weights_text(d):
    (d / "w.h5").write_text("not weights")
    return d / "w.h5", ["w.h5"]


def _weights_truncated(d, real=None):
    data = real.read_bytes()
    (d / "cut.h5").write_bytes(data[:len(data) // 3])
    return d / "cut.h5", ["cut.h5"]


def _weights_wrong_shapes(d):
    from nstyle.model.gradcheck import random_vgg_params
    from nstyle.weights.store import write_hdf5
    write_hdf5(random_vgg_params(np.random.default_rng(0)), d / "narrow.h5")
    return d / "narrow.h5", ["narrow.h5", "conv1_1"]


class _RunsACommand:
    """Unpickling this calls os.system: what a hostile .pth file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def _weights_malicious_pickle(d):
    import pickle
    (d / "evil.pth").write_bytes(pickle.dumps(_RunsACommand(d / "PWNED")))
    return d / "evil.pth", ["evil.pth", "refused"]


@pytest.mark.parametrize("case", [_weights_missing, _weights_text, _weights_truncated, _weights_wrong_shapes,
                                  _weights_malicious_pickle],
                         ids=lambda f: f.__name__.strip("_"))
def test_weights_failures_are_one_line_and_keep_the_previous_output(tmp_path, case, weights, startup_seconds):
    gradient_image(64, 48).save(tmp_path / "content.png")
    stripes_image(48, 48).save(tmp_path / "style.png")
    (tmp_path / "out.png").write_bytes(b"the result of yesterday's long run")
    path, needles = case(tmp_path, weights) if case is _weights_truncated else case(tmp_path)
    before = {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()}
    result = nstyle(tmp_path, "stylize", "content.png", "style.png", "-o", "out.png", "--iters", "1000000",
                    "--weights", path)
    assert_one_line_error(result, 2, *needles)
    assert not (tmp_path / "PWNED").exists(), "the weights file ran a command"
    assert result.cpu_seconds < startup_seconds + 5, f"{result!r} (startup {startup_seconds:.1f}s of CPU)"
    assert {p.name: digest(p) for p in tmp_path.iterdir() if p.is_file()} == before
    assert leftovers(tmp_path) == []


# --- a loss that stops being a number --------------------------------------------------------------

def test_nonfinite_loss_stops_reports_the_iteration_and_keeps_the_best_image(tmp_path, weights):
    gradient_image(48, 32).save(tmp_path / "content.png")
    stripes_image(48, 48).save(tmp_path / "style.png")
    # Adam with an absurd step and no bounds: the second iterate is ~1e38 per pixel and the loss overflows
    result = nstyle(tmp_path, "stylize", "content.png", "style.png", "-o", "out.png", "--size", "32",
                    "--iters", "1000000", "--optimizer", "adam", "--lr", "1e38", "--no-bounds",
                    "--weights", weights, "--log-json", "log.json", "--quiet", *FAST_LAYERS)
    assert_one_line_error(result, 1, "iteration 2", "out.png", "best image")
    img = load_rgb(tmp_path / "out.png")
    assert img.size == (32, 21)
    # the best image is the first iterate: the content itself, since Adam starts there
    start = np.asarray(Image.open(tmp_path / "content.png").resize((32, 21), Image.Resampling.LANCZOS), float)
    assert np.abs(np.asarray(img, float) - start).mean() < 2.0
    assert '"status": "nonfinite"' in (tmp_path / "log.json").read_text()
    assert leftovers(tmp_path) == []


# --- odd input just works ------------------------------------------------------------------------

def _exif_rotated(path):
    """Stored 60 wide x 30 high, left half red; EXIF orientation 6: shown rotated 90 degrees clockwise."""
    arr = np.zeros((30, 60, 3), np.uint8)
    arr[:, :30] = (255, 0, 0)
    arr[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(path, quality=95, exif=exif)


def make_odd(kind, path):
    """Write an odd-but-valid image; returns the (width, height) and one RGB pixel a viewer shows."""
    if kind == "grey":
        Image.new("L", (40, 30), 77).save(path)
        return (40, 30), ((5, 5), (77, 77, 77))
    if kind == "palette_transparent":
        img = Image.new("P", (40, 30), 1)
        img.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
        img.paste(0, (0, 0, 20, 30))
        img.save(path, transparency=0)  # index 0 transparent: the left half shows the white page
        return (40, 30), ((5, 5), (255, 255, 255))
    if kind == "rgba":
        Image.new("RGBA", (40, 30), (0, 0, 255, 128)).save(path)
        return (40, 30), ((5, 5), (127, 127, 255))
    if kind == "cmyk":
        Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(path, quality=100)
        return (40, 30), ((5, 5), (255, 0, 0))
    if kind == "sixteen_bit":
        Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(path)
        return (40, 30), ((5, 5), (156, 156, 156))
    if kind == "exif_rotated":
        _exif_rotated(path)
        return (30, 60), ((15, 5), (255, 0, 0))  # the red half is now on top
    if kind == "animated":
        frames = [Image.new("RGB", (40, 30), c) for c in ((0, 200, 0), (200, 0, 0))]
        frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
        return (40, 30), ((5, 5), (0, 200, 0))
    if kind == "one_pixel":
        Image.new("RGB", (1, 1), (10, 20, 30)).save(path)
        return (1, 1), ((0, 0), (10, 20, 30))
    if kind == "float_tiff":
        Image.fromarray(np.full((30, 40), 0.5, np.float32)).save(path)
        return (40, 30), ((5, 5), (128, 128, 128))
    raise ValueError(kind)


ODD = {"grey": "png", "palette_transparent": "png", "rgba": "png", "cmyk": "jpg", "sixteen_bit": "png",
       "exif_rotated": "jpg", "animated": "gif", "one_pixel": "png", "float_tiff": "tif"}


@pytest.mark.parametrize("kind", sorted(ODD))
def test_odd_images_load_as_a_viewer_shows_them(tmp_path, kind):
    path = tmp_path / f"odd.{ODD[kind]}"
    size, (xy, rgb) = make_odd(kind, path)
    img = load_rgb(path)
    assert img.mode == "RGB" and img.size == size, f"{kind}: {img.mode} {img.size}"
    got = np.asarray(img)[xy[1], xy[0]]
    assert np.abs(got.astype(int) - rgb).max() <= 3, f"{kind}: pixel {xy} is {tuple(got)}, expected {rgb}"


@pytest.mark.parametrize("kind", sorted(ODD))
def test_odd_images_pass_the_command_lines_checks(tmp_path, kind, capsys):
    path = tmp_path / f"odd.{ODD[kind]}"
    size, _ = make_odd(kind, path)
    stripes_image(40, 40).save(tmp_path / "style.png")
    code = cli.main(["stylize", str(path), str(tmp_path / "style.png"), "--size", "64", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    w, h = size
    expect = (64, max(1, round(h * 64 / w))) if w >= h else (max(1, round(w * 64 / h)), 64)
    assert f"output size      {expect[0]}x{expect[1]}" in out, out


def test_odd_images_run_end_to_end_in_the_displayed_orientation(tmp_path, weights):
    make_odd("exif_rotated", tmp_path / "photo.jpg")
    make_odd("palette_transparent", tmp_path / "style.png")
    result = nstyle(tmp_path, "stylize", "photo.jpg", "style.png", "-o", "out.jpg", "--size", "40", "--iters", "2",
                    "--weights", weights, *FAST_LAYERS)
    assert result.code == 0, result
    assert Image.open(tmp_path / "out.jpg").size == (20, 40), "the output follows the displayed orientation"


def test_debug_shows_the_traceback(tmp_path):
    result = nstyle(tmp_path, "stylize", "nope.png", "style.png", "-o", "out.png", "--debug")
    assert result.code != 0 and "Traceback" in result.err and "InputError" in result.err, result


def test_loader_errors_name_the_file(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x00" * 10)
    with pytest.raises(InputError, match="x.png"):
        load_rgb(tmp_path / "x.png")
    with pytest.raises(InputError, match="above the limit"):
        noise_image(20, 20).save(tmp_path / "y.png")
        load_rgb(tmp_path / "y.png", max_pixels=399)
    assert load_rgb(tmp_path / "y.png", max_pixels=400).size == (20, 20)
    assert load_rgb(tmp_path / "y.png", max_pixels=None).size == (20, 20)


def test_pillow_limit_is_restored(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    (tmp_path / "b.png").write_bytes(png_bytes(60000, 60000))
    with pytest.raises(InputError):
        load_rgb(tmp_path / "b.png")
    assert Image.MAX_IMAGE_PIXELS == before
    (tmp_path / "c.png").write_bytes(png_bytes(3000, 2000, idat=b"not zlib data"))
    t = time.perf_counter()
    with pytest.raises(InputError, match="damaged"):
        load_rgb(tmp_path / "c.png", max_pixels=None)  # no limit: the header passes, the data is bogus
    assert time.perf_counter() - t < 10
    assert Image.MAX_IMAGE_PIXELS == before


@pytest.mark.parametrize("argv", [["--debug", "stylize", "nope.png", "s.png", "-o", "o.png"],
                                  ["stylize", "nope.png", "s.png", "-o", "o.png", "--debug"],
                                  ["weights", "info", "/no/such/weights.h5", "--debug"]])
def test_debug_works_before_or_after_the_sub_command(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2  # --debug adds the traceback and keeps the exit code
    assert "Traceback" in capsys.readouterr().err
    assert cli.main([a for a in argv if a != "--debug"]) == 2
    assert "Traceback" not in capsys.readouterr().err
