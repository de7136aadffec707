"""Measurement noise models.

``sigma`` is always in [0, 1] pixel units (DESIGN.md): a measurement of an image in [0, 1] has
noise of standard deviation ``sigma``. Code that works in [-1, 1] converts in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GaussianNoise", "QUANTIZATION_SIGMA_8BIT", "quantization_sigma"]


def quantization_sigma(bits: int) -> float:
    """Std of uniform rounding noise of a ``bits``-bit image in [0, 1] units: ``1 / ((2^b - 1) sqrt(12))``."""
    return 1.0 / ((2**bits - 1) * math.sqrt(12.0))


QUANTIZATION_SIGMA_8BIT = quantization_sigma(8)


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise ``y = H x + sigma * n``.

    Args:
        sigma: Standard deviation in [0, 1] pixel units (0 for noiseless).
    """

    sigma: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"noise sigma must be a finite number >= 0 (in [0, 1] pixel units), got {self.sigma!r}")

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return ``clean + sigma * n`` with ``n`` drawn from ``generator``."""
        if self.sigma == 0:
            return clean.clone()
        n = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
        return clean + self.sigma * n
