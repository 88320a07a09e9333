"""`nstyle video` on the project's test clip: temporal error and style loss against independent frames.

The clip is ``tests/test_video_clip.moving_square_clip`` (a textured square moving over a textured
background that pans), written as an MP4; the style is ``nstyle.app.figures.samples.swirl_painting``. For each
temporal weight the whole clip is stylised with the real VGG-19 (the cached default weights) and the
table gives the temporal error (mean over consecutive pairs of the c-weighted squared difference
between a frame and its warped predecessor, 8-bit units) and the mean style loss of the frames, each
also relative to --temporal-weight 0 (every frame on its own). Optional rows: other flows and the
multi-pass variant at one weight.

    python bench/bench_video.py                          # the sweep; bench/results/video.{json,md}
    python bench/bench_video.py --pictures docs          # + docs/video_strip.png and docs/video.gif
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nstyle.app.figures.samples import swirl_painting  # noqa: E402
from nstyle.app.run.network import load_network  # noqa: E402
from nstyle.app.video import stylize_video  # noqa: E402
from nstyle.app.video.driver import DEFAULT_TEMPORAL_WEIGHT  # noqa: E402
from nstyle.app.video.media import write_video  # noqa: E402
from tests.test_video_clip import clip_images  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def machine():
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu": model, "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()]}


def run(vgg, clip, style, out, weight, args, **extra):
    began = time.perf_counter()
    result = stylize_video(clip, style, out, temporal_weight=weight, size=args.size, iters=args.iters, vgg=vgg,
                           keep_frames=True, **extra)
    return {"temporal_weight": weight, **{k: v for k, v in extra.items() if k != "frames"},
            "temporal_error": result.temporal_error, "style_loss": result.style_loss,
            "content_loss": float(np.mean([r["content"] for r in result.records])),
            "seconds_per_frame": (time.perf_counter() - began) / max(1, result.frames),  # all passes, flows, encoding
            "seconds": time.perf_counter() - began,
            "frames": result.frames, "load_average": round(os.getloadavg()[0], 2)}


def input_error(clip, size):
    """The input clip's own temporal error under its flow: what a perfectly steady stylisation would keep."""
    from nstyle.app.files.imageio import fit_size
    from nstyle.app.video.flow import FlowEstimator, Link
    from nstyle.app.video.media import open_source
    frames = list(open_source(clip).frames())
    frames = [np.asarray(f.resize(fit_size(*f.size, size), Image.Resampling.LANCZOS)) for f in frames]
    estimator = FlowEstimator("medium")
    return float(np.mean([Link(*estimator.flows(a, b)).error(b, a) for a, b in zip(frames, frames[1:])]))


def table(rows, base):
    lines = ["| temporal weight | flow | passes | temporal error | vs independent | style loss | vs independent "
             "| s per frame | load |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        te = f"{r['temporal_error']:.1f}"
        dt = f"{100 * (r['temporal_error'] / base['temporal_error'] - 1):+.0f}%"
        ds = f"{100 * (r['style_loss'] / base['style_loss'] - 1):+.0f}%"
        lines.append(f"| {r['temporal_weight']:g} | {r.get('flow', 'medium')} | {r.get('passes', 1)} | {te} | {dt} "
                     f"| {r['style_loss']:.4g} | {ds} | {r['seconds_per_frame']:.1f} | {r['load_average']:g} |")
    return "\n".join(lines)


def markdown(report):
    rows = report["rows"]
    return (f"# nstyle video: consistency on the test clip\n\n{report['clip']}, {report['iters_per_frame']} L-BFGS "
            f"iterations per frame, real VGG-19, style: swirl_painting. Machine: {report['machine']['cpu']}, "
            f"{report['machine']['cores']} cores shared with other jobs (load: the 1-minute load average as each "
            f"row ended; s per frame: wall-clock, all passes, flows and encoding). The input clip's own temporal "
            f"error under its flow: {report['input_temporal_error']:.1f}.\n\n" + table(rows, rows[0]) + "\n"
            + (f"\nThe pictures' clip ({report['picture_clip']}, output size 128):\n\n"
               + table(report["picture_rows"], report["picture_rows"][0]) + "\n" if report.get("picture_rows") else ""))


def strip(folders, labels, path, frames, scale):
    """Rows of frames (one row per folder) with a label above each row, upscaled ``scale`` times."""
    rows = [[Image.open(Path(f) / f"frame_{k:06d}.png").convert("RGB") for k in frames] for f in folders]
    w, h = rows[0][0].width * scale, rows[0][0].height * scale
    pad, label_h = 4, 16
    sheet = Image.new("RGB", (len(frames) * (w + pad) + pad, len(rows) * (h + label_h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (row, label) in enumerate(zip(rows, labels)):
        y = pad + i * (h + label_h + pad)
        draw.text((pad, y + 2), label, fill="black")
        for j, img in enumerate(row):
            sheet.paste(img.resize((w, h), Image.Resampling.NEAREST), (pad + j * (w + pad), y + label_h))
    sheet.save(path, optimize=True)


def gif(folders, path, count, scale, fps):
    """Side by side (independent | temporal), upscaled, as an animated GIF with one shared palette."""
    frames = []
    for k in range(1, count + 1):
        tiles = [Image.open(Path(f) / f"frame_{k:06d}.png").convert("RGB") for f in folders]
        w, h = tiles[0].width * scale, tiles[0].height * scale
        pair = Image.new("RGB", (2 * w + 4, h), "white")
        for i, t in enumerate(tiles):
            pair.paste(t.resize((w, h), Image.Resampling.NEAREST), (i * (w + 4), 0))
        frames.append(pair)
    write_video(path, frames, fps)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--frames", type=int, default=10)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--weights-list", default="0,1e6,1e7,3e7,1e8,3e8",
                   help="temporal weights to measure (the first must be 0: the baseline)")
    p.add_argument("--extras", action="store_true", help="also the fast and Farneback flows and 3 passes at the default")
    p.add_argument("--pictures", metavar="DIR", help="write video_strip.png and video.gif into DIR")
    p.add_argument("--picture-size", type=int, default=128)
    p.add_argument("--out", default=str(RESULTS / "video"), help="results stem (.json and .md)")
    p.add_argument("--table-only", action="store_true", help="rewrite the .md from the .json, running nothing")
    args = p.parse_args()
    if args.table_only:
        report = json.loads(Path(args.out + ".json").read_text())
        Path(args.out + ".md").write_text(markdown(report))
        return
    vgg = load_network(None)
    work = Path(tempfile.mkdtemp(prefix="nstyle-bench-video-"))
    style = work / "swirl.png"
    swirl_painting(256, 192).save(style)
    width = max(64, args.size)
    clip = write_video(work / "clip.mp4", clip_images(frames=args.frames, width=width, height=width * 3 // 4), 10)
    weights = [float(w) for w in args.weights_list.split(",")]
    rows = []
    for w in weights:
        rows.append(run(vgg, clip, style, work / f"w{w:g}.mp4", w, args))
        print(json.dumps(rows[-1]), flush=True)
    if args.extras:
        for extra in ({"flow": "fast"}, {"flow": "farneback"}, {"passes": 3}):
            rows.append(run(vgg, clip, style, work / f"x{len(rows)}.mp4", DEFAULT_TEMPORAL_WEIGHT, args, **extra))
            print(json.dumps(rows[-1]), flush=True)
    report = {"clip": f"moving_square_clip, {args.frames} frames of {width}x{width * 3 // 4}, output size {args.size}",
              "iters_per_frame": args.iters, "machine": machine(), "input_temporal_error": input_error(clip, args.size),
              "rows": rows}
    Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n")
    md = markdown(report)
    Path(args.out + ".md").write_text(md)
    print(md)
    if args.pictures:
        out = Path(args.pictures)
        big = write_video(work / "big.mp4", clip_images(frames=args.frames, width=args.picture_size,
                                                        height=args.picture_size * 3 // 4), 10)
        folders = []
        for w in (0.0, DEFAULT_TEMPORAL_WEIGHT):
            folder = work / f"pic{w:g}"
            row = run(vgg, big, style, folder, w, argparse.Namespace(size=args.picture_size, iters=args.iters))
            print(json.dumps(row), flush=True)
            folders.append(folder)
            report.setdefault("picture_rows", []).append(row)
        report["picture_clip"] = f"moving_square_clip, {args.frames} frames of {args.picture_size}x{args.picture_size * 3 // 4}"
        Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n")
        Path(args.out + ".md").write_text(markdown(report))
        strip(folders, ["independent frames (--temporal-weight 0)",
                        f"temporal loss (--temporal-weight {DEFAULT_TEMPORAL_WEIGHT:g})"],
              out / "video_strip.png", list(range(1, min(args.frames, 6) + 1)), 1)
        gif(folders, out / "video.gif", args.frames, 1, 5)  # scale 1: under 500 KB


if __name__ == "__main__":
    main()
