"""Images in and out: load, resize, save, and the network's pre-/post-processing.

The network sees what Caffe's VGG-19 saw: BGR channel order, values 0..255, minus the ImageNet mean
pixel per channel, laid out (1, 3, H, W) float32. ``deprocess`` undoes that exactly (then rounds and
clips to 0..255).
"""
import io
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ...atomic import atomic_write
from ...backend import to_host
from ...errors import InputError
from ...model import arch

# Caffe's ImageNet mean pixel, in B, G, R order (the order the VGG weights expect).
CAFFE_MEAN_BGR = np.array(arch.CAFFE_MEAN_BGR, dtype=np.float32)


def _as_rgb_array(img):
    """(H, W, 3) pixel values 0..255 from a PIL image, or from an array of 8-bit or float pixel values.

    A float array must hold pixel values, 0..255. One whose values all lie in 0..1 is refused: it is
    almost surely an image scaled to 0..1, which read as 0..255 would be almost black.
    """
    if isinstance(img, Image.Image):
        arr = np.asarray(viewed_rgb(img), dtype=np.uint8)  # any mode, as a file of it would be read
    else:
        arr = np.asarray(img)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise InputError(f"expected an RGB image of shape (H, W, 3); got an array of shape {arr.shape}")
        if arr.dtype.kind == "f":
            if arr.size and not np.isfinite(arr).all():
                raise InputError("the image array holds NaN or infinite values")
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise InputError(f"the image array's values run from {arr.min():g} to {arr.max():g}; pixel "
                                 "values must lie in 0..255")
            if arr.size and arr.max() <= 1.0 and arr.max() > 0:
                raise InputError("the float image array's values all lie in 0..1; nstyle reads pixel values "
                                 "0..255", hint="multiply by 255, or pass a uint8 array or a PIL image")
        elif arr.dtype.kind in "iub":
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise InputError(f"the image array's values run from {arr.min()} to {arr.max()}; pixel "
                                 "values must lie in 0..255")
        else:
            raise InputError(f"an image array of dtype {arr.dtype} is not an image")
    if 0 in arr.shape[:2]:
        raise InputError(f"the image is empty ({arr.shape[1]}x{arr.shape[0]} pixels)")
    return arr


def white_noise(width, height, seed):
    """A seeded white-noise RGB image (every channel uniform over 0..255): the paper's starting point."""
    noise = np.random.default_rng(seed).uniform(0, 255, size=(height, width, 3))
    return Image.fromarray(noise.astype(np.uint8), "RGB")


def preprocess(img):
    """PIL image or (H, W, 3) RGB array of pixel values 0..255 (uint8, or float) -> float32 (1, 3, H, W),
    BGR, minus the Caffe mean. InputError for anything that cannot be pixel values (see _as_rgb_array)."""
    rgb = _as_rgb_array(img).astype(np.float32)
    bgr = rgb[:, :, ::-1] - CAFFE_MEAN_BGR
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None])


def deprocess(x):
    """(1, 3, H, W) or (3, H, W) network-space array (NumPy or CuPy) -> PIL RGB image."""
    arr = np.asarray(to_host(x), dtype=np.float32)
    if arr.ndim == 4:
        arr = arr[0]
    bgr = arr.transpose(1, 2, 0) + CAFFE_MEAN_BGR
    rgb = np.clip(np.rint(bgr[:, :, ::-1]), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def pixel_bounds():
    """Per-channel (lower, upper) bounds in network space that keep every pixel inside 0..255."""
    return -CAFFE_MEAN_BGR.astype(np.float64), 255.0 - CAFFE_MEAN_BGR.astype(np.float64)


def fit_size(width, height, longest):
    """(w, h) scaled so the longer side is ``longest`` (at least 1 pixel each way)."""
    scale = longest / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_longest(img, longest):
    """Resize a PIL image so its longer side is ``longest`` pixels, keeping the aspect ratio."""
    size = fit_size(img.width, img.height, longest)
    if size == img.size:
        return img
    return img.resize(size, Image.Resampling.LANCZOS)


# Refuse images above this many pixels unless told otherwise (--max-pixels): a tiny file can declare
# huge dimensions (a "decompression bomb") and decoding it would take gigabytes. 100 megapixels is a
# 10000x10000 photo, 300 MB once decoded as RGB.
DEFAULT_MAX_PIXELS = 100_000_000

_TRANSPARENT_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


class _PillowBombGuardOff:
    """Turn off Pillow's own pixel limit while we apply ours (ours is adjustable, Pillow's is a global)."""

    def __enter__(self):
        self.saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None

    def __exit__(self, *exc):
        Image.MAX_IMAGE_PIXELS = self.saved


def _check_file(path, what):
    """Raise InputError unless ``path`` names a non-empty regular file we may read."""
    if not os.path.exists(path):
        raise InputError(f"{what} {path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{what} {path}: is a folder, not an image file")
    if not os.path.isfile(path):
        # FIFOs and devices: reading one could block forever or never end
        raise InputError(f"{what} {path}: is not a regular file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{what} {path}: permission denied")
    if os.path.getsize(path) == 0:
        raise InputError(f"{what} {path}: the file is empty (0 bytes)")


def _to_rgb(im):
    """Any Pillow image mode -> RGB, the way an image viewer would show it."""
    if im.mode in _TRANSPARENT_MODES or "transparency" in im.info:
        # Composite transparency over white, as a viewer on a white page shows it.
        rgba = im.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    if im.mode in _SIXTEEN_BIT_MODES or im.mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if im.mode in _SIXTEEN_BIT_MODES:
            top = 65535.0
        elif im.mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
            top = 1.0  # floating-point images are usually 0..1
        else:
            # 32-bit integer mode: 16-bit PNGs often arrive as "I"; treat values above 255 as 16-bit
            top = 65535.0 if arr.size and np.nanmax(arr) > 255 else 255.0
        grey = np.clip(np.rint(np.nan_to_num(arr) / top * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return im.convert("RGB")


def viewed_rgb(im, what="image"):
    """A PIL image -- decoded from a file, or made in memory and given to the API -- as the RGB image a
    viewer shows: EXIF orientation applied, transparency composited over white, 16-bit, 32-bit integer,
    float, palette, CMYK and 1-bit pixels mapped to 8-bit RGB (:func:`_to_rgb`). One conversion for both
    ways in, so an image gives the same pixels whether it arrives as an object or as a file of it.
    Always a new image (the caller's is never aliased). InputError when Pillow cannot convert its mode."""
    from PIL import ImageOps  # noqa: PLC0415

    width, height = im.size
    if width < 1 or height < 1:
        raise InputError(f"{what}: the image has no pixels ({width}x{height})")
    try:
        shown = ImageOps.exif_transpose(im)
    except Exception:  # a malformed EXIF block: show the pixels as stored
        shown = im
    try:
        rgb = _to_rgb(shown)
        rgb.load()
    except (ValueError, OSError) as exc:  # a mode Pillow cannot turn into RGB (LAB, say)
        raise InputError(f"{what}: cannot show a {im.mode} image as RGB ({exc})") from None
    return rgb.copy() if rgb is im else rgb


def load_rgb(path, max_pixels=DEFAULT_MAX_PIXELS, what="image"):
    """Open an image file as an RGB PIL image, shown the way a viewer shows it.

    EXIF rotation is applied (so the size is the displayed one), transparency is composited over
    white, animated images give their first frame, and grey, palette, CMYK and 16-bit images become
    8-bit RGB. Anything that is not a readable image -- missing, a folder, empty, another kind of file,
    truncated, corrupt, or above ``max_pixels`` pixels -- raises InputError naming the file.
    what: how to name the file in messages ("content image", "style image 2", ...).
    """
    path = os.fspath(path)
    _check_file(path, what)
    try:
        with warnings.catch_warnings(), _PillowBombGuardOff():
            warnings.simplefilter("ignore")  # Pillow's warnings about odd files: we decide what is fatal
            with Image.open(path) as im:
                width, height = im.size
                if width < 1 or height < 1:
                    raise InputError(f"{what} {path}: the image has no pixels ({width}x{height})")
                if max_pixels is not None and width * height > max_pixels:
                    raise InputError(
                        f"{what} {path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, above "
                        f"the limit of {max_pixels / 1e6:g} (a guard against decompression bombs)",
                        hint="if you trust the file, raise the limit with --max-pixels")
                im.seek(0)  # animated images: the first frame
                im.load()
                return viewed_rgb(im, f"{what} {path}")
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{what} {path}: not an image file Pillow can read",
                         hint="use PNG, JPEG, WebP, TIFF, BMP or GIF") from None
    except MemoryError:
        raise InputError(f"{what} {path}: not enough memory to decode this image") from None
    except Exception as exc:  # truncated or corrupt data: Pillow raises many kinds (OSError, SyntaxError, ...)
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{what} {path}: the image data is damaged or truncated ({detail})") from None


def image_size(path, max_pixels=DEFAULT_MAX_PIXELS, what="image"):
    """(width, height) of an image file as :func:`load_rgb` would show it, from its header alone: the
    file is checked as :func:`load_rgb` checks it (regular, readable, an image, within ``max_pixels``)
    without decoding its pixels -- so a folder of images is sized up before any is read."""
    path = os.fspath(path)
    _check_file(path, what)
    try:
        with warnings.catch_warnings(), _PillowBombGuardOff():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                width, height = im.size
                try:
                    turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientation: a quarter turn
                except Exception:  # a malformed EXIF block: load_rgb shows the pixels as stored
                    turned = False
    except UnidentifiedImageError:
        raise InputError(f"{what} {path}: not an image file Pillow can read",
                         hint="use PNG, JPEG, WebP, TIFF, BMP or GIF") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{what} {path}: the image data is damaged or truncated ({exc})") from None
    if width < 1 or height < 1:
        raise InputError(f"{what} {path}: the image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise InputError(f"{what} {path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, above "
                         f"the limit of {max_pixels / 1e6:g} (a guard against decompression bombs)",
                         hint="if you trust the file, raise the limit with --max-pixels")
    return (height, width) if turned else (width, height)


def output_format(path, what="output"):
    """The Pillow format name for an output path's suffix; InputError when Pillow cannot write an RGB
    image in it (no suffix, an unknown one, or a format that takes other modes only, like XBM's 1-bit).

    Checked with a real 1x1 RGB save to memory, so what is refused here is exactly what would fail at
    the end of a run."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    fmt = Image.registered_extensions().get(suffix)
    hint = "end the name with .png, .jpg, .webp, .tif or .bmp"
    if not suffix or fmt is None or fmt not in Image.SAVE:
        raise InputError(f"{what} {path}: cannot tell which image format to write from its suffix "
                         f"{suffix or '(none)'}", hint=hint)
    if fmt not in _RGB_WRITABLE:
        try:
            Image.new("RGB", (1, 1)).save(io.BytesIO(), format=fmt)
        except Exception as exc:  # Pillow raises OSError, ValueError, KeyError... by format
            raise InputError(f"{what} {path}: Pillow cannot write an RGB image as {fmt} ({exc})",
                             hint=hint) from None
        _RGB_WRITABLE.add(fmt)
    return fmt


_RGB_WRITABLE = set()


def save_image(img, path):
    """Write a PIL image atomically (see ``atomic.py``), in the format its suffix names (InputError for
    a suffix Pillow cannot write as RGB: see :func:`output_format`).

    A crash or Ctrl-C part-way leaves any previous file at ``path`` intact and no partial file.
    """
    fmt = output_format(path)
    return atomic_write(path, lambda fh: img.save(fh, format=fmt))
