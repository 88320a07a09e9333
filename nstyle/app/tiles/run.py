"""A tiled run: a print larger than memory allows in one piece (``tiles/plan.py`` plans its geometry,
``tiles/work.py`` does the work). ``stylize.run`` comes here when the plan has tiles.

1. The base: the whole picture stylised at the base size by the stage loop every run uses
   (``run/stages.py``), kept in the tiles folder as ``base.png``.
2. The style targets, once: each style image at the scale the full-size output needs, its Gram matrix
   per position (in blocks when the image is large), blended -- the size rule of
   ``model/objective.py``, so tiles of any size share one set of per-position statistics.
3. The tiles, pass by pass: each starts from its crop of the upsampled base (the second pass: of the
   first pass's blend), has its own crop of the full-size content as content target, the shared style
   targets, and term scales that keep the full-size run's balance. Each finished tile is written to
   the tiles folder at once, so an interrupted run resumes. The tiles run here one after another, or
   as tasks on a Dask cluster (``tile_cluster``): the same ``tiles.work.refine_tile`` either way.
4. The output, assembled from the tiles a strip of rows at a time (``tiles.assemble``).

Ctrl-C keeps the finished tiles; the image handed back (``StylizeInterrupted.image``) is the blend of
the finished tiles, with the upsampled base standing in for the others.
"""
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import InputError
from ...model.objective import normalise_blend
from ..figures.cells import SETTINGS_FILE, CellStore, image_fingerprint, weights_fingerprint
from ...optim.optimize import STOP_INTERRUPTED, STOP_NONFINITE, STOP_REQUESTED
from ..run.plan import input_fingerprint
from ..run.stages import run_stages
from ..run.stops import NonFiniteLoss, StylizeInterrupted
from .blend import Blender, assemble
from .work import cluster_run, net_styles, normalization, refine_tile, style_grams, tile_term_scales

BASE = "base"


def tiles_folder(output):
    """Where the command line keeps an output's tiles: ``<dir>/<stem>_tiles``."""
    output = Path(output)
    return output.with_name(output.stem + "_tiles")


def store_settings(plan, vgg):
    """What the tiles in a folder were made from (``cells.CellStore`` refuses to mix others in): the
    settings that change the picture (so a run may resume on another device, engine or L-BFGS-B), the
    inputs' pixels, the network's weights and the tile geometry."""
    options = plan.settings.picture(lambda item: input_fingerprint(item, plan.settings.max_pixels))
    return {"content": image_fingerprint(plan.content), "styles": [image_fingerprint(s) for s in plan.styles],
            "options": options, "weights": weights_fingerprint(vgg), "tiles": plan.tiles.identity()}


def discard(folder):
    """Delete the tiles a run wrote to ``folder`` (those its settings file lists), the settings file
    and the folder when that leaves it empty; anything else there stays."""
    folder = Path(folder)
    try:
        written = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8")).get("written", [])
    except (OSError, ValueError, AttributeError):
        return
    for name in written:
        if isinstance(name, str) and (name == BASE or name.startswith("p")) and "/" not in name:
            (folder / f"{name}.png").unlink(missing_ok=True)
    (folder / SETTINGS_FILE).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass


class _Requested(Exception):
    """The callback asked to stop."""


class _NonFinite(Exception):
    pass


def run_tiled(plan, vgg, callback=None, log=None):
    """Run a tiled plan (see the module docstring); returns the output PIL image. The tiles folder is
    ``tile_dir`` (kept afterwards), else a temporary folder (deleted; nothing resumes)."""
    plan = plan.on_network(vgg)  # a no-op after stylize.run: the L-BFGS-B the tiles run is resolved
    folder = plan.settings.tile_dir
    temporary = folder is None
    folder = tempfile.mkdtemp(prefix="nstyle-tiles-") if temporary else folder
    try:
        try:
            store = CellStore(folder, store_settings(plan, vgg))
        except InputError as exc:
            raise InputError(exc.message, hint="delete that folder to start over, or write the output "
                                               "elsewhere") from None
        return _Run(plan, vgg, store, callback, log, temporary).go()
    finally:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)


class _Run:
    def __init__(self, plan, vgg, store, callback, log, temporary):
        self.plan, self.tp, self.vgg, self.store = plan, plan.tiles, vgg, store
        self.callback, self.say, self.temporary = callback, log or (lambda message: None), temporary
        self.start = time.perf_counter()
        self.tiles = self.tp.all_tiles()
        self.stage_of = {t.name: k for k, t in enumerate(self.tiles, 2)}
        self.done = 0
        self.base = None
        self.blenders = {}

    # -- records for the callback ---------------------------------------------------------------

    def _report(self, rec, stage, before, size, get_image):
        rec.update(stage=stage, stages=1 + len(self.tiles), size=size, step=before + rec["iter"],
                   total_steps=self.plan.total_iters, seconds=time.perf_counter() - self.start)
        return bool(self.callback(rec, get_image)) if self.callback is not None else False

    # -- the base ------------------------------------------------------------------------------

    def _base(self):
        tp = self.tp
        w, h = tp.base_size
        iters = self.plan.stages[0].iters
        img = self.store.load(BASE, tp.base_size)
        if img is not None:
            self.say(f"base {w}x{h}: reused {self.store.path(BASE)}")
            self.done = iters
            return img, False
        self.say(f"base {w}x{h}, {iters} iterations")
        stopped = []

        def on_iteration(rec, get_image):
            ask = self._report(rec, 1, 0, max(w, h), get_image)
            stopped.extend([True] if ask else [])
            return ask

        try:
            img = run_stages(dataclasses.replace(self.plan, tiles=None), self.vgg, on_iteration, self.say).image
        except (StylizeInterrupted, NonFiniteLoss) as exc:
            exc.image = exc.image.resize(tp.size, Image.Resampling.BICUBIC)
            raise
        if not stopped:
            self.store.save(BASE, img)
        self.done = iters
        return img, bool(stopped)

    # -- crops and blends ------------------------------------------------------------------------

    def _crop(self, img, tile, resample):
        """Tile ``tile``'s box of ``img`` scaled to the output's size (only the box is resampled)."""
        W, H = self.tp.size
        x0, y0, x1, y1 = tile.box
        sx, sy = img.width / W, img.height / H
        return np.asarray(img.resize(tile.size, resample, box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy)))

    def _load(self, tile):
        img = self.store.load(tile.name, tile.size)
        return None if img is None else np.asarray(img)

    def _init(self, tile):
        """A tile's starting crop: the upsampled base, or (second pass) the first pass's blend."""
        if tile.pass_no == 1:
            return self._crop(self.base, tile, Image.Resampling.BICUBIC)
        first = self._blender(1)
        first.forget_above(tile.box[1])  # tiles are visited row by row: the rows above are done with
        return first.region(tile.box)

    def _blender(self, pass_no):
        if pass_no not in self.blenders:
            self.blenders[pass_no] = Blender(self.tp, pass_no, self._load, self._init)
        return self.blenders[pass_no]

    def output(self):
        """The output from the tiles made so far (the others: their starting crops)."""
        self.blenders.clear()
        image = assemble(self._blender(self.tp.passes), self.tp.size)
        self.blenders.clear()
        return image

    # -- the tiles -------------------------------------------------------------------------------

    def _spec(self, tile):
        return {"name": tile.name, "content": self._crop(self.plan.content, tile, Image.Resampling.LANCZOS),
                "init": self._init(tile), "settings": self.settings, "iters": self.tp.iters,
                "term_scales": tile_term_scales(self.plan, *tile.size, self.extra)}

    def _finished(self, tile, image, record):
        self.store.save(tile.name, Image.fromarray(image, "RGB"))
        self.done += self.tp.iters
        if record is not None and self.callback is not None:
            rec = {"iter": self.tp.iters, "loss": 0.0, "content": 0.0, "style": 0.0, "tv": 0.0, **record}
            rec["iter"] = self.tp.iters
            if self._report(rec, self.stage_of[tile.name], self.done - self.tp.iters, self.tp.tile,
                            lambda: Image.fromarray(image, "RGB")):
                raise _Requested

    def _local(self, todo, grams):
        for tile in todo:
            before = self.done

            def on_iteration(rec, get_x, tile=tile, before=before):
                from ..files.imageio import deprocess  # noqa: PLC0415
                return self._report(rec, self.stage_of[tile.name], before, self.tp.tile,
                                    lambda: deprocess(get_x()))

            image, result = refine_tile(self._spec(tile), grams, self.vgg, callback=on_iteration)
            if result.stop == STOP_INTERRUPTED:
                raise KeyboardInterrupt
            if result.stop == STOP_NONFINITE:
                raise _NonFinite(f"{result.message} (tile {tile.name})")
            if result.stop == STOP_REQUESTED:
                raise _Requested
            self._finished(tile, image, None)

    def _pass(self, pass_no, grams):
        tiles = self.tp.tiles(pass_no)
        todo = [t for t in tiles if self._load(t) is None]
        self.done += (len(tiles) - len(todo)) * self.tp.iters
        grid = "{}x{}".format(*self.tp.grid(pass_no))
        self.say(f"pass {pass_no}/{self.tp.passes}: {grid} tiles, {len(tiles) - len(todo)} already made")
        if not todo:
            return
        if self.plan.settings.tile_cluster is None:
            self._local(todo, grams)
        else:
            cluster_run(todo, self._spec, grams, self.plan, lambda t, r: self._finished(t, r["image"], r["record"]),
                        self.say, self.cluster_state)

    def go(self):
        self.base, stopped = self._base()
        if stopped:
            return self.output()
        o = self.plan.settings
        self.settings = o.to_dict(client=False)  # what each tile's task needs of the run's settings
        styles, reference = net_styles(self.plan)
        layers = tuple(o.style_layers) if o.style_weight > 0 else ()
        grams = style_grams(self.vgg, styles, layers, normalise_blend(o.style_blend, len(styles)),
                            self.tp.tile) if layers else {}
        del styles
        self.extra = normalization(self.plan, self.vgg, grams, reference)
        self.cluster_state = {"weights_sha256": _weights_sha(o) if o.tile_cluster is not None else None}
        try:
            for pass_no in range(1, self.tp.passes + 1):
                self._pass(pass_no, grams)
        except KeyboardInterrupt:
            made = sum(self._load(t) is not None for t in self.tiles)
            kept = ("" if self.temporary else
                    f"; they are kept in {self.store.folder}: run the same command again to resume")
            raise StylizeInterrupted(self.output(), self.done, f"interrupted with {made} of "
                                     f"{len(self.tiles)} tiles finished{kept}") from None
        except _NonFinite as exc:
            raise NonFiniteLoss(self.output(), str(exc)) from None
        except _Requested:
            pass
        return self.output()


def _weights_sha(o):
    """The SHA-256 of the weights file the workers should find (None when it is not visible here)."""
    from .work import _sha256  # noqa: PLC0415
    from ..run.weighting import weights_file  # noqa: PLC0415
    path = weights_file(o.weights)
    return _sha256(path) if o.weights and Path(path).is_file() else None
