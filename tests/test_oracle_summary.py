"""The test command a learner runs says what it checked: with the PyTorch oracle missing, the run ends by
counting the oracle tests it skipped and naming the command that adds them."""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_a_run_without_torch_counts_the_skipped_oracle_tests(tmp_path):
    (tmp_path / "torch.py").write_text('raise ImportError("torch hidden by this test")\n')
    env = {k: v for k, v in os.environ.items() if k != "NSTYLE_REQUIRE_TORCH"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/test_torch_oracle.py"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = [line for line in lines if "PyTorch oracle tests skipped" in line]
    assert len(summary) == 1, lines[-5:]
    skipped = int(lines[-1].split(" skipped")[0].split()[-1])
    assert summary[0].startswith(f"{skipped} PyTorch oracle tests skipped"), (summary, lines[-1])
    assert "pip install torch==2.13.0" in summary[0]

