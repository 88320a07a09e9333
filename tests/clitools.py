"""Helpers for the command-line tests: run `nstyle` in a real subprocess, make test images and weights."""
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

# Cheap layers for runs through the real command line: the network stops at relu2_1 (64/128 channels),
# so a few iterations at 32-48 pixels take a fraction of a second even with full-size random weights.
FAST_LAYERS = ["--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1"]


def random_weights_file(folder):
    """A VGG-19-shaped weights file with random values (real shapes, so any reader accepts it)."""
    from nstyle.model.arch import CONV_SHAPES
    from nstyle.model.gradcheck import random_vgg_params
    from nstyle.weights.store import write_hdf5

    path = Path(folder) / "vgg19_random.h5"
    if not path.exists():
        widths = [shape[0] for shape in CONV_SHAPES.values()]
        write_hdf5(random_vgg_params(np.random.default_rng(0), widths=widths), path,
                   attrs={"source": "random weights for tests"})
    return path


def gradient_image(w, h, seed=0):
    """A smooth colourful RGB image with a little noise: a stand-in photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx * 255 / max(1, w - 1), yy * 255 / max(1, h - 1), 255 - xx * 255 / max(1, w - 1)], -1)
    arr = arr * 0.8 + rng.uniform(0, 50, arr.shape)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8), "RGB")


def stripes_image(w, h, seed=1):
    """A striped, strongly coloured 'painting'."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    s = (np.sin((xx + yy) / 2.5) > 0)
    arr = np.stack([s * 220 + 20, (1 - s) * 180 + 40, rng.integers(0, 255, (h, w))], -1)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def env_for(tmp_path, **extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["NSTYLE_HOME"] = str(Path(tmp_path) / "nstyle-home")  # never the user's cache
    env.pop("NSTYLE_WEIGHTS", None)
    env["OPENBLAS_NUM_THREADS"] = "1"  # tests share two cores with each other
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Result:
    def __init__(self, proc, seconds, cpu_seconds):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr
        self.seconds, self.cpu_seconds = seconds, cpu_seconds

    def __repr__(self):
        return (f"exit {self.code} after {self.seconds:.1f}s ({self.cpu_seconds:.1f}s of CPU)\n"
                f"stdout: {self.out}\nstderr: {self.err}")


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def nstyle(tmp_path, *args, timeout=120, **env):
    """Run `python -m nstyle ARGS` in tmp_path; returns a Result (exit code, stdout, stderr, wall-clock and
    CPU seconds -- CPU time says how much work the run did even when other jobs slow the machine down)."""
    start, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run([sys.executable, "-m", "nstyle", *map(str, args)], cwd=tmp_path,
                          env=env_for(tmp_path, **env), capture_output=True, text=True, timeout=timeout)
    return Result(proc, time.perf_counter() - start, _children_cpu() - cpu)


def signal_at_line(tmp_path, args, is_the_line, sig, wait=60, timeout=30):
    """Start `python -m nstyle ARGS` in tmp_path, read its stderr until a line satisfies ``is_the_line``
    (at most ``wait`` seconds; the run must not end before), send ``sig``; returns (exit code, stdout,
    the whole of stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "nstyle", *map(str, args)], cwd=tmp_path,
                            env=env_for(tmp_path), stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seen, deadline = [], time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if is_the_line(line):
                break
            assert line, f"the run ended before the line looked for: {''.join(seen)}"
        proc.send_signal(sig)
        out, rest = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    return proc.returncode, out, "".join(seen) + rest


def assert_one_line_error(result, code, *needles):
    """Failed with ``code``, an error line (+ optional hint), no traceback, mentioning each needle."""
    assert result.code == code, result
    assert "Traceback" not in result.err, result
    lines = [l for l in result.err.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("nstyle: error:")]
    assert len(errors) == 1, result
    assert all(l.startswith(("nstyle: error:", "  hint:")) for l in lines), result
    for needle in needles:
        assert needle.lower() in result.err.lower(), f"{needle!r} not in: {result}"


def leftovers(folder):
    """Temporary files nstyle may have left behind (there must be none; a folder never made holds none)."""
    if not Path(folder).is_dir():
        return []
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith(".nstyle-"))


# The command-line tests' shared inputs: a random VGG-19-shaped weights file (one per test module) and a
# small content and style image (one pair per test), offered to every test by conftest.py.
import pytest  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights_file(tmp_path_factory.getbasetemp())


@pytest.fixture
def images(tmp_path):
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    gradient_image(48, 32).save(content)
    stripes_image(40, 40).save(style)
    return content, style
