"""`nstyle batch` without a cluster: manifests, sweeps, output names, the up-front checks, skipping,
the local cluster's size and the progress display. (The cluster itself: test_batch.py.)"""
import io
import json
import os

import pytest

from nstyle.app.batch import jobs
from nstyle.app.batch import run_batch as batch
from nstyle.app.batch.cluster import WORKER_OVERHEAD_BYTES, size_local_cluster
from nstyle.app.batch.jobs import Job, cross_product, output_name, sweep_values
from nstyle.app.batch.manifest import read_manifest
from nstyle.app.batch.plan import plan_batch
from nstyle.app.batch.progress import JobsProgress
from nstyle.app.run.memory import MemoryEstimate
from nstyle.app.run.stylize import stylize
from nstyle.errors import InputError

from .clitools import gradient_image, random_weights_file, stripes_image

DEFAULTS = stylize.__kwdefaults__
FAST = {"size": 24, "iters": 2, "content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}


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


def test_csv_manifest_rows_become_jobs_with_typed_options_and_paths_from_the_manifest(tmp_path):
    manifest = tmp_path / "sub" / "jobs.csv"
    manifest.parent.mkdir()
    manifest.write_text("content,style,output,size,style_weight,style_layers,iters,bounds\n"
                        "a.jpg,b.jpg;../c.jpg,,256,1e4,\"relu1_1,relu2_1\",\"300,200\",false\n"
                        "\n"
                        "/abs/a.jpg,b.jpg,mine.png,,,,,\n")
    first, second = read_manifest(manifest)
    base = str(manifest.parent)
    assert first.content == os.path.join(base, "a.jpg")
    assert first.styles == [os.path.join(base, "b.jpg"), str(tmp_path / "c.jpg")]
    assert first.options == {"size": 256, "style_weight": 1e4, "style_layers": ("relu1_1", "relu2_1"),
                             "iters": [300, 200], "bounds": False}
    assert first.output is None and first.where == "jobs.csv line 2"
    assert second.content == "/abs/a.jpg" and second.options == {} and second.output == "mine.png"
    assert second.where == "jobs.csv line 4"


def test_json_lines_manifest_takes_typed_values(tmp_path):
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text(json.dumps({"content": "a.png", "style": ["b.png", "c.png"], "style_blend": [3, 1],
                                    "seed": 2, "init": "noise"}) + "\n\n"
                        + json.dumps({"content": "a.png", "style": "b.png", "style_weight": "1e5"}) + "\n")
    first, second = read_manifest(manifest)
    assert first.styles == [str(tmp_path / "b.png"), str(tmp_path / "c.png")]
    assert first.options == {"style_blend": [3, 1], "seed": 2, "init": "noise"}
    assert second.options == {"style_weight": 1e5} and second.where == "jobs.jsonl line 3"


@pytest.mark.parametrize("text, message", [
    ("content,style,colour\na,b,1\n", "line 2: unknown option 'colour'"),
    ("content,style,weights\na,b,w.h5\n", "whole batch"),
    ("content,style,size\na,b,big\n", "line 2: size: expected a whole number"),
    ("content,style\na\n", "line 2: needs a content and a style"),
    ("content,style\na,b,c\n", "more cells than columns"),
    ("content,style\n", "no jobs"),
])
def test_manifest_mistakes_name_the_line(tmp_path, text, message):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text(text)
    with pytest.raises(InputError, match=message):
        read_manifest(manifest)


def test_unknown_column_suggests_the_option_meant(tmp_path):
    manifest = tmp_path / "jobs.csv"
    manifest.write_text("content,style,style_wieght\na,b,1\n")
    with pytest.raises(InputError) as caught:
        read_manifest(manifest)
    assert "style_weight" in caught.value.hint


def test_cross_product_sweeps_every_combination_in_order():
    sweeps = {"style_weight": sweep_values("style_weight", "1e3,1e4"),
              "style_layers": sweep_values("style_layers", "relu1_1;relu1_1,relu2_1")}
    made = cross_product(["p/a.png", "p/b.png"], ["s/x.png"], sweeps)
    assert len(made) == 2 * 1 * 2 * 2
    assert [j.content for j in made[:4]] == ["p/a.png"] * 4
    assert made[0].options == {"style_weight": 1000.0, "style_layers": ("relu1_1",)}
    assert made[3].options == {"style_weight": 1e4, "style_layers": ("relu1_1", "relu2_1")}
    assert made[0].where == "job 1 (a x x)"


def test_output_names_are_readable_deterministic_and_leave_defaults_out():
    job = Job("job 1", "/p/tubingen.jpg", ["/s/starry night.jpg"],
              {"style_weight": 1e4, "size": 256, "content_weight": DEFAULTS["content_weight"],
               "style_layers": ("relu1_1", "relu2_1"), "tv_weight": 1e-5})
    assert output_name(job, DEFAULTS) == ("tubingen__starry-night__size=256__style_weight=10000__tv_weight=1e-5"
                                          "__style_layers=relu1_1,relu2_1.png")
    reordered = Job("x", "/p/tubingen.jpg", ["/s/starry night.jpg"], dict(reversed(list(job.options.items()))))
    assert output_name(reordered, DEFAULTS) == output_name(job, DEFAULTS)
    two = Job("x", "a.png", ["b.png", "c.png"], {"style_weight": DEFAULTS["style_weight"]})
    assert output_name(two, DEFAULTS) == "a__b+c.png"
    long = Job("x", "a" * 300 + ".png", ["b.png"])
    name = output_name(long, DEFAULTS)
    assert len(name) <= jobs.NAME_LIMIT + 4 and name != output_name(Job("x", "a" * 299 + ".png", ["b.png"]), DEFAULTS)


def test_plan_checks_every_job_before_anything_runs(pictures, weights, tmp_path):
    good = Job("jobs.csv line 2", str(pictures / "photo.png"), [str(pictures / "stripes.png")], dict(FAST))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    cases = [
        (Job("jobs.csv line 3", str(broken), [str(pictures / "cat.png")], dict(FAST)), "line 3: content image"),
        (Job("jobs.csv line 4", str(pictures / "cat.png"), [str(pictures / "photo.png")],
             {**FAST, "style_weight": -1.0}), "line 4: style weight"),
        (Job("jobs.csv line 5", str(pictures / "cat.png"), [str(pictures / "photo.png")],
             {**FAST, "style_layers": ("relu9_1",)}), "line 5: .*relu9_1"),
        (Job("jobs.csv line 6", str(pictures / "cat.png"), [str(pictures / "photo.png")], dict(FAST),
             output=str(pictures / "photo.png")), "line 6: .*never overwrites an input"),
        (Job("jobs.csv line 7", str(pictures / "photo.png"), [str(pictures / "stripes.png")], dict(FAST)),
         "line 2 and jobs.csv line 7 would both write"),
    ]
    for bad, message in cases:
        with pytest.raises(InputError, match=message):  # line 6's output is outside OUTDIR: allowed here
            plan_batch([good, bad], tmp_path / "out", weights=weights, allow_outside=True)
    with pytest.raises(InputError, match="weights file not found"):
        plan_batch([good], tmp_path / "out", weights=str(tmp_path / "missing.h5"))


def test_plan_skips_only_jobs_whose_output_and_sidecar_match(pictures, weights, tmp_path):
    out = tmp_path / "out"
    job = Job("job 1", str(pictures / "photo.png"), [str(pictures / "stripes.png")], dict(FAST))
    (planned,), _ = plan_batch([job], out, weights=weights)
    assert planned.previous is None and planned.name == "photo__stripes__size=24__iters=2__content_layers=" \
        "relu2_1__style_layers=relu1_1,relu2_1.png"
    gradient_image(24, 18).save(planned.output)
    sidecar = {"settings_hash": planned.settings_hash, "output_sha256": batch.file_sha256(planned.output),
               "seconds": 1.5, "final_loss": 2.0, "iterations": 2}
    (out / (planned.name + ".json")).write_text(json.dumps(sidecar))
    (again,), _ = plan_batch([job], out, weights=weights)
    assert again.previous is not None and again.result["status"] == "skipped"
    assert plan_batch([job], out, weights=weights, force=True)[0][0].previous is None
    changed = Job("job 1", job.content, job.styles, {**FAST, "seed": 3})
    assert plan_batch([changed], out, weights=weights)[0][0].previous is None
    gradient_image(24, 18, seed=9).save(planned.output)  # the image no longer matches its sidecar
    assert plan_batch([job], out, weights=weights)[0][0].previous is None


def _estimate(mib):
    return MemoryEstimate(parts={"network": mib * 2**20})


def test_local_cluster_uses_every_core_and_fewer_workers_when_memory_is_short():
    est = _estimate(100)
    assert size_local_cluster(est, n_jobs=20, cores=8)[:2] == (8, 1)
    assert size_local_cluster(est, n_jobs=2, cores=8)[:2] == (2, 4)
    assert size_local_cluster(est, n_jobs=20, cores=8, threads=2)[:2] == (4, 2)
    need = 100 * 2**20 + WORKER_OVERHEAD_BYTES
    n, t, limit = size_local_cluster(est, n_jobs=20, cores=8, free=3 * need + 1)
    assert (n, t) == (3, 2) and limit > need
    with pytest.raises(InputError, match="worker"):
        size_local_cluster(est, n_jobs=20, cores=8, free=need // 2)
    with pytest.raises(InputError) as caught:
        size_local_cluster(est, n_jobs=20, cores=8, workers=6, free=3 * need + 1)
    assert "--workers 3" in caught.value.hint
    assert size_local_cluster(est, n_jobs=20, cores=8, workers=6, free=need, check_memory=False)[0] == 6


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere():
    def finish(progress, status, name):
        p = batch.PlannedJob(Job("job", "a", ["b"]), name, name, {}, "h", None, {})
        p.result = {"status": status, "seconds": 1.0, "final_loss": 2.5, "error": "boom"}
        progress.finished(p)

    lines = io.StringIO()
    progress = JobsProgress(stream=lines)
    progress.start(3, 1)
    finish(progress, "done", "a.png")
    finish(progress, "failed", "b.png")
    progress.close()
    text = lines.getvalue()
    assert "1 of 3 jobs are already done" in text and "[2/3] done    a.png (1.0s, final loss 2.5000e+00)" in text
    assert "[3/3] failed  b.png: boom" in text and "\r" not in text
    tty = Tty()
    progress = JobsProgress(stream=tty)
    progress.start(2, 0)
    finish(progress, "done", "a.png")
    progress.close()
    assert "\r" in tty.getvalue() and "1/2 jobs  done 1  skipped 0  failed 0" in tty.getvalue()
    assert tty.getvalue().endswith("\n")


def test_every_per_job_option_is_a_stylize_keyword():
    assert set(jobs.OPTION_KINDS) <= set(DEFAULTS)
    assert set(jobs.BATCH_WIDE) <= set(DEFAULTS)
