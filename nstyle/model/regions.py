"""Spatial control: which region of the output takes its style from which regions of the style images.

Gatys et al. (CVPR 2017) guide the Gram matrices with masks: region t of the output is matched to the
statistics of region t of the style images. ``StyleObjective`` takes

- ``content_masks``: ``{region: (H, W) mask}`` at the output's pixel size (values 0..1);
- ``style_masks``: one ``{region: mask or None}`` per style image, at that image's size; None means the
  whole image (``--region-styles``: region t takes all of style image I);
- ``region_weights``: ``{region: w_t}``, normalised to sum to 1 (default: equal);
- ``mask_mode``: how masks are carried down the network (``reference/guides.py``).

and this module turns them into what each layer's loss needs: the output's normalised guides and, per
region, the target A_t = M_l * sum_s b_s G_s,t / M_s,l, with G_s,t the guided Gram matrix of style
image s in its own region t and the blend weights b_s renormalised over the style images that have
region t (and in which it is not empty at that layer).
"""
import numpy as np

from ..backend import to_device
from ..errors import InputError
from ..reference.guides import GUIDE_MODES, normalise_guide, propagate_guide
from ..reference.losses import guided_gram, scaled_blended_gram
from ..validate import normalised_weights
from .arch import LAYER_INDEX, LAYER_NAMES


def _mask(name, what, mask, shape=None):
    mask = np.asarray(mask, dtype=np.float64)
    if mask.ndim != 2 or 0 in mask.shape:
        raise InputError(f"{what} mask for region {name!r} must be one (H, W) channel; got shape {mask.shape}")
    if not np.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
        raise InputError(f"{what} mask for region {name!r} must hold values between 0 and 1")
    if shape is not None and mask.shape != tuple(shape):
        raise InputError(f"{what} mask for region {name!r} is {mask.shape[1]}x{mask.shape[0]}; the image is "
                         f"{shape[1]}x{shape[0]}")
    return mask


def region_weight_list(regions, region_weights):
    """w_t for each region name, from ``{name: w}`` (missing names: weight 1 before normalising)."""
    given = dict(region_weights or {})
    unknown = [k for k in given if k not in regions]
    if unknown:
        raise InputError(f"region weight(s) for region(s) not in the content mask: {', '.join(map(str, unknown))}",
                         hint="regions: " + ", ".join(map(str, regions)))
    weights = []
    for name in regions:
        w = float(given.get(name, 1.0))
        if not np.isfinite(w) or w < 0:
            raise InputError(f"region weight for {name!r} must be a finite number >= 0 (got {w})")
        weights.append(w)
    return normalised_weights("region weight", weights)  # refuses a sum that overflows, a weight lost


class Regions:
    """The output's guides and the guided targets, per style layer.

    Built from the masks (checked here), the style layers and the output's pixel size; the style
    images' guided Gram matrices are added one image at a time (:meth:`add_style`), then
    :meth:`finish` blends them into targets. ``notes`` holds one line per region left out somewhere.
    """

    def __init__(self, content_masks, style_masks, region_weights, mode, style_layers, n_styles, blend):
        if mode not in GUIDE_MODES:
            raise InputError(f"unknown mask mode {mode!r}; choose {', '.join(GUIDE_MODES)}")
        if not content_masks:
            raise InputError("spatial control needs at least one region in the content mask")
        if style_masks is None or len(style_masks) != n_styles:
            raise InputError(f"{0 if style_masks is None else len(style_masks)} style mask set(s) given for "
                             f"{n_styles} style image(s)", hint="give one per style image, in order")
        self.mode, self.style_layers, self.blend = mode, tuple(style_layers), list(blend)
        self.names = list(content_masks)
        masks = {t: _mask(t, "content", m) for t, m in content_masks.items()}
        shapes = {m.shape for m in masks.values()}
        if len(shapes) != 1:
            raise InputError("the content masks of all regions must have one size")
        self.size = shapes.pop()
        self.weights = region_weight_list(self.names, region_weights)
        self.style_masks = [dict(sm or {}) for sm in style_masks]
        missing = [t for t in self.names if not any(t in sm for sm in self.style_masks)]
        if missing:
            raise InputError(f"no style image has a region for {', '.join(map(str, missing))}",
                             hint="every region of the content mask needs a source region in a style image")
        self.notes = []
        deepest = max(self.style_layers, key=LAYER_INDEX.__getitem__)
        self.run = LAYER_NAMES[:LAYER_INDEX[deepest] + 1]
        # guides[layer][t]: the output's normalised guide of region t (None: empty at that layer)
        self.guides = {name: {} for name in self.style_layers}
        for t, m in masks.items():
            per_layer = propagate_guide(m, self.run, mode)
            empty = []
            for name in self.style_layers:
                self.guides[name][t] = normalise_guide(per_layer[name])
                if self.guides[name][t] is None:
                    empty.append(name)
            if empty:
                self.notes.append(f"region {t} is empty in the output at {', '.join(empty)} (mask mode {mode}); "
                                  "its style term is left out there")
        self._grams = {name: {t: [] for t in self.names} for name in self.style_layers}

    def style_guides(self, index, shape):
        """``{region: {layer: normalised guide or None}}`` of style image ``index`` at (H, W) ``shape``."""
        out = {}
        for t, m in self.style_masks[index].items():
            if t not in self.names:
                continue  # a region of the style image that no output region asks for
            m = np.ones(shape) if m is None else _mask(t, f"style image {index + 1}'s", m, shape)
            per_layer = propagate_guide(m, self.run, self.mode)
            out[t] = {name: normalise_guide(per_layer[name]) for name in self.style_layers}
            empty = [name for name in self.style_layers if out[t][name] is None]
            if empty:
                self.notes.append(f"region {t} of style image {index + 1} is empty at {', '.join(empty)} "
                                  f"(mask mode {self.mode}); it gives no target there")
        return out

    def add_style(self, index, features, image_shape, device):
        """Add style image ``index``'s guided Gram matrices, from its features at the style layers.

        image_shape: (H, W) of the style image as the network saw it; device: where features live.
        """
        for t, per_layer in self.style_guides(index, image_shape).items():
            for name in self.style_layers:
                g = per_layer[name]
                if g is None:
                    continue
                F = features[name]
                if tuple(F.shape[2:]) != g.shape:
                    raise ValueError(f"{name}: guide {g.shape} and features {F.shape[2:]} differ")
                G = guided_gram(F, to_device(g.astype(F.dtype), device))
                self._grams[name][t].append((G, F.shape[2] * F.shape[3], self.blend[index]))

    def finish(self, device, dtype):
        """The targets ``{layer: [(guide, A_t, w_t), ...]}`` over the regions present at each layer.

        Frees the per-image Gram matrices. A region with no target at a layer (empty in every style
        image there) or empty in the output there is left out of that layer's sum.
        """
        terms = {}
        for name in self.style_layers:
            terms[name] = []
            for t, w in zip(self.names, self.weights):
                g = self.guides[name][t]
                sources = self._grams[name][t]
                if g is None or w == 0:
                    continue
                if not sources:
                    self.notes.append(f"region {t} has no style target at {name}; its style term is left out there")
                    continue
                total = sum(b for _, _, b in sources)
                if total <= 0:
                    continue
                m = g.shape[0] * g.shape[1]
                A = scaled_blended_gram([G for G, _, _ in sources], [ms for _, ms, _ in sources],
                                        [b / total for _, _, b in sources], m)
                terms[name].append((to_device(g.astype(dtype), device), A, w))
        self._grams = None
        return terms
