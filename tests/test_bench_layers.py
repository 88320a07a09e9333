"""The per-layer race's machinery (bench/bench_layers.py), untimed: each engine's single layers compute
the network's layers, the check refuses a layer that computes something else, and the report's sums,
ratios and "as the network runs it" composition add up.

No timing is asserted (timed tests do not belong here); the race itself is run by hand.
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_layers  # noqa: E402
import layers_common as lc  # noqa: E402
import layers_nstyle as ln  # noqa: E402
import layers_report  # noqa: E402
import shared  # noqa: E402

SIZE = 32  # every layer down to conv5_1's 2 x 2 maps
PARAMS = shared.random_vgg_params(0)
PLAN = lc.layer_plan()


def float64_reference(index):
    kind, name = PLAN[index][:2]
    x, dy = lc.layer_inputs(PLAN[index], index, SIZE)
    p64 = {k: (w.astype(np.float64), b.astype(np.float64)) for k, (w, b) in PARAMS.items()}
    op = ln.layer("reference", kind, name, p64, x.astype(np.float64), dy.astype(np.float64))
    op.backward()
    return x, dy, op.out_forward(), op.out_backward()


@pytest.mark.parametrize("index", range(len(PLAN)), ids=[e[1] for e in PLAN])
def test_each_fast_and_reference_layer_matches_float64(index):
    kind, name = PLAN[index][:2]
    x, dy, y64, dx64 = float64_reference(index)
    for engine in ("cpu", "reference"):
        op = ln.layer(engine, kind, name, PARAMS, x, dy, below_relu=index > 0)
        op.forward()
        op.backward()
        assert lc.rel_diff(op.out_forward(), y64) < 1e-5, (engine, name)
        assert lc.rel_diff(op.out_backward(), dx64) < 1e-5, (engine, name)
        if op.fused is not None:  # the network's version: ReLU applied forward, the mask below backward
            op.fused.forward()
            op.fused.backward()
            assert lc.rel_diff(op.fused.out_forward(), np.maximum(y64, 0) if kind == "conv" else y64) < 1e-5
            assert lc.rel_diff(op.fused.out_backward(), dx64 * (x > 0) if index > 0 else dx64) < 1e-5


def test_layer_inputs_are_the_same_bits_every_time_and_relu_like_where_a_relu_feeds():
    a, b = lc.layer_inputs(PLAN[2], 2, SIZE), lc.layer_inputs(PLAN[2], 2, SIZE)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    x, _ = a  # conv1_2 reads relu1_1's output
    assert x.min() == 0 and 0.3 < (x == 0).mean() < 0.7
    assert lc.layer_inputs(PLAN[1], 1, SIZE)[0].min() < 0  # a ReLU reads signed input


@pytest.mark.parametrize("engine", ["cpu", "reference"])
def test_losses_match_float64(engine):
    taps, P, A = lc.loss_inputs(SIZE)
    ref = ln.losses("reference", *[{k: v.astype(np.float64) for k, v in d.items()} for d in (taps, P, A)])
    ref.backward()
    op = ln.losses(engine, taps, P, A)
    op.forward()
    assert abs(op.out_forward() - ref.out_forward()) < 1e-5 * ref.out_forward()
    op.backward()
    grads, ref_grads = op.out_backward(), ref.out_backward()
    assert sorted(grads) == sorted(shared.CONTENT_LAYERS + shared.STYLE_LAYERS)
    for name in grads:
        assert lc.rel_diff(grads[name], ref_grads[name]) < 1e-5, name


def test_torch_layers_match_float64():
    require_torch()
    import layers_torch
    for index in (0, 1, 4, 5):  # conv1_1, relu1_1, pool1, conv2_1
        kind, name = PLAN[index][:2]
        x, dy, y64, dx64 = float64_reference(index)
        op = layers_torch.layer(kind, name, PARAMS, x, dy)
        op.forward()
        op.backward()
        assert lc.rel_diff(op.out_forward(), y64) < 1e-5 and lc.rel_diff(op.out_backward(), dx64) < 1e-5, name


class Wrong:
    """A framework module whose convolutions are 1% off: the check must refuse them, untimed."""

    @staticmethod
    def layer(engine, kind, name, params, x, dy, below_relu=True):
        op = ln.layer(engine, kind, name, params, x, dy, below_relu)
        if kind == "conv":
            plain = op.out_forward
            op.out_forward = lambda: plain() * np.float32(1.01)
        return op


def test_the_check_refuses_a_layer_that_computes_something_else(tmp_path):
    args = argparse.Namespace(size=SIZE, seed=0, refdir=str(tmp_path), reps=1, warmup=0)
    _, _, start = shared.images(SIZE, 1)
    bench_layers.make_reference(args, PARAMS, start)
    good = bench_layers.run_layers(args, ln, "cpu", PARAMS, start)
    assert all(r["ok"] and len(r["forward_s"]) == 1 for r in good)
    bad = bench_layers.run_layers(args, Wrong, "cpu", PARAMS, start)
    refused = [r["layer"] for r in bad if not r["ok"]]
    assert refused == [n for k, n, _, _ in PLAN if k == "conv"]
    assert all("forward_s" not in r for r in bad if not r["ok"])


def fake_child(t_layer, t_fused, t_losses, t_whole):
    """One child's result where every layer takes t_layer forward and backward (fused: t_fused)."""
    layers = [{"layer": n, "kind": k, "ok": True, "input_shape": [1, 3, 8, 8], "forward_s": [t_layer],
               "backward_s": [t_layer], "check": {"forward": 0.0, "backward": 0.0},
               **({"fused": {"forward_s": [t_fused], "backward_s": [t_fused]}} if k != "relu" else {})}
              for k, n, _, _ in PLAN]
    return {"framework": "nstyle", "size": 64, "layers": layers, "peak_rss_mb": 1.0,
            "losses": {"ok": True, "check": {"total": 0.0}, "values_s": [t_losses / 2],
                       "values_and_grads_s": [t_losses]},
            "whole": {"times_s": [t_whole], "loss": 1.0}}


def test_the_report_adds_up_and_says_where_the_sum_is_off():
    n_conv, n_pool = (sum(k == kind for k, *_ in PLAN) for kind in ("conv", "pool"))
    whole = 2 * len(PLAN) * 0.01 + 0.02
    s = layers_report.summarise([fake_child(0.01, 0.012, 0.02, whole)], ["nstyle"], [64])["nstyle"]["64"]
    assert s["status"] == "ok" and s["sum_s"] == pytest.approx(whole) and s["ratio"] == pytest.approx(1.0)
    # as the network runs it: convolutions fused both ways, pools fused backward, ReLUs nothing of their
    # own but the last one's backward
    expected = n_conv * 2 * 0.012 + n_pool * (0.01 + 0.012) + 0.01 + 0.02
    assert s["network_sum_s"] == pytest.approx(expected)
    assert s["layers"]["relu1_1"]["network_forward_s"] == 0 and s["layers"]["relu5_1"]["network_backward_s"] == 0.01
    data = {"summary": {"nstyle": {"64": s}}, "skipped": [], "labels": bench_layers.LABELS}
    notes = layers_report.notes(data)
    assert len(notes) == 1 and "as the network runs them" in notes[0]  # 1.0x alone, off by > 10% fused


def test_markdown_and_csv_name_every_layer_the_machine_and_the_command():
    d = {"command": "python3 bench/bench_layers.py --sizes 64", "date": "2026-01-01T00:00:00+00:00",
         "cpu": {"model": "Test CPU", "flags": {"avx2": True}, "logical_cpus": 2}, "versions": {"numpy": "2"},
         "threads": 2, "load_average_before": [0.1], "load_average_after": [0.2], "repo_commit": "abc",
         "settings": {"sizes": [64]}, "tolerances": {"array_max_abs_rel": 1e-3}, "skipped": ["jax"],
         "labels": bench_layers.LABELS}
    d["summary"] = layers_report.summarise([fake_child(0.01, 0.01, 0.02, 1.0)], ["nstyle"], [64])
    md = layers_report.markdown(d)
    assert "Test CPU" in md and d["command"] in md and "2026-01-01" in md and "JAX: not installed" in md
    assert all(f"| {n} |" in md for _, n, _, _ in PLAN)
    rows = list(layers_report.csv_rows(d))
    assert len([r for r in rows if r[4] == "forward"]) == len(PLAN)
