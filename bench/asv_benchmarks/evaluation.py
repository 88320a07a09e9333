"""One evaluation of the style objective: forward to relu5_1, content + five Gram losses, backward to
the pixels (what bench/bench_rivals.py races against the frameworks), and its peak memory.

Seeded random weights of VGG-19's real widths and seeded synthetic images (bench/shared.py): the same
bits on every machine and at every commit. nstyle's defaults for the engine and the thread count."""
import numpy as np

import shared

SIZES = [128, 256, 512]


def objective(size):
    """(value_and_grad, start image) through nstyle's public API, the targets already computed."""
    import nstyle
    vgg = nstyle.VGG19(shared.random_vgg_params(0), pooling="avg")
    content, style, start = shared.images(size, seed=1)
    obj = nstyle.StyleObjective(vgg, content=content, styles=[style], content_weight=shared.CONTENT_WEIGHT,
                                style_weight=shared.STYLE_WEIGHT, content_layers=shared.CONTENT_LAYERS,
                                style_layers=shared.STYLE_LAYERS)
    return obj.value_and_grad, start


class Evaluation:
    params = SIZES
    param_names = ["size"]
    timeout = 600
    number = 1          # one evaluation per sample: 0.05 s at 128 up to seconds at 512
    repeat = (3, 10, 60.0)
    warmup_time = 0     # setup has run one untimed evaluation already (weight forms, buffers)

    def setup(self, size):
        self.fn, self.x = objective(size)
        loss, grad = self.fn(self.x)
        if not (np.isfinite(loss) and np.isfinite(grad).all()):
            raise RuntimeError(f"the objective is not finite at {size}")

    def time_value_and_grad(self, size):
        self.fn(self.x)

    def peakmem_value_and_grad(self, size):
        """Peak resident memory of the process: interpreter, weights, targets and evaluations."""
        self.fn(self.x)

    def track_loss(self, size):
        """The loss at the start image: moves only when the arithmetic does (float32 rounding aside)."""
        return float(self.fn(self.x)[0])

    track_loss.unit = "loss"
