"""Which CPU kernel runs a 3x3 / stride-1 / padding-1 convolution, and its weights in that kernel's form.

The kernels (``conv3x3.py``: direct GEMM -- with a column matrix, or as nine products in place from
TAPS_MIN_CHANNELS input channels up -- and multiply-then-shift; ``winograd.py``: F(4x4, 3x3) and
F(2x2, 3x3)) all read and write the padded layout of ``padded.py``. :class:`PreparedConv3x3` picks one
per call from the channel counts and the map size (:func:`choose_kernel`), and keeps each weight form it
has made, so a network transforms its weights once.
"""
from . import blas
from .conv3x3 import conv3x3_direct, conv3x3_shift, conv3x3_taps, flip_transpose, shift_matrix, tap_matrix
from .winograd import conv3x3_winograd, small_map, transposed_form, winograd_form

# Winograd pays once both channel counts reach WINOGRAD_MIN_CHANNELS and their product
# WINOGRAD_MIN_PRODUCT: F(4x4) is 1.15x (64 -> 128) to 2x (256 -> 256) faster than the direct kernel;
# 64 -> 64 breaks even (bench/NOTES.md, section 11) and stays direct, the more accurate of the two.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_PRODUCT = 64 * 128
# ... and while the map has tiles enough: below WINOGRAD4_MIN_TILES 4x4 tiles F(2x2) is used -- on
# small maps the products are thin and reading F(4x4)'s transformed weights (36 per filter against 16)
# costs more than its products save. F(2x2) stays ahead of the direct kernel down to 2 x 2 maps
# (512 channels at 4 x 4: 0.33 against 1.01 ms, 2 threads); on a 1 x 1 map the direct kernel, which
# reads 9 weights per filter, wins (bench/NOTES.md, section 13).
WINOGRAD4_MIN_TILES = 64
WINOGRAD2_MIN_PIXELS = 4
# Below this many output channels, multiply-then-shift beats the column matrix (conv1_1's dx: 3).
SHIFT_MAX_CHANNELS = 16
# A "direct" convolution with at least this many input channels runs as nine products in place
# (conv3x3.conv3x3_taps: 16 to 128 channels measured, none slower); with fewer (conv1_1's 3) the
# products are too thin and the column matrix is small.
TAPS_MIN_CHANNELS = 16


WINOGRAD_POLICIES = ("auto", "always", "f2", "never")


def choose_kernel(c, o, h, w, winograd="auto"):
    """Which kernel ("direct", "shift", "winograd4", "winograd2") runs a 3x3 convolution from c to o
    channels on an h x w map.

    winograd: "auto" (where it pays, by the thresholds above), "always" (F(4x4) wherever
    multiply-then-shift does not apply -- how the tests run it on narrow networks), "f2" (the same with
    F(2x2)) or "never".
    """
    if o <= SHIFT_MAX_CHANNELS and c > o:
        return "shift"
    if winograd == "never":
        return "direct"
    if winograd == "always":
        return "winograd4"
    if winograd == "f2":
        return "winograd2"
    if min(c, o) < WINOGRAD_MIN_CHANNELS or c * o < WINOGRAD_MIN_PRODUCT:
        return "direct"
    if -(-h // 4) * -(-w // 4) >= WINOGRAD4_MIN_TILES:
        return "winograd4"
    if h * w >= WINOGRAD2_MIN_PIXELS:
        return "winograd2"
    return "direct"


class PreparedConv3x3:
    """One layer's weights in the forms the kernels want, made on first use and kept."""

    def __init__(self, w, b, winograd="auto"):
        if winograd not in WINOGRAD_POLICIES:
            raise ValueError(f"winograd must be one of {WINOGRAD_POLICIES}, not {winograd!r}")
        self.w, self.b, self.winograd = w, b, winograd
        self.o, self.c = w.shape[:2]
        self._forms = {}

    def form(self, kind):
        """Weights for one kernel: direct / shift / winograd4 / winograd2, with ``_t`` those of the
        input-gradient convolution; ``direct_b``: direct with the bias folded in.

        A Winograd ``_t`` form is no second transform: the forward's, its blocks permuted and
        transposed (``winograd.transposed_form``).
        """
        if kind not in self._forms:
            if kind == "direct_b":  # with the bias as one more column (see conv3x3.tap_matrix)
                self._forms[kind] = tap_matrix(self.w, self.b)
                return self._forms[kind]
            makers = {"direct": tap_matrix, "shift": shift_matrix,
                      "winograd4": lambda w: winograd_form(w, 4), "winograd2": lambda w: winograd_form(w, 2)}
            base, transposed = (kind[:-2], True) if kind.endswith("_t") else (kind, False)
            if base not in makers:
                raise ValueError(f"unknown weight form {kind!r}")
            if transposed and base.startswith("winograd"):
                self._forms[kind] = transposed_form(self.form(base))
            else:
                self._forms[kind] = makers[base](flip_transpose(self.w) if transposed else self.w)
        return self._forms[kind]

    def small_map(self, h, w, transposed=False):
        """m when this convolution (transposed: its input gradient) on an h x w map runs on the Winograd
        kernel's small-map path -- its threads sharing out its input transform and its output by
        channel ranges (``winograd.small_map``) -- else None. There a step before it may transform its
        input (``winograd.input_step``, passed on as ``inputs``) and its epilogue may carry more steps
        (``steps.ChannelChain``)."""
        c_in, c_out = (self.o, self.c) if transposed else (self.c, self.o)
        kind = choose_kernel(c_in, c_out, h, w, self.winograd)
        if not kind.startswith("winograd"):
            return None
        m = 4 if kind == "winograd4" else 2
        return m if small_map(c_in, c_out, h, w, m) else None

    def run(self, xbuf, outbuf, h, w, transposed=False, epilogue=None, bias=False, inputs=None):
        """Convolve (or, transposed, run the input-gradient convolution) between padded buffers.

        bias: add the layer's bias (forward only), inside the kernel, before the epilogue sees the rows.
        inputs: the input already transformed, for the small-map path (see :meth:`small_map`).
        """
        c_out = self.c if transposed else self.o
        kind = choose_kernel(xbuf.shape[0], c_out, h, w, self.winograd)
        suffix = "_t" if transposed else ""
        bias = bias and not transposed and self.b is not None
        if kind.startswith("winograd"):
            conv3x3_winograd(xbuf, self.form(kind), outbuf, h, w, epilogue, transposed=transposed,
                             bias=self.b if bias else None, ut=self.form(kind + "_t") if transposed else None,
                             inputs=inputs)
        elif inputs is not None:
            raise ValueError(f"inputs transformed ahead but the {kind} kernel runs this convolution")
        elif kind == "direct":
            form = self.form("direct_b" if bias else "direct" + suffix)
            if xbuf.shape[0] >= TAPS_MIN_CHANNELS and blas.available(xbuf.dtype):
                conv3x3_taps(xbuf, form, outbuf, h, w, epilogue)
            else:
                conv3x3_direct(xbuf, form, outbuf, h, w, epilogue)
        else:  # multiply-then-shift serves the few-output-channel input gradient; a bias there is rare
            inner = epilogue
            if bias:
                def inner(r_lo, r_hi):
                    outbuf[:, r_lo:r_hi, 1:w + 1] += self.b[:, None, None]
                    if epilogue is not None:
                        epilogue(r_lo, r_hi)
            conv3x3_shift(xbuf, self.form("shift" + suffix), outbuf, h, w, inner)
        return outbuf
