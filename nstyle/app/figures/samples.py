"""Sample images for ``nstyle demo``: a painting nstyle paints itself, and photos that ship with a package.

``swirl_painting`` draws a night sky of brush strokes that follow a swirling flow field, with stars, a
moon and a dark flame-shaped tree: bold strokes and strong colour, the kind of style image that makes
the transfer easy to see. It is generated here, from a seed, so the demo needs no image from elsewhere.

``bundled_photo`` returns one of the photographs inside scikit-image's wheel (the ``demo`` extra); those
files are part of the installed package, so nothing is downloaded. Their terms, as the docstrings of
``skimage.data`` give them: chelsea (Stefan van der Walt) and coffee (Rachel Michetti) are CC0;
astronaut is a NASA photograph with no known copyright restrictions; rocket was released into the
public domain by SpaceX.
"""
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from ...errors import InputError
from ..files.imageio import load_rgb

BUNDLED_PHOTOS = {"chelsea": "chelsea.png", "astronaut": "astronaut.png", "coffee": "coffee.png",
                  "rocket": "rocket.jpg"}

_SKY = [(16, 42, 110), (28, 72, 150), (52, 105, 180), (90, 145, 205), (140, 185, 220), (215, 225, 200)]
_STAR = [(250, 220, 80), (245, 200, 60), (255, 240, 150), (230, 170, 50)]
_TREE = [(20, 30, 25), (35, 50, 30), (50, 45, 30), (15, 20, 30)]
_HILLS = [(20, 40, 70), (35, 60, 90), (50, 70, 60), (25, 35, 50)]


def _flow_angle(x, y, vortices, width):
    """Direction of the brush at (x, y): a wavy drift to the right plus the pull of each vortex."""
    vx, vy = 1.0, 0.45 * math.sin(2 * math.pi * x / width * 1.5 + y / 60.0)
    for cx, cy, radius, spin in vortices:
        dx, dy = x - cx, y - cy
        falloff = spin / (1.0 + (dx * dx + dy * dy) / (radius * radius))
        norm = math.hypot(dx, dy) + 1e-6
        vx += -dy / norm * falloff * 3.0  # tangential: perpendicular to the radius
        vy += dx / norm * falloff * 3.0
    return math.atan2(vy, vx)


def _stroke(draw, rng, x, y, angle_at, colour, width, steps, step_len):
    points = [(x, y)]
    for _ in range(steps):
        a = angle_at(x, y)
        x, y = x + step_len * math.cos(a), y + step_len * math.sin(a)
        points.append((x, y))
    jitter = rng.integers(-14, 15, size=3)
    fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(colour, jitter))
    draw.line(points, fill=fill, width=width, joint="curve")


def swirl_painting(width=512, height=384, seed=0):
    """A generated night-sky 'painting' of brush strokes (RGB PIL image), the same for the same seed."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (width, height))
    yy = np.linspace(0, 1, height)[:, None, None]
    top, bottom = np.array(_SKY[0], float), np.array(_SKY[2], float)
    img.paste(Image.fromarray((top + (bottom - top) * yy).repeat(width, axis=1).astype(np.uint8), "RGB"))
    draw = ImageDraw.Draw(img)
    scale = max(width, height) / 512.0
    vortices = [(width * 0.45, height * 0.33, 70 * scale, 1.0), (width * 0.72, height * 0.22, 45 * scale, -0.8),
                (width * 0.2, height * 0.2, 40 * scale, 0.7)]
    stars = [(width * fx, height * fy, r * scale) for fx, fy, r in
             ((0.1, 0.12, 14), (0.32, 0.1, 11), (0.58, 0.45, 12), (0.87, 0.12, 26), (0.65, 0.08, 9),
              (0.9, 0.42, 10), (0.4, 0.55, 9))]

    def angle_at(x, y):
        return _flow_angle(x, y, vortices, width)

    horizon = 0.72 * height
    w_lo, w_hi = max(2, int(3 * scale)), max(3, int(7 * scale))
    for _ in range(int(5200 * scale * scale)):  # sky strokes
        x, y = rng.uniform(-20, width), rng.uniform(-10, horizon)
        near = min(math.hypot(x - cx, y - cy) / r for cx, cy, r, _ in vortices)
        palette = _SKY[2:] if near < 1.3 else _SKY[:4]
        colour = palette[rng.integers(len(palette))]
        _stroke(draw, rng, x, y, angle_at, colour, int(rng.integers(w_lo, w_hi)), int(rng.integers(4, 10)),
                3.0 * scale)
    for _ in range(int(1800 * scale * scale)):  # rolling hills below the horizon
        x, y = rng.uniform(-20, width), rng.uniform(horizon - 10, height + 5)
        colour = _HILLS[rng.integers(len(_HILLS))]
        _stroke(draw, rng, x, y, lambda x, y: 0.25 * math.sin(x / (40 * scale) + y / (25 * scale)), colour,
                int(rng.integers(w_lo, w_hi)), int(rng.integers(4, 9)), 3.0 * scale)
    for cx, cy, r in stars:  # halos of short strokes around each star, then its bright core
        for ring in np.linspace(1.2, 2.6, 4):
            for t in np.linspace(0, 2 * math.pi, int(14 * ring * r / (10 * scale)) + 6, endpoint=False):
                x, y = cx + ring * r * math.cos(t), cy + ring * r * math.sin(t)
                colour = _STAR[rng.integers(len(_STAR))] if ring < 2 else _SKY[4 + rng.integers(2)]
                _stroke(draw, rng, x, y, lambda x, y, cx=cx, cy=cy: math.atan2(y - cy, x - cx) + math.pi / 2,
                        colour, int(rng.integers(w_lo, w_hi)), 3, 2.5 * scale)
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_STAR[2])
    cx = width * 0.14  # a dark flame-shaped tree rising from the ground
    for _ in range(int(700 * scale * scale)):
        t = rng.uniform(0, 1)
        y = height - t * height * 0.85
        half = (1 - t) * 34 * scale + 4 * scale
        x = cx + rng.uniform(-half, half) + 8 * scale * math.sin(t * 9)
        colour = _TREE[rng.integers(len(_TREE))]
        _stroke(draw, rng, x, y, lambda x, y: -math.pi / 2 + 0.5 * math.sin(y / (12 * scale)), colour,
                int(rng.integers(w_lo, w_hi + 1)), int(rng.integers(3, 7)), 3.0 * scale)
    return img


def bundled_photo(name):
    """One of the photographs inside scikit-image's installed package, as an RGB PIL image."""
    if name not in BUNDLED_PHOTOS:
        raise InputError(f"unknown sample photo {name!r}; choose {', '.join(BUNDLED_PHOTOS)}")
    try:
        import importlib.util  # noqa: PLC0415
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the demo's sample photos come with scikit-image, which is not installed",
                         hint="pip install 'nstyle[demo]', or pass your own photo with --content PATH")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "data")
    path = os.path.join(folder, BUNDLED_PHOTOS[name])
    if not os.path.isfile(path):
        raise InputError(f"scikit-image is installed but its sample {BUNDLED_PHOTOS[name]} is not in {folder}",
                         hint="reinstall scikit-image, or pass your own photo with --content PATH")
    return load_rgb(path, what="sample photo")
