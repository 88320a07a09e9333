"""What every loss term is: the protocol, and the registry the objective, ``nstyle gradcheck`` and the
tests read.

A term is one part of the loss, L = sum over terms of weight * layer_weight * scale * value. It reads
one layer of the network (``layer``, a VGG name) or the pixels themselves (``layer = None``: a *pixel
term*), holds its targets (computed once, from images, when it is built), and gives its value and its
gradient with respect to what it reads:

    class MyTerm(Term):
        name = "my_term"        # the registry's name, and gradcheck's --op
        group = "style"         # the breakdown group its weighted value adds to
        scaling = "mean"        # how its value grows with the image: "positions", "pixels" or "mean"
        def loss(self, F): ...          # (value, dE/dF) on plain arrays: the definition
        def loss_naive(self, F): ...    # the same, written as obvious loops (the twin the tests compare)
        @classmethod
        def check_case(cls, rng): ...   # (a small float64 term, its input): what gradcheck differentiates

For a layer term the objective calls ``evaluate(taps)`` after its one forward: by default ``loss`` on
the plain array of the layer; a term whose engine offers a faster form of its work overrides it (the
Gram term asks the engine's ``style_loss``, which on the CPU engine keeps the gradient factored). A
pixel term's ``loss(x)`` is called after the backward sweep, its gradient added to the sweep's. ``@register`` adds a class to
``TERMS`` and refuses one that lacks any of the above, so no term ships without its check.

Keys: a layer term reports as ``"<group>/<layer>"`` (``"style/relu3_1"``), a pixel term as its group
(``"tv"``); the objective's ``term_scales`` and ``last_breakdown`` use the same keys.
"""
from collections import namedtuple

from ...backend import to_device

# How a term's value grows with the image's size (``app/run/weighting.py`` reads it):
#   positions  a sum over its layer's positions (the content term): scaled by positions(ref) / positions
#   pixels     a sum over the pixels (total variation): scaled by pixels(ref) / pixels
#   mean       an average or a per-position statistic (Gram style terms, the temporal term): the same
#              at every size, factor 1
SCALINGS = ("positions", "pixels", "mean")

# What a term declares to the weighting, before or without its targets: its key, scaling and layer.
Declaration = namedtuple("Declaration", "key scaling layer")

# What the objective hands ``evaluate``: the forward's plain feature arrays by layer name, the trace
# the engine's own forms may read, and the engine.
Taps = namedtuple("Taps", "features trace engine")

class Parts(float):
    """A term's value that is a weighted sum of named parts (``terms/style_sum.py``): the float is the
    sum, ``parts`` {name: (coefficient, unweighted value)}; the breakdown records each part beside it."""

    def __new__(cls, value, parts):
        obj = super().__new__(cls, value)
        obj.parts = dict(parts)
        return obj


TERMS = {}  # name -> Term subclass, in the order they were registered (gradcheck's reading order)


def net_input(vgg, x):
    """x moved to the network's device and dtype (no copy when it already is)."""
    return to_device(x, vgg.device).astype(vgg.dtype, copy=False)


class Term:
    """The protocol (see the module docstring). Subclasses set ``name``, ``group``, ``scaling``, and
    per instance ``layer`` (None for a pixel term) and ``layer_weight`` (its weight within its group,
    w_l for a style layer; 1 otherwise)."""

    name = None
    group = None
    scaling = None
    layer = None
    layer_weight = 1.0

    @property
    def layers(self):
        """The layers this term reads: one, or none for a pixel term."""
        return () if self.layer is None else (self.layer,)

    @classmethod
    def key_for(cls, layer=None):
        return cls.group if layer is None else f"{cls.group}/{layer}"

    @property
    def key(self):
        return self.key_for(self.layer)

    @classmethod
    def declare(cls, layer=None):
        """The declaration of a term of this class at ``layer`` (one that is not built yet)."""
        return Declaration(cls.key_for(layer), cls.scaling, layer)

    @property
    def declaration(self):
        return self.declare(self.layer)

    def loss(self, inputs):
        """(value, gradient): inputs is F (1, N, H, W) of ``layer``, or the pixels x (1, 3, H, W) for a
        pixel term; the gradient is shaped like inputs (None: zero, nothing to add)."""
        raise NotImplementedError

    def loss_naive(self, inputs):
        """``loss`` written as loops over the elements: slow, obvious, the tests' twin."""
        raise NotImplementedError

    def evaluate(self, taps):
        """(value, gradient) inside the objective: ``loss`` on the plain array of its layer. Override to
        use a faster form that the engine (``taps.engine``) offers for this term's work. The gradient
        may be a list of gradients, which the backward sweep adds (a sum of terms, each in its own form)."""
        return self.loss(taps.features[self.layer])

    @classmethod
    def check_case(cls, rng):
        """(term, inputs): a small float64 instance and an input for the numerical gradient check."""
        raise NotImplementedError

    def bind(self, vgg):
        """Move constants given on the host to the network's device and dtype (terms built from images
        through the network have them there already)."""

    def prepare(self, height, width):
        """The output's pixel size, once known: build what depends on it (a style target scaled to it)."""

    def check_size(self, height, width):
        """Raise InputError when an (height, width) image cannot be evaluated (a target of another size)."""

    def normalization_factor(self, s):
        """How much this term grows when its layer's channel c is multiplied by s[c], measured on its
        targets (``weighting.normalization_factors``); None: not measurable (no target, a pixel term)."""
        return None


def _defines(cls, name):
    """Whether ``cls`` or a base below Term defines ``name`` (Term's own placeholder does not count)."""
    return any(name in vars(k) for k in cls.__mro__ if k is not Term and issubclass(k, Term))


def register(cls):
    """Add a Term subclass to ``TERMS`` (as a class decorator). Refuses a class that does not declare
    its name, group and scaling, or leaves out loss, its naive twin or its check case."""
    missing = [attr for attr in ("name", "group", "scaling") if not getattr(cls, attr, None)]
    missing += [method for method in ("loss", "loss_naive", "check_case") if not _defines(cls, method)]
    if missing:
        raise TypeError(f"term {cls.__name__} does not define {', '.join(missing)}")
    if cls.scaling not in SCALINGS:
        raise TypeError(f"term {cls.__name__}: scaling {cls.scaling!r} is none of {', '.join(SCALINGS)}")
    if TERMS.get(cls.name, cls) is not cls:
        raise ValueError(f"a term named {cls.name!r} is registered already ({TERMS[cls.name].__name__})")
    TERMS[cls.name] = cls
    return cls
