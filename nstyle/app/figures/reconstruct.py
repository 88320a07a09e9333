"""What each layer encodes: images reconstructed from white noise by matching one term of the loss.

Gatys et al. show what VGG-19 keeps at each depth by starting from white noise and moving the pixels
until they match only

* the *content* features of one layer (``Lc``; low layers give back the exact pixels, deep layers keep
  objects and their arrangement but let the exact colours and details go), or
* the *style* Gram matrices of a set of layers (``Ls``; growing sets relu1_1, relu1_1+relu2_1, ...
  give the image's textures at growing scales, with the arrangement of the scene gone).

The optimiser is the same L-BFGS-B as for style transfer (``optimize.lbfgs``) on the same
``StyleObjective``, with the other term's weight at zero.

The paper names its layers conv1_1 ... conv5_1, but its Caffe network ran each ReLU in place, so the
responses it read from those blobs were the rectified ones: relu1_1 ... relu5_1 here. Any layer name
is accepted (conv3_1 gives the pre-ReLU responses).
"""
from ...errors import InputError
from ...model.objective import DEFAULT_STYLE_LAYERS, StyleObjective
from ...validate import whole_number
from ..files.imageio import resize_longest
from ..files.outputs import check_output_path, read_paths
from ..run.network import load_network
from ..run.plan import as_image, input_fingerprint
from ..run.stylize import prepare, run
from .cells import Cell, CellStore, cells_folder, cells_sheet, fill_sheet, image_fingerprint, weights_fingerprint

# The paper's rows (see the module docstring for why relu, not conv).
PAPER_CONTENT_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
PAPER_STYLE_LAYERS = DEFAULT_STYLE_LAYERS


def reconstruction_options(content_layer=None, style_layers=None):
    """The stylize weights and layers of a reconstruction: exactly one of content_layer (one layer
    name: ``Lc`` at that layer, weight 1) or style_layers (names: ``Ls`` over them, w_l = 1/len, weight 1)."""
    if (content_layer is None) == (style_layers is None):
        raise InputError("give either one content layer or a set of style layers")
    if content_layer is not None:
        if not isinstance(content_layer, str):
            raise InputError(f"one content layer at a time (got {content_layer!r})")
        return {"content_weight": 1.0, "style_weight": 0.0, "content_layers": (content_layer,)}
    style_layers = tuple(style_layers)
    if not style_layers:
        raise InputError("style reconstruction needs at least one style layer")
    return {"content_weight": 0.0, "style_weight": 1.0, "style_layers": style_layers}


# The options each cell of a sheet sets for itself (its name says them); the others are the sheet's.
CELL_OPTIONS = frozenset(reconstruction_options(content_layer="relu1_1")) | frozenset(
    reconstruction_options(style_layers=("relu1_1",)))


def reconstruction_objective(vgg, x, content_layer=None, style_layers=None):
    """The loss that a reconstruction minimises, for the preprocessed image x (1, 3, H, W)."""
    o = reconstruction_options(content_layer, style_layers)
    return StyleObjective(vgg, content=x if o["content_weight"] else None, styles=[x] if o["style_weight"] else [],
                          **o)


def plan_reconstruction(image, *, content_layer=None, style_layers=None, size=256, iters=300, seed=0,
                        bounds=True, pooling="avg", device="cpu", engine="auto", weights=None, mask=None,
                        mask_mode="inside", weight_scaling="invariant", lbfgs_impl="auto", style_loss="gram"):
    """A reconstruction as a stylize plan: the image (resized so its longest side is ``size``) is both
    the content and the style, the start is seeded white noise, one of the two terms weighs 0. So a
    reconstruction gets every check a stylisation gets (sizes, reach of the layers, memory). mask: a
    segmentation of the image: a guided style reconstruction, each region matching its own statistics.
    style_loss: the style statistics a style reconstruction matches (``stylize``'s): texture synthesis."""
    image = as_image(image, "image")  # resized by the run, once the memory check has passed
    return prepare(image, image, size=whole_number("size", size, 1), iters=iters, init="noise", seed=seed,
                   bounds=bounds, pooling=pooling, device=device, engine=engine, weights=weights, content_mask=mask,
                   style_masks=None if mask is None else [mask], mask_mode=mask_mode,
                   weight_scaling=weight_scaling, lbfgs_impl=lbfgs_impl, style_loss=style_loss,
                   **reconstruction_options(content_layer, style_layers))


def reconstruct(image, *, content_layer=None, style_layers=None, size=256, iters=300, seed=0, bounds=True,
                pooling="avg", device="cpu", engine="auto", weights=None, mask=None, mask_mode="inside",
                weight_scaling="invariant", lbfgs_impl="auto", style_loss="gram", check_memory=True, vgg=None,
                callback=None, log=None):
    """Reconstruct ``image`` from white noise using only one layer's content or some layers' Grams.

    image: path, PIL image or uint8 RGB array, resized so its longest side is ``size``.
    content_layer: one layer name (content reconstruction); or style_layers: a list of layer names
    (style reconstruction) -- exactly one of the two. iters: L-BFGS-B iterations from seeded white
    noise (``seed``). bounds, pooling, device, engine, weights, check_memory, vgg, callback(record,
    get_image), log, mask_mode, weight_scaling, lbfgs_impl, style_loss: as in ``stylize``. mask: a colour-coded segmentation of
    the image for a guided style reconstruction (each region keeps its own statistics). Returns a PIL image of the resized image's size. Raises
    InputError before any work for bad input, StylizeInterrupted (holding the best image) on Ctrl-C
    and NonFiniteLoss on NaN/Inf.
    """
    plan = plan_reconstruction(image, content_layer=content_layer, style_layers=style_layers, size=size,
                               iters=iters, seed=seed, bounds=bounds, pooling=pooling, device=device,
                               engine=engine, weights=weights, mask=mask, mask_mode=mask_mode,
                               weight_scaling=weight_scaling, lbfgs_impl=lbfgs_impl, style_loss=style_loss)
    if check_memory:
        plan.check_memory()
    return run(plan, vgg=vgg, callback=callback, log=log)


def style_subset_label(layers):
    """How a growing style set is named on a sheet: 'relu1_1' or 'relu1_1..relu3_1'."""
    return layers[0] if len(layers) == 1 else f"{layers[0]}..{layers[-1]}"


def reconstruction_cells(content_layers=PAPER_CONTENT_LAYERS, style_layers=PAPER_STYLE_LAYERS):
    """The cells of a reconstruction sheet: one row with a cell per content layer, and one row with
    a cell per growing prefix of ``style_layers`` (the paper's figure 1); an empty tuple drops a row."""
    for what, layers in (("content", content_layers), ("style", style_layers)):
        if len(set(layers)) != len(layers):
            raise InputError(f"a {what} layer is listed twice: {', '.join(layers)}")
    cells, row = [], 0
    if content_layers:
        for col, layer in enumerate(content_layers):
            cells.append(Cell(row, col, f"content-{layer}", f"content {layer}", {"content_layer": layer}))
        row += 1
    if style_layers:
        for k in range(1, len(style_layers) + 1):
            subset = tuple(style_layers[:k])
            # the file name lists every layer, so a changed list never picks up a cell of another set
            cells.append(Cell(row, k - 1, "style-" + "+".join(subset), f"style {style_subset_label(subset)}",
                              {"style_layers": subset}))
    return cells


def reconstruct_sheet(image, *, content_layers=PAPER_CONTENT_LAYERS, style_layers=PAPER_STYLE_LAYERS,
                      out=None, restart=False, callback=None, log=None, **options):
    """The paper's figure 1 for one image: a content row and/or a style row, as a labelled sheet.

    content_layers: one content reconstruction per layer (empty: no content row). style_layers: one
    style reconstruction per growing prefix (relu1_1; relu1_1+relu2_1; ...; empty: no style row).
    out: the sheet's path. When given, every finished cell is also written to ``<out stem>_cells/``
    and reused by a later call with the same settings (restart=True discards cells made with other
    settings), and the sheet is rewritten after each cell. options: ``reconstruct``'s keywords (size,
    iters, seed, bounds, pooling, device, engine, weights, lbfgs_impl, style_loss, check_memory, vgg). callback(cell, record,
    get_image) follows each
    iteration. Returns (sheet, cells).
    """
    defaults = {k: v for k, v in reconstruct.__kwdefaults__.items()
                if k not in ("content_layer", "style_layers", "callback", "log")}
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"reconstruct_sheet() got unexpected keyword(s): {', '.join(sorted(unknown))}")
    opts = {**defaults, **options}
    vgg, check_memory = opts.pop("vgg"), opts.pop("check_memory")
    cells = reconstruction_cells(tuple(content_layers or ()), tuple(style_layers or ()))
    if not cells:
        raise InputError("nothing to reconstruct: no content layers and no style layers")
    if out is not None:
        check_output_path(out, "sheet", read_paths([image], opts["weights"]))
    original = as_image(image, "image")
    # Every cell planned (and so checked) before anything loads or any file is written.
    plans = {cell.name: plan_reconstruction(original, **cell.params, **opts) for cell in cells}
    if check_memory:
        max(plans.values(), key=lambda p: p.memory.total).check_memory()
    target = resize_longest(original, whole_number("size", opts["size"], 1))  # what every cell's run sees
    if vgg is None:
        vgg = load_network(opts["weights"], pooling=opts["pooling"], device=opts["device"],
                           engine=opts["engine"], log=log)
    has_content = bool(content_layers)
    row_labels = (["content"] if has_content else []) + (["style"] if style_layers else [])

    captions = [[] for _ in row_labels]
    for cell in cells:
        captions[cell.row].append(cell.label.split(" ", 1)[1])  # the layer(s), without the row's name

    def sheet():
        return cells_sheet(cells, row_labels=row_labels, captions=captions)

    store = None
    if out is not None:
        # the cells folder keys on what changes the pictures (so pooling and bounds count, the device and
        # the engine do not), less what each cell sets for itself
        picture = next(iter(plans.values())).settings.picture(input_fingerprint)
        settings = {"job": "reconstruct", "image": image_fingerprint(target), "size": list(target.size),
                    "options": {k: v for k, v in picture.items() if k not in CELL_OPTIONS},
                    "weights": weights_fingerprint(vgg)}
        store = CellStore(cells_folder(out), settings, restart=restart, protect=[image])
        store.check_writable([cell.name for cell in cells])

    def make(cell):
        cb = None if callback is None else (lambda rec, get_image: callback(cell, rec, get_image))
        return run(plans[cell.name], vgg=vgg, callback=cb, log=log)

    return fill_sheet(cells, make, target.size, sheet, out=out, store=store, log=log)
