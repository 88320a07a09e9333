"""asv (airspeed velocity) benchmarks of nstyle on the CPU; bench/README.md has the commands.

Which nstyle they measure: in asv's "existing" environment (``asv run --python=same``) the checkout
these files belong to, put first on sys.path here; in an environment asv built for a commit
(``asv continuous -E virtualenv:3.11 A B``) the nstyle asv installed there -- this checkout's bench/ folder
is then only appended to sys.path, for the helpers (shared.py, layers_common.py, layers_nstyle.py,
lbfgs_cases.py), none of which changes sys.path or imports nstyle at import time.

Where an older commit lacks an internal module a benchmark needs, its setup raises
NotImplementedError and asv skips that benchmark for that commit.
"""
import os
import sys
from pathlib import Path

_BENCH = Path(__file__).resolve().parents[1]
if os.environ.get("ASV_ENV_TYPE", "existing") == "existing" and str(_BENCH.parent) not in sys.path:
    sys.path.insert(0, str(_BENCH.parent))
if str(_BENCH) not in sys.path:
    sys.path.append(str(_BENCH))
