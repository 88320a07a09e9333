"""The assembly of a tiled run's picture from its tiles (``tiles/plan.py`` has the plan and the weights).

Any box of the picture is the weighted sum of the tiles over it (the blending weights of
``tiles.TilePlan.weights``, a partition of unity), rounded to 8 bits. The output is built in row strips
and the second pass's starting crops are boxes of the first pass's blend, so no full-size float array
ever exists. A tile not made yet (an interrupted run) counts as its starting crop.
"""
import numpy as np

from .plan import STRIP_ROWS


class Blender:
    """Boxes of one pass's blended result. fetch(tile): its (h, w, 3) uint8 image, or None when it is
    not made; fallback(tile): what stands in for a missing tile (its starting crop). Tile images are
    kept while boxes further down may need them: call :meth:`forget_above` as the boxes move down."""

    def __init__(self, tplan, pass_no, fetch, fallback):
        self.tplan, self.pass_no, self.fetch, self.fallback = tplan, pass_no, fetch, fallback
        self.tiles = tplan.tiles(pass_no)
        self.cache = {}

    def _image(self, tile):
        if tile.name not in self.cache:
            img = self.fetch(tile)
            self.cache[tile.name] = self.fallback(tile) if img is None else img
        return self.cache[tile.name]

    def forget_above(self, y):
        """Drop the tiles that end above row y."""
        for t in self.tiles:
            if t.box[3] <= y:
                self.cache.pop(t.name, None)

    def region(self, box):
        """The blended (h, w, 3) uint8 pixels of box (x0, y0, x1, y1)."""
        x0, y0, x1, y1 = box
        acc = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        for t in self.tiles:
            tx0, ty0, tx1, ty1 = t.box
            ix0, iy0, ix1, iy1 = max(x0, tx0), max(y0, ty0), min(x1, tx1), min(y1, ty1)
            if ix1 <= ix0 or iy1 <= iy0:
                continue
            w = self.tplan.weights(t)[iy0 - ty0:iy1 - ty0, ix0 - tx0:ix1 - tx0]
            px = self._image(t)[iy0 - ty0:iy1 - ty0, ix0 - tx0:ix1 - tx0]
            acc[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] += w[:, :, None] * px
        return np.clip(np.rint(acc), 0, 255).astype(np.uint8)


def assemble(blender, size, rows=STRIP_ROWS):
    """The output as a PIL image, summed a strip of ``rows`` rows at a time."""
    from PIL import Image  # noqa: PLC0415
    w, h = size
    out = Image.new("RGB", (w, h))
    for y in range(0, h, rows):
        strip = blender.region((0, y, w, min(h, y + rows)))
        out.paste(Image.fromarray(strip, "RGB"), (0, y))
        blender.forget_above(y + rows)
    return out
