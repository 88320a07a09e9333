"""The plan and the geometry of a tiled run (``tiles/run.py`` runs it): base size, tile grid, overlap,
passes, blending weights, and the assembly of the output from its tiles, a strip at a time.

- the grid. Along each axis, n tiles of ``tile`` pixels spread evenly over the length, neighbours
  overlapping by at least ``overlap`` pixels (:func:`axis_tiles`). The optional second pass cuts the
  picture at the centres of the first pass's tiles (:func:`shifted_axis_tiles`): its tiles are
  centred on the first pass's seams, so whatever seam the first left is refined from inside a tile.
- the blend. A tile's weight is the product of two 1-D weights: 1 inside the tile, falling to 0 with a
  raised cosine ``overlap`` pixels wide in the middle of each overlap with a neighbour (the rest of a
  wider overlap is context only: the zero padding a tile sees at its borders stays out of the
  picture), divided by the sum over the tiles -- so the weights of the tiles covering a pixel add up to
  1 at every pixel, a partition of unity (:func:`axis_weights`; where two tiles overlap the ramps add
  up to 1 already). Overlap 0 gives hard seams: a cut in the middle of each overlap.
- the assembly (``tiles/blend.py``): any box of the picture is the weighted sum of the tiles over it,
  rounded to 8 bits. The output is built in row strips and the second pass's starting crops are boxes
  of the first pass's blend, so no full-size float array ever exists. A tile not made yet (an
  interrupted run) counts as its starting crop.
"""
import math
from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from ...model.arch import LAYER_INDEX, channels, pools_before
from ...validate import whole_number
from ..files.imageio import fit_size
from ..run.memory import (OTHER_FRACTION, available_bytes, estimate, format_bytes, gpu_available_bytes,
                     largest_fitting_size)

STRIP_ROWS = 128            # rows of the output summed at a time
STATS_MARGIN = 96           # pixels of context around each block of a large style image (tiles.work.style_grams)
DEFAULT_OVERLAP = 0.125     # of the tile's side; chosen by measurement (bench/bench_tiles.py, README)
DEFAULT_TILE = 1024         # tile side when the size alone asked for tiles (tile="auto")


# ---------------------------------------------------------------------------------------------------
# One axis.

def axis_tiles(length, tile, overlap):
    """[(start, end)]: the fewest tiles of ``tile`` pixels covering 0..length with neighbours
    overlapping by at least ``overlap`` pixels, spread evenly (one tile when it covers the length)."""
    if tile >= length:
        return [(0, length)]
    n = math.ceil((length - overlap) / (tile - overlap))
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    return [(s, s + tile) for s in starts]


def shifted_axis_tiles(intervals, length, overlap):
    """The second pass's intervals: cut at the centres of ``intervals``' tiles, each cut widened to an
    overlap of ``overlap`` pixels; n tiles give n + 1 (every one at most as long as the first pass's)."""
    if len(intervals) == 1:
        return list(intervals)
    half = overlap / 2
    centres = [(s + e) / 2 for s, e in intervals]
    cuts = [(max(0, round(c - half)), min(length, round(c + half))) for c in centres]
    starts = [0] + [a for a, _ in cuts]
    ends = [b for _, b in cuts] + [length]
    return list(zip(starts, ends))


def _ramp(n, rising, width):
    """n samples rising from 0 to 1 (or falling): a raised cosine over the middle ``width`` of them (at
    least one) at the pixel centres, 0 before it and 1 after."""
    m = max(1, min(n, width))
    m += (n - m) % 2  # centred exactly, so that a neighbour's mirror image of it adds up to 1
    lead = (n - m) // 2
    t = (np.arange(m) + 0.5) / m
    up = np.concatenate([np.zeros(lead), 0.5 - 0.5 * np.cos(np.pi * t), np.ones(n - m - lead)])
    return up if rising else up[::-1]


def axis_weights(intervals, length, ramp):
    """One float64 weight array per interval (its own length): a partition of unity along the axis,
    with ramps ``ramp`` pixels wide (at most the overlap) in the middle of each overlap."""
    raw = []
    for i, (s, e) in enumerate(intervals):
        w = np.ones(e - s)
        for j, (s2, e2) in enumerate(intervals):
            if j == i:
                continue
            lo, hi = max(s, s2), min(e, e2)
            if hi <= lo or (s2 <= s and e2 >= e):
                continue  # apart, or j covers i entirely (no ramp can be placed): the division shares
            # the overlap lies at i's start (j starts before i) or at its end
            w[lo - s:hi - s] = np.minimum(w[lo - s:hi - s], _ramp(hi - lo, s2 < s, ramp))
        raw.append(w)
    total = np.zeros(length)
    for (s, e), w in zip(intervals, raw):
        total[s:e] += w
    if (total <= 0).any():
        raise ValueError("the intervals leave pixels uncovered")
    return [w / total[s:e] for (s, e), w in zip(intervals, raw)]


# ---------------------------------------------------------------------------------------------------
# The grid.

@dataclass(frozen=True)
class Tile:
    pass_no: int              # 1 or 2
    row: int
    col: int
    box: tuple                # (x0, y0, x1, y1) in output pixels

    @property
    def name(self):
        return f"p{self.pass_no}_r{self.row:03d}_c{self.col:03d}"

    @property
    def size(self):
        x0, y0, x1, y1 = self.box
        return x1 - x0, y1 - y0


def resolve_overlap(overlap, tile):
    """Overlap in pixels: a fraction of the tile below 1, else a pixel count; below half the tile."""
    overlap = float(overlap)
    if not math.isfinite(overlap) or overlap < 0:
        raise InputError(f"tile overlap must be a finite number >= 0 (got {overlap:g})")
    if overlap >= 1 and overlap != int(overlap):
        raise InputError(f"tile overlap {overlap:g}: give a fraction of the tile below 1, or whole pixels")
    pixels = round(overlap * tile) if overlap < 1 else int(overlap)
    if 2 * pixels >= tile:
        raise InputError(f"a tile overlap of {pixels} pixels is not below half the {tile}-pixel tile",
                         hint="use a smaller --tile-overlap (e.g. 0.25) or a larger --tile")
    return pixels


@dataclass
class TilePlan:
    """The tiled part of a plan: the base the tiles start from, the grid, the passes."""
    size: tuple               # (width, height) of the output
    base: int                 # longest side of the base stylisation
    base_size: tuple          # its (width, height)
    tile: int                 # tile side in pixels
    overlap: int              # pixels
    passes: int               # 1, or 2 (the second on the grid shifted by half a tile)
    iters: int                # optimiser iterations per tile
    style_sizes: list         # [(width, height)] of each style image at the output's scale
    memory: object = None     # MemoryEstimate of one tile's optimisation
    reason: str = ""          # why the run is tiled (for --dry-run)

    def __post_init__(self):
        w, h = self.size
        xs = axis_tiles(w, self.tile, self.overlap)
        ys = axis_tiles(h, self.tile, self.overlap)
        self.axes = {1: (xs, ys),
                     2: (shifted_axis_tiles(xs, w, self.overlap), shifted_axis_tiles(ys, h, self.overlap))}
        self._weights = {p: (axis_weights(ax[0], w, self.overlap), axis_weights(ax[1], h, self.overlap))
                         for p, ax in self.axes.items()}

    def tiles(self, pass_no):
        xs, ys = self.axes[pass_no]
        return [Tile(pass_no, r, c, (x0, y0, x1, y1)) for r, (y0, y1) in enumerate(ys) for c, (x0, x1) in enumerate(xs)]

    def all_tiles(self):
        return [t for p in range(1, self.passes + 1) for t in self.tiles(p)]

    def weights(self, tile):
        """The tile's (h, w) float32 blend weights."""
        wx, wy = self._weights[tile.pass_no]
        return np.outer(wy[tile.row], wx[tile.col]).astype(np.float32)

    def grid(self, pass_no):
        xs, ys = self.axes[pass_no]
        return len(xs), len(ys)

    @property
    def work(self):
        """Pixel-iterations of the tiles (all passes)."""
        return sum(t.size[0] * t.size[1] for t in self.all_tiles()) * self.iters

    def identity(self):
        """What shapes the tiles (for the store's settings)."""
        return {"size": list(self.size), "base": self.base, "tile": self.tile, "overlap": self.overlap,
                "passes": self.passes, "iters": self.iters}

    def phases(self, plan):
        """{phase: bytes this process needs at its peak}: the base run, the style targets at the
        output's scale ("targets"), one tile's optimisation (run here; on a cluster each worker needs
        it), and the assembly of the output (the 8-bit output itself, one float strip, two rows of
        tiles)."""
        fixed = sum(v for k, v in plan.memory.parts.items() if k in ("base", "weights", "images"))
        w, h = self.size
        strip = 12 * w * STRIP_ROWS + 2 * 3 * w * min(self.tile, h)
        return {"base": plan.memory.total, "targets": fixed + self._targets_bytes(plan),
                "tile": self.memory.total, "output": fixed + 4 * w * h + strip}

    def _targets_bytes(self, plan):
        """The style targets at the output's scale, one block (``tile`` pixels and STATS_MARGIN each
        side) through the network at a time (``tiles.work.style_grams``): the styles at that scale, the
        block's network work (an evaluation's, which a forward does not exceed), the kernels' weights
        and buffers, and the copy of the block's largest tap that its Gram matrix is taken from.
        Measured at 4096 px (1024-pixel tiles, 4096x3072 style): 3.09 GB in a process of its own."""
        o = plan.settings
        layers = tuple(o.style_layers) if o.style_weight > 0 else ()
        styles = 6 * sum(sw * sh for sw, sh in self.style_sizes)
        if not layers:
            return styles
        side = self.tile + 2 * STATS_MARGIN
        blocks = {(sw, sh) if sw * sh <= side * side else (min(sw, side), min(sh, side)) for sw, sh in self.style_sizes}
        largest = max(blocks, key=lambda b: b[0] * b[1])
        block = estimate(largest[1], largest[0], (), layers, (), pooling=o.pooling, device=plan.device,
                         engine=plan.engine)
        parts = ("network", "kernel weights", "thread buffers")
        tap = max(channels(name) * (largest[0] >> pools_before(name)) * (largest[1] >> pools_before(name))
                  for name in layers) * 4
        return int((styles + sum(block.parts.get(k, 0) for k in parts) + tap) * (1 + OTHER_FRACTION))

    def check_memory(self, plan):
        """InputError naming the phase (``phases``) that would not fit in free memory (host, then GPU)."""
        on_gpu = plan.device == "gpu"
        free, source = available_bytes()
        w, h = self.size
        hints = {"base": "use a smaller --tile-base", "targets": "use a smaller --style-scale",
                 "tile": "use a smaller --tile", "output": "use a smaller --size"}
        phases = self.phases(plan)
        for phase in ("tile", "base", "targets", "output"):  # the tile first: --tile's own check
            needed = phases[phase]
            if on_gpu and phase in ("base", "tile"):
                needed -= (plan.memory if phase == "base" else self.memory).parts["network"]
            if free is not None and needed > free:
                hint = hints[phase]
                if phase == "tile":
                    largest = largest_fitting_size(free, lambda s: tile_estimate(plan, s, s))
                    hint += f" (the largest that fits is about {largest})" if largest else ""
                what = {"base": f"the {self.base_size[0]}x{self.base_size[1]} base run",
                        "targets": "the style targets at the output's scale",
                        "tile": f"a {min(self.tile, w)}x{min(self.tile, h)} tile",
                        "output": f"the {w}x{h} output itself"}[phase]
                raise InputError(f"{what} would need about {format_bytes(needed)} of memory, but only "
                                 f"{format_bytes(free)} is free ({source})",
                                 hint=hint + " (--no-memory-check tries anyway)")
        if on_gpu:
            gfree, _ = gpu_available_bytes()
            for what, est in (("the base run", plan.memory), ("a tile", self.memory)):
                if gfree is not None and est.on_device > gfree:
                    raise InputError(f"{what} would need about {format_bytes(est.on_device)} of GPU memory, "
                                     f"but only {format_bytes(gfree)} is free",
                                     hint="use a smaller --tile or --tile-base")

    def describe(self, plan):
        """--dry-run's lines about the tiles (after the base's stage line)."""
        w, h = self.size
        counts = " + ".join(str(len(self.tiles(p))) for p in range(1, self.passes + 1))
        grids = ", then ".join("{}x{}".format(*self.grid(p)) for p in range(1, self.passes + 1))
        base_work = self.base_size[0] * self.base_size[1] * plan.stages[0].iters
        lines = [f"tiled            {self.reason}",
                 f"base             {self.base_size[0]}x{self.base_size[1]} (stage 1 above), upsampled to "
                 f"{w}x{h}",
                 f"tile grid        {grids} tiles of {min(self.tile, w)}x{min(self.tile, h)}, overlap "
                 f"{self.overlap} px, {self.passes} pass{'es' if self.passes > 1 else ''} ({counts} tiles), "
                 f"{self.iters} iterations each",
                 "style targets    once, at the output's scale: "
                 + ", ".join(f"{sw}x{sh}" for sw, sh in self.style_sizes),
                 f"total work       {_mpx(base_work + self.work)} Mpx-iterations: base {_mpx(base_work)}, tiles "
                 f"{_mpx(self.work)} (= {self.work / (w * h):.0f} iterations at {w}x{h})"]
        phases = self.phases(plan)
        free, source = available_bytes()
        for phase, needed in phases.items():
            lines.append(f"memory, {phase:<9}about {format_bytes(needed)}")
        if free is None:
            lines.append(f"memory free      unknown ({source})")
        else:
            verdict = "fits" if max(phases.values()) <= free else "DOES NOT FIT"
            lines.append(f"memory free      {format_bytes(free)} ({source}): {verdict}")
        return lines


def _mpx(n):
    return f"{n / 1e6:,.0f}" if n >= 1e7 else f"{n / 1e6:.2g}"


# ---------------------------------------------------------------------------------------------------
# Planning (``plan.make_plan`` calls :func:`plan_tiles` when the ``tile`` option is set).

def _taps(o):
    content = tuple(o.content_layers) if o.content_weight > 0 else ()
    style = tuple(o.style_layers) if o.style_weight > 0 else ()
    return content, style


def _reach(layers):
    """(pixels an image needs on each side for the deepest of ``layers``, that layer)."""
    if not layers:
        return 1, None
    deepest = max(layers, key=LAYER_INDEX.__getitem__)
    return 2 ** pools_before(deepest), deepest


def tile_estimate(plan, width, height):
    """MemoryEstimate of one tile's optimisation: the network at the tile's size, the per-position
    style statistics (no style image), the tile's crops and this process's decoded inputs."""
    o = plan.settings
    content, style = _taps(o)
    inputs = 6 * (plan.content.width * plan.content.height + sum(s.width * s.height for s in plan.styles))
    return estimate(height, width, content, style, (), pooling=o.pooling, optimizer=o.optimizer,
                    image_bytes=inputs + 12 * width * height, device=plan.device, engine=plan.engine)


def _fits(plan):
    try:
        plan.check_memory()
    except InputError:
        return False
    return True


def plan_tiles(plan):
    """(TilePlan, (base size, iterations, content size, style sizes)) for a plan whose ``tile`` option
    asks for tiles, or (None, None) for a one-piece run. ``plan`` is the one-piece plan (one stage at
    the output size). Raises InputError for settings a tiled run cannot take."""
    o = plan.settings
    tile = o.tile
    if tile is None:
        return None, None
    if isinstance(tile, str):
        if tile != "auto":
            raise InputError(f"tile must be a number of pixels or 'auto' (got {tile!r})")
        if _fits(plan):
            return None, None
        tile, reason = None, "the output does not fit in memory in one piece"
    else:
        tile = whole_number("tile", tile, 1)
        reason = f"tiles of {tile} pixels asked for"
    if o.scales is not None:
        raise InputError("tiles and --scales do not go together",
                         hint="a tiled run's first stage is its base (--tile-base); drop --scales")
    if plan.regions:
        raise InputError("spatial control (a content mask) does not work with tiles yet")
    (stage,) = plan.stages
    w, h = stage.content_size
    content_taps, style_taps = _taps(o)
    reach, deepest = _reach(content_taps + style_taps)
    free = available_bytes()[0]
    if tile is None:
        fitting = largest_fitting_size(free, lambda s: tile_estimate(plan, s, s)) if free is not None else None
        tile = min(DEFAULT_TILE, max(w, h), fitting or DEFAULT_TILE)
    low = max(32, 2 * reach)
    if tile < low:
        why = f" ({deepest} needs {reach} on each side of the second pass's half tiles)" if deepest else ""
        raise InputError(f"tiles of {tile} pixels are too small: at least {low} are needed{why}")
    overlap = resolve_overlap(o.tile_overlap, tile)
    passes = whole_number("tile passes", o.tile_passes, 1)
    if passes > 2:
        raise InputError(f"tile passes must be 1 or 2 (got {passes})")
    iters = stage.iters if o.tile_iters is None else whole_number("tile iters", o.tile_iters, 0)
    if o.tile_base is not None:
        base = whole_number("tile base", o.tile_base, 1)
        if base > max(w, h):
            raise InputError(f"the tile base ({base}) is larger than the output ({max(w, h)})")
    else:
        base = max(w, h) // 2
        fitting = largest_fitting_size(free, plan._estimate_at) if free is not None else None
        base = min(base, fitting) if fitting else base
    bw, bh = fit_size(plan.content.width, plan.content.height, base)
    longest = max(1, round(max(bw, bh) * o.style_scale))
    style_sizes = [fit_size(s.width, s.height, longest) for s in plan.styles]
    style_reach, style_deepest = _reach(style_taps)
    if min(bw, bh) < reach or any(min(sz) < style_reach for sz in style_sizes):
        raise InputError(f"at the base size {base} the content ({bw}x{bh}) or a style image is too small for "
                         f"the network to reach {deepest}", hint="use a larger --tile-base")
    tplan = TilePlan((w, h), base, (bw, bh), tile, overlap, passes, iters, stage.style_sizes, reason=reason)
    tplan.memory = tile_estimate(plan, min(tile, w), min(tile, h))
    return tplan, (base, stage.iters, (bw, bh), style_sizes)
