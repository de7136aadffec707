"""Image quality metrics (PSNR, SSIM, optional LPIPS) and a noise-level estimate.

All images are ``(B, C, H, W)`` (or ``(C, H, W)``) in [0, 1] units; both arguments are clipped
to [0, 1] first, as they would be when written to a file. One number per call (the mean over
the batch).

* **PSNR** ``10 log10(1 / MSE)`` (:func:`kornia.metrics.psnr`, data range 1), over all pixels and
  channels; ``inf`` for identical images.
* **SSIM** (Wang et al. 2004) through :func:`kornia.metrics.ssim`: Gaussian window of 11 taps,
  sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, data range 1, averaged over the *valid* region
  (no padding) and over channels — the same numbers as scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1, channel_axis=0)``. Images smaller than 11 pixels use the largest odd window
  that fits.
* **LPIPS** (Zhang et al. 2018, AlexNet) only when the ``lpips`` package *and* the AlexNet
  weights are already on this machine (:func:`lpips_available`); it is never downloaded here.
  Otherwise :func:`lpips` returns ``None``.

Example:
    >>> import torch
    >>> from invkit.metrics import psnr, ssim
    >>> a = torch.full((1, 1, 16, 16), 0.5)
    >>> round(psnr(a + 0.1, a), 3)
    20.0
    >>> round(ssim(a, a), 6)
    1.0
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from invkit.bands import row_bands

__all__ = ["psnr", "ssim", "lpips", "lpips_available", "estimate_noise_sigma", "SSIM_WINDOW", "SSIM_BAND_PIXELS"]

#: Taps of the Gaussian SSIM window (sigma 1.5).
SSIM_WINDOW = 11


def _prepare(x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if x.dim() == 3:
        x = x[None]
    if target.dim() == 3:
        target = target[None]
    if x.shape[1:] != target.shape[1:]:
        raise ValueError(f"metric needs images of the same shape, got {tuple(x.shape)} and {tuple(target.shape)}")
    x = x.detach().to(torch.float64).clamp(0, 1)
    target = target.detach().to(device=x.device, dtype=torch.float64).clamp(0, 1)
    return x, target.expand_as(x)


def psnr(x: Tensor, target: Tensor) -> float:
    """Peak signal-to-noise ratio in dB for data range 1 (``inf`` when equal)."""
    from kornia.metrics import psnr as kpsnr

    x, target = _prepare(x, target)
    if torch.equal(x, target):
        return math.inf
    return float(kpsnr(x, target, 1.0))


#: Pixels of the SSIM map computed at once (all images and channels of a band of rows): bounds
#: the memory of scoring a multi-megapixel image, where kornia's whole-image SSIM holds about a
#: dozen float64 copies of it (over 3 GB at 12 MP).
SSIM_BAND_PIXELS = 1 << 21


def ssim(x: Tensor, target: Tensor, band_pixels: int = SSIM_BAND_PIXELS) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, valid region, data range 1).

    The map is computed on bands of rows (each with the ``window − 1`` rows of input below it
    that its valid region needs), so the result is the whole image's mean SSIM; the bands only
    bound the memory (``band_pixels`` map pixels at a time, at least ``4 (window − 1)`` rows so
    the overlap stays small; :func:`invkit.bands.row_bands`).
    """
    from kornia.metrics import ssim as kssim

    x, target = _prepare(x, target)
    side = min(x.shape[-2:])
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    if window < 1:
        raise ValueError(f"SSIM needs an image of at least 1x1 pixels, got {tuple(x.shape[-2:])}")
    b, c, h, w = x.shape
    rows, cols = h - window + 1, w - window + 1
    bands = row_bands(rows, window - 1, b * c * cols, band_pixels)
    if len(bands) == 1:
        return float(kssim(x, target, window, max_val=1.0, eps=0.0, padding="valid").mean())
    total = x.new_zeros(())
    for start, end in bands:
        stop = end + window - 1
        total += kssim(x[..., start:stop, :], target[..., start:stop, :], window, max_val=1.0, eps=0.0, padding="valid").sum()
    return float(total / (b * c * rows * cols))


def _alexnet_weights() -> Path | None:
    """The torchvision AlexNet weights in the torch hub cache, if present."""
    try:
        from torch.hub import get_dir
    except ImportError:  # pragma: no cover
        return None
    folder = Path(get_dir()) / "checkpoints"
    hits = sorted(folder.glob("alexnet-*.pth")) if folder.is_dir() else []
    return hits[0] if hits else None


@lru_cache(maxsize=1)
def lpips_available() -> bool:
    """Whether LPIPS can run without a download: the ``lpips`` package and cached AlexNet weights."""
    try:
        import lpips  # noqa: F401
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 - any import problem means "not available"
        return False
    return _alexnet_weights() is not None


@lru_cache(maxsize=1)
def _lpips_model() -> Any:
    import lpips as lpips_pkg

    return lpips_pkg.LPIPS(net="alex", verbose=False).eval()


def lpips(x: Tensor, target: Tensor) -> float | None:
    """LPIPS distance (AlexNet; lower is better), or ``None`` when it is not available locally."""
    if not lpips_available():
        return None
    x, target = _prepare(x, target)
    if x.shape[1] == 1:
        x, target = x.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)
    model = _lpips_model()
    with torch.no_grad():
        return float(model(x.float() * 2 - 1, target.float() * 2 - 1).mean())


def estimate_noise_sigma(y: Tensor, keep: Tensor | None = None) -> float:
    """Std of white Gaussian noise in an image, from the median absolute diagonal Haar detail (Donoho's MAD).

    ``HH = (a - b - c + d) / 2`` over 2x2 blocks is unit-gain for white noise and nearly zero on
    smooth (and blurred) content, so ``median(|HH|) / 0.6745`` estimates the noise std. Edges and
    texture bias it upwards; treat it as a hint, not a measurement.

    Args:
        y: The image ``(C, H, W)`` or ``(B, C, H, W)``.
        keep: Which pixels are measured (a bool tensor broadcastable to ``y``; a photo with holes):
            only 2x2 blocks of measured pixels count. None: all.
    """
    if y.dim() == 3:
        y = y[None]
    y = y.detach().to(torch.float64)
    h, w = (y.shape[-2] // 2) * 2, (y.shape[-1] // 2) * 2
    if h < 2 or w < 2:
        return 0.0
    y = y[..., :h, :w]
    hh = (y[..., 0::2, 0::2] - y[..., 0::2, 1::2] - y[..., 1::2, 0::2] + y[..., 1::2, 1::2]) / 2
    if keep is not None:
        k = torch.broadcast_to(keep.to(torch.bool).reshape((1,) * (4 - keep.dim()) + tuple(keep.shape)), y.shape[:2] + keep.shape[-2:])[..., :h, :w]
        whole = k[..., 0::2, 0::2] & k[..., 0::2, 1::2] & k[..., 1::2, 0::2] & k[..., 1::2, 1::2]
        hh = hh[whole]
        if hh.numel() == 0:
            return 0.0
    return float(hh.abs().median()) / 0.6745
