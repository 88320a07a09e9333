#!/usr/bin/env bash
# CI's check that the asv suite (bench/asv_benchmarks/) cannot rot: `asv check` imports every benchmark
# and checks its form, then three cheap benchmarks run once on this checkout (--quick; --dry-run: nothing
# is written to bench/asv_results/). Exit status: 0 when all ran, non-zero otherwise (asv's own: 1 for a
# broken suite, 2 for a benchmark that failed).
# Needs asv (pip install -e '.[bench]') and the checkout's git repository (asv reads the project from
# it); the benchmarks use nstyle from this checkout and seeded random weights, no download.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v asv > /dev/null; then
    echo "asv_check: asv is not installed (pip install -e '.[bench]')" >&2
    exit 2
fi
asv machine --yes > /dev/null  # asv wants a description of the machine (~/.asv-machine.json) first
asv check --python=same
asv run --python=same --quick --dry-run --show-stderr \
    --bench 'Evaluation.time_value_and_grad\(128\)' \
    --bench 'Layer.time_backward\(.cpu-fused., .conv2_1.\)' \
    --bench 'LbfgsbIterations.time_ten_iterations\(.nstyle., 256\)'
