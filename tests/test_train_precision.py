"""benchmarks/train_precision.py: bfloat16 training's gradient against float32's, on real weights and crops."""

from __future__ import annotations

from pathlib import Path

import pytest

from _scripts import load_module

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    return load_module("bench_train_precision", ROOT / "benchmarks" / "train_precision.py")


def test_bfloat16_gradients_are_close_to_float32_and_far_below_batch_noise(bench):
    levels = bench.training_levels([])
    if not levels:
        pytest.skip("scikit-image's training photos are not available")
    weights = ROOT / "plugins" / "invkit_priors" / "default" / "weights" / "default.safetensors"
    stats = bench.rounding_stats(levels, batches=4, crop=32, weights=weights, threads=1)
    for name in ("bfloat16", "bfloat16, bf16 head"):
        assert all(0 < r < 0.2 for r in stats.rel[name]), stats.rel[name]  # rounded, but little
        assert all(c > 0.98 for c in stats.cos[name])
        assert 0 < stats.systematic[name] <= 1 and stats.bias[name] > 0
    assert len(stats.spread) == 2 and min(stats.spread) > 3 * max(stats.rel["bfloat16"])  # SGD's own noise is far larger
    table = bench.rounding_table(stats)
    assert "| bfloat16 |" in table and "float32, one batch against another of its band" in table
