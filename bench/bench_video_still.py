"""`nstyle video` on a still background beside a moving object: how much of independent frames' flicker
the still pixels keep, and what the style loss pays for it, at several sizes.

The clip is ``tests/test_video_clip.still_background_clip`` (a still textured background and a textured
square moving by width/32, width/64 pixels per frame), made at each size (width = size, height = 3/4 of
it), written as an H.264 MP4 with PyAV and stylised into a folder of PNG frames (lossless: the figures
are the stylisation's, not the encoder's). The style is ``nstyle.app.figures.samples.swirl_painting``.
For each size the clip is stylised with --temporal-weight 0 (every frame on its own) and with each
weight asked for; the table gives

- still flicker: for each consecutive pair of output frames, the mean squared difference (8-bit values)
  over the pixels the square covers in neither frame; averaged over the pairs
  (``tests/test_video_clip.still_flicker``), and as a fraction of independent frames' (its square root
  too: the same fraction in 8-bit values rather than squared ones);
- style loss: the mean over the frames of the weighted style loss, and as a fraction of independent
  frames'.

The network is the cached real VGG-19 (``nstyle weights fetch``) when there is one, else a small
random one (``--synthetic`` forces it); the table says which.

    python bench/bench_video_still.py --out bench/results                  # 64, 128, 256 px
    python bench/bench_video_still.py --out /tmp/x --sizes 64 --iters 30   # a quick look
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_video import machine  # noqa: E402
from nstyle.app.figures.samples import swirl_painting  # noqa: E402
from nstyle.app.run.network import load_network  # noqa: E402
from nstyle.app.video import stylize_video  # noqa: E402
from nstyle.app.video.driver import DEFAULT_TEMPORAL_WEIGHT  # noqa: E402
from nstyle.app.video.media import write_video  # noqa: E402
from nstyle.weights.paths import default_weights_path  # noqa: E402
from tests.test_video_clip import still_background_clip, still_flicker  # noqa: E402


def network(synthetic):
    """(vgg, description): the cached real VGG-19, or a small random network where there is none."""
    if not synthetic and os.path.isfile(default_weights_path()):
        return load_network(None), "real VGG-19 (cached default weights)"
    from nstyle.model.gradcheck import random_vgg_params  # noqa: PLC0415
    from nstyle.model.vgg import VGG19  # noqa: PLC0415
    return VGG19(random_vgg_params(np.random.default_rng(0))), "small random network (no real weights cached)"


def measure(vgg, clip, still, style, folder, size, weight, iters):
    began = time.perf_counter()
    result = stylize_video(clip, style, folder, temporal_weight=weight, size=size, iters=iters, vgg=vgg)
    frames = [np.asarray(Image.open(folder / f"frame_{k:06d}.png").convert("RGB")) for k in range(1, result.frames + 1)]
    return {"size": size, "temporal_weight": weight, "still_flicker": still_flicker(frames, still),
            "style_loss": result.style_loss, "temporal_error": result.temporal_error,
            "seconds_per_frame": (time.perf_counter() - began) / result.frames,
            "load_average": round(os.getloadavg()[0], 2)}


def table(rows):
    head = ("| size | temporal weight | still flicker | vs independent | (its root) | style loss | vs independent "
            "| s per frame | load |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    base = {r["size"]: r for r in rows if r["temporal_weight"] == 0}
    for r in rows:
        b = base[r["size"]]
        f, s = r["still_flicker"] / b["still_flicker"], r["style_loss"] / b["style_loss"]
        name = "0 (independent)" if r["temporal_weight"] == 0 else f"{r['temporal_weight']:g}"
        lines.append(f"| {r['size']} | {name} | {r['still_flicker']:.1f} | {100 * f:.1f}% | {100 * f ** 0.5:.0f}% "
                     f"| {r['style_loss']:.4g} | {100 * s:.1f}% | {r['seconds_per_frame']:.0f} | {r['load_average']:g} |")
    return "\n".join(lines)


def markdown(report):
    m = report["machine"]
    return (f"# nstyle video: still pixels beside a moving object\n\n{report['clip']}; {report['iters']} L-BFGS "
            f"iterations per frame; {report['network']}; style: swirl_painting. Machine: {m['cpu']}, {m['cores']} "
            f"cores shared with other jobs (load: the 1-minute load average as each row ended; s per frame: "
            f"wall-clock, flows included).\n\nCommand: `{report['command']}`\n\n" + table(report["rows"]) + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, metavar="DIR", help="write video_still.json and video_still.md here")
    p.add_argument("--sizes", default="64,128,256", help="output sizes (the clip is made at each)")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--iters", type=int, default=100, help="L-BFGS iterations per frame")
    p.add_argument("--weights-list", default=f"{DEFAULT_TEMPORAL_WEIGHT:g}",
                   help="temporal weights to measure beside 0 (default: the default weight)")
    p.add_argument("--synthetic", action="store_true", help="a small random network even where real weights are cached")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    vgg, described = network(args.synthetic)
    work = Path(tempfile.mkdtemp(prefix="nstyle-bench-still-"))
    style = work / "swirl.png"
    swirl_painting(256, 192).save(style)
    weights = [0.0] + [float(w) for w in args.weights_list.split(",") if float(w) != 0]
    report = {"clip": f"still_background_clip, {args.frames} frames of SIZE x 3/4 SIZE, H.264 in, PNG frames out",
              "iters": args.iters, "network": described, "machine": machine(), "rows": [],
              "command": "python3 bench/bench_video_still.py " + " ".join(sys.argv[1:])}
    for size in (int(s) for s in args.sizes.split(",")):
        frames, still = still_background_clip(frames=args.frames, width=size, height=size * 3 // 4)
        clip = write_video(work / f"clip{size}.mp4", [Image.fromarray(f) for f in frames], 10)
        for w in weights:
            report["rows"].append(measure(vgg, clip, still, style, work / f"s{size}w{w:g}", size, w, args.iters))
            print(json.dumps(report["rows"][-1]), flush=True)
            report["machine"]["load_average"] = [round(x, 2) for x in os.getloadavg()]
            (out / "video_still.json").write_text(json.dumps(report, indent=1) + "\n")
            (out / "video_still.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
