"""Checking settings, once for the whole package: each check returns the clean value or raises
``InputError`` naming the setting.

The API (``stylize``, ``reconstruct``, ``make_grid``, ``StyleObjective``) calls these on its keyword
arguments; the command line's argument types (``cli/args.py``) call the same functions on the text of
each option and turn the InputError into argparse's one-line usage error (exit 2). So a value is
accepted or refused by the same rule whichever way it arrives.
"""
import math
import numbers

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
