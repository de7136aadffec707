"""PSNR / SSIM against scikit-image, LPIPS never downloading, the noise-level estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from invkit import metrics
from invkit.metrics import estimate_noise_sigma, lpips, psnr, ssim


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    from skimage import data

    clean = torch.from_numpy(data.astronaut()[100:164, 200:248].astype(np.float64) / 255).permute(2, 0, 1)
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return clean, noisy.clamp(0, 1)


def test_psnr_and_ssim_equal_scikit_image(pair):
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    clean, noisy = pair
    assert psnr(noisy, clean) == pytest.approx(peak_signal_noise_ratio(clean.numpy(), noisy.numpy(), data_range=1), abs=1e-9)
    ref = structural_similarity(clean.numpy(), noisy.numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1, channel_axis=0)
    assert ssim(noisy, clean) == pytest.approx(ref, abs=1e-9)
    grey = clean[:1]
    ref = structural_similarity(grey[0].numpy(), noisy[0].numpy(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)
    assert ssim(noisy[:1][None], grey[None]) == pytest.approx(ref, abs=1e-9)


def test_metric_conventions(pair):
    clean, noisy = pair
    assert psnr(clean, clean) == math.inf and ssim(clean, clean) == pytest.approx(1.0)
    assert psnr(clean + 2.0, clean) == psnr(torch.ones_like(clean), clean)  # clipped to [0, 1] first
    assert 0 < ssim(clean[:, :5, :7], noisy[:, :5, :7]) <= 1  # smaller than the window: a smaller window
    with pytest.raises(ValueError, match="same shape"):
        psnr(clean, clean[:1])


def test_lpips_is_none_without_local_weights(pair, monkeypatch, tmp_path):
    monkeypatch.setattr(metrics, "_alexnet_weights", lambda: None)
    metrics.lpips_available.cache_clear()
    try:
        assert metrics.lpips_available() is False and lpips(*pair) is None
    finally:
        metrics.lpips_available.cache_clear()


def test_noise_estimate():
    g = torch.Generator().manual_seed(1)
    flat = torch.full((1, 3, 64, 64), 0.4, dtype=torch.float64)
    for sigma in (0.01, 0.05):
        est = estimate_noise_sigma(flat + sigma * torch.randn(flat.shape, generator=g, dtype=torch.float64))
        assert est == pytest.approx(sigma, rel=0.1)
    assert estimate_noise_sigma(flat) == 0.0 and estimate_noise_sigma(torch.zeros(1, 1, 1, 5)) == 0.0


@pytest.mark.parametrize("band_pixels, bands", [(1, 4), (3 * 38 * 50, 3), (10**9, 1)])
def test_ssim_on_bands_of_rows_equals_the_whole_image(band_pixels, bands):
    """Bands of 40 rows (the least; the last partial), 50 rows, and one band: the whole image's SSIM."""
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(3, 150, 48, generator=g, dtype=torch.float64)
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    rows, cols = 150 - 10, 48 - 10
    assert -(-rows // max(40, band_pixels // (3 * cols))) == bands
    whole = float(__import__("kornia").metrics.ssim(noisy[None], clean[None], 11, max_val=1.0, eps=0.0, padding="valid").mean())
    assert ssim(noisy, clean, band_pixels=band_pixels) == pytest.approx(whole, abs=1e-13, rel=0)
    batch = torch.stack([noisy, clean.flip(-1)])
    assert ssim(batch, clean, band_pixels=band_pixels) == pytest.approx(ssim(batch, clean, band_pixels=10**9), abs=1e-13, rel=0)
