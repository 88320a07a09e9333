"""Segmentation masks for spatial control: reading them, snapping their colours, pairing the regions.

A segmentation is an image the size (or at least the shape) of its photo or painting, one flat colour per
region. Drawing programs anti-alias the edges between regions, so a mask holds a few blended colours
besides its flat ones: the colours *in use* are those that fill a 3x3 block somewhere (an edge's blend
never does), and every pixel snaps to the nearest of them. Colours are named on the command line by
name (:data:`COLOR_NAMES`) or as ``#rrggbb``; a name means the colour in use nearest to it (within
:data:`MATCH_DISTANCE`), so a mask painted in a slightly different red still answers to ``red``.

How regions pair up (``plan_regions``):
- with ``style_masks`` (one per style image): a region of colour c of the output takes its target from
  the regions of colour c in the style images, blended with the blend weights of the images that have it;
- with ``region_styles`` (``{colour: image number}``, 1-based): region c takes the whole of style image I.
Everything is checked before any work: an unreadable mask, a mask whose aspect ratio is more than 2%
off its image's, more than :data:`MAX_REGIONS` colours in use (a photo, noise or a JPEG given as a mask),
a content colour with no source region, an unknown colour name or image number, both ways of pairing at
once. Reading a mask is linear in its pixels: snapping works on its distinct colours (one sort), not on
every pixel for every colour in use.
"""
import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ...errors import InputError
from ...validate import normalised_weights
from ..files.imageio import DEFAULT_MAX_PIXELS, load_rgb, viewed_rgb

COLOR_NAMES = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "black": (0, 0, 0),
               "white": (255, 255, 255), "yellow": (255, 255, 0), "grey": (128, 128, 128),
               "gray": (128, 128, 128), "cyan": (0, 255, 255), "magenta": (255, 0, 255)}
MASK_MODES = ("inside", "all", "simple")
ASPECT_TOLERANCE = 0.02
MATCH_DISTANCE = 64.0   # RGB distance within which a named colour, or a style mask's colour, matches
# A region costs a guided Gram matrix per style layer and image; a segmentation drawn by hand has a few.
# More colours in use than this is not a segmentation (noise, a photo, JPEG's ringing around flat areas).
MAX_REGIONS = 64
_NAMED = 5   # colours an error lists: the most frequent ones
_SNAP_CHUNK = 1 << 16   # distinct colours per step of the snapping (a chunk x regions distance table)


def parse_color(text):
    """'red' or '#rrggbb' -> (r, g, b); InputError listing the valid names otherwise."""
    t = str(text).strip().lower()
    if t in COLOR_NAMES:
        return COLOR_NAMES[t]
    if len(t) == 7 and t[0] == "#":
        try:
            return tuple(int(t[i:i + 2], 16) for i in (1, 3, 5))
        except ValueError:
            pass
    raise InputError(f"unknown colour {text!r}", hint="use #rrggbb or one of " + ", ".join(
        n for n in COLOR_NAMES if n != "gray"))


def color_key(rgb):
    """A region's name: the colour's name when it is one of COLOR_NAMES exactly, else #rrggbb."""
    rgb = tuple(int(v) for v in rgb)
    for name, value in COLOR_NAMES.items():
        if value == rgb and name != "gray":
            return name
    return "#%02x%02x%02x" % rgb


@dataclass
class Segmentation:
    """A snapped segmentation: ``labels`` (H, W) indexes ``colors`` ((r, g, b) per region)."""
    labels: np.ndarray
    colors: list
    what: str

    @property
    def keys(self):
        return [color_key(c) for c in self.colors]

    def nearest(self, rgb, limit=MATCH_DISTANCE):
        """The index of the colour in use nearest ``rgb``, or None when none is within ``limit``."""
        d = [float(np.linalg.norm(np.subtract(c, rgb, dtype=np.float64))) for c in self.colors]
        i = int(np.argmin(d))
        return i if d[i] <= limit else None

    def masks(self, size):
        """``{key: (h, w) float64 mask}`` at ``size`` = (width, height): each region's area fraction per
        pixel (box filter: soft edges where a pixel straddles two regions)."""
        out = {}
        for i, key in enumerate(self.keys):
            binary = Image.fromarray((self.labels == i).astype(np.float32), "F")
            out[key] = np.clip(np.asarray(binary.resize(size, Image.Resampling.BOX), dtype=np.float64), 0, 1)
        return out


def _pack(rgb):
    return (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]


def _unpack(value):
    return (int(value) >> 16) & 255, (int(value) >> 8) & 255, int(value) & 255


def colors_in_use(rgb, what="mask"):
    """The colours that fill at least one 3x3 block of ``rgb`` (H, W, 3) uint8, most frequent first.

    InputError, naming the count and the few most frequent, when there are more than MAX_REGIONS."""
    packed = _pack(rgb)
    h, w = packed.shape
    if h < 3 or w < 3:
        flat = packed.reshape(-1)
    else:
        centre = packed[1:-1, 1:-1]
        same = np.ones(centre.shape, bool)
        for dy in range(3):
            for dx in range(3):
                same &= packed[dy:dy + h - 2, dx:dx + w - 2] == centre
        flat = centre[same]
        if flat.size == 0:
            flat = packed.reshape(-1)
    values, counts = np.unique(flat, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    if len(values) > MAX_REGIONS:
        named = ", ".join(color_key(_unpack(v)) for v in values[order[:_NAMED]])
        raise InputError(f"{what} has {len(values):,} colours in use (most frequent: {named}, ...); a segmentation "
                         f"has one flat colour per region, at most {MAX_REGIONS}",
                         hint="paint each region in one flat colour and save the mask as PNG (JPEG blurs the "
                              "colours)")
    return [_unpack(v) for v in values[order]]


def snap(rgb, colors):
    """(H, W) int32: for each pixel the index of the nearest of ``colors`` (squared RGB distance; the
    first on ties). Measured once per distinct colour of the image -- a sort and a table of distinct
    colours x ``colors``, in chunks -- so a mask costs time linear in its pixels, whatever it holds."""
    values, inverse = np.unique(_pack(rgb).reshape(-1), return_inverse=True)
    palette = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], axis=1).astype(np.int32)
    targets = np.asarray(colors, np.int32).reshape(-1, 3)
    nearest = np.empty(len(values), np.int32)
    for start in range(0, len(values), _SNAP_CHUNK):
        d = ((palette[start:start + _SNAP_CHUNK, None, :] - targets[None, :, :]) ** 2).sum(axis=2)
        nearest[start:start + _SNAP_CHUNK] = d.argmin(axis=1)
    return nearest[inverse.reshape(-1)].reshape(rgb.shape[:2])


def read_segmentation(item, what, image_size, max_pixels=DEFAULT_MAX_PIXELS):
    """Load a segmentation (path, PIL image or uint8 array), check its shape against its image's
    (width, height) ``image_size``, and snap every pixel to the nearest colour in use."""
    if isinstance(item, Image.Image):
        img = viewed_rgb(item, what)  # any mode, as a file of it is read
    elif isinstance(item, (str, bytes)) or hasattr(item, "__fspath__"):
        what = f"{what} {os.fsdecode(item)}"
        img = load_rgb(item, max_pixels=max_pixels, what=what)
    else:
        arr = np.asarray(item)
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
            raise InputError(f"{what}: expected a path, a PIL image or a uint8 (H, W) or (H, W, 3) array")
        img = Image.fromarray(arr, "RGB")
    mask_ratio, image_ratio = img.width / img.height, image_size[0] / image_size[1]
    if abs(mask_ratio / image_ratio - 1) > ASPECT_TOLERANCE:
        raise InputError(f"{what} is {img.width}x{img.height} but its image is {image_size[0]}x{image_size[1]}: "
                         f"their aspect ratios differ by more than {ASPECT_TOLERANCE:.0%}",
                         hint="draw the mask over the image itself, at its size")
    rgb = np.asarray(img, dtype=np.uint8)
    colors = colors_in_use(rgb, what)
    return Segmentation(snap(rgb, colors), colors, what)


@dataclass
class RegionPlan:
    """The regions of a run: the content's segmentation, the style images' (or the whole-image sources),
    the weights and the mode. :meth:`masks_at` gives the objective's masks at one stage's sizes."""
    content: Segmentation
    styles: list                     # per style image: Segmentation or None
    sources: dict                    # content key -> {style index: style region key or None (whole image)}
    weights: dict                    # content key -> w
    mode: str
    notes: list = field(default_factory=list)

    @property
    def keys(self):
        return self.content.keys

    def masks_at(self, content_size, style_sizes):
        """(content_masks, style_masks, region_weights) for the objective at one stage's sizes."""
        content_masks = self.content.masks(content_size)
        style_masks = []
        for i, size in enumerate(style_sizes):
            seg = self.styles[i]
            per = seg.masks(size) if seg is not None else None
            style_masks.append({key: (None if src[i] is None else per[src[i]])
                                for key, src in self.sources.items() if i in src})
        return content_masks, style_masks, dict(self.weights)


def _pairs(spec, what, parse_value):
    """{colour: value} from a dict, or from 'COLOR=V,COLOR=V' text."""
    if isinstance(spec, str):
        items = []
        for part in spec.split(","):
            if "=" not in part:
                raise InputError(f"{what}: expected COLOR=VALUE items separated by commas, got {part!r}")
            items.append(tuple(p.strip() for p in part.split("=", 1)))
    else:
        items = list(dict(spec).items())
    out = {}
    for color, value in items:
        rgb = parse_color(color)
        if rgb in out:
            raise InputError(f"{what}: colour {color} is given twice")
        out[rgb] = (color, parse_value(color, value))
    return out


def plan_regions(content_img, style_imgs, content_mask, style_masks=None, region_styles=None,
                 region_weights=None, mask_mode="inside", max_pixels=DEFAULT_MAX_PIXELS):
    """Check every spatial-control setting and read every mask; returns a RegionPlan (or None when
    no content mask is given and nothing else asks for one)."""
    if content_mask is None:
        for name, value in (("style masks", style_masks), ("region styles", region_styles),
                            ("region weights", region_weights)):
            if value is not None:
                raise InputError(f"{name} need a content mask", hint="add --content-mask SEG")
        return None
    if mask_mode not in MASK_MODES:
        raise InputError(f"unknown mask mode {mask_mode!r}; choose {', '.join(MASK_MODES)}")
    if style_masks is not None and region_styles is not None:
        raise InputError("give style masks or region styles, not both",
                         hint="style masks pair regions by colour; region styles give a region a whole image")
    if style_masks is None and region_styles is None:
        raise InputError("a content mask needs style masks (one per style image) or region styles "
                         "(COLOR=I: which style image each region takes)")
    n = len(style_imgs)
    content = read_segmentation(content_mask, "content mask", content_img.size, max_pixels)
    keys = content.keys
    sources, styles = {key: {} for key in keys}, [None] * n
    if style_masks is not None:
        style_masks = list(style_masks)
        if len(style_masks) != n:
            raise InputError(f"{len(style_masks)} style mask(s) given for {n} style image(s)",
                             hint="give one mask per style image, in the same order")
        for i, (item, img) in enumerate(zip(style_masks, style_imgs)):
            seg = styles[i] = read_segmentation(item, f"style mask {i + 1}", img.size, max_pixels)
            for j, rgb in enumerate(seg.colors):
                k = content.nearest(rgb)
                if k is not None:
                    sources[keys[k]].setdefault(i, seg.keys[j])
    else:
        def index(color, value):
            try:
                v = int(str(value))
            except ValueError:
                v = None
            if v is None or not 1 <= v <= n:
                raise InputError(f"region styles: {color}={value} names no style image",
                                 hint=f"style images are numbered 1 to {n}")
            return v - 1
        for rgb, (color, i) in _pairs(region_styles, "region styles", index).items():
            k = content.nearest(rgb)
            if k is None:
                raise InputError(f"region styles: colour {color} is not in the content mask",
                                 hint="its colours: " + ", ".join(keys))
            sources[keys[k]][i] = None
    missing = [key for key in keys if not sources[key]]
    if missing:
        hint = ("every colour of the content mask needs the same colour in a style mask" if style_masks is not None
                else "add COLOR=I to --region-styles for each of them")
        listed = ", ".join(missing[:_NAMED]) + (f" and {len(missing) - _NAMED} more" if len(missing) > _NAMED else "")
        raise InputError(f"content mask colour(s) {listed} have no source region", hint=hint)
    weights = {key: 1.0 for key in keys}
    if region_weights is not None:
        def number(color, value):
            try:
                v = float(value)
            except (TypeError, ValueError):
                v = float("nan")
            if not np.isfinite(v) or v < 0:
                raise InputError(f"region weights: {color}={value} is not a finite number >= 0")
            return v
        for rgb, (color, w) in _pairs(region_weights, "region weights", number).items():
            k = content.nearest(rgb)
            if k is None:
                raise InputError(f"region weights: colour {color} is not in the content mask",
                                 hint="its colours: " + ", ".join(keys))
            weights[keys[k]] = w
        normalised_weights("region weight", list(weights.values()))  # none lost, no overflow
    return RegionPlan(content, styles, sources, weights, mask_mode)
