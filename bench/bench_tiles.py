"""Tiled against untiled: the loss and the seams of a tiled render, at a size where one piece also fits.

    python3 bench/bench_tiles.py [--content sample:coffee] [--style sample:swirl] [--size 512] [--tile 256]
        [--iters 50] [--configs 0:1,0.0625:1,0.125:1,0.25:1,0.375:1,0.25:2] [--weights FILE] [--picture PNG]

--content and --style take a file, ``sample:NAME`` (a photo bundled with scikit-image: chelsea,
astronaut, coffee, rocket) or ``sample:swirl`` (the painting nstyle draws, as in the demo).

Renders the same picture several ways with the real VGG-19 (the default weights unless --weights):

- untiled: one piece at --size, --iters iterations (the reference);
- coarse-to-fine: --size/2 then --size, --iters each (what a tiled run does, without the tiles);
- upsampled base: the tiled run with 0 iterations per tile (where the tiles start);
- tiled, for each OVERLAP:PASSES of --configs (overlap 0: hard seams, a cut in the middle of each
  overlap): base at --size/2 with --iters, then tiles of --tile pixels with --iters each. The grid
  spreads its tiles evenly, so the tiles may overlap by more than OVERLAP; the blend's ramp is OVERLAP
  wide, in the middle, and the rest is context.

For each it reports the total loss of the full-size objective (``stylize``'s, at --size) relative to the
untiled render's and two seam scores on the tile borders -- the columns and rows where a tile of any
pass starts or ends, and the centres of the overlaps: the gradient score (the mean gradient magnitude,
RGB steps between neighbouring pixels, on the two pixels either side of each line, over its mean
everywhere else) and the band score (how far a 4-pixel band along each line departs in colour from the
pixels 6 to 12 px either side of it, averaged over 32-pixel stretches, over the same measured 18 to
24 px away from the line; also for the worst line). The untiled image's scores on the same lines are
the baseline. A seam left by a tile border is a band of off colour a few pixels wide rather than a
step: the band score sees it, the gradient score (the issue's definition) hardly does in a painting's
texture. Also the wall time
and the peak resident memory of each render, and the machine's load average. Writes
bench/results/tiles.json and tiles.md, and with --picture a crop across a tile corner: hard seams,
the chosen overlap, and the untiled render side by side.

    python3 bench/bench_tiles.py [--content C] [--style S] --print 4096 --tile 1024 [--print-base 1024]
        [--iters 20] [--print-tile-iters N]

runs a print through the command line instead (wall time and peak resident memory of the process),
then one run at the tile's size for the seconds each tile iteration costs.
"""
import argparse
import os
import time

import numpy as np
from PIL import Image, ImageDraw

import common
from nstyle import stylize
from nstyle.app.files.imageio import preprocess
from nstyle.app.run.network import load_network
from nstyle.app.figures.samples import bundled_photo, swirl_painting
from nstyle.app.run.stages import setup_stage
from nstyle.app.run.stylize import prepare
from nstyle.app.run.weighting import attach_normalization

CROP = 160   # pixels of each panel of the picture


def open_input(spec):
    """A file, ``sample:swirl`` (nstyle's generated painting) or ``sample:NAME`` (scikit-image's photo)."""
    if spec == "sample:swirl":
        return swirl_painting(768, 576)
    if spec.startswith("sample:"):
        return bundled_photo(spec[len("sample:"):])
    return Image.open(spec).convert("RGB")


def input_file(spec, folder):
    """A path the command line can open for ``spec`` (samples are written into ``folder``)."""
    if not spec.startswith("sample:"):
        return spec
    path = os.path.join(folder, spec[len("sample:"):] + ".png")
    open_input(spec).save(path)
    return path


def full_loss(vgg, content, style, size, image):
    """The one-piece objective at ``size`` (stylize's, with its default weights and scaling) at image."""
    plan = prepare(content, style, size=size, iters=0)
    _, objective, _ = setup_stage(plan, plan.stages[0], vgg, None)
    value = objective.value(preprocess(image))
    return float(value), {k: float(v) for k, v in objective.last_breakdown.items() if not k.startswith("paper")}


def border_lines(plan):
    """(columns, rows) where tiles of any pass start or end, and the centres of the overlaps."""
    tp = plan.tiles
    cols, rows = set(), set()
    w, h = tp.size
    for pass_no in range(1, tp.passes + 1):
        xs, ys = tp.axes[pass_no]
        for intervals, lines, length in ((xs, cols, w), (ys, rows, h)):
            for i, (s, e) in enumerate(intervals):
                lines.update(v for v in (s, e) if 0 < v < length)
                if i + 1 < len(intervals) and intervals[i + 1][0] < e:
                    lines.add((intervals[i + 1][0] + e) // 2)
    return sorted(cols), sorted(rows)


def seam_scores(image, cols, rows):
    """(gradient score, band score, worst line's band score) of the lines (see the module docstring)."""
    y = np.asarray(image.convert("RGB"), dtype=np.float64)
    # gradient: mean RGB step magnitude between neighbours, on the pixels either side of each line
    mag = np.zeros(y.shape[:2])
    mag[:, :-1] += np.abs(np.diff(y, axis=1)).sum(2)
    mag[:-1, :] += np.abs(np.diff(y, axis=0)).sum(2)
    mask = np.zeros(y.shape[:2], bool)
    for c in cols:
        mask[:, c - 1:c + 1] = True
    for r in rows:
        mask[r - 1:r + 1, :] = True
    gradient = float(mag[mask].mean() / mag[~mask].mean())
    # band: how far a 4-pixel band along the line departs from the pixels 6-12 px either side, in
    # windows of 32 px along it, against the same measured 18-24 px away from the line
    per_line = []
    for a, lines in ((y, cols), (y.transpose(1, 0, 2), rows)):
        for c in lines:
            off = [_band_deviation(a, c + d) for d in (-24, -18, 18, 24) if 12 <= c + d < a.shape[1] - 12]
            per_line.append((_band_deviation(a, c), np.concatenate(off)))
    on = np.concatenate([d for d, _ in per_line])
    off = np.concatenate([o for _, o in per_line])
    worst = max(d.mean() / o.mean() for d, o in per_line)
    return gradient, float(on.mean() / off.mean()), float(worst)


def _band_deviation(a, c, window=32):
    """Per window of ``window`` rows: |mean of columns c-2..c+1 - mean of columns c-12..c-7, c+6..c+11|."""
    width = a.shape[1]
    band = [c + d for d in range(-2, 2) if 0 <= c + d < width]
    ring = [c + d for d in (*range(-12, -6), *range(6, 12)) if 0 <= c + d < width]
    n = a.shape[0] // window
    blocks = a[:n * window].reshape(n, window, width, 3)
    return np.abs(blocks[:, :, band].mean((1, 2)) - blocks[:, :, ring].mean((1, 2))).mean(1)


def render(label, **options):
    common.reset_peak_rss()
    start = time.perf_counter()
    image = stylize(**options)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.0f} s", flush=True)
    return image, seconds, common.vm_hwm_mb()


def corner_picture(path, panels, plan):
    """Panels (label, image) cropped around the first inner corner of ``plan``'s first-pass grid (the
    hard-seam render's: its cuts are in the middle of each overlap)."""
    xs, ys = plan.tiles.axes[1]
    cx = (xs[1][0] + xs[0][1]) // 2 if len(xs) > 1 else xs[0][1] // 2
    cy = (ys[1][0] + ys[0][1]) // 2 if len(ys) > 1 else ys[0][1] // 2
    box = (cx - CROP // 2, cy - CROP // 2, cx + CROP // 2, cy + CROP // 2)
    sheet = Image.new("RGB", (len(panels) * (2 * CROP + 8) - 8, 2 * CROP + 20), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, image) in enumerate(panels):
        crop = image.crop(box).resize((2 * CROP, 2 * CROP), Image.Resampling.NEAREST)
        sheet.paste(crop, (i * (2 * CROP + 8), 20))
        draw.text((i * (2 * CROP + 8) + 4, 4), label, fill="black")
    sheet.save(path, optimize=True)
    print(f"picture: {path} ({os.path.getsize(path) // 1024} KiB), crop {box}")


def print_run(args):
    """--print SIZE: the whole command line at SIZE in a fresh process (wall time, peak RSS), and one
    one-piece run at the tile's size for the seconds per tile iteration."""
    import resource  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import tempfile  # noqa: PLC0415
    out = os.path.abspath(args.print_output)
    folder = tempfile.mkdtemp(prefix="nstyle_print_")
    content_file, style_file = input_file(args.content, folder), input_file(args.style, folder)
    cmd = [sys.executable, "-m", "nstyle", "stylize", content_file, style_file, "--size", str(args.print),
           "--tile", str(args.tile), "--tile-base", str(args.print_base), "--iters", str(args.iters),
           "--tile-iters", str(args.print_tile_iters), "-o", out, "--keep-tiles"]
    cmd += ["--weights", args.weights] if args.weights else []
    load = list(os.getloadavg())
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=common.ROOT)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    content = open_input(args.content)
    vgg = attach_normalization(load_network(args.weights), args.weights)
    side = Image.open(out).size
    crop = content.resize(side, Image.Resampling.LANCZOS).crop((0, 0, args.tile, args.tile))
    start = time.perf_counter()
    stylize(crop, open_input(args.style), size=args.tile, iters=3, vgg=vgg)
    per_iter = (time.perf_counter() - start) / 3
    n_tiles = len(prepare(content, open_input(args.style), size=args.print, tile=args.tile, tile_base=args.print_base,
                          iters=0).tiles.all_tiles())
    data = {"machine": common.machine(), "load_average_start": load, "command": " ".join(cmd[1:]),
            "output": list(side), "seconds": round(seconds, 1), "peak_rss_mb": round(peak), "tiles": n_tiles,
            "tile_iters": args.print_tile_iters, "seconds_per_tile_iteration": round(per_iter, 1)}
    print(data)
    common.write_outputs(f"tiles_print_{args.print}", data, print_markdown(data))


def print_markdown(data):
    """The --print run as a few lines of Markdown."""
    m, (w, h) = data["machine"], data["output"]
    return (f"Machine: {m['cpu']}, {m['cores']} cores, {m['blas']}; load average {data['load_average_start'][0]:.1f} "
            f"at the start, {m['load_average'][0]:.1f} at the end.\n\n"
            f"`nstyle {data['command'].removeprefix('-m nstyle ')}`\n\n"
            f"| output | tiles | iterations per tile | wall time | peak RSS |\n| --- | --- | --- | --- | --- |\n"
            f"| {w}x{h} | {data['tiles']} | {data['tile_iters']} | {data['seconds']:.0f} s | {data['peak_rss_mb']} MB |\n\n"
            f"One run at the tile's size (3 iterations, set-up included): {data['seconds_per_tile_iteration']} s "
            "per iteration.\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--content", default="sample:coffee")
    ap.add_argument("--style", default="sample:swirl")
    ap.add_argument("--weights", default=os.environ.get("NSTYLE_WEIGHTS"))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--configs", default="0:1,0.0625:1,0.125:1,0.25:1,0.375:1,0.25:2",
                    help="OVERLAP:PASSES for each tiled render")
    ap.add_argument("--picture", help="write the corner crops here (PNG)")
    ap.add_argument("--save-images", metavar="DIR", help="also write every render here")
    ap.add_argument("--picture-config", default="0.125:1", help="the tiled render the picture shows")
    ap.add_argument("--print", type=int, metavar="SIZE", help="instead: a tiled print at SIZE through the "
                    "command line (time, peak memory) and the seconds per iteration of one tile")
    ap.add_argument("--print-base", type=int, default=1024)
    ap.add_argument("--print-tile-iters", type=int, default=10)
    ap.add_argument("--print-output", default="/tmp/nstyle_tiled_print.png")
    args = ap.parse_args()
    if args.print:
        return print_run(args)
    content, style = open_input(args.content), open_input(args.style)
    vgg = attach_normalization(load_network(args.weights), args.weights)
    base = args.size // 2
    same = {"content": content, "style": style, "size": args.size, "vgg": vgg}
    load_start = list(os.getloadavg())
    rows, images = [], {}

    def record(label, image, seconds, peak, plan=None):
        loss, terms = full_loss(vgg, content, style, args.size, image)
        row = {"render": label, "loss": loss, "content": terms["content"], "style": terms["style"],
               "layers": {k: v for k, v in terms.items() if k.startswith("style/")},
               "seconds": round(seconds, 1), "peak_mb": round(peak)}
        if plan is not None:
            cols, lines = border_lines(plan)
            row["gradient"], row["band"], row["band_worst"] = seam_scores(image, cols, lines)
            row["gradient_untiled"], row["band_untiled"], row["band_worst_untiled"] = \
                seam_scores(images["untiled"], cols, lines)
            row["grid"] = [list(plan.tiles.grid(p)) for p in range(1, plan.tiles.passes + 1)]
            row["overlap_px"] = plan.tiles.overlap
        rows.append(row)
        images[label] = image
        if args.save_images:
            os.makedirs(args.save_images, exist_ok=True)
            image.save(os.path.join(args.save_images, label.replace(" ", "_").replace(":", "-") + ".png"))
        print(row, flush=True)

    record("untiled", *render("untiled", iters=args.iters, **same))
    record("coarse-to-fine", *render("coarse-to-fine", iters=args.iters, scales=(base, args.size),
                                     **{k: v for k, v in same.items() if k != "size"}))
    tiled = {"tile": args.tile, "tile_base": base, "iters": args.iters}
    plan0 = prepare(content, style, size=args.size, tile_iters=0, **tiled)
    record("upsampled base", *render("upsampled base", tile_iters=0, **tiled, **same), plan=plan0)
    for config in args.configs.split(","):
        overlap, passes = config.split(":")
        options = {**tiled, "tile_overlap": float(overlap), "tile_passes": int(passes)}
        plan = prepare(content, style, size=args.size, **options)
        record(f"tiled {config}", *render(f"tiled {config}", **options, **same), plan=plan)
    untiled = rows[0]["loss"]
    for row in rows:
        row["loss_vs_untiled"] = row["loss"] / untiled
    data = {"machine": common.machine(), "load_average_start": load_start, "load_average_end": list(os.getloadavg()),
            "inputs": {"content": args.content, "style": args.style, "weights": args.weights or "default"},
            "size": args.size, "tile": args.tile, "base": base, "iters": args.iters, "rows": rows}
    lines = [f"Machine: {data['machine']['cpu']}, {data['machine']['cores']} cores; load average "
             f"{load_start[0]:.1f} at start, {data['load_average_end'][0]:.1f} at the end.", "",
             f"{args.content} in the style of {args.style}, {args.size} px, real VGG-19 weights; tiles of "
             f"{args.tile} px on a {base} px base; {args.iters} L-BFGS iterations for the untiled render, for "
             "each stage of coarse-to-fine, for the base and for every tile.", "",
             "Seam scores: the render's, then the untiled render's on the same lines in brackets.", "",
             "| render | grid | loss / untiled | content | style | gradient score | band score | worst line | time "
             "| peak RSS |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        seams = " | ".join(f"{r[k]:.3f} ({r[k + '_untiled']:.3f})" if k in r else "-"
                           for k in ("gradient", "band", "band_worst"))
        grid = ", ".join("x".join(map(str, g)) for g in r.get("grid", [])) or "-"
        lines.append(f"| {r['render']} | {grid} | {r['loss_vs_untiled']:.3f} | {r['content']:.3e} | "
                     f"{r['style']:.3e} | {seams} | {r['seconds']:.0f} s | {r['peak_mb']} MB |")
    print("wrote", common.write_outputs("tiles", data, "\n".join(lines) + "\n"))
    if args.picture and f"tiled {args.picture_config}" in images and "tiled 0:1" in images:
        chosen = f"tiled {args.picture_config}"
        plan = prepare(content, style, size=args.size, tile_overlap=0, **tiled)
        overlap = float(args.picture_config.split(":")[0])
        corner_picture(args.picture, [("tiles, overlap 0 (hard seams)", images["tiled 0:1"]),
                                      (f"tiles, overlap {overlap:g}", images[chosen]),
                                      ("one piece", images["untiled"])], plan)


if __name__ == "__main__":
    main()
