"""How much memory a run will need, and how much the machine has free.

``estimate`` walks VGG-19's layers at the run's image size and adds up what the engine keeps alive at
its peak. Two network models: the CPU engine's (``cpu/engine.py``: zero-bordered buffers reused
through a pool, bit-packed ReLU masks, weights also kept in Winograd / GEMM form, per-thread band
buffers) and the layer loop's that the reference and GPU engines run (ReLU masks and pooling winners,
the tapped maps and their gradients, the largest layer's working buffers). Besides the network: the
Gram targets, the optimiser's state (L-BFGS-B keeps its history in float64 on the host), the images
and the weights, with the constants in one place.

What the machine has free is ``available.py``'s (``available_bytes``, ``gpu_available_bytes``, imported
here for the callers that ask this module).

Checked against the peak resident memory of real runs (see README, "Limits"): the estimate is meant to
be a little above the measurement, never far below it.
"""
import functools
from dataclasses import dataclass, field

from ...cpu.fastconv import choose_kernel
from ...model.arch import CONV_SHAPES, LAYER_INDEX, LAYER_NAMES, channels, layer_positions
from ...model.style_loss import GRAM, parse_style_loss, style_loss_bytes
from .available import available_bytes, gpu_available_bytes  # noqa: F401 -- re-exported

# Python with nstyle, NumPy, SciPy (without scipy.optimize), Pillow and h5py imported, before any image
# or weight is loaded (measured: 44 MiB), plus 16 MiB of headroom: at 64 to 256 pixels, where the
# weights and fixed costs are most of the peak, the model was as little as 4% above the measured peak
# (bench/memory_small_sizes.py; allocator arenas, thread stacks and image decoders are not modelled).
BASE_BYTES = 61 * 2**20
# im2col keeps a band of about this many float32 entries per convolution (``layers/im2col.band_rows``).
IM2COL_BAND_ELEMS = 1 << 21
# CPU fast path: at its peak each resolution holds at most this many zero-bordered maps of its channel
# count (a tap still waiting for its gradient, a layer's input and output -- or gradient in and out --
# are never more than three at once; the buffer pool's blocks serve every resolution's maps in turn).
CPU_MAPS_PER_RESOLUTION = 3
# CPU fast path: band buffers each thread keeps (``threads.scratch``): direct GEMM columns (2 Mi
# elements), multiply-then-shift products, the epilogues' rows. Winograd's band arrays, which depend
# on the layers' shapes, are counted by :func:`cpu_winograd_scratch_bytes`.
CPU_SCRATCH_BYTES_PER_THREAD = 24 * 2**20
CPU_SCRATCH_BYTES_MAIN = 4 * 2**20
# L-BFGS-B: importing scipy.optimize (measured: 47 MiB), and float64 vectors of the pixel count: per
# history pair (s, y) SciPy holds two in its work array and two more in its own copies; besides those,
# x, the gradient, the bounds, the line search, our driver's copies of recent points and the
# allocator's leftovers from all of them. Fitted to the peak RSS of runs that filled the history (20
# iterations at 256 and 512, 12 at 1024; README, "Limits"): 4 * m + 33 vectors with m = 10.
LBFGS_IMPORT_BYTES = 48 * 2**20
LBFGS_VECTORS_PER_PAIR = 4
LBFGS_EXTRA_VECTORS = 33
# Short-lived temporaries and allocator slack, as a fraction of everything else.
OTHER_FRACTION = 0.05
# Float32 pixel-sized arrays Adam keeps (x, m, v, the step, the gradient, the best x).
ADAM_VECTORS = 7


@dataclass
class MemoryEstimate:
    parts: dict = field(default_factory=dict)   # name -> bytes
    device: str = "cpu"
    per_thread: int = 0                         # bytes of "thread buffers" each CPU thread adds

    @property
    def total(self):
        return sum(self.parts.values())

    @property
    def on_device(self):
        """Bytes that live on the GPU when running there (the network's part)."""
        return sum(v for k, v in self.parts.items() if k in ("network", "weights"))


def _walk(height, width, deepest):
    """Per-layer shapes up to ``deepest``: yields (name, in_channels, out_channels, h, w) at that layer's
    output resolution (pools halve h and w, flooring like the engine)."""
    channels, h, w = 3, height, width
    for name in LAYER_NAMES[:LAYER_INDEX[deepest] + 1]:
        if name.startswith("conv"):
            out_ch = CONV_SHAPES[name][0]
            yield name, channels, out_ch, h, w
            channels = out_ch
        elif name.startswith("pool"):
            h, w = h // 2, w // 2
            yield name, channels, channels, h, w
        else:
            yield name, channels, channels, h, w


def layer_path_network_bytes(height, width, taps, pooling="avg", itemsize=4):
    """Peak bytes of one objective evaluation on the generic layer path (the GPU's): forward to the
    deepest tap, the losses, and the backward sweep (see ``vgg.py`` and ``objective.py``).

    forward, at each layer: the masks so far, the tapped maps so far, and the layer's own buffers;
    losses: every mask, every tapped map and every tap's gradient at once;
    backward, at each convolution: the masks and the taps' gradients (all held until the sweep ends),
    plus the gradient in, the zero-padded gradient out, its im2col band and its contiguous copy.
    """
    if not taps:
        return 0
    deepest = max(taps, key=LAYER_INDEX.__getitem__)
    masks = features = 0
    forward_peak = backward_transient = 0
    for name, c_in, c_out, h, w in _walk(height, width, deepest):
        elems = c_out * h * w
        if name.startswith("conv"):
            in_elems, padded = c_in * h * w, c_in * (h + 2) * (w + 2)
            band = min(IM2COL_BAND_ELEMS, 9 * c_in * h * w)
            # forward: the input (already counted if it is a tapped map), padded copy, band, output
            layer = itemsize * (padded + band + elems) + (0 if features else itemsize * in_elems)
            forward_peak = max(forward_peak, masks + features + layer)
            backward_transient = max(backward_transient, itemsize * (elems + padded + band + in_elems))
        elif name.startswith("relu"):
            masks += elems  # boolean mask, 1 byte per element
        elif pooling == "max":
            masks += elems  # uint8 index of the winner in each window
        if name in taps:
            features += elems * itemsize
    losses_peak = masks + 2 * features
    backward_peak = masks + features + backward_transient  # the gradients at the taps: as big as the maps
    return max(forward_peak, losses_peak, backward_peak)


def cpu_network_bytes(height, width, taps, pooling="avg", itemsize=4):
    """Peak bytes of one objective evaluation on the CPU engine (``cpu/engine.py``), buffer pool included.

    Every map lives in a zero-bordered (C, H+3, W+2) buffer; at each resolution up to the deepest tap
    at most ``CPU_MAPS_PER_RESOLUTION`` of them exist at once. The ReLU masks (1 bit per element) and
    max-pool winners (1 byte) of every layer stay until the backward has passed them. Checked with
    tracemalloc at 256x192, 512x384 and 1024x768 (real weights): the peak was 0.88, 0.84 and 0.83 of this
    model, band buffers included; tests/test_memory.py checks it at 96x128.
    """
    if not taps:
        return 0
    deepest = max(taps, key=LAYER_INDEX.__getitem__)
    masks = 0
    widest = {}  # padded pixels of each resolution -> the most channels a map there has
    for name, _, c_out, h, w in _walk(height, width, deepest):
        padded = (h + 3) * (w + 2)
        widest[padded] = max(widest.get(padded, 0), c_out)
        if name.startswith("relu"):
            masks += c_out * (h + 3) * -(-(w + 2) // 8)
        elif name.startswith("pool") and pooling == "max":
            masks += c_out * h * w
    maps = sum(CPU_MAPS_PER_RESOLUTION * c * px for px, c in widest.items()) * itemsize
    return maps + masks


def cpu_weight_form_bytes(deepest, itemsize=4, sizes=((512, 512),), forward_sizes=()):
    """Bytes of the CPU kernels' weight forms (``cpu/fastconv.py``) once the network has run forward and
    backward at every (height, width) of ``sizes`` and forward only at ``forward_sizes``: F(4x4)'s
    36 x O x C, F(2x2)'s 16 x O x C (a transposed copy more for the backward), direct or shift 9 x O x C."""
    per_point, total = {"winograd4": 36, "winograd2": 16}, 0
    walks = [(list(_walk(h, w, deepest)), True) for h, w in sizes]
    walks += [(list(_walk(h, w, deepest)), False) for h, w in forward_sizes]
    for index, (name, c_in, c_out, _, _) in enumerate(_walk(1, 1, deepest)):
        if not name.startswith("conv"):
            continue
        forms = set()  # the names PreparedConv3x3.form keeps them under
        for walk, both in walks:
            _, _, _, h, w = walk[index]
            forward = choose_kernel(c_in, c_out, h, w)
            forms.add("direct_b" if forward == "direct" else forward)
            if both:
                backward = choose_kernel(c_out, c_in, h, w)
                # a Winograd backward keeps the forward's form too: its transposed copy is made from it
                forms.update({backward + "_t", backward} if backward in per_point else {backward + "_t"})
        for form in forms:
            total += per_point.get(form.removesuffix("_t"), 9) * c_out * c_in + (c_out if form == "direct_b" else 0)
    return total * itemsize


def cpu_winograd_scratch_bytes(deepest, itemsize=4, sizes=((512, 512),), threads=1):
    """(per thread, main thread only) bytes of the Winograd kernels' work arrays after runs at ``sizes``:
    per array the largest any layer needed (``threads.scratch`` keeps it), cut as ``band_plan`` cuts.
    A small map's D, V, M and Y are the calling thread's; the transforms' pass-between array (the last
    of ``scratch_elements``) is every thread's own, one key for both paths."""
    from ...cpu.winograd import band_plan, scratch_elements  # noqa: PLC0415
    largest = {"bands": [0] * 5, "small": [0] * 5}
    for height, width in sizes:
        for name, c_in, c_out, h, w in _walk(height, width, deepest):
            if not name.startswith("conv"):
                continue
            for c, o in ((c_in, c_out), (c_out, c_in)):
                kind = choose_kernel(c, o, h, w)
                if not kind.startswith("winograd"):
                    continue
                m = int(kind[-1])
                how, rows = band_plan(c, o, h, w, m, threads)
                largest[how] = [max(x, y) for x, y in zip(largest[how], scratch_elements(c, o, h, w, m, rows))]
    bands, small = largest["bands"], largest["small"]
    return (sum(bands[:4]) + max(bands[4], small[4])) * itemsize, sum(small[:4]) * itemsize


def network_bytes(height, width, taps, pooling="avg", itemsize=4, engine="cpu"):
    """Peak bytes of one evaluation's network work: the CPU engine's model for engine "cpu", the layer
    loop's (the reference and GPU engines') otherwise."""
    if engine == "cpu":
        return cpu_network_bytes(height, width, taps, pooling, itemsize)
    return layer_path_network_bytes(height, width, taps, pooling, itemsize)


def normalize_estimate(height, width, params=20_024_384, itemsize=4):
    """Bytes ``weights normalize`` needs at its peak for its largest image, (height, width), by part: the
    weights as read (float32), then the larger of its two phases -- one image's forward pass through
    every layer on the reference engine (input, padded copy, im2col band, output and its ReLU, at the
    largest layer), or the rescaling (a float64 copy of the weights and the float32 result); the decoded
    image and its network copy. Measured (random full-size weights, three 900x700 photos): peak RSS
    363 MiB at --size 256 and 512 (estimated 386, 389), 655 MiB at 900x700 (estimated 811)."""
    network = 0
    for name, c_in, c_out, h, w in _walk(height, width, "relu5_4"):
        if name.startswith("conv"):
            padded, band = c_in * (h + 2) * (w + 2), min(IM2COL_BAND_ELEMS, 9 * c_in * h * w)
            network = max(network, itemsize * (c_in * h * w + padded + band + 2 * c_out * h * w))
    parts = {"base": BASE_BYTES, "weights": params * itemsize,
             "network or rescaling": max(network, params * (8 + itemsize)),
             "images": height * width * (3 * 2 + 3 * itemsize)}
    parts["other"] = int(OTHER_FRACTION * sum(parts.values()))
    return MemoryEstimate(parts=parts)


def estimate(height, width, content_layers, style_layers, style_shapes=(), pooling="avg",
             optimizer="lbfgs", history_size=10, image_bytes=0, device="cpu", itemsize=4, engine=None,
             regions=0, style_loss=None, style_loss_options=None):
    """Bytes a run at (height, width) needs at its peak, by part (a new MemoryEstimate each call).

    Walking the layers takes milliseconds, which a batch of a million rows would pay a million times:
    equal arguments (and thread count) reuse the parts computed the first time (the style losses' parts
    are added outside that cache).

    style_shapes: (h, w) of each style image as the network sees it; image_bytes: the decoded input images
    (their pixel counts times 3 bytes, times 2 for the RGB copy). Parts: base, weights, network (one
    evaluation, or a style image's forward if larger), targets, optimizer, images; on the CPU engine also
    the kernels' weight forms and the threads' band buffers. engine: "cpu", "gpu" or "reference" (default:
    the device's fast engine). regions: the number of regions of a guided run (spatial control): each adds
    a target per style layer and per style image, its guides at every style layer, and the guided loss
    works on a masked copy of each style tap (part "guides"). style_loss, style_loss_options: the
    objective's; the losses beyond Gram add their parts (``model.style_loss.style_loss_bytes``).
    """
    from ...cpu.threads import num_threads  # noqa: PLC0415
    engine = engine or device
    shapes = tuple(tuple(int(v) for v in shape) for shape in style_shapes)
    found = _estimate(int(height), int(width), tuple(content_layers), tuple(style_layers), shapes, pooling,
                      optimizer, history_size, int(image_bytes), device, itemsize, engine, regions,
                      num_threads() if engine == "cpu" else 1, GRAM in parse_style_loss(style_loss))
    parts = dict(found.parts)
    extra = style_loss_bytes(style_loss, style_loss_options, height, width, style_layers, shapes, itemsize)
    if extra:
        parts.update(extra)
        parts["other"] = int(OTHER_FRACTION * sum(v for k, v in parts.items() if k != "other"))
    return MemoryEstimate(parts=parts, device=found.device, per_thread=found.per_thread)


@functools.lru_cache(maxsize=256)
def _estimate(height, width, content_layers, style_layers, style_shapes, pooling, optimizer, history_size,
              image_bytes, device, itemsize, engine, regions, threads, gram=True):
    taps = tuple(dict.fromkeys(tuple(content_layers) + tuple(style_layers)))
    pixels = 3 * height * width
    parts = {"base": BASE_BYTES}
    per_thread_bytes = 0
    deepest = max(taps, key=LAYER_INDEX.__getitem__) if taps else None
    weights = 0
    if deepest is not None:
        for name, c_in, c_out, _, _ in _walk(1, 1, deepest):
            if name.startswith("conv"):
                weights += (c_out * c_in * 9 + c_out) * itemsize
    # load_params reads every layer of the file before the network keeps the ones it needs
    parts["weights"] = max(weights, 20_024_384 * itemsize)
    net = network_bytes(height, width, taps, pooling, itemsize, engine)
    for sh, sw in style_shapes:
        net = max(net, network_bytes(sh, sw, tuple(style_layers), pooling, itemsize, engine) // 2)
    parts["network"] = net
    if engine == "cpu" and deepest is not None:
        parts["kernel weights"] = cpu_weight_form_bytes(deepest, itemsize, [(height, width)], style_shapes)
        per_thread, main = cpu_winograd_scratch_bytes(deepest, itemsize, [(height, width), *style_shapes], threads)
        per_thread_bytes = CPU_SCRATCH_BYTES_PER_THREAD + per_thread
        parts["thread buffers"] = per_thread_bytes * threads + CPU_SCRATCH_BYTES_MAIN + main
    targets = sum(channels(name) * layer_positions(height, width, name) * itemsize for name in content_layers)
    for name in style_layers if gram else ():
        c = channels(name)
        # target Gram, the evaluation's Gram and its difference; each style image's own Gram (kept to
        # rebuild the target at another output size); per region a target and each image's guided Gram
        targets += (3 + len(style_shapes) + regions * (1 + len(style_shapes))) * c * c * itemsize
    parts["targets"] = targets
    if regions and style_layers:
        deepest_style = max(style_layers, key=LAYER_INDEX.__getitem__)
        shapes = [(c, h, w) for lname, _, c, h, w in _walk(height, width, deepest_style) if lname in style_layers]
        guide_px = sum(h * w for _, h, w in shapes)
        # the guides (float64 while propagated, then in the network's dtype) and, in an evaluation, the
        # masked tap, the product with the Gram difference and the accumulated gradient of one layer
        parts["guides"] = regions * guide_px * (8 + itemsize) + 3 * max(c * h * w for c, h, w in shapes) * itemsize
    if optimizer == "lbfgs":
        parts["optimizer"] = (LBFGS_IMPORT_BYTES
                              + (LBFGS_VECTORS_PER_PAIR * history_size + LBFGS_EXTRA_VECTORS) * pixels * 8)
    else:
        parts["optimizer"] = ADAM_VECTORS * pixels * itemsize
    parts["images"] = int(image_bytes) + 4 * pixels * itemsize  # inputs + content/init/best in float32
    # temporaries nobody keeps for long (Gram products, colour conversions) and allocator slack
    parts["other"] = int(OTHER_FRACTION * sum(parts.values()))
    return MemoryEstimate(parts=parts, device=device, per_thread=per_thread_bytes)


def largest_fitting_size(budget, make_estimate, low=16, high=16384):
    """The largest longest-side size whose ``make_estimate(size).total`` fits ``budget`` (bisection).

    Returns None when even ``low`` does not fit.
    """
    if make_estimate(low).total > budget:
        return None
    while high - low > 8:
        mid = (low + high) // 2
        if make_estimate(mid).total <= budget:
            low = mid
        else:
            high = mid
    return low


def format_bytes(n):
    """1536 -> '1.5 KiB'; binary units (what `free` and /proc/meminfo count in), one decimal."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
