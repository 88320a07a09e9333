"""The memory estimate against the measured peak at small sizes (64 to 256 pixels), real weights.

Each run is a fresh ``nstyle stylize`` process under ``/usr/bin/time -f %M`` (peak resident set, KiB):
a 1024x1024 photo and painting (scikit-image's ``astronaut`` and nstyle's generated swirl painting,
resized), L-BFGS-B for 20 iterations (enough to fill its history) or Adam for 3. The estimate is what
``--dry-run`` prints for the same command. Prints a Markdown table (and writes it with --out).

    python3 bench/memory_small_sizes.py [--sizes 64,96,128,160,192,256] [--out FILE]
"""
import argparse
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,96,128,160,192,256")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import skimage.data  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from nstyle.app.figures.samples import swirl_painting  # noqa: PLC0415
    from nstyle.app.run.memory import format_bytes  # noqa: PLC0415
    from nstyle.app.run.stylize import prepare  # noqa: PLC0415

    work = tempfile.mkdtemp(prefix="nstyle-mem-")
    photo, painting = os.path.join(work, "photo.png"), os.path.join(work, "painting.png")
    Image.fromarray(skimage.data.astronaut()).resize((1024, 1024), Image.Resampling.LANCZOS).save(photo)
    swirl_painting(1024, 1024, seed=0).save(painting)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rows = ["| size | optimizer, iterations | estimate | measured peak | estimate / measured |",
            "| --- | --- | --- | --- | --- |"]
    for size in [int(s) for s in args.sizes.split(",")]:
        for optimizer, iters in (("lbfgs", 20), ("adam", 3)):
            est = prepare(photo, painting, size=size, iters=iters, optimizer=optimizer).memory.total
            cmd = ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "nstyle", "stylize", photo, painting,
                   "--size", str(size), "--iters", str(iters), "--optimizer", optimizer, "--quiet",
                   "-o", os.path.join(work, f"out{size}.png")]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            peak = int(proc.stderr.strip().splitlines()[-1]) * 1024
            name = "L-BFGS" if optimizer == "lbfgs" else "Adam"
            rows.append(f"| {size}x{size} | {name}, {iters} | {format_bytes(est)} | {format_bytes(peak)} | "
                        f"{est / peak:.2f} |")
            print(rows[-1], flush=True)
    text = "\n".join(rows) + "\n"
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
