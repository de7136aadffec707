"""benchmarks/train_precision.py: bfloat16 training's gradient against float32's, on real weights and crops."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
import torch

from _scripts import load_module

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench() -> ModuleType:
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
    assert len(stats.spread) == 2 and min(stats.spread) > 3 * max(stats.rel["bfloat16"])  # SGD's own noise is far larger
    # the float32 head is what makes the script's variant the closer one
    assert torch.tensor(stats.rel["bfloat16"]).median() < torch.tensor(stats.rel["bfloat16, bf16 head"]).median()
    assert stats.bias["bfloat16"] < stats.bias["bfloat16, bf16 head"]
    table = bench.rounding_table(stats)
    assert "| bfloat16 |" in table and "float32, one batch against another of its band" in table


def test_the_variants_predict_in_their_dtypes_and_the_speed_table_times_both_precisions(bench, capsys):
    model = bench._model(None)
    xt, t = torch.randn(1, 3, 32, 32), torch.tensor([500])
    with torch.no_grad():
        assert bench._predict(model, xt, t, "float32").dtype == torch.float32
        assert bench._predict(bench._model(None), xt, t, "bfloat16, bf16 head").dtype == torch.bfloat16
        assert bench._predict(bench._model(None), xt, t, "bfloat16").dtype == torch.float32
    levels = [torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)]
    bench.speed_table(levels, threads=[1], batches=[1], crop=32, steps=1, weights=None)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 1 | 1 |")]
    assert [r.split("|")[3].strip() for r in rows] == ["float32", "bfloat16"]
