"""Robustness, third round (issue 26, item 8): malformed values say where they came from, in one line with
exit 2; --debug adds the traceback and keeps the exit code; long error lines are cut; non-positive counts
are refused at parse time; a memory check that says "fits" under ``ulimit -v`` is right. Each test runs
the real command line."""
import resource
import subprocess
import sys

import pytest

from nstyle.cli import main as cli_main

from .clitools import (
    FAST_LAYERS,
    assert_one_line_error,
    env_for,
    gradient_image,
    nstyle,
    stripes_image,
)

# --- --debug keeps the exit code --------------------------------------------------------------------

@pytest.mark.parametrize("argv, code", [
    (["stylize", "nope.png", "style.png", "-o", "out.png"], 2),            # a missing input
    (["weights", "info", "/no/such/weights.h5"], 2),                         # a missing weights file
    (["stylize", "content.png", "style.png", "-o", "out.png", "--size", "0"], 2),  # a bad flag (argparse)
])
def test_debug_adds_the_traceback_and_keeps_the_exit_code(tmp_path, images, argv, code):
    plain = nstyle(tmp_path, *argv)
    debug = nstyle(tmp_path, *argv, "--debug")
    assert plain.code == debug.code == code, (plain, debug)
    assert "Traceback" not in plain.err
    if "--size" not in argv:  # argparse's errors have no traceback to show
        assert "Traceback" in debug.err, debug
    assert any(l.startswith("nstyle: error:") for l in debug.err.splitlines()), debug


# --- long error lines are cut -----------------------------------------------------------------------

def test_a_long_error_line_is_cut_keeping_its_start_and_its_reason(tmp_path, images):
    _, style = images
    name = "x" * 5000 + ".png"
    result = nstyle(tmp_path, "stylize", name, style, "-o", "out.png")
    assert_one_line_error(result, 2, "no such file")
    line = next(l for l in result.err.splitlines() if l.startswith("nstyle: error:"))
    assert len(line) <= 500, len(line)
    assert "content image xxx" in line and " ... " in line


def test_shorten_keeps_short_text_and_cuts_long_text_in_the_middle():
    assert cli_main.shorten("a\nb  c") == "a b c"
    text = "start " + "m" * 1000 + " end of the reason"
    cut = cli_main.shorten(text, 100)
    assert len(cut) == 100 and cut.startswith("start ") and cut.endswith("end of the reason") and " ... " in cut


# --- non-positive counts at parse time --------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["grid", "content.png", "style.png", "-o", "sheet.png"],
    ["reconstruct", "content.png", "-o", "r.png", "--style-layers", "relu1_1"],
])
@pytest.mark.parametrize("iters", ["0", "-1"])
def test_grid_and_reconstruct_refuse_a_non_positive_iteration_count_at_parse_time(tmp_path, images, weights,
                                                                                  command, iters):
    result = nstyle(tmp_path, *command, "--weights", weights, "--iters", iters, "--size", 24)
    assert_one_line_error(result, 2, "--iters")
    assert "see `nstyle" in result.err  # argparse's error: nothing was read or written
    assert not list(tmp_path.glob("sheet*")) and not (tmp_path / "r.png").exists()


# --- thread counts in the environment ---------------------------------------------------------------

@pytest.mark.parametrize("var, value", [("NSTYLE_NUM_THREADS", "abc"), ("NSTYLE_NUM_THREADS", "0"),
                                        ("NSTYLE_NUM_THREADS", "-2"), ("NSTYLE_NUM_THREADS", "99999999"),
                                        ("OMP_NUM_THREADS", "two")])
def test_a_malformed_thread_count_in_the_environment_is_one_line_naming_the_variable(tmp_path, images, weights,
                                                                                     var, value):
    content, style = images
    result = nstyle(tmp_path, "stylize", content, style, "-o", "out.png", "--weights", weights, "--size", 32,
                    "--iters", 1, *FAST_LAYERS, **{var: value})
    assert_one_line_error(result, 2, var, value)
    assert not (tmp_path / "out.png").exists()


def test_a_well_formed_thread_count_runs(tmp_path, images, weights):
    content, style = images
    result = nstyle(tmp_path, "stylize", content, style, "-o", "out.png", "--weights", weights, "--size", 32,
                    "--iters", 1, *FAST_LAYERS, NSTYLE_NUM_THREADS="1", OMP_NUM_THREADS="2,1")
    assert result.code == 0, result


# --- a memory check under ulimit -v ------------------------------------------------------------------

def _limited(limit):
    def preexec():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return preexec


def _run_limited(tmp_path, limit, threads, *args):
    env = env_for(tmp_path, NSTYLE_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    return subprocess.run([sys.executable, "-m", "nstyle", *map(str, args)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, preexec_fn=_limited(limit))


@pytest.mark.slow
@pytest.mark.parametrize("threads", [2, 4])
def test_under_ulimit_v_a_run_the_check_lets_through_does_not_run_out_of_memory(tmp_path, weights, threads):
    """Address space is not resident memory: each thread reserves a malloc arena and a stack that the
    estimate (fitted to resident peaks) leaves out. A size the check says fits must run; before the fix,
    with 4 threads and 1.2 GB, a run the check let through died with "out of memory"."""
    gradient_image(800, 600).save(tmp_path / "big.png")
    stripes_image(40, 40).save(tmp_path / "style.png")
    limit = 1200 * 10**6
    common = ["big.png", "style.png", "--weights", weights]
    probe = _run_limited(tmp_path, limit, threads, "stylize", *common, "--size", 64, "--dry-run")
    assert probe.returncode == 0, probe.stderr
    largest = int(next(l for l in probe.stdout.splitlines() if l.startswith("largest size")).split()[3])
    for size in (largest - 16, largest - 48):
        run = _run_limited(tmp_path, limit, threads, "stylize", *common, "-o", "out.png", "--size", size,
                           "--iters", 2, "-q")
        # the check refuses (exit 2, one line) or the run finishes: never "out of memory" (exit 1)
        assert run.returncode in (0, 2), (size, run.stderr)
        assert "out of memory" not in run.stderr and "Traceback" not in run.stderr, (size, run.stderr)
        if run.returncode == 0:
            break
    else:
        pytest.fail(f"no size near the largest that fits ({largest}) was let through")
