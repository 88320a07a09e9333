"""`nstyle batch` manifests (issue 26, items 2, 3, 8), through the real command line: the manifest is
protected from every file the batch writes; it is read as a stream -- a regular file or a pipe the user
names, rows bounded in length -- and a big one plans in bounded memory per row, saying how far it got;
output columns stay inside OUTDIR unless asked; a row too big for memory is named; --dry-run creates
nothing; stale temporary files of killed runs are removed by the next run."""
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time

import pytest

from nstyle import atomic

from .clitools import (
    FAST_LAYERS,
    assert_one_line_error,
    env_for,
    gradient_image,
    nstyle,
    random_weights_file,
    stripes_image,
)

pytest.importorskip("distributed")

FAST = "size,iters,content_layers,style_layers"
FAST_CELLS = '24,1,relu2_1,"relu1_1,relu2_1"'


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(random_weights_file(tmp_path_factory.mktemp("weights")))


@pytest.fixture
def pictures(tmp_path):
    gradient_image(32, 24).save(tmp_path / "photo.png")
    stripes_image(32, 32).save(tmp_path / "stripes.png")
    return tmp_path


class Proc:
    def __init__(self, proc):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def __repr__(self):
        return f"exit {self.code}\nstdout: {self.out[-3000:]}\nstderr: {self.err[-3000:]}"


def limited_run(tmp_path, *args, stdin=None, timeout=120, limit=3 * 2**30):
    """`python -m nstyle ARGS` with at most ``limit`` bytes of address space: a manifest that is not
    bounded cannot take the machine down with the test."""
    def preexec():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    proc = subprocess.run([sys.executable, "-m", "nstyle", *map(str, args)], cwd=tmp_path, env=env_for(tmp_path),
                          input=stdin, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)
    return Proc(proc)


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# --- the manifest is an input like any other --------------------------------------------------------

@pytest.mark.parametrize("case", ["summary", "summary by hard link", "sidecar", "job output", "job output symlink"])
def test_no_file_the_batch_writes_may_replace_its_manifest(tmp_path, pictures, weights, case):
    out = tmp_path / "out"
    out.mkdir()
    rows = f"content,style,output,{FAST}\n{pictures}/photo.png,{pictures}/stripes.png,{{output}},{FAST_CELLS}\n"
    if case == "summary":
        manifest, output = out / "summary.csv", "a.png"
    elif case == "summary by hard link":
        manifest, output = tmp_path / "jobs.csv", "a.png"
    elif case == "sidecar":
        manifest, output = out / "a.png.json", "a.png"
    elif case == "job output":
        manifest, output = out / "jobs.png", "jobs.png"
    else:
        manifest, output = tmp_path / "jobs.png", "link.png"
        (out / "link.png").symlink_to(manifest)
    text = rows.format(output=output)
    if case == "sidecar":  # a .json manifest is JSON lines
        text = json.dumps({"content": f"{pictures}/photo.png", "style": f"{pictures}/stripes.png",
                           "output": output, "size": 24, "iters": 1, "content_layers": "relu2_1",
                           "style_layers": "relu1_1,relu2_1"}) + "\n"
    manifest.write_text(text)
    if case == "summary by hard link":
        os.link(manifest, out / "summary.csv")
    for extra in ([], ["--dry-run"]):
        result = nstyle(tmp_path, "batch", manifest, "-o", out, "--weights", weights, *extra)
        assert_one_line_error(result, 2, "reads")
        assert manifest.read_text() == text, f"{case}: the manifest was changed"
    assert not (out / "a.png").exists()


# --- read as a stream, rows bounded, only files and pipes ---------------------------------------------

def test_a_multi_megabyte_row_is_one_error_naming_its_line(tmp_path, pictures):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"content,style\nphoto.png,stripes.png\nphoto.png,{'x' * (8 * 2**20)}\nphoto.png,stripes.png\n")
    result = limited_run(tmp_path, "batch", manifest, "-o", "out", "--dry-run")
    assert_one_line_error(result, 2, "jobs.csv line 3", "longer than")


def test_a_quoted_cell_running_over_many_lines_is_bounded_too(tmp_path, pictures):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text('content,style\nphoto.png,"' + "stripes.png\n" * 100_000 + '"\n')
    result = limited_run(tmp_path, "batch", manifest, "-o", "out", "--dry-run")
    assert_one_line_error(result, 2, "jobs.csv line 2-", "longer than")


@pytest.mark.parametrize("path, what", [("/dev/zero", "character device"), ("/dev/null", "character device"),
                                        (".", "folder")])
def test_a_device_or_a_folder_is_not_a_manifest(tmp_path, path, what):
    start = time.monotonic()
    result = limited_run(tmp_path, "batch", path, "-o", "out", "--dry-run", timeout=60)
    assert_one_line_error(result, 2, what)
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("data, where", [(b"\xff\xfe bad", "line 3"), (b"a\x00b,stripes.png", "line 3")])
def test_bytes_that_are_not_csv_text_name_their_line(tmp_path, pictures, data, where):
    manifest = tmp_path / "jobs.csv"
    manifest.write_bytes(b"content,style\nphoto.png,stripes.png\n" + data + b"\n")
    result = limited_run(tmp_path, "batch", manifest, "-o", "out", "--dry-run")
    assert_one_line_error(result, 2, f"jobs.csv {where}")


def test_standard_input_and_a_named_pipe_are_manifests(tmp_path, pictures, weights):
    rows = f"content,style,{FAST}\nphoto.png,stripes.png,{FAST_CELLS}\n"
    result = limited_run(tmp_path, "batch", "-", "-o", "out", "--weights", weights, "--dry-run", stdin=rows)
    assert result.code == 0, result
    assert "1 jobs: 1 to run" in result.out and "photo__stripes" in result.out
    fifo = tmp_path / "jobs.fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "w") as fh:
            fh.write(rows)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = limited_run(tmp_path, "batch", fifo, "-o", "out", "--weights", weights, "--dry-run", timeout=60)
    writer.join(timeout=10)
    assert result.code == 0 and "1 jobs: 1 to run" in result.out, result
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_large_manifest_plans_in_bounded_memory_per_row_and_says_how_far_it_got(tmp_path, pictures, weights):
    """Rows of one photo and one painting with a seed each: the peak memory of a dry run grows by less
    than 2 KB a row between 2,000 and 22,000 rows (the old reader held the text, every row as a dict,
    and 4 KB of plan per job), and a plan that takes seconds prints progress lines."""
    def manifest(n):
        path = tmp_path / f"jobs{n}.csv"
        with open(path, "w") as fh:
            fh.write(f"content,style,seed,{FAST}\n")
            for i in range(n):
                fh.write(f"photo.png,stripes.png,{i},{FAST_CELLS}\n")
        return path

    peaks, errs = {}, {}
    for n in (2000, 22000):
        code = ("import resource, sys; from nstyle.cli.main import main; c = main(); "
                "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(c)")
        proc = subprocess.run([sys.executable, "-c", code, "batch", str(manifest(n)), "-o", "out", "--weights",
                               weights, "--dry-run"], cwd=tmp_path, env=env_for(tmp_path), capture_output=True,
                              text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.count("\n") == n + 1
        peaks[n] = int(proc.stderr.split("PEAK")[-1]) * 1024
        errs[n] = proc.stderr
    per_row = (peaks[22000] - peaks[2000]) / 20000
    assert per_row < 2048, f"{per_row:.0f} bytes per row"
    assert "planning: " in errs[22000] and "jobs checked" in errs[22000], errs[22000][-2000:]
    assert not (tmp_path / "out").exists()


# --- output columns stay inside OUTDIR --------------------------------------------------------------

@pytest.mark.parametrize("output", ["../escaped.png", "~/escaped.png", "ABS", "link/escaped.png",
                                    "sub/../../escaped.png"])
def test_an_output_column_may_not_leave_outdir_unless_asked(tmp_path, pictures, weights, output):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "link").symlink_to(elsewhere)
    (out / "sub").mkdir()
    home = tmp_path / "home"
    home.mkdir()
    output = str(elsewhere / "escaped.png") if output == "ABS" else output
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"content,style,output,{FAST}\nphoto.png,stripes.png,,{FAST_CELLS}\n"
                        f"photo.png,stripes.png,{output},{FAST_CELLS}\n")
    result = nstyle(tmp_path, "batch", manifest, "-o", out, "--weights", weights, "--dry-run", HOME=home)
    assert_one_line_error(result, 2, "jobs.csv line 3", "leads out of the output folder", "--allow-outside-outdir")
    if output.startswith(("../", "~")):
        allowed = nstyle(tmp_path, "batch", manifest, "-o", out, "--weights", weights, "--dry-run",
                         "--allow-outside-outdir", HOME=home)
        assert allowed.code == 0 and "2 jobs: 2 to run" in allowed.out, allowed
    # inside, by any spelling, is fine
    manifest.write_text(f"content,style,output,{FAST}\nphoto.png,stripes.png,sub/../inside.png,{FAST_CELLS}\n")
    assert nstyle(tmp_path, "batch", manifest, "-o", out, "--weights", weights, "--dry-run").code == 0
    assert tree(elsewhere) == [] and not list(home.iterdir())


# --- a row too big for memory is named -------------------------------------------------------------

@pytest.mark.parametrize("dry", [True, False])
def test_a_row_too_big_for_memory_is_one_line_naming_it(tmp_path, pictures, weights, dry):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"content,style,{FAST}\nphoto.png,stripes.png,{FAST_CELLS}\n"
                        f'photo.png,stripes.png,60000,1,relu4_2,"relu1_1,relu5_1"\n')
    result = nstyle(tmp_path, "batch", manifest, "-o", "out", "--weights", weights, *(["--dry-run"] if dry else []))
    assert_one_line_error(result, 2, "jobs.csv line 3", "of memory")
    assert not (tmp_path / "out" / "summary.csv").exists()
    ok = nstyle(tmp_path, "batch", manifest, "-o", "out", "--weights", weights, "--dry-run", "--no-memory-check")
    assert ok.code == 0, ok


# --- --dry-run creates nothing ----------------------------------------------------------------------

def test_batch_dry_run_creates_nothing(tmp_path, pictures, weights):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(f"content,style,{FAST}\nphoto.png,stripes.png,{FAST_CELLS}\n")
    before = tree(tmp_path)
    for extra in (["--weights", weights], []):  # without weights: the default is not fetched either
        result = nstyle(tmp_path, "batch", manifest, "-o", tmp_path / "new" / "out", "--dry-run", *extra)
        assert result.code == 0 and "1 jobs: 1 to run" in result.out, result
        assert tree(tmp_path) == before, "a dry run created something"


# --- stale temporary files --------------------------------------------------------------------------

def test_a_killed_writer_leaves_a_part_file_that_the_next_run_removes(tmp_path, pictures, weights):
    """A process killed (SIGKILL) inside an atomic write leaves its temporary file; the next nstyle run
    writing into that folder removes it, and leaves alone the temporary file of a writer still running."""
    out = tmp_path / "out"
    out.mkdir()
    holder = ("import sys, time; sys.path.insert(0, sys.argv[2]); from nstyle.atomic import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n"
              "    open(tmp, 'wb').write(b'half'); print(tmp, flush=True); time.sleep(600)\n")
    repo = str(env_for(tmp_path)["PYTHONPATH"].split(os.pathsep)[0])
    killed = subprocess.Popen([sys.executable, "-c", holder, str(out / "a.png"), repo], stdout=subprocess.PIPE,
                              text=True)
    live = subprocess.Popen([sys.executable, "-c", holder, str(out / "b.png"), repo], stdout=subprocess.PIPE,
                            text=True)
    try:
        stale, running = killed.stdout.readline().strip(), live.stdout.readline().strip()
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
        assert os.path.exists(stale) and os.path.exists(running)
        result = nstyle(tmp_path, "stylize", "photo.png", "stripes.png", "-o", out / "result.png", "--weights",
                        weights, "--size", 24, "--iters", 1, *FAST_LAYERS)
        assert result.code == 0, result
        assert not os.path.exists(stale), "the killed run's temporary file is still there"
        assert os.path.exists(running), "a running writer's temporary file was removed"
    finally:
        live.kill()
        live.wait(timeout=30)
        killed.kill()


def test_parts_of_other_hosts_and_older_versions_go_only_once_a_day_old(tmp_path):
    fresh_other = tmp_path / ".nstyle-00000000-1-abc.png.part"
    old_legacy = tmp_path / ".nstyle-k2j3h4g5.png.part"
    fresh_legacy = tmp_path / ".nstyle-zz9x8c7v.png.part"
    not_ours = tmp_path / "holiday.png.part"
    for p in (fresh_other, old_legacy, fresh_legacy, not_ours):
        p.write_bytes(b"x")
    day_ago = time.time() - atomic.STALE_AGE - 60
    os.utime(old_legacy, (day_ago, day_ago))
    assert atomic.clean_stale_parts(tmp_path) == 1
    assert not old_legacy.exists() and fresh_other.exists() and fresh_legacy.exists() and not_ours.exists()
