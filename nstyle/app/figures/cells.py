"""Resumable folders of cell images, and the labelled contact sheet built from them.

A long job (a reconstruction row, a ratio x depth grid) is a set of independent cells. Each finished
cell is written, atomically, as its own PNG in a folder beside the sheet, together with
``settings.json``: what made the cells (image fingerprints, size, iterations, seed, weights ...). Run
the same job again and every cell whose image is present, readable and of the expected size is reused
instead of recomputed; the sheet is always rebuilt from the cells. Cells made with other settings are
never mixed in silently: the store refuses them unless asked to start over.

The sheet itself is drawn by ``sheet.layout_sheet`` (cells in rows, column labels on top, row labels on
the left, captions, grey boxes for cells not made yet); ``cells_sheet`` records where each cell landed.
"""
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ...atomic import atomic_write
from ...backend import to_host
from ...errors import InputError, NStyleError
from ..files.imageio import save_image
from .sheet import layout_sheet

SETTINGS_FILE = "settings.json"
_CELL_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def cells_folder(sheet_path):
    """Where the cells of the sheet at ``sheet_path`` live: ``<dir>/<stem>_cells``."""
    sheet_path = Path(sheet_path)
    return sheet_path.with_name(sheet_path.stem + "_cells")


def image_fingerprint(img):
    """SHA-256 of an RGB PIL image's size and pixels: identifies the exact input of a job."""
    h = hashlib.sha256(f"{img.width}x{img.height}:".encode())
    h.update(img.convert("RGB").tobytes())
    return h.hexdigest()


def weights_fingerprint(vgg):
    """SHA-256 over every weight and bias of the network (about 0.2 s for the real VGG-19)."""
    h = hashlib.sha256(f"{vgg.pooling}:{np.dtype(vgg.dtype).name}:".encode())
    for name, (w, b) in vgg.params.items():
        h.update(name.encode())
        h.update(np.ascontiguousarray(to_host(w)).tobytes())
        h.update(np.ascontiguousarray(to_host(b)).tobytes())
    return h.hexdigest()


def _normalised(settings):
    """JSON round trip, so tuples and lists (and float spellings) compare equal to what was stored."""
    return json.loads(json.dumps(settings, sort_keys=True))


def _write_json_atomically(data, path):
    def write(fh):
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")

    atomic_write(path, write, binary=False)


class CellStore:
    """A folder of finished cells (``<name>.png``) plus ``settings.json``.

    settings: a JSON-able dict describing everything that shapes a cell apart from its own name.
    ``settings.json`` holds those settings and the names of the cells this store wrote. An existing
    folder whose settings differ raises InputError, unless ``restart`` is true: then the cell images it
    lists as written are deleted first -- and nothing else, so images the user keeps there (the inputs,
    say) survive. A non-empty folder without a settings file is not ours: refused. protect: paths
    (the job's inputs) that no cell may ever be written over or deleted.
    """

    def __init__(self, folder, settings, restart=False, protect=()):
        self.folder = Path(folder)
        self.settings = _normalised(settings)
        self.protect = [p for p in protect if isinstance(p, (str, os.PathLike))]
        self.written = []
        settings_path = self.folder / SETTINGS_FILE
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(f"{self.folder} exists and is not a folder; cannot keep cells there")
        if self.folder.is_dir():
            if settings_path.is_file():
                stored_settings, stored_written = _read_settings(settings_path)
                if stored_settings != self.settings:
                    if not restart:
                        changes = _differences(stored_settings, self.settings)
                        raise InputError(f"{self.folder} holds cells made with other settings ({changes})",
                                         hint="pass --restart to discard them, or write the sheet somewhere else")
                    self._remove_cells(stored_written)
                else:
                    self.written = [n for n in stored_written if self.path(n).is_file()]
            elif any(self.folder.iterdir()):
                raise InputError(f"{self.folder} exists, is not empty and has no {SETTINGS_FILE}: "
                                 "not a cells folder nstyle made",
                                 hint="move it away, or write the sheet somewhere else")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_settings()

    def _write_settings(self):
        _write_json_atomically({"settings": self.settings, "written": sorted(self.written)},
                               str(self.folder / SETTINGS_FILE))

    def _protected(self, path):
        return any(_same_file(path, p) for p in self.protect)

    def _remove_cells(self, names):
        """Delete the cell images a previous run of a store wrote (named in its settings.json)."""
        for name in names:
            if not isinstance(name, str) or not _CELL_NAME.match(name):
                continue
            path = self.path(name)
            if path.is_file() and not path.is_symlink() and not self._protected(path):
                path.unlink()

    def path(self, name):
        if not _CELL_NAME.match(name):
            raise ValueError(f"cell name {name!r} is not a safe file name")
        return self.folder / f"{name}.png"

    def load(self, name, size):
        """The stored cell as an RGB image, or None when it is missing, unreadable or not ``size`` (w, h)."""
        path = self.path(name)
        if not path.is_file() or name not in self.written:
            return None
        try:
            with Image.open(path) as im:
                im.load()
                img = im.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
        return img if img.size == tuple(size) else None

    def check_writable(self, names):
        """InputError when a cell this job would write is one of its inputs."""
        for name in names:
            if self._protected(self.path(name)):
                raise InputError(f"cell {self.path(name)} would overwrite an input; nstyle never overwrites "
                                 "an input", hint="move the input out of the cells folder")

    def save(self, name, img):
        self.check_writable([name])
        save_image(img, self.path(name))
        if name not in self.written:
            self.written.append(name)
            self._write_settings()


def _read_settings(path):
    """(settings, names of the cells written) from a settings.json; (None, []) when unreadable."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, []
    if isinstance(stored, dict) and set(stored) == {"settings", "written"} and isinstance(stored["written"], list):
        return stored["settings"], stored["written"]
    return stored, []  # an older file: the settings alone, and no record of what was written


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _flat(settings, prefix=""):
    """Nested settings as one level, ``{"options": {"iters": 2}}`` -> ``{"options.iters": 2}``."""
    flat = {}
    for k, v in settings.items():
        flat.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return flat


def _differences(stored, current):
    if not isinstance(stored, dict):
        return f"{SETTINGS_FILE} is unreadable"
    stored, current = _flat(stored), _flat(current)
    keys = sorted(set(stored) | set(current))
    changed = [k for k in keys if stored.get(k) != current.get(k)]
    parts = []
    for k in changed[:3]:
        old, new = stored.get(k), current.get(k)
        if isinstance(old, str) and len(old) > 16:  # fingerprints: just say they differ
            parts.append(f"{k} differs")
        else:
            parts.append(f"{k}: was {old}, now {new}")
    if len(changed) > 3:
        parts.append(f"and {len(changed) - 3} more")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------
# Running a set of cells.

@dataclass
class Cell:
    """One picture of a sheet: where it goes, its file name in the store, and how it was obtained."""
    row: int
    col: int
    name: str                 # file stem in the cells folder
    label: str                # human-readable description (progress lines, captions)
    params: dict              # what distinguishes this cell (layer, ratio, depth ...)
    image: Image.Image = None
    reused: bool = False      # True: loaded from the cells folder, no optimisation ran
    seconds: float = 0.0      # time spent making it (0 when reused)
    box: tuple = None         # (left, top, right, bottom) on the last sheet built


class CellsInterrupted(KeyboardInterrupt):
    """Ctrl-C while a cell was being made: ``finished`` of ``total`` cells are done (and stored)."""

    def __init__(self, finished, total, folder):
        where = f"; they are kept in {folder}: run the same command again to resume" if folder else ""
        super().__init__(f"interrupted with {finished} of {total} cells finished{where}")
        self.finished, self.total, self.folder = finished, total, folder
        self.message = str(self)


def cells_sheet(cells, **labels):
    """Lay ``cells`` out by their row and column (``layout_sheet``'s labels as keywords); sets each box."""
    n_rows = 1 + max(c.row for c in cells)
    n_cols = 1 + max(c.col for c in cells)
    rows = [[None] * n_cols for _ in range(n_rows)]
    for cell in cells:
        rows[cell.row][cell.col] = cell.image
    sheet, boxes = layout_sheet(rows, **labels)
    for cell in cells:
        cell.box = boxes[cell.row][cell.col]
    return sheet


def fill_cells(cells, make, size, store=None, on_cell=None, log=None):
    """Give every cell its image: reuse the stored one when valid, else ``make(cell)`` and store it.

    size: (w, h) every cell image must have. on_cell(cell): called after each cell that was computed
    (to rewrite the sheet, so that an interrupted run leaves a current sheet behind). A cell whose
    ``make`` raises (Ctrl-C included) is not stored; the cells finished before it stay in the store.
    """
    for i, cell in enumerate(cells, 1):
        image = store.load(cell.name, size) if store is not None else None
        if image is not None:
            cell.image, cell.reused = image, True
            if log:
                log(f"cell {i}/{len(cells)} ({cell.label}): reused {store.path(cell.name)}")
            continue
        if log:
            log(f"cell {i}/{len(cells)} ({cell.label}): optimising")
        start = time.perf_counter()
        try:
            image = make(cell)
        except KeyboardInterrupt:
            raise CellsInterrupted(i - 1 if store is None else _count_stored(cells, store, size), len(cells),
                                   store.folder if store is not None else None) from None
        except NStyleError as exc:  # say which cell failed
            exc.message = f"cell {cell.label}: {exc.message}"
            exc.args = (exc.message,)
            raise
        cell.seconds = time.perf_counter() - start
        cell.image, cell.reused = image, False
        if store is not None:
            store.save(cell.name, image)
        if log:
            log(f"cell {i}/{len(cells)} ({cell.label}): done in {cell.seconds:.1f}s")
        if on_cell is not None:
            on_cell(cell)
    return cells


def fill_sheet(cells, make, size, sheet, out=None, store=None, log=None):
    """:func:`fill_cells`, with ``sheet()`` (the cells laid out) written to ``out`` after every computed
    cell and once more at the end; returns (the final sheet, cells)."""
    def write_sheet(_cell=None):
        if out is not None:
            save_image(sheet(), out)

    fill_cells(cells, make, size, store=store, on_cell=write_sheet, log=log)
    result = sheet()
    if out is not None:
        save_image(result, out)
    return result, cells


def _count_stored(cells, store, size):
    return sum(store.load(c.name, size) is not None for c in cells)
