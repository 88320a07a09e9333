"""Robustness, second round: what every command may write, the checks every command makes up front,
and Ctrl-C / SIGTERM at any instant. Each test pins a class of failure, through the real command line."""
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from .clitools import (
    FAST_LAYERS,
    assert_one_line_error,
    env_for,
    gradient_image,
    leftovers,
    nstyle,
    stripes_image,
)


def Path_bytes(path):
    with open(path, "rb") as fh:
        return fh.read()


# --- 1. only files nstyle wrote are ever deleted -------------------------------------------------

def test_grid_restart_deletes_only_the_cells_it_wrote(tmp_path, weights):
    first, style = tmp_path / "c.png", tmp_path / "s.png"
    gradient_image(32, 24).save(first)
    stripes_image(32, 32).save(style)

    def grid(content, ratio, *extra):
        return nstyle(tmp_path, "grid", content, style, "-o", tmp_path / "sheet.png", "--size", 24, "--iters", 2,
                      "--weights", weights, "--ratios", ratio, "--depths", 1, "--content-layer", "relu2_1", *extra)

    assert grid(first, "1e-1").code == 0
    cells = tmp_path / "sheet_cells"
    assert (cells / "depth1-ratio1e-1.png").exists()
    # the user keeps images in the cells folder, one of them named like a cell, and uses it as input
    content = cells / "depth1-ratio1e-2.png"
    gradient_image(32, 24, seed=5).save(content)
    (cells / "holiday.png").write_bytes(Path_bytes(style))
    kept = {p: Path_bytes(p) for p in (content, cells / "holiday.png")}
    result = grid(content, "1e-1", "--restart")  # another content: the old cell must go, the inputs stay
    assert result.code == 0, result
    for path, data in kept.items():
        assert Path_bytes(path) == data, f"--restart touched {path.name}"
    # a cell that would be written over an input is refused before any work
    assert_one_line_error(grid(content, "1e-2"), 2, "overwrite an input")
    assert Path_bytes(content) == kept[content]


def test_bad_settings_write_nothing(tmp_path, images, weights):
    """Validated before anything is written: no cells folder, no settings.json to --restart away."""
    content, style = images
    result = nstyle(tmp_path, "grid", content, style, "-o", tmp_path / "g.png", "--weights", weights,
                    "--content-layer", "relu9_9", "--size", 24, "--iters", 1)
    assert_one_line_error(result, 2, "relu9_9")
    assert not (tmp_path / "g_cells").exists()


# --- 2, 3. every file read is protected from every file written; outputs never collide ---------

@pytest.mark.parametrize("flag", ["-o", "--log-json", "--plot", "--save-every-target"])
@pytest.mark.parametrize("source", ["--weights", "NSTYLE_WEIGHTS", "cache"])
def test_no_output_may_replace_the_weights_in_use(tmp_path, images, weights, flag, source):
    content, style = images
    home = tmp_path / "nstyle-home"
    home.mkdir(exist_ok=True)
    target = home / "vgg19_caffe_conv.h5"
    target.write_bytes(Path_bytes(weights))
    before = Path_bytes(target)
    args, env = ["stylize", content, style, "--size", 32, "--iters", 1, *FAST_LAYERS], {}
    if source == "--weights":
        args += ["--weights", target]
    elif source == "NSTYLE_WEIGHTS":
        env["NSTYLE_WEIGHTS"] = str(target)
    out = tmp_path / "out.png"
    if flag == "--save-every-target":
        link = tmp_path / "out_iter1.png"
        os.symlink(target, link)
        args += ["-o", out, "--save-every", 1]
    elif flag == "-o":
        args += ["-o", target]
    else:
        args += ["-o", out, flag, target]
    result = nstyle(tmp_path, *args, **env)
    assert result.code == 2, result
    assert "Traceback" not in result.err
    assert Path_bytes(target) == before


def test_an_output_that_is_a_later_snapshot_is_refused(tmp_path, images, weights):
    content, style = images
    result = nstyle(tmp_path, "stylize", content, style, "-o", tmp_path / "out.png", "--save-every", 1,
                    "--plot", tmp_path / "out_iter2.png", "--size", 32, "--iters", 3, "--weights", weights)
    assert_one_line_error(result, 2, "save-every", "out_iter2.png")
    assert not (tmp_path / "out.png").exists()


# --- 4. device nodes, FIFOs and symlinks to them are never replaced ------------------------------

@pytest.mark.parametrize("kind", ["dev-null", "fifo", "symlink-to-dev-null", "mknod"])
@pytest.mark.parametrize("flag", ["-o", "--log-json", "--plot"])
def test_special_files_are_refused_and_left_alone(tmp_path, images, weights, kind, flag):
    content, style = images
    target = tmp_path / f"special-{kind}.png"
    if kind == "dev-null":
        target = "/dev/null"
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "symlink-to-dev-null":
        os.symlink("/dev/null", target)
    else:
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # a second /dev/null
    mode = os.stat(target).st_mode
    args = ["stylize", content, style, "--size", 32, "--iters", 1, "--weights", weights, *FAST_LAYERS]
    args += ["-o", target] if flag == "-o" else ["-o", tmp_path / "out.png", flag, target]
    result = nstyle(tmp_path, *args, timeout=60)
    assert_one_line_error(result, 2, "not a regular file")
    assert os.stat(target).st_mode == mode, "the special file was replaced"
    assert leftovers(tmp_path) == []


# --- 8, 10, 13, 14. every command makes every up-front check -----------------------------------

@pytest.mark.parametrize("command", ["stylize", "grid", "reconstruct", "demo"])
def test_every_command_checks_memory_before_any_work(tmp_path, images, weights, command):
    content, style = images
    argv = {"stylize": ["stylize", content, style, "-o", tmp_path / "o.png", "--size", 100000],
            "grid": ["grid", content, style, "-o", tmp_path / "o.png", "--size", 100000],
            "reconstruct": ["reconstruct", content, "--content-layer", "relu2_1", "-o", tmp_path / "o.png",
                            "--size", 100000],
            "demo": ["demo", "--content", content, "--scales", 100000, "--iters", 1, "--out-dir", tmp_path / "demo"]}[command]
    result = nstyle(tmp_path, *argv, "--weights", weights, timeout=60)
    assert_one_line_error(result, 2, "memory")
    assert result.seconds < 30


@pytest.mark.parametrize("command", ["stylize", "grid", "reconstruct"])
@pytest.mark.parametrize("name", ["out.xbm", "out.h5", "out.blp", "out.xyz"])
def test_every_command_checks_the_output_format_up_front(tmp_path, images, weights, command, name):
    content, style = images
    argv = {"stylize": ["stylize", content, style], "grid": ["grid", content, style],
            "reconstruct": ["reconstruct", content, "--content-layer", "relu1_1"]}[command]
    result = nstyle(tmp_path, *argv, "-o", tmp_path / name, "--weights", weights, "--size", 32, "--iters", 1)
    assert_one_line_error(result, 2, name)
    assert not (tmp_path / name).exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", ["grid", "reconstruct"])
def test_every_command_checks_the_output_folder_is_writable(tmp_path, images, weights, command):
    content, style = images
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    argv = {"grid": ["grid", content, style], "reconstruct": ["reconstruct", content, "--content-layer", "relu1_1"]}
    result = nstyle(tmp_path, *argv[command], "-o", folder / "o.png", "--weights", weights, "--size", 32)
    assert_one_line_error(result, 2, "cannot write")


@pytest.mark.parametrize("argv", [
    ["stylize", "{c}", "{s}", "-o", "o.png", "--size", 32, "--style-layers", "pool5", "--content-layers", "relu1_1"],
    ["reconstruct", "{c}", "--style-layers", "relu1_1,pool5", "-o", "o.png", "--size", 16],
    ["reconstruct", "{c}", "--content-layer", "relu5_1", "-o", "o.png", "--size", 8],
    ["demo", "--content", "{c}", "--scales", 8, "--iters", 1, "--out-dir", "d"],
])
def test_layers_out_of_reach_are_refused_in_one_line(tmp_path, images, weights, argv):
    content, style = images
    argv = [str(a).format(c=content, s=style) for a in argv]
    result = nstyle(tmp_path, *argv, "--weights", weights)
    assert_one_line_error(result, 2, "too small")
    if argv[0] == "demo":
        assert "--size" not in result.err, "demo has no --size flag to suggest"


@pytest.mark.parametrize("command", ["stylize", "reconstruct", "demo"])
def test_dry_run_or_run_on_a_gpu_that_is_not_there_exits_2(tmp_path, images, weights, command):
    from nstyle.backend import gpu_available
    if gpu_available():
        pytest.skip("a GPU answers here")
    content, style = images
    argv = {"stylize": ["stylize", content, style, "--dry-run"],
            "reconstruct": ["reconstruct", content, "--content-layer", "relu1_1", "-o", tmp_path / "o.png"],
            "demo": ["demo", "--content", content, "--out-dir", tmp_path / "d"]}[command]
    result = nstyle(tmp_path, *argv, "--device", "gpu", "--weights", weights)
    assert result.code == 2, result
    assert "Traceback" not in result.err


# --- 15. names the terminal cannot print ---------------------------------------------------------

def test_a_non_utf8_output_name_under_a_strict_utf8_terminal(tmp_path, images, weights):
    content, style = images
    name = b"out-\xff.png"
    env = env_for(tmp_path, PYTHONIOENCODING="utf-8:strict", LC_ALL="C.UTF-8")
    proc = subprocess.run([sys.executable, "-m", "nstyle", "stylize", str(content), str(style), "-o", name,
                           "--size", "32", "--iters", "1", "--weights", str(weights), *FAST_LAYERS],
                          cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / os.fsdecode(name)).exists()
    assert proc.stdout.strip() == name, "the name printed as the file system holds it"


# --- 5. Ctrl-C and SIGTERM at any instant ---------------------------------------------------------

def _handlers_installed(pid):
    """True once the process catches SIGTERM: nstyle's handlers are in place (Python alone does not
    catch SIGTERM). Read from /proc, so the test times its signals from that instant."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            caught = next(int(line.split()[1], 16) for line in fh if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def _run_and_signal(tmp_path, args, sig, delay):
    """Start nstyle, wait until its signal handlers are installed (the first instant its own code runs:
    before that the interpreter is still starting, and a signal there is Python's to handle), wait
    ``delay`` more seconds, send ``sig``."""
    proc = subprocess.Popen([sys.executable, "-m", "nstyle", *map(str, args)], cwd=tmp_path, env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not _handlers_installed(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_any_instant_keeps_the_promise(tmp_path, images, weights, sig):
    """From the interpreter's first instants to the last write: never a traceback, never 143 or 1, no
    temporary file left; 130 unless the run had already finished; once an iteration has finished (the
    log says so), the image is written."""
    content, style = images
    out, log = tmp_path / "out.png", tmp_path / "log.json"
    args = ["stylize", content, style, "-o", out, "--size", 40, "--iters", 6, "--weights", weights,
            "--log-json", log, "--plot", tmp_path / "loss.png", *FAST_LAYERS]
    for delay in (0.0, 0.05, 0.2, 0.5, 1.0, 1.6, 2.4):
        for path in (out, log):
            if path.exists():
                path.unlink()
        code, _, err = _run_and_signal(tmp_path, args, sig, delay)
        assert "Traceback" not in err, (delay, err)
        assert code in (0, 130), (delay, code, err)
        if code == 0:
            assert out.exists()
        if log.exists():  # the log is written with the image, whenever the run ends after starting
            assert out.exists(), (delay, err)
        assert leftovers(tmp_path) == [], (delay, leftovers(tmp_path))


@pytest.mark.parametrize("command", ["grid", "reconstruct"])
def test_sigterm_in_grid_and_reconstruct_keeps_finished_work(tmp_path, images, weights, command):
    content, style = images
    argv = {"grid": ["grid", content, style, "--ratios", "1e-2,1e-1,1", "--depths", "1,2"],
            "reconstruct": ["reconstruct", content, "--all", "--content-layers", "relu1_1,relu1_2,relu2_1",
                            "--style-layers", "relu1_1,relu2_1"]}[command]
    args = [*argv, "-o", tmp_path / "sheet.png", "--size", 32, "--iters", 30, "--weights", weights]
    code, _, err = _run_and_signal(tmp_path, args, signal.SIGTERM, 2.5)
    assert "Traceback" not in err and code in (0, 130), (code, err)
    if code == 130:
        assert "kept" in err or "interrupted" in err
    assert leftovers(tmp_path) == [] and leftovers(tmp_path / "sheet_cells") == []


# --- 16. the API refuses what cannot be an image ------------------------------------------------

def test_preprocess_refuses_what_cannot_be_pixel_values():
    import nstyle
    from nstyle.errors import InputError
    for bad in (np.zeros((0, 0, 3), np.uint8), np.random.default_rng(0).random((4, 4, 3)),
                np.full((2, 2, 3), 300.0), np.full((2, 2, 3), np.nan), np.zeros((2, 2, 4))):
        with pytest.raises(InputError):
            nstyle.preprocess(bad)
    assert nstyle.preprocess(np.full((2, 2, 3), 128.0)).shape == (1, 3, 2, 2)


def test_a_style_image_too_small_for_the_network_is_an_input_error():
    import nstyle
    from nstyle.errors import InputError
    from nstyle.model.gradcheck import random_image, random_vgg_params
    rng = np.random.default_rng(1)
    for engine in ("cpu", "reference"):
        vgg = nstyle.VGG19(random_vgg_params(rng), engine=engine)
        with pytest.raises(InputError, match="too small"):
            nstyle.StyleObjective(vgg, content=random_image(rng, 16, 16).astype(np.float32),
                                  styles=[random_image(rng, 3, 3).astype(np.float32)])
