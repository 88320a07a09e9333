"""VGG-19's architecture as data: layer names, convolution shapes, the input convention.

This module imports nothing, so every other part of nstyle (engines, weights readers, the memory
estimate, the command line) can ask "what comes after relu3_1?" or "how many channels has conv4_2?"
without loading a network.

Layer names follow the paper: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, ... relu5_4, pool5.
Every convolution is 3x3, stride 1, zero padding 1; every pool is 2x2, stride 2.
"""

# (block, number of convolutions, output channels) for VGG-19.
BLOCKS = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))

# Caffe's ImageNet mean pixel in B, G, R order: the network's input is BGR, 0..255, minus this.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

POOLINGS = ("avg", "max")


def _layer_table():
    layers, conv_shapes, in_ch = [], {}, 3
    for block, n_conv, ch in BLOCKS:
        for i in range(1, n_conv + 1):
            layers += [f"conv{block}_{i}", f"relu{block}_{i}"]
            conv_shapes[f"conv{block}_{i}"] = (ch, in_ch, 3, 3)
            in_ch = ch
        layers.append(f"pool{block}")
    return tuple(layers), conv_shapes


LAYER_NAMES, CONV_SHAPES = _layer_table()
CONV_LAYERS = tuple(CONV_SHAPES)
LAYER_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}


def layer_kind(name):
    """'conv', 'relu' or 'pool'."""
    return name[:4]


def pools_before(layer):
    """How many 2x2 poolings lie between the pixels and ``layer``'s output (pool3 counts itself)."""
    return sum(1 for name in LAYER_NAMES[:LAYER_INDEX[layer] + 1] if name.startswith("pool"))


def layer_positions(height, width, name):
    """M_l: the positions of layer ``name``'s map for an (height, width) input (pools floor the halves)."""
    for layer in LAYER_NAMES[:LAYER_INDEX[name] + 1]:
        if layer.startswith("pool"):
            height, width = height // 2, width // 2
    return height * width


def channels(layer):
    """How many channels ``layer``'s output has (a layer of block k has its block's width)."""
    return BLOCKS[int(layer[4]) - 1][2]


def unknown_layers(names):
    """The names in ``names`` that are not VGG-19 layers (in their order)."""
    return [n for n in names if n not in LAYER_INDEX]
