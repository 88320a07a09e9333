"""Shared test helpers: seeded randomness, backends (CPU always, GPU where one answers), the torch oracle."""
import os

import numpy as np
import pytest

from nstyle.backend import gpu_available, gpu_problem

# The command-line tests' shared fixtures (a module's own fixture of the same name takes precedence).
from .clitools import images, weights  # noqa: F401


def _gpu_param():
    reason = None if gpu_available() else f"GPU backend unavailable: {gpu_problem()}"
    return pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(reason is not None, reason=reason or "")])


# Every check_* helper runs once per backend; the GPU case skips, with the reason, where it cannot run.
BACKENDS = [pytest.param("cpu"), _gpu_param()]


def xp_of(backend):
    if backend == "gpu":
        import cupy
        return cupy
    return np


def on(backend, a):
    """Copy a host array to the backend."""
    return xp_of(backend).asarray(a)


def host(a):
    from nstyle.backend import to_host
    return to_host(a)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so each test draws the same numbers every run."""
    seed = sum((i + 1) * ord(ch) for i, ch in enumerate(request.node.name))
    return np.random.default_rng(seed)


# The one reason every oracle test skips with, so that the run's summary can count them.
TORCH_SKIP_REASON = "torch not installed: the PyTorch oracle tests need it (pip install torch==2.13.0)"
ORACLE_INSTALL = "python3 -m pip install torch==2.13.0"


def require_torch():
    """Import torch, or skip -- unless NSTYLE_REQUIRE_TORCH=1 (CI), where a missing oracle is a failure."""
    try:
        import torch
    except ImportError:
        if os.environ.get("NSTYLE_REQUIRE_TORCH") == "1":
            pytest.fail("torch is required (NSTYLE_REQUIRE_TORCH=1) but is not installed")
        pytest.skip(TORCH_SKIP_REASON)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    return torch


def pytest_terminal_summary(terminalreporter):
    """Say what the run checked: when the PyTorch oracle is missing, how many oracle tests were skipped
    and the one command that adds them (the float64 gradient checks run either way)."""
    skipped = [rep for rep in terminalreporter.stats.get("skipped", [])
               if isinstance(rep.longrepr, tuple) and TORCH_SKIP_REASON in str(rep.longrepr[2])]
    if skipped:
        terminalreporter.write_line(
            f"{len(skipped)} PyTorch oracle tests skipped (torch is not installed; the float64 gradient "
            f"checks ran): `{ORACLE_INSTALL}` adds them")
