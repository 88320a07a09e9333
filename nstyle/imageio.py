"""Images in and out: load, resize, save, and the network's pre-/post-processing.

The network sees what Caffe's VGG-19 saw: BGR channel order, values 0..255, minus the ImageNet mean
pixel per channel, laid out (1, 3, H, W) float32. ``deprocess`` undoes that exactly (then rounds and
clips to 0..255).
"""
import os
import tempfile

import numpy as np
from PIL import Image

from .backend import to_host

# Caffe's ImageNet mean pixel, in B, G, R order (the order the VGG weights expect).
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def _as_rgb_array(img):
    if isinstance(img, Image.Image):
        img = img.convert("RGB") if img.mode != "RGB" else img
        return np.asarray(img, dtype=np.uint8)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3); got {arr.shape}")
    return arr


def preprocess(img):
    """PIL image or uint8 (H, W, 3) RGB array -> float32 (1, 3, H, W), BGR, minus the Caffe mean."""
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


def load_rgb(path):
    """Open an image file as an RGB PIL image, shown the way a viewer shows it (EXIF rotation applied)."""
    from PIL import ImageOps  # noqa: PLC0415

    with Image.open(path) as im:
        im.seek(0)  # animated images: the first frame
        im = ImageOps.exif_transpose(im)
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            # Composite transparency over white, as a viewer on a white page shows it.
            rgba = im.convert("RGBA")
            canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(canvas, rgba).convert("RGB")
        if im.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im, dtype=np.float64)
            top = 65535.0 if arr.max() > 255 else 255.0
            return Image.fromarray(np.clip(np.rint(arr / top * 255), 0, 255).astype(np.uint8)).convert("RGB")
        return im.convert("RGB")


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_image(img, path):
    """Write a PIL image atomically: to a temporary file beside ``path``, then rename over it.

    A crash or Ctrl-C part-way leaves any previous file at ``path`` intact and no partial file.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    suffix = os.path.splitext(path)[1] or ".png"
    fmt = Image.registered_extensions().get(suffix.lower())
    fd, tmp = tempfile.mkstemp(prefix=".nstyle-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            img.save(fh, format=fmt or "PNG")
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
