"""The paper's ratio x depth grid: one stylisation per (alpha/beta, depth of the style layers) pair.

Rows: the style loss uses the first ``depth`` style layers (1: relu1_1; 2: relu1_1 + relu2_1; ...;
5: up to relu5_1), each weighted w_l = 1/depth. Columns: the content/style ratio alpha/beta
(the paper shows 1e-5 ... 1e-2); a cell uses alpha = 1 and beta = 1/ratio. Every cell starts from
the same seeded white noise (the paper's start) unless ``init`` says otherwise, and runs the same
L-BFGS-B as ``stylize``.

A full grid is long on a CPU, so with an output path every finished cell is written to
``<sheet stem>_cells/`` and a later run with the same settings reuses it (see ``cells.py``); the sheet
is rebuilt from the cells after each one.
"""
import math

from ...errors import InputError
from ...model.objective import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS
from ...validate import whole_number
from ..files.imageio import resize_longest
from ..files.outputs import check_output_path, read_paths
from ..run.network import load_network
from ..run.plan import as_image, input_fingerprint
from ..run.stylize import prepare, run
from .cells import Cell, CellStore, cells_folder, cells_sheet, fill_sheet, image_fingerprint, weights_fingerprint
from .reconstruct import style_subset_label

GRID_INITS = ("noise", "content", "style")


def format_ratio(ratio):
    """A short, exact-enough spelling of a ratio: 1e-05 -> '1e-5', 0.00025 -> '2.5e-4'."""
    mantissa, exponent = f"{ratio:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _check_ratios(ratios):
    ratios = [float(r) for r in ratios]
    if not ratios:
        raise InputError("give at least one ratio")
    bad = [r for r in ratios if not math.isfinite(r) or r <= 0]
    if bad:
        raise InputError(f"ratios alpha/beta must be finite and > 0 (got {bad[0]})")
    names = [format_ratio(r) for r in ratios]
    if len(set(names)) != len(names):
        raise InputError(f"ratios repeat: {', '.join(names)}")
    return ratios


def _check_depths(depths, style_layers):
    depths = list(depths)
    if not depths:
        raise InputError("give at least one depth")
    for d in depths:
        if isinstance(d, bool) or int(d) != d or not 1 <= int(d) <= len(style_layers):
            raise InputError(f"depth {d} is not between 1 and {len(style_layers)} (the number of style layers)",
                             hint="style layers: " + ", ".join(style_layers))
    depths = [int(d) for d in depths]
    if len(set(depths)) != len(depths):
        raise InputError(f"depths repeat: {', '.join(map(str, depths))}")
    return depths


def grid_cells(ratios, depths, style_layers=DEFAULT_STYLE_LAYERS):
    """One Cell per (depth, ratio): rows follow ``depths``, columns follow ``ratios``."""
    cells = []
    for row, depth in enumerate(depths):
        layers = tuple(style_layers[:depth])
        for col, ratio in enumerate(ratios):
            cells.append(Cell(row, col, f"depth{depth}-ratio{format_ratio(ratio)}",
                              f"depth {depth}, alpha/beta {format_ratio(ratio)}",
                              {"ratio": ratio, "depth": depth, "style_layers": layers}))
    return cells


def cell_options(cell):
    """The stylize options a cell sets for itself: beta = 1/ratio (alpha = 1), and its style layers."""
    return {"style_weight": 1.0 / cell.params["ratio"], "style_layers": cell.params["style_layers"]}


def make_grid(content, style, *, out=None, ratios=(1e-5, 1e-4, 1e-3, 1e-2), depths=(1, 2, 3, 4, 5), size=256,
              iters=300, init="noise", seed=0, content_layer=DEFAULT_CONTENT_LAYERS[0],
              style_layers=DEFAULT_STYLE_LAYERS, pooling="avg", device="cpu", engine="auto", weights=None, vgg=None,
              restart=False, check_memory=True, weight_scaling="invariant", lbfgs_impl="auto", style_loss="gram",
              callback=None, log=None, batch=None):
    """Stylise ``content`` with ``style`` at every (ratio, depth) and lay the results out as a sheet.

    content, style: path, PIL image or uint8 RGB array. out: the sheet's path; when given, cells are
    kept in ``<out stem>_cells/`` and reused by later calls with the same settings (restart=True
    discards cells made with other settings), and the sheet is rewritten after each finished cell.
    ratios: alpha/beta per column. depths: how many of ``style_layers`` each row uses.
    size, iters, init ("noise", "content" or "style"), seed, pooling, device, engine, weights, vgg: as in
    ``stylize``. check_memory: refuse up front a grid whose cells would not fit in memory.
    weight_scaling: as in ``stylize``; with "invariant" (the default) the ratios mean what the paper's
    mean at 512 pixels, whatever ``size`` is. lbfgs_impl: whose L-BFGS-B, style_loss: which style
    statistics, as in ``stylize``.
    content_layer: the one content layer. callback(cell, record, get_image) follows each
    iteration; log(message) gets one line per cell. Returns (sheet, cells).
    batch: None (the cells run here, one after another) or ``batch.run_batch``'s cluster options
    ({"workers": 4} or {"scheduler": "tcp://..."}): the cells run as batch jobs on Dask (needs ``out``).
    """
    style_layers = tuple(style_layers)
    ratios = _check_ratios(ratios)
    depths = _check_depths(depths, style_layers)
    if init not in GRID_INITS:
        raise InputError(f"unknown init {init!r}; choose {', '.join(GRID_INITS)}")
    if out is not None:
        check_output_path(out, "sheet", read_paths([content, style], weights))
    size = whole_number("size", size, 1)
    original = as_image(content, "content image")  # resized only once the memory check has passed
    style_img = as_image(style, "style image")
    cells = grid_cells(ratios, depths, style_layers)
    # Every cell planned (and so checked) before anything loads or any file is written.
    plans = {cell.name: prepare(original, style_img, size=size, iters=iters, content_weight=1.0, init=init,
                                seed=seed, content_layers=(content_layer,), pooling=pooling, device=device,
                                engine=engine, weights=weights, weight_scaling=weight_scaling,
                                lbfgs_impl=lbfgs_impl, style_loss=style_loss, **cell_options(cell))
             for cell in cells}
    if check_memory:
        max(plans.values(), key=lambda p: p.memory.total).check_memory()
    content_img = resize_longest(original, size)  # as every cell's run sees it (same resampling)
    if vgg is None:
        vgg = load_network(weights, pooling=pooling, device=device, engine=engine, log=log)

    store = None
    if out is not None:
        # the cells folder keys on what changes the pictures (so pooling counts, the device and the engine
        # do not), less what each cell sets for itself; the layers whose prefixes the depths count
        picture = plans[cells[0].name].settings.picture(input_fingerprint)
        own = cell_options(cells[0])
        settings = {"job": "grid", "content": image_fingerprint(content_img), "style": image_fingerprint(style_img),
                    "size": list(content_img.size), "style_layers": list(style_layers),
                    "options": {k: v for k, v in picture.items() if k not in own},
                    "weights": weights_fingerprint(vgg)}
        store = CellStore(cells_folder(out), settings, restart=restart, protect=[content, style])
        store.check_writable([cell.name for cell in cells])

    row_labels = [f"depth {d}\n{style_subset_label(style_layers[:d])}" for d in depths]
    col_labels = [f"alpha/beta\n{format_ratio(r)}" for r in ratios]

    def sheet():
        return cells_sheet(cells, row_labels=row_labels, col_labels=col_labels)

    def make(cell):
        cb = None if callback is None else (lambda rec, get_image: callback(cell, rec, get_image))
        return run(plans[cell.name], vgg=vgg, callback=cb, log=log)

    if batch is not None:  # the same cells as Dask tasks, through `nstyle batch`'s code (app/batch/run_batch.py)
        if store is None:
            raise InputError("running the cells on a cluster needs an output sheet (out=...)")
        from ..batch.run_batch import cells_via_batch  # noqa: PLC0415 -- needs Dask: imported only when asked
        make = cells_via_batch(cells, plans, store, content_img.size, log=log, **batch)
    return fill_sheet(cells, make, content_img.size, sheet, out=out, store=store, log=log)
