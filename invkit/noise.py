"""Measurement noise models: draw a noisy measurement, score one.

A :class:`NoiseModel` says how a measurement ``y`` arises from the clean measurement
``z = A(x)``: :meth:`~NoiseModel.sample` draws ``y`` given ``z``, :meth:`~NoiseModel.nll` is the
negative log-likelihood ``−log p(y | z)`` per batch row, :meth:`~NoiseModel.nll_grad` its
gradient with respect to ``z``, and :attr:`~NoiseModel.sigma` the standard deviation where one
exists (``None`` otherwise). Solvers that assume Gaussian noise require
:class:`GaussianNoise` (see :mod:`invkit.requirements`).

``sigma`` is always in [0, 1] pixel units (DESIGN.md): a measurement of an image in [0, 1] has
noise of standard deviation ``sigma``. Code that works in [-1, 1] converts in one place.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["NoiseModel", "GaussianNoise", "QUANTIZATION_SIGMA_8BIT", "quantization_sigma", "is_noise_sigma"]


def is_noise_sigma(value: object) -> bool:
    """Whether ``value`` is a valid noise standard deviation: a finite real number >= 0 (not a bool).

    The one rule for σ_y, used by :class:`GaussianNoise` and the runner's ``--sigma-y`` check.

    Example:
        >>> is_noise_sigma(0.05), is_noise_sigma(0), is_noise_sigma(-1.0), is_noise_sigma(True), is_noise_sigma(float("nan"))
        (True, True, False, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def quantization_sigma(bits: int) -> float:
    """Std of uniform rounding noise of a ``bits``-bit image in [0, 1] units: ``1 / ((2^b - 1) sqrt(12))``."""
    return 1.0 / ((2**bits - 1) * math.sqrt(12.0))


QUANTIZATION_SIGMA_8BIT = quantization_sigma(8)


class NoiseModel(ABC):
    """How a measurement ``y`` arises from a clean measurement ``z = A(x)``.

    Subclasses implement :meth:`sample`, :meth:`nll` and :meth:`nll_grad`; ``sigma`` is the
    noise standard deviation in [0, 1] pixel units when the model has one, else ``None``.
    """

    @property
    def sigma(self) -> float | None:  # pragma: no cover - overridden by the dataclass field where it exists
        """Noise standard deviation in [0, 1] pixel units, or ``None`` where the model has none."""
        return None

    @abstractmethod
    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A noisy measurement ``y`` given the clean one (same shape), drawn from ``generator``."""

    @abstractmethod
    def nll(self, y: Tensor, clean: Tensor) -> Tensor:
        """``−log p(y | clean)`` per batch row, shape ``(B,)`` (constants included)."""

    @abstractmethod
    def nll_grad(self, y: Tensor, clean: Tensor) -> Tensor:
        """``∇_clean (−log p(y | clean))``, the shape of ``clean``."""


@dataclass(frozen=True)
class GaussianNoise(NoiseModel):
    """Additive white Gaussian noise ``y = A(x) + sigma * n``, ``n ~ N(0, I)``.

    ``−log p(y | z) = ‖y − z‖² / (2σ²) + (m/2) log(2πσ²)`` per row (``m`` entries), with gradient
    ``(z − y) / σ²``. For ``σ = 0`` (noiseless) the likelihood is a point mass: :meth:`nll` is 0
    where ``y = z`` exactly and ``+inf`` elsewhere, and :meth:`nll_grad` raises.

    Args:
        sigma: Standard deviation in [0, 1] pixel units (0 for noiseless).
    """

    sigma: float = 0.0  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if not is_noise_sigma(self.sigma):
            raise ValueError(f"noise sigma must be a finite number >= 0 (in [0, 1] pixel units), got {self.sigma!r}")

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Return ``clean + sigma * n`` with ``n`` drawn from ``generator``."""
        if self.sigma == 0:
            return clean.clone()
        n = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device)
        return clean + self.sigma * n

    def nll(self, y: Tensor, clean: Tensor) -> Tensor:
        """``‖y − z‖² / (2σ²) + (m/2) log(2πσ²)`` per row (see the class docstring for σ = 0)."""
        r2 = (y - clean).reshape(y.shape[0], -1).square().sum(1)
        if self.sigma == 0:
            return torch.where(r2 == 0, torch.zeros_like(r2), torch.full_like(r2, math.inf))
        m = y[0].numel()
        s2 = self.sigma**2
        return r2 / (2 * s2) + 0.5 * m * math.log(2 * math.pi * s2)

    def nll_grad(self, y: Tensor, clean: Tensor) -> Tensor:
        """``(z − y) / σ²``.

        Raises:
            ValueError: ``σ = 0``: a noiseless likelihood has no gradient.
        """
        if self.sigma == 0:
            raise ValueError("noiseless Gaussian noise (sigma = 0) has no likelihood gradient; give the noise a sigma > 0")
        return (clean - y) / self.sigma**2
