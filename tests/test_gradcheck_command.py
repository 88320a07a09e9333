"""`nstyle gradcheck`: prints the table, passes on the real code, checks one op alone with --op, runs the
network-level checks on either engine, and fails loudly on a broken backward."""
import json

import numpy as np
import pytest

from nstyle.cli import main as cli
from nstyle.model import gradcheck
from nstyle.model.gradcheck import OP_NAMES, directional_check, numerical_gradient, rel_error
from nstyle.model.terms import TERMS
from nstyle.reference.engine import ReferenceEngine


def run(capsys, *args):
    code = cli.main(["gradcheck", *args])
    out, err = capsys.readouterr()
    return code, out, err


def table_ops(out):
    """The op column of the printed table (header and summary line left out)."""
    lines = out.strip().splitlines()
    assert lines[0].startswith("op "), out
    return [line.split("  ")[0] for line in lines[1:] if not line.startswith(("all ", "1 check"))]


def test_gradcheck_command_passes_and_prints_table(capsys):
    code, out, _ = run(capsys)
    assert code == 0
    ops = table_ops(out)
    # every op in the table, in reading order, each row named after its op
    groups = [next(name for name in OP_NAMES if op.startswith(name)) for op in ops]
    assert list(dict.fromkeys(groups)) == list(OP_NAMES)
    assert "conv k3 s1 p1 dx" in ops and "objective (max pool, cpu engine)" in ops
    assert "vgg sweep (avg pool, cpu engine, winograd F(4x4))" in ops
    assert "vgg sweep (avg pool, cpu engine, winograd F(2x2))" in ops
    assert "FAIL" not in out and f"all {len(ops)} checks passed" in out


@pytest.mark.parametrize("op", OP_NAMES)
def test_one_op_runs_alone(capsys, op):
    code, out, _ = run(capsys, "--op", op)
    assert code == 0, out
    ops = table_ops(out)
    assert ops and all(row.startswith(op) for row in ops), ops
    others = [name for name in OP_NAMES if name != op and not name.startswith(op)]
    assert not any(row.startswith(other) for row in ops for other in others), ops


def test_an_op_alone_gives_its_rows_of_the_full_table():
    full = {r["op"]: r["rel_error"] for r in gradcheck.run_all(seed=3)}
    for op in ("max_pool", "gram", "vgg"):
        for row in gradcheck.run_all(seed=3, ops=[op]):
            assert row["group"] == op and row["rel_error"] == full[row["op"]]


def test_several_ops_in_table_order(capsys):
    code, out, _ = run(capsys, "--op", "tv", "--op", "relu", "--json")
    rows = json.loads(out[:out.rindex("]") + 1])
    assert code == 0 and [r["group"] for r in rows] == ["relu", "tv"]


@pytest.mark.parametrize("engine,label", [("reference", "reference engine"), ("fast", "cpu engine"),
                                          ("auto", "cpu engine")])
def test_engine_choice_for_the_network_checks(capsys, engine, label):
    code, out, _ = run(capsys, "--op", "vgg", "--op", "objective", "--engine", engine)
    assert code == 0, out
    ops = table_ops(out)
    assert {op.split(" (")[0] for op in ops} == {"vgg sweep", "objective", "objective, guided + temporal"}
    assert all(f"pool, {label}" in op for op in ops), ops
    assert any("winograd" in op for op in ops) == (engine != "reference")


def test_unknown_op_is_one_line_listing_the_valid_names(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["gradcheck", "--op", "softmax"])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    errors = [line for line in err.splitlines() if line.startswith("nstyle: error:")]
    assert len(errors) == 1 and "softmax" in errors[0], err
    assert all(name in errors[0] for name in OP_NAMES), err
    assert all(line.startswith(("nstyle: error:", "  hint:")) for line in err.splitlines() if line), err


def _scaled(fn, factor=1.01, index=1):
    """fn with its gradient output (result[index], or the result itself for index=None) scaled by 1%."""
    def broken(*args, **kwargs):
        result = fn(*args, **kwargs)
        if index is None:
            return result * factor
        return tuple(r * factor if i == index else r for i, r in enumerate(result))
    return broken


# (op, module defining the function the check looks up, function name, which output is the gradient)
FAULTS = [("relu", "nstyle.reference.relu", "relu_backward", None),
          ("avg_pool", "nstyle.reference.pool", "avg_pool2d_backward", None),
          ("max_pool", "nstyle.reference.pool", "max_pool2d_backward", None),
          ("conv", "nstyle.reference.conv", "conv2d_backward", 0),
          ("content", "nstyle.reference.losses", "content_loss", 1),
          ("gram", "nstyle.reference.losses", "style_layer_loss", 1),
          ("guided_gram", "nstyle.reference.losses", "guided_style_loss", 1),
          ("tv", "nstyle.reference.losses", "tv_loss", 1),
          ("temporal", "nstyle.reference.temporal", "temporal_loss", 1),
          ("mean_std", "nstyle.reference.style_losses.mean_std", "mean_std_loss", 1),
          ("histogram", "nstyle.reference.style_losses.histogram", "histogram_loss", 1),
          ("sliced_wasserstein", "nstyle.reference.style_losses.sliced_wasserstein", "sliced_wasserstein_loss", 1),
          ("mmd_linear", "nstyle.reference.style_losses.mmd", "mmd_loss", 1),
          ("mmd_polynomial", "nstyle.reference.style_losses.mmd", "mmd_loss", 1),
          ("mmd_gaussian", "nstyle.reference.style_losses.mmd", "mmd_loss", 1),
          ("style_sum", "nstyle.reference.style_losses.histogram", "histogram_loss", 1)]  # one part broken


def test_every_registered_term_has_a_fault_here():
    assert {name for name, *_ in FAULTS} >= set(TERMS)


@pytest.mark.parametrize("op,module,name,index", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_one_percent_error_in_an_op_is_caught(monkeypatch, capsys, op, module, name, index):
    import importlib
    mod = importlib.import_module(module)
    monkeypatch.setattr(mod, name, _scaled(getattr(mod, name), index=index))
    code, out, err = run(capsys, "--op", op)
    assert code == 1
    assert "FAIL" in out and "FAILED" in err and op in err


def test_gradcheck_command_fails_on_a_wrong_gradient(monkeypatch, capsys):
    """The full table: the broken op's row fails, the command exits 1, the other ops still pass (the
    objective's rows with TV may fail with it, as far as TV's share of their gradient shows it)."""
    import nstyle.reference.losses as losses
    real = losses.tv_loss

    def broken_tv(x):
        value, grad = real(x)
        return value, grad * 1.01  # a 1% error in one gradient must be caught
    monkeypatch.setattr(losses, "tv_loss", broken_tv)
    code, out, _ = run(capsys)
    assert code == 1
    failing = [line.split("  ")[0] for line in out.splitlines() if line.rstrip().endswith("FAIL")]
    assert failing[0] == "tv" and all(row.startswith("objective (") for row in failing[1:]), out


def test_old_names_still_select_their_checks(capsys):
    """--op content_loss and --op style_loss, the names before the terms had a registry, run the
    content and Gram terms' rows."""
    code, out, _ = run(capsys, "--op", "content_loss", "--op", "style_loss", "--op", "content")
    assert code == 0 and table_ops(out) == ["content", "gram"], out


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_a_broken_backward_sweep_is_caught(monkeypatch, capsys, engine):
    """The network-level checks see an error in one layer's backward, on either engine."""
    if engine == "reference":
        monkeypatch.setattr(ReferenceEngine, "relu_backward",
                            staticmethod(_scaled(ReferenceEngine.relu_backward, index=None)))
    else:
        import nstyle.cpu.engine as cpu_engine
        monkeypatch.setattr(cpu_engine, "pool_backward", _scaled(cpu_engine.pool_backward, index=None))
    code, out, _ = run(capsys, "--op", "vgg", "--op", "objective", "--engine", engine)
    assert code == 1
    rows = [line for line in out.splitlines()[1:] if line.startswith(("vgg", "objective"))]
    assert rows and all(line.rstrip().endswith("FAIL") for line in rows), out


def test_helpers_measure_what_they_claim():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(5)
    g = numerical_gradient(lambda z: float(np.sum(z ** 3)), x)
    assert rel_error(g, 3 * x ** 2) < 1e-8
    assert rel_error([1.0, 2.0], [1.0, 2.2]) == pytest.approx(0.2 / 2.2, rel=1e-12)
    assert directional_check(lambda z: float(z @ z), 2 * x, x, rng) < 1e-8
    assert directional_check(lambda z: float(z @ z), 3 * x, x, rng) > 0.1
    assert directional_check(lambda z: float(z @ z), 3 * x, x, rng, directions=3) > 0.1


def test_directional_check_accepts_either_side_of_a_kink():
    """At a kink the backward returns one of the one-sided derivatives; the check takes either (and the
    central difference across the kink, their mean), but not a value beyond them."""
    rng = np.random.default_rng(0)
    x = np.array([0.0, 1.0, 2.0, 3.0])  # x[0] sits on the kink of max(z[0], 0)
    c = np.array([1.0, -2.0, 0.5])
    f = lambda z: float(max(z[0], 0.0) + c @ z[1:])  # noqa: E731
    for left in (0.0, 1.0):  # relu_backward's choice (mask x > 0, so 0 here), or the other side's
        assert directional_check(f, np.r_[left, c], x, rng, directions=3) < 1e-9
    assert directional_check(f, np.r_[2.0, c], x, rng, directions=3) > 0.05
    assert directional_check(f, np.r_[0.0, 1.01 * c], x, rng, directions=3) > 1e-3


def test_table_format_has_one_row_per_check():
    rows = [{"op": "a", "shape": "2x2", "rel_error": 1e-9, "tol": 1e-7, "ok": True},
            {"op": "bb", "shape": "3", "rel_error": 1e-3, "tol": 1e-7, "ok": False}]
    lines = gradcheck.format_table(rows).splitlines()
    assert len(lines) == 3 and lines[1].rstrip().endswith("pass") and lines[2].rstrip().endswith("FAIL")


def test_run_all_refuses_unknown_ops():
    with pytest.raises(ValueError, match="valid: relu"):
        gradcheck.run_all(ops=["relu", "softmax"])
