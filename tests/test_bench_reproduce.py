"""bench/reproduce.py, without running any benchmark: every figure names a script that exists, and the
committed results are protected (no toy run may replace them, no run without an output folder)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import reproduce  # noqa: E402


def test_every_figure_runs_a_script_of_this_repository():
    for name, (_, full, quick, group, _) in reproduce.FIGURES.items():
        for argv in (full, quick):
            if argv is not None:
                assert (ROOT / argv[0]).is_file(), (name, argv[0])
        assert group in ("default", "whole-runs", "extras", "gpu")


def run(*args):
    return subprocess.run([sys.executable, str(ROOT / "bench" / "reproduce.py"), *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)


def test_quick_runs_may_not_update_the_committed_results(tmp_path):
    proc = run("--out", str(tmp_path), "--quick", "--update-results")
    assert proc.returncode == 2 and "refused" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_is_required_and_list_names_the_commands():
    proc = run()
    assert proc.returncode == 2 and "--out" in proc.stderr
    listing = run("--list")
    assert listing.returncode == 0 and "bench/bench_layers.py" in listing.stdout
