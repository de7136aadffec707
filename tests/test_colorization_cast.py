"""benchmarks/colorization_cast.py: the channel-mean split of colorization errors and its oracle rows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _scripts import load_module

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cast():
    return load_module("bench_colorization_cast", ROOT / "benchmarks" / "colorization_cast.py")


def test_mean_share_and_mean_replacement(cast):
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(3, 16, 16, generator=g)
    offset = torch.tensor([0.1, -0.1, 0.0]).view(3, 1, 1)
    assert cast.mean_share(truth + offset, truth) == pytest.approx(1.0)
    noise = 0.05 * torch.randn(3, 16, 16, generator=g)
    noise = noise - noise.mean(dim=(1, 2), keepdim=True)  # zero channel means: none of it is a cast
    assert cast.mean_share(truth + noise, truth) == pytest.approx(0.0, abs=1e-12)
    both = truth + offset + noise
    expected = float(offset.square().mean() / (offset.square().mean() + noise.square().mean()))
    assert cast.mean_share(both, truth) == pytest.approx(expected, rel=1e-5)
    fixed = cast.with_means_of(both, truth)
    torch.testing.assert_close(fixed.mean(dim=(1, 2)), truth.mean(dim=(1, 2)))
    torch.testing.assert_close(fixed - fixed.mean(dim=(1, 2), keepdim=True), both - both.mean(dim=(1, 2), keepdim=True))


def test_reads_the_benchmark_cache_and_scores_with_and_without_the_cast(cast, tmp_path, monkeypatch, capsys):
    from _eval_data import load_eval  # on sys.path once the script is loaded
    from default_prior import Cache

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"not really weights: only hashed")
    cache_path = tmp_path / "bench.json"
    cache = Cache(cache_path)
    cache.samples.mkdir(parents=True)
    truth = load_eval("coffee", cast.SIZE)
    g = torch.Generator().manual_seed(1)
    import hashlib

    method = f"ddrm20@{hashlib.sha256(weights.read_bytes()).hexdigest()[:12]}-clip"
    for k in range(3):  # a green cast on top of a little zero-mean noise
        noise = 0.02 * torch.randn(truth.shape, generator=g)
        sample = (truth + torch.tensor([-0.1, 0.2, -0.1]).view(3, 1, 1) + noise - noise.mean(dim=(1, 2), keepdim=True))
        np.save(cache.sample_path("coffee", "colorization", method, k), sample[None].numpy())
    monkeypatch.setattr(sys, "argv", ["colorization_cast.py", "--weights", str(weights), "--clip", "--cache", str(cache_path)])
    cast.main()
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| coffee |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "3"
    grey, grey_fixed, one = map(float, cells[2:5])
    share = float(cells[5].rstrip(" %"))
    one_fixed, mean_k, mean_fixed = map(float, cells[6:9])
    assert share > 90  # the cast dominates the error (clipping leaves a little of it in the rest)
    assert one_fixed > one + 10 and mean_fixed > mean_k + 10
    assert grey_fixed > grey  # coffee is far from grey: its true means alone are worth dB
    assert one_fixed > grey_fixed + 5  # the samples' inside is the truth's up to 0.02 noise: far above a flat colour
    assert "| astronaut | 0 |" in out  # images without cached samples are named, not skipped silently
    assert "above grey with the truth's means: one sample 1/1, mean of K 1/1" in out
