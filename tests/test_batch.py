"""`nstyle batch` on real Dask clusters, all on 127.0.0.1: a LocalCluster of two workers, a `dask scheduler`
and a `dask worker` started as processes, a worker killed mid-job, Ctrl-C and the rerun that skips the
finished jobs, the summary, a failing job among good ones, and the command without Dask installed.

Tiny images (24-32 px) and a network that stops at relu2_1, with random weights of VGG-19's shapes."""
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from nstyle.app.batch.cluster import local_client  # noqa: E402
from nstyle.app.batch.jobs import Job  # noqa: E402
from nstyle.app.batch.run_batch import run_batch  # noqa: E402

from .clitools import (  # noqa: E402
    FAST_LAYERS,
    assert_one_line_error,
    env_for,
    gradient_image,
    nstyle,
    random_weights_file,
    stripes_image,
)

# Real processes and whole runs: in .ci/run's slow pass, not the quick suite.
pytestmark = pytest.mark.slow


FAST = {"size": 24, "iters": 3, "content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(random_weights_file(tmp_path_factory.mktemp("weights")))


@pytest.fixture
def pictures(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    gradient_image(32, 24).save(folder / "photo.png")
    gradient_image(30, 30, seed=4).save(folder / "cat.png")
    stripes_image(32, 32).save(folder / "stripes.png")
    return folder


def summary_rows(outdir):
    with open(Path(outdir) / "summary.csv", newline="") as fh:
        return {row["job"]: row for row in csv.DictReader(fh)}


def stop(proc):
    """End a process this test started: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_local_cluster_of_two_workers_runs_the_jobs_and_records_a_failure(pictures, weights, tmp_path, monkeypatch):
    monkeypatch.setenv("NSTYLE_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    good = [Job(f"job {i}", str(pictures / c), [str(pictures / "stripes.png")], dict(FAST))
            for i, c in enumerate(["photo.png", "cat.png"], 1)]
    bad = Job("job 3", str(pictures / "cat.png"), [str(pictures / "photo.png")], {**FAST, "style_weight": 1e300})
    result = run_batch(good + [bad], out, workers=2, threads=1, weights=weights)
    assert not result.ok and (result.count("done"), result.count("failed")) == (2, 1)
    assert "2 workers x 1 thread" in result.cluster
    rows = summary_rows(out)
    assert list(rows) == [p.name for p in result.jobs]
    for p in result.jobs[:2]:
        row = rows[p.name]
        assert row["status"] == "done" and row["attempts"] == "1" and row["error"] == ""
        assert float(row["seconds"]) > 0 and float(row["final_loss"]) > 0 and row["iterations"] == "3"
        sidecar = json.loads(Path(p.output + ".json").read_text())
        assert sidecar["settings_hash"] == p.settings_hash and sidecar["iterations"] == 3
        assert sidecar["settings"]["options"]["size"] == 24
    failed = rows[result.jobs[2].name]
    assert failed["status"] == "failed" and "loss became" in failed["error"] and failed["row"] == "job 3"
    assert not Path(result.jobs[2].output).exists()
    # the rerun skips the finished jobs and tries the failed one again
    again = run_batch(good + [bad], out, workers=1, threads=1, weights=weights)
    assert [p.result["status"] for p in again.jobs] == ["skipped", "skipped", "failed"]
    assert "3 jobs: 0 done, 2 skipped, 1 failed" in again.total_line()


def test_a_worker_killed_mid_job_is_replaced_and_the_job_retried(pictures, weights, tmp_path, monkeypatch):
    monkeypatch.setenv("NSTYLE_HOME", str(tmp_path / "home"))
    job = Job("job 1", str(pictures / "photo.png"), [str(pictures / "stripes.png")],
              {**FAST, "size": 32, "iters": 150})
    outcome = {}
    with local_client(workers=2, threads=1, memory_limit=None) as client:
        runner = threading.Thread(target=lambda: outcome.update(
            result=run_batch([job], tmp_path / "out", client=client, threads=1, weights=weights)))
        runner.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(client.processing().values()):
            time.sleep(0.05)
        busy = [address for address, keys in client.processing().items() if keys]
        assert busy, "the job never started"
        os.kill(client.run(os.getpid, workers=busy)[busy[0]], signal.SIGKILL)
        runner.join(timeout=120)
    (p,) = outcome["result"].jobs
    assert p.result["status"] == "done" and p.attempts == 2
    assert Path(p.output).is_file() and Path(p.output + ".json").is_file()


def test_dask_scheduler_and_worker_processes_through_the_command_line(pictures, weights, tmp_path):
    env = env_for(tmp_path)
    scheduler_file = tmp_path / "scheduler.json"
    procs = []
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(scheduler_file)],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1",
             "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", "test-worker"],
            env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        r = nstyle(tmp_path, "batch", "--contents", pictures / "photo.png", pictures / "cat.png",
                   "--styles", pictures / "stripes.png", "-o", tmp_path / "out", "--weights", weights,
                   "--size", "24", "--iters", "2", "--style-weight", "1e3,1e4", *FAST_LAYERS,
                   "--scheduler", address, timeout=180)
        assert r.code == 0, r
        assert f"Dask scheduler at {address}" in r.err and "4 jobs: 4 done, 0 skipped, 0 failed" in r.out
        rows = summary_rows(tmp_path / "out")
        assert len(rows) == 4 and {row["status"] for row in rows.values()} == {"done"}
        assert "photo__stripes__size=24__iters=2__style_weight=10000__content_layers=relu2_1__style_layers=" \
               "relu1_1,relu2_1.png" in rows
    finally:
        for proc in reversed(procs):
            stop(proc)


def test_ctrl_c_keeps_the_finished_jobs_and_the_rerun_skips_them(pictures, weights, tmp_path):
    out = tmp_path / "out"
    args = ["batch", "--contents", pictures / "photo.png", pictures / "cat.png", "--styles",
            pictures / "stripes.png", pictures / "cat.png", "-o", out, "--weights", weights, "--size", "24",
            "--iters", "60", *FAST_LAYERS, "--workers", "1", "--threads-per-worker", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "nstyle", *map(str, args)], cwd=tmp_path, env=env_for(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not list(out.glob("*.png.json")) and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 130, stderr
    assert "interrupted with" in stderr and "Traceback" not in stderr
    statuses = [row["status"] for row in summary_rows(out).values()]
    finished = statuses.count("done")
    assert finished >= 1 and "cancelled" in statuses and len(statuses) == 4
    assert not [p for p in os.listdir(out) if p.startswith(".nstyle-")]
    r = nstyle(tmp_path, *args, timeout=180)
    assert r.code == 0, r
    assert f"4 jobs: {4 - finished} done, {finished} skipped, 0 failed" in r.out


def test_bad_row_refused_before_anything_is_submitted(pictures, weights, tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("content,style,size\nin/photo.png,in/stripes.png,24\nin/missing.png,in/cat.png,24\n")
    r = nstyle(tmp_path, "batch", manifest, "-o", tmp_path / "out", "--weights", weights)
    assert_one_line_error(r, 2, "jobs.csv line 3", "missing.png")
    assert not (tmp_path / "out" / "summary.csv").exists()


def test_without_dask_batch_says_so_in_one_line_and_the_rest_of_nstyle_works(tmp_path):
    blocked = tmp_path / "blocked"
    for name in ("dask", "distributed"):
        (blocked / name).mkdir(parents=True)
        (blocked / name / "__init__.py").write_text(f'raise ImportError("no module named {name} (blocked)")\n')
    env = {"PYTHONPATH": f"{blocked}{os.pathsep}{env_for(tmp_path)['PYTHONPATH']}"}
    r = nstyle(tmp_path, "batch", "--contents", "a.png", "--styles", "b.png", "-o", "out", **env)
    assert_one_line_error(r, 2, "pip install 'nstyle[batch]'")
    # every module of the package imports without Dask: only the batch code asks for it, when it runs
    code = ("import pkgutil, importlib, nstyle; [importlib.import_module(m.name) for m in "
            "pkgutil.walk_packages(nstyle.__path__, 'nstyle.') if not m.name.endswith('__main__')]; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], env={**env_for(tmp_path), **env}, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr
    assert nstyle(tmp_path, "stylize", "--help", **env).code == 0


@pytest.mark.slow
def test_grid_runs_its_cells_as_batch_jobs_with_the_same_pictures(pictures, weights, tmp_path, monkeypatch):
    from nstyle.app.figures.grid import make_grid
    monkeypatch.setenv("NSTYLE_HOME", str(tmp_path / "home"))
    common = dict(ratios=[1e-3, 1e-2], depths=[1, 2], size=24, iters=3, content_layer="relu2_1",
                  style_layers=("relu1_1", "relu2_1"), weights=weights)
    # Each worker runs nstyle on one thread; float rounding depends on how the work is cut between
    # threads (the BLAS's blocking), so the cells here are made on one thread too.
    from nstyle.cpu import threads
    threads.set_num_threads(1)
    try:
        here, cells_here = make_grid(pictures / "photo.png", pictures / "stripes.png", out=tmp_path / "a.png",
                                     **common)
    finally:
        threads.set_num_threads(None)
    there, cells_there = make_grid(pictures / "photo.png", pictures / "stripes.png", out=tmp_path / "b.png",
                                   batch={"workers": 2, "threads": 1}, **common)
    for a, b in zip(cells_here, cells_there):
        assert a.image.tobytes() == b.image.tobytes(), a.label
    assert here.tobytes() == there.tobytes()
    rows = summary_rows(tmp_path / "b_cells")
    assert sorted(rows) == sorted(f"{c.name}.png" for c in cells_there)
    # the cell folder resumes as before: every cell reused, nothing submitted
    _, again = make_grid(pictures / "photo.png", pictures / "stripes.png", out=tmp_path / "b.png",
                         batch={"workers": 2, "threads": 1}, **common)
    assert all(c.reused for c in again)
