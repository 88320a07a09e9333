"""The API converts images as the files path does (issue 26 item 7): a PIL image of any mode given to
``stylize``/``prepare`` (content, style, init, masks) or to ``preprocess`` gives exactly the pixels the same
image gives when saved to a file and named by its path. Arrays keep their strict checks."""
import numpy as np
import pytest
from PIL import Image

import nstyle
from nstyle.app.files.imageio import load_rgb
from nstyle.app.run.masks import read_segmentation
from nstyle.app.run.stylize import prepare
from nstyle.errors import InputError

from .clitools import gradient_image, stripes_image

W, H = 40, 30


def _ramp(dtype, top, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    return ((xx + yy * W) / (W * H) * top * 0.9 + rng.uniform(0, top * 0.1, (H, W))).astype(dtype)


def _rgba():
    arr = np.asarray(gradient_image(W, H)).copy()
    alpha = _ramp(np.uint8, 255, seed=1)
    return Image.fromarray(np.dstack([arr, alpha]), "RGBA")


def _palette(transparent):
    im = gradient_image(W, H).quantize(16)
    if transparent:
        im.info["transparency"] = 3
    return im


def _with_transparency(im):
    """``im`` with its first pixel's value marked transparent (it appears all over a gradient or stripes)."""
    im.info["transparency"] = im.getpixel((0, 0))
    return im


def _pa():
    im = _palette(False).convert("PA")
    im.putalpha(Image.fromarray(_ramp(np.uint8, 255, seed=2), "L"))
    return im


CASES = {
    "I;16": lambda: Image.fromarray(_ramp(np.uint16, 65535)),
    "I;16 below 256": lambda: Image.fromarray(_ramp(np.uint16, 200)),
    "I": lambda: Image.fromarray(_ramp(np.int32, 70000), "I"),
    "I below 256": lambda: Image.fromarray(_ramp(np.int32, 250), "I"),
    "F 0..1": lambda: Image.fromarray(_ramp(np.float32, 1.0), "F"),
    "F 0..255": lambda: Image.fromarray(_ramp(np.float32, 255.0), "F"),
    "RGBA": _rgba,
    "LA": lambda: _rgba().convert("LA"),
    "PA": _pa,
    "P": lambda: _palette(False),
    "P with transparency": lambda: _palette(True),
    "CMYK": lambda: gradient_image(W, H).convert("CMYK"),
    "1": lambda: gradient_image(W, H).convert("1"),
    "L": lambda: gradient_image(W, H).convert("L"),
    "L with transparency": lambda: _with_transparency(gradient_image(W, H).convert("L")),
    "RGB with transparency": lambda: _with_transparency(stripes_image(W, H)),
    "YCbCr": lambda: gradient_image(W, H).convert("YCbCr"),
}


def saved(im, folder, name):
    """``im`` in a file that keeps its mode and pixels exactly: PNG where Pillow writes the mode, else TIFF."""
    for suffix in (".png", ".tif"):
        path = folder / (name.replace(" ", "_").replace(".", "_") + suffix)
        try:
            im.save(path)
        except (OSError, ValueError, KeyError):
            continue
        with Image.open(path) as back:
            if back.mode == im.mode or (im.mode.startswith("I;16") and back.mode.startswith("I;16")):
                return path
    pytest.skip(f"no lossless format keeps mode {im.mode} in this Pillow")


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_pil_image_gives_the_pixels_its_file_gives(name, tmp_path):
    im = CASES[name]()
    path = saved(im, tmp_path, name)
    by_path = nstyle.preprocess(load_rgb(path))
    assert np.array_equal(nstyle.preprocess(CASES[name]()), by_path), name
    style = stripes_image(32, 32)
    as_content = [prepare(item, style, size=W, iters=0).content for item in (CASES[name](), path)]
    as_style = [prepare(stripes_image(W, H), item, size=W, iters=0).styles[0] for item in (CASES[name](), path)]
    as_init = [prepare(stripes_image(W, H), style, size=W, iters=0, init=item).init for item in (CASES[name](), path)]
    for pair in (as_content, as_style, as_init):
        assert pair[0].mode == pair[1].mode == "RGB" and pair[0].size == pair[1].size == (W, H), name
        assert np.array_equal(np.asarray(pair[0]), np.asarray(pair[1])), name


def test_the_object_is_not_changed_or_aliased():
    im = CASES["RGBA"]()
    before = np.asarray(im).copy()
    plan = prepare(im, stripes_image(32, 32), size=W, iters=0)
    assert plan.content is not im and np.array_equal(np.asarray(im), before) and im.mode == "RGBA"


def test_an_opened_file_with_exif_orientation_shows_as_its_path_does(tmp_path):
    """An image opened from a file (EXIF orientation 6: rotate on display) given as an object is shown the
    way its path is: rotated."""
    exif = Image.Exif()
    exif[0x0112] = 6
    gradient_image(W, H).save(tmp_path / "turned.png", exif=exif)
    by_path = load_rgb(tmp_path / "turned.png")
    assert by_path.size == (H, W)
    with Image.open(tmp_path / "turned.png") as opened:
        plan = prepare(opened, stripes_image(32, 32), size=W, iters=0)
        assert np.array_equal(np.asarray(plan.content), np.asarray(by_path.resize(plan.content.size)))
        assert np.array_equal(nstyle.preprocess(opened), nstyle.preprocess(by_path))


@pytest.mark.parametrize("mode", ["P", "L", "RGBA", "1"])
def test_a_mask_as_an_object_reads_as_its_file(mode, tmp_path):
    arr = np.zeros((H, W, 3), np.uint8)
    arr[:, : W // 2] = (255, 0, 0)
    arr[:, W // 2:] = (0, 0, 255)
    mask = Image.fromarray(arr, "RGB")
    mask = mask.quantize(2) if mode == "P" else mask.convert(mode)
    if mode == "RGBA":  # a mask with a transparent half: composited over white, as a viewer shows it
        a = np.asarray(mask).copy()
        a[:, : W // 4, 3] = 0
        mask = Image.fromarray(a, "RGBA")
    path = saved(mask, tmp_path, "mask")
    from_object, from_path = (read_segmentation(m, "mask", (W, H)) for m in (mask, path))
    assert from_object.keys == from_path.keys
    assert np.array_equal(from_object.labels, from_path.labels)


@pytest.mark.parametrize("array, message", [
    (np.zeros((H, W, 3), np.uint16), "uint8"),
    (np.zeros((H, W, 4), np.uint8), "uint8"),
    (np.zeros((H, W), np.float32), "uint8"),
])
def test_arrays_keep_their_strict_checks(array, message):
    with pytest.raises(InputError, match=message):
        prepare(array, stripes_image(32, 32), size=W, iters=0)
