"""Single layers of VGG-19, forward and input gradient, on nstyle's two CPU engines: a few
representative shapes of the per-layer race (bench/bench_layers.py, which has every layer and every
framework). "cpu" is the fast engine's kernels; "cpu-fused" the same layer as the network runs it
(ReLU in the convolution's epilogue; the ReLU mask below in the backward's); "reference" the
reference engine's ops. Inputs are seeded (layers_common.layer_inputs)."""
import layers_common as lc
import shared

SIZE = 256
# conv1_2: direct kernel, 64 ch at 256 x 256; conv2_1: Winograd F(4x4), 64 -> 128 at 128 x 128;
# conv4_2: 512 ch at 32 x 32; conv5_1: F(2x2) at 16 x 16; relu1_1 and pool1: element-wise passes.
LAYERS = ["conv1_2", "conv2_1", "conv4_2", "conv5_1", "relu1_1", "pool1"]


def _op(engine, name):
    try:
        import layers_nstyle
    except ImportError as exc:
        raise NotImplementedError(str(exc)) from exc
    plan = lc.layer_plan()
    index = next(i for i, e in enumerate(plan) if e[1] == name)
    kind = plan[index][0]
    x, dy = lc.layer_inputs(plan[index], index, SIZE)
    params = {name: shared.random_vgg_params(0)[name]} if kind == "conv" else {}
    try:
        op = layers_nstyle.layer("reference" if engine == "reference" else "cpu", kind, name, params, x, dy,
                                 below_relu=index > 0)
    except ImportError as exc:  # an older commit without the fast engine's modules
        raise NotImplementedError(str(exc)) from exc
    if engine == "cpu-fused":
        op = op.fused or op
    op.forward()
    op.backward()  # weight forms, scratch buffers: made before timing
    return op


class Layer:
    params = (["cpu", "cpu-fused", "reference"], LAYERS)
    param_names = ["engine", "layer"]
    timeout = 300

    def setup(self, engine, name):
        self.op = _op(engine, name)

    def time_forward(self, engine, name):
        self.op.forward()

    def time_backward(self, engine, name):
        self.op.backward()
