"""bench/gpu_check.py --dry-run: the whole device check runs on the CPU (NumPy for CuPy, emulated kernels,
PyTorch on the CPU for cuDNN) and writes every section, none of them failed, so the script the GPU run
depends on cannot rot unnoticed."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import require_torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "gpu_check.py")


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_section(tmp_path):
    require_torch()  # the dry run's rival is PyTorch on the CPU (a failure, not a skip, in CI)
    out = tmp_path / "gpucheck"
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--out", str(out)], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)
    tail = (proc.stdout + proc.stderr)[-3000:]
    assert proc.returncode == 0, f"dry run failed (rc {proc.returncode}):\n{tail}"
    report = json.loads((out / "gpu_check.json").read_text())
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        from gpu_check import SECTIONS
    finally:
        sys.path.pop(0)
    assert list(report["status"]) == list(SECTIONS), "every section must have run, in order"
    bad = {name: st for name, st in report["status"].items() if st["status"] != "ok"}
    assert not bad, f"sections not ok in the dry run: {bad}"
    for name in SECTIONS:
        assert report["sections"][name], f"section {name} recorded nothing"
    assert report["sections"]["smoke"]["steps"]["done"]["ok"]
    sections = report["sections"]
    assert sections["timing_fp32"]["rows"] and sections["timing_tf32"]["rows"]
    # the optimizer figures: both L-BFGS-B implementations, the whole run, time to PyTorch's final loss
    assert [row["impl"] for row in sections["optimizer"]["rows"]] == ["nstyle + nstyle", "nstyle + scipy"]
    assert sections["optimizer"]["whole_run_s"] is not None
    runs = sections["to_target"]["rows"]
    assert [row["size"] for row in runs] == [size for size in sections["to_target"]["sizes"] for _ in range(3)]
    assert [row["impl"] for row in runs[:3]] == ["torch.optim.LBFGS", "nstyle + nstyle", "nstyle + scipy"]
    for row in runs:
        assert row["evaluations"] >= row["iterations"] > 0 and np.isfinite(row["final_loss"])
        assert row["reached"] == (row["time_to_target_s"] is not None)
    # CUDA graphs: without CuPy the wrapper falls back to plain evaluation, and says so
    assert all(not row["graph"] and "CuPy" in row["fallback"] for row in sections["graphs"]["rows"])
    assert sections["graphs"]["make_default"] is False
    wanted = ("optimizer cost per iteration", "whole run", "time to PyTorch", "(op by op)", "(CUDA graph)", "TF32")
    for words in wanted:
        assert any(words in t["target"] for t in report["targets"]), f"no target on {words!r}"
    markdown = (out / "gpu_check.md").read_text()
    for title in ("## Targets", "## Sections", "## timing_fp32", "## L-BFGS-B at", "## Time to PyTorch's final loss",
                  "## One evaluation as a CUDA graph", "## ops", "## gradcheck64"):
        assert title in markdown, f"{title!r} missing from the Markdown report"
    assert (out / "progress.log").read_text().count("---") >= len(SECTIONS)
    closing = proc.stdout.rstrip().splitlines()
    assert closing[-1].startswith("=====") and any("nstyle GPU check" in line for line in closing[-60:]), \
        "the short table must be the last thing printed"


def test_gpu_check_refuses_unknown_sections(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--out", str(tmp_path), "--sections", "warp"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 2 and "unknown section" in proc.stderr
