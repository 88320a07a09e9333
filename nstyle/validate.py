"""Checking settings, once for the whole package: each check returns the clean value or raises
``InputError`` naming the setting.

The API (``stylize``, ``reconstruct``, ``make_grid``, ``StyleObjective``) calls these on its keyword
arguments; the command line's argument types (``cli/args.py``) call the same functions on the text of
each option and turn the InputError into argparse's one-line usage error (exit 2). So a value is
accepted or refused by the same rule whichever way it arrives.
"""
import math
import numbers
import sys

from .errors import InputError


def whole_number(name, value, minimum=0):
    """An int >= minimum (bools and floats are refused: ``iters=2.5`` is a mistake, not a request)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a whole number >= {minimum} (got {value!r})")
    if value < minimum:
        raise InputError(f"{name} must be a whole number >= {minimum} (got {value})")
    return int(value)


def finite_number(name, value, positive=False):
    """A finite float >= 0 (> 0 with ``positive``): weights, scales, learning rates."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number (got {value!r})") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise InputError(f"{name} must be a finite number {'>' if positive else '>='} 0 (got {value})")
    return value


def weight(name, value):
    """A loss weight: finite, >= 0, and not subnormal (see :data:`TINY`: 1e-320 computes as 0)."""
    value = finite_number(name, value)
    _not_subnormal(name, [value])
    return value


def choice(name, value, choices):
    if value not in choices:
        raise InputError(f"unknown {name} {value!r}; choose {', '.join(map(str, choices))}")
    return value


def distinct(name, values):
    """The values, refusing repeats (a layer named twice would count its term twice in the loss)."""
    values = tuple(values)
    repeated = sorted({v for v in values if values.count(v) > 1}, key=values.index)
    if repeated:
        raise InputError(f"{name} repeat: {', '.join(map(str, repeated))}", hint="name each once")
    return values


# The smallest positive float that keeps full precision (2.2e-308): below it a weight is subnormal, holds
# fewer significant bits the smaller it gets, and vanishes in the first product with a loss value.
TINY = sys.float_info.min


def normalised_weights(name, values):
    """The weights ``values`` (finite, >= 0, not all 0) scaled to sum to 1.

    Refuses weights that make no picture once normalised: a nonzero weight below TINY (subnormal, like
    1e-320), weights whose sum overflows to inf (1e308 + 1e308: every weight would become 0), and a
    nonzero weight that normalisation turns into 0 or a subnormal (1e-300 beside 1e300). Only the ratios
    matter, so the fix is always to scale them all alike or use 0 to leave one out."""
    values = [finite_number(name, v) for v in values]
    _not_subnormal(name, values)
    total = sum(values)
    if not values or total == 0:
        raise InputError(f"{name}s must not all be zero")
    if not math.isfinite(total):
        raise InputError(f"{name}s add up to more than the largest float ({_listed(values)})",
                         hint="only their ratios count: divide them all by the same number")
    out = [v / total for v in values]
    lost = [v for v, w in zip(values, out) if v > 0 and w < TINY]
    if lost:
        raise InputError(f"{name} {lost[0]:g} is lost beside the others ({_listed(values)}): normalised, it "
                         "would be 0", hint="use 0 to leave it out, or bring the weights closer together")
    return out


def scaled_weights(name, values, scale, scale_name):
    """Weights used as they are, each multiplied by ``scale`` (style layer weights times the style
    weight): each finite, >= 0, none subnormal, and no product overflowing to inf or underflowing to a
    subnormal. Returns the weights as floats."""
    values = [finite_number(name, v) for v in values]
    _not_subnormal(name, values)
    for v in values:
        product = v * scale
        if v > 0 and scale > 0 and not TINY <= product < math.inf:
            raise InputError(f"{name} {v:g} times the {scale_name} {scale:g} is {product:g}: too "
                             f"{'large' if product >= 1 else 'small'} to compute with",
                             hint="bring the weights closer to 1")
    return values


def _not_subnormal(name, values):
    for v in values:
        if 0 < v < TINY:
            raise InputError(f"{name} {v:g} is too small to compute with (below {TINY:.3g})",
                             hint="use 0 to leave it out, or scale every weight up alike")


def _listed(values, limit=4):
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return shown + (", ..." if len(values) > limit else "")
