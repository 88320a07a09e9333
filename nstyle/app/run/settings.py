"""The settings of a run, declared once: every option ``stylize`` takes, with its default, how its text
reads (a batch manifest's cells, a command-line sweep), whether it changes the picture, and who may set
it. One frozen :class:`Settings` object carries the checked values from the command line (or the API)
through the plan to the stages, the tiles, the video frames and the batch workers; every list of option
names a part of the program needs -- the per-job options of a batch, the options a resumable folder
keys on, what travels to a worker -- is read off these declarations, never written out a second time.

What changes the picture. An option changes the picture when another value of it can give another
image beyond the rounding of the arithmetic. The others say how or where the same picture is computed:
``device``, ``engine`` and ``tf32`` (the same function, rounded differently), ``lbfgs_impl`` (nstyle's
L-BFGS-B follows SciPy's iterates up to rounding), ``weights`` (a path: the folders key on the weights'
own fingerprint instead, so a moved file keeps its pictures), and the guards and places (``max_pixels``,
``check_memory``, ``tile_dir``, ``tile_cluster``). Resumable folders (tiles, video frames, batch
outputs) key on :meth:`Settings.picture`: a setting of the second kind never invalidates one, a setting
of the first kind always does.

Who sets it (``scope``):
    job     a batch job may set it per job (``kind`` says how its text reads)
    batch   one value for a whole batch: the network and the guards (``nstyle batch --device`` ...)
    run     one run's own: the tiles of a tiled run, TF32 (not a batch job's)
    client  where this process keeps and runs a tiled run's tiles: never travels to a worker

The defaults of the options the model or a room owns stay there (the loss's weights and layers in
``model/objective.py``, the pixel limit in ``files/imageio.py``, the tile overlap in ``tiles/plan.py``):
the declarations here name them.
"""
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import numpy as np

from ...errors import InputError
from ...model.arch import POOLINGS
from ...model.objective import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_CONTENT_WEIGHT,
    DEFAULT_STYLE_LAYERS,
    DEFAULT_STYLE_WEIGHT,
    DEFAULT_TV_WEIGHT,
)
from ...model.style_loss import DEFAULT_STYLE_LOSS, GRAM, format_style_loss, parse_style_loss
from ...model.vgg import ENGINES, check_layer_names
from ...optim.optimize import LBFGS_IMPLS, METHODS
from ...validate import choice, distinct, finite_number, normalised_weights, scaled_weights, weight, whole_number
from ..files.imageio import DEFAULT_MAX_PIXELS
from ..tiles.plan import DEFAULT_OVERLAP
from .weighting import check_scaling

INITS = ("content", "noise", "style")
OPTIMIZERS = METHODS
ORIGINAL_COLORS = ("none", "luminance", "match")
DEVICES = ("auto", "cpu", "gpu")

SCOPES = ("job", "batch", "run", "client")
INPUT_KINDS = ("init", "path", "paths")   # kinds whose values may be input images (paths or pixels)


def option(default, kind=None, *, picture=True, scope="job", listed=False):
    """One option's declaration. kind: how a text value reads ("int", "ints", "float", "floats", "names",
    "bool", "init", "path", "paths", "text"), for the options a batch job sets; picture: whether it
    changes the picture; scope: who sets it (module docstring); listed: its one value is itself a comma
    list (so several values of it are separated by ";")."""
    assert scope in SCOPES and (kind is not None) == (scope == "job"), (scope, kind)
    return field(default=default, metadata={"kind": kind, "picture": picture, "scope": scope, "listed": listed})


@dataclass(frozen=True)
class Settings(Mapping):
    """Every stylize option, checked (see :meth:`checked`). Read them as ``s.style_weight``; the object is
    also a read-only mapping (``s["style_weight"]``, ``dict(s)``, ``{**s}``), which is what the logs
    write and what code written against the older options dict reads.

    The order of the job options below is the order their values appear in a batch output's name
    (``batch/jobs.output_name``): keep it, or finished batches lose their pictures' names.
    """
    # -- per-job options, in the batch's naming order ------------------------------------------------
    size: int = option(512, "int")
    iters: object = option(500, "ints")                    # one count, or one per stage
    scales: object = option(None, "ints", listed=True)
    content_weight: float = option(DEFAULT_CONTENT_WEIGHT, "float")
    style_weight: float = option(DEFAULT_STYLE_WEIGHT, "float")
    tv_weight: float = option(DEFAULT_TV_WEIGHT, "float")
    content_layers: tuple = option(DEFAULT_CONTENT_LAYERS, "names", listed=True)
    style_layers: tuple = option(DEFAULT_STYLE_LAYERS, "names", listed=True)
    style_layer_weights: object = option(None, "floats", listed=True)
    style_blend: object = option(None, "floats", listed=True)
    style_scale: float = option(1.0, "float")
    original_colors: str = option("none", "text")
    weight_scaling: str = option("invariant", "text")
    init: object = option("content", "init")               # a keyword of INITS, or an image / its path
    seed: int = option(0, "int")
    optimizer: str = option("lbfgs", "text")
    lbfgs_impl: str = option("auto", "text", picture=False)
    lr: float = option(10.0, "float")
    bounds: bool = option(True, "bool")
    pooling: str = option("avg", "text")
    content_mask: object = option(None, "path")
    style_masks: object = option(None, "paths", listed=True)
    region_styles: object = option(None, "text", listed=True)
    region_weights: object = option(None, "text", listed=True)
    mask_mode: str = option("inside", "text")
    style_loss: str = option(DEFAULT_STYLE_LOSS, "text", listed=True)  # "gram", "histogram", "gram:1,histogram:0.5"
    # -- one run's own ---------------------------------------------------------------------------------
    tile: object = option(None, scope="run")               # pixels, "auto", or None (one piece)
    tile_base: object = option(None, scope="run")
    tile_overlap: float = option(DEFAULT_OVERLAP, scope="run")
    tile_passes: int = option(1, scope="run")
    tile_iters: object = option(None, scope="run")
    tile_dir: object = option(None, picture=False, scope="client")
    tile_cluster: object = option(None, picture=False, scope="client")
    tf32: bool = option(False, picture=False, scope="run")
    # -- the whole batch's: the network and the guards ------------------------------------------------
    weights: object = option(None, picture=False, scope="batch")
    device: str = option("cpu", picture=False, scope="batch")
    engine: str = option("auto", picture=False, scope="batch")
    max_pixels: object = option(DEFAULT_MAX_PIXELS, picture=False, scope="batch")
    check_memory: bool = option(True, picture=False, scope="batch")

    # -- the read-only mapping -------------------------------------------------------------------------
    def __getitem__(self, name):
        if name not in _DECLARED:
            raise KeyError(name)
        return getattr(self, name)

    def __iter__(self):
        return iter(OPTION_NAMES)

    def __len__(self):
        return len(OPTION_NAMES)

    # -- making and changing ---------------------------------------------------------------------------
    @classmethod
    def checked(cls, **options):
        """Settings from stylize keywords (the others keep their defaults), every value checked and put
        in its one spelling. Raises TypeError for an unknown name and InputError naming the first bad
        value. What needs the inputs themselves (a blend weight per style image, stage sizes, masks,
        tiles) the plan checks (``plan.make_plan``)."""
        unknown = set(options) - set(OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return cls(**_check({**DEFAULTS.to_dict(), **options}))

    @classmethod
    def from_dict(cls, values):
        """The Settings a :meth:`to_dict` gave (on a worker: the client checked them already)."""
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self, client=True):
        """A plain dict of every option (client=False: without the client-scope ones, which stay with the
        process that runs the tiles -- a Dask client cannot travel to a worker)."""
        return {name: getattr(self, name) for name in OPTION_NAMES if client or _DECLARED[name]["scope"] != "client"}

    def picture(self, fingerprint):
        """{option: value} for the options that change the picture (what resumable folders key on), with
        every input image among them (an init image, masks) replaced by ``fingerprint(value)``."""
        out = {}
        for name in picture_options():
            value = getattr(self, name)
            kind = _DECLARED[name]["kind"]
            if value is not None and kind in INPUT_KINDS and not (kind == "init" and _is_keyword(value)):
                value = [fingerprint(v) for v in value] if kind == "paths" else fingerprint(value)
            out[name] = value
        return out


def _is_keyword(init):
    return isinstance(init, str) and init in INITS


def _check(o):
    """The checks of :meth:`Settings.checked`, on a dict of every option."""
    choice("optimizer", o["optimizer"], OPTIMIZERS)
    choice("L-BFGS-B implementation", o["lbfgs_impl"], LBFGS_IMPLS)
    choice("pooling", o["pooling"], POOLINGS)
    choice("device", o["device"], DEVICES + ("cuda",))
    choice("engine", o["engine"], ENGINES)
    if not isinstance(o["tf32"], (bool, np.bool_)):
        raise InputError(f"tf32 must be True or False (got {o['tf32']!r})")
    o["tf32"] = bool(o["tf32"])
    o["original_colors"] = "none" if o["original_colors"] in (None, False) else o["original_colors"]
    choice("original colours option", o["original_colors"], ORIGINAL_COLORS)
    for key in ("content_weight", "style_weight", "tv_weight"):
        o[key] = weight(key.replace("_", " "), o[key])
    if o["content_weight"] == 0 and o["style_weight"] == 0 and o["tv_weight"] == 0:
        raise InputError("nothing to optimise: content, style and tv weights are all zero")
    o["lr"] = finite_number("learning rate", o["lr"], positive=True)
    o["style_scale"] = finite_number("style scale", o["style_scale"], positive=True)
    o["seed"] = whole_number("seed", o["seed"], 0)
    o["max_pixels"] = None if o["max_pixels"] is None else whole_number("max pixels", o["max_pixels"], 1)
    o["content_layers"] = distinct("content layers", o["content_layers"])
    o["style_layers"] = distinct("style layers", o["style_layers"])
    check_layer_names(o["content_layers"], "content layer")
    check_layer_names(o["style_layers"], "style layer")
    if o["content_weight"] > 0 and not o["content_layers"]:
        raise InputError("no content layers given, but the content weight is above zero")
    if o["style_weight"] > 0 and not o["style_layers"]:
        raise InputError("no style layers given, but the style weight is above zero")
    if o["style_layer_weights"] is not None:
        o["style_layer_weights"] = scaled_weights("style layer weight", o["style_layer_weights"], o["style_weight"],
                                                  "style weight")
        if len(o["style_layer_weights"]) != len(o["style_layers"]):
            raise InputError(f"{len(o['style_layer_weights'])} style layer weights given for "
                             f"{len(o['style_layers'])} style layers")
    if o["style_blend"] is not None:
        o["style_blend"] = [finite_number("style blend weight", b) for b in o["style_blend"]]
        normalised_weights("style blend weight", o["style_blend"])  # one that would vanish, or a sum that overflows
    o["weight_scaling"] = check_scaling(o["weight_scaling"])
    losses = parse_style_loss(o["style_loss"])
    o["style_loss"] = format_style_loss(losses)  # one spelling: "gram", or "name:weight,..."
    if list(losses) != [GRAM] and o["style_weight"] > 0:
        if o["content_mask"] is not None:
            raise InputError(f"--content-mask works with the gram style loss only; --style-loss {o['style_loss']} "
                             "has no guided form")
        if o["tile"] is not None and o["tile"] != "auto":
            raise InputError(f"--tile works with the gram style loss only (its tiles share one set of Gram "
                             f"statistics); --style-loss {o['style_loss']} is not tiled")
    return o


# ---------------------------------------------------------------------------------------------------
# The declarations, read.

_DECLARED = {f.name: f.metadata for f in fields(Settings)}
OPTION_NAMES = tuple(_DECLARED)
DEFAULTS = Settings()


def picture_options():
    """The names of the options that change the picture, in declaration order."""
    return tuple(name for name, meta in _DECLARED.items() if meta["picture"])


def options_of(scope):
    """The names of the options of one scope ("job", "batch", "run" or "client"), in declaration order."""
    return tuple(name for name, meta in _DECLARED.items() if meta["scope"] == scope)


def job_option_kinds():
    """{option: kind} for the options a batch job may set, in the batch's naming order."""
    return {name: _DECLARED[name]["kind"] for name in options_of("job")}


def listed_options():
    """The options whose one value is itself a comma list."""
    return frozenset(name for name, meta in _DECLARED.items() if meta["listed"])
