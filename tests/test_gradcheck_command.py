"""`nstyle gradcheck`: prints the table, passes on the real code, and fails loudly on a broken backward."""
import numpy as np

from nstyle.cli import main as cli
from nstyle.model import gradcheck
from nstyle.model.gradcheck import directional_check, numerical_gradient, rel_error


def test_gradcheck_command_passes_and_prints_table(capsys):
    code = cli.main(["gradcheck"])
    out = capsys.readouterr().out
    assert code == 0
    assert "conv2d k3 s1 p1 dx" in out and "objective (max pool, directional)" in out
    assert "FAIL" not in out and "all " in out


def test_gradcheck_command_fails_on_a_wrong_gradient(monkeypatch, capsys):
    import nstyle.reference.losses as losses
    real = losses.tv_loss

    def broken_tv(x):
        value, grad = real(x)
        return value, grad * 1.01  # a 1% error in one gradient must be caught
    monkeypatch.setattr(losses, "tv_loss", broken_tv)
    code = cli.main(["gradcheck"])
    out = capsys.readouterr().out
    assert code == 1
    assert "tv_loss" in out and "FAIL" in out


def test_helpers_measure_what_they_claim():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(5)
    g = numerical_gradient(lambda z: float(np.sum(z ** 3)), x)
    assert rel_error(g, 3 * x ** 2) < 1e-8
    assert rel_error([1.0, 2.0], [1.0, 2.2]) == pytest_approx(0.2 / 2.2)
    assert directional_check(lambda z: float(z @ z), 2 * x, x, rng) < 1e-8
    assert directional_check(lambda z: float(z @ z), 3 * x, x, rng) > 0.1


def pytest_approx(v):
    import pytest
    return pytest.approx(v, rel=1e-12)


def test_table_format_has_one_row_per_check():
    rows = [{"op": "a", "shape": "2x2", "rel_error": 1e-9, "tol": 1e-7, "ok": True},
            {"op": "bb", "shape": "3", "rel_error": 1e-3, "tol": 1e-7, "ok": False}]
    lines = gradcheck.format_table(rows).splitlines()
    assert len(lines) == 3 and lines[1].rstrip().endswith("pass") and lines[2].rstrip().endswith("FAIL")
