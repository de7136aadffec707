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

__all__ = ["NoiseModel", "GaussianNoise", "PoissonNoise", "QUANTIZATION_SIGMA_8BIT", "quantization_sigma", "is_noise_sigma"]


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


@dataclass(frozen=True)
class PoissonNoise(NoiseModel):
    """Shot noise: ``y = clip(Poisson(rate · z) / rate, 0, 1)`` for a clean measurement ``z >= 0``.

    ``rate`` is in photons per unit intensity: a pixel of intensity ``z`` (in [0, 1] units)
    collects ``Poisson(rate · z)`` photons, so white (``z = 1``) gets ``rate`` on average and the
    noise std is ``√(z / rate)``. DPS's experiments (Chung et al. 2023, Sec. 4) use ``rate = 255``:
    255 photons at white. The clip to [0, 1] is the official DPS code's; it changes ``y`` only
    where ``z`` is near 1.

    Likelihood of the counts ``k = rate · y`` (the clip ignored): ``−log p(y | z) = Σ_j rate z_j −
    k_j log(rate z_j) + log k_j!``, ``+inf`` where ``z_j = 0 < k_j``; gradient ``rate (1 − y_j / z_j)``
    (taken as ``rate`` where ``z_j = 0``... and refused where ``z_j < 0``). :meth:`shot_weights` is the
    weighted least-squares approximation DPS uses instead (eq. 20).

    Args:
        rate: Photons per unit intensity, finite and > 0.

    Example:
        >>> import torch
        >>> noise = PoissonNoise(rate=255.0)
        >>> y = noise.sample(torch.full((1, 4), 0.5), torch.Generator().manual_seed(0))
        >>> counts = y * 255  # whole photons
        >>> bool((counts - counts.round()).abs().max() < 1e-4), noise.sigma is None
        (True, True)
    """

    rate: float = 255.0

    def __post_init__(self) -> None:
        rate = self.rate
        if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"Poisson noise rate must be a finite number > 0 (photons per unit intensity, e.g. 255), got {rate!r}")

    @property
    def sigma(self) -> None:
        """Poisson noise has no single standard deviation (it is ``√(z / rate)`` per entry)."""
        return None

    def _check_clean(self, clean: Tensor) -> None:
        if bool((clean < 0).any()):
            raise ValueError(
                f"Poisson noise needs a non-negative clean measurement A(x) (photon counts); its minimum is {float(clean.min()):.3g}"
            )

    def sample(self, clean: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``clip(Poisson(rate · clean) / rate, 0, 1)``, the photons drawn from ``generator``.

        Raises:
            ValueError: A negative entry of ``clean``.
        """
        self._check_clean(clean)
        lam = (self.rate * clean).to(torch.float64)
        counts = torch.poisson(lam, generator=generator)
        return (counts / self.rate).clamp(0.0, 1.0).to(clean.dtype)

    def nll(self, y: Tensor, clean: Tensor) -> Tensor:
        """``Σ_j rate z_j − k_j log(rate z_j) + log k_j!`` per row with ``k = rate · y`` (``+inf`` where ``z_j = 0 < k_j``)."""
        self._check_clean(clean)
        k = (self.rate * y).to(torch.float64)
        lam = (self.rate * clean).to(torch.float64)
        log_term = torch.where(k > 0, k * torch.log(torch.where(lam > 0, lam, torch.ones_like(lam))), torch.zeros_like(k))
        impossible = (lam == 0) & (k > 0)
        per = lam - log_term + torch.lgamma(k + 1.0)
        per = torch.where(impossible, torch.full_like(per, math.inf), per)
        return per.reshape(y.shape[0], -1).sum(1).to(y.dtype)

    def nll_grad(self, y: Tensor, clean: Tensor) -> Tensor:
        """``rate (1 − y_j / z_j)``.

        Raises:
            ValueError: An entry with ``z_j <= 0`` (the gradient is undefined or infinite there).
        """
        if bool((clean <= 0).any()):
            raise ValueError("the Poisson likelihood has no gradient where the clean measurement is <= 0")
        return self.rate * (1.0 - y / clean)

    def shot_weights(self, y: Tensor) -> Tensor:
        """DPS's weights (eq. 20): ``Λ_jj = 1 / (2 max(y_j, 1/rate))``.

        The shot-noise approximation ``Poisson(rate z) / rate ≈ N(z, y / rate)`` turns the
        likelihood into the weighted least squares ``‖y − z‖²_Λ`` (up to the factor ``rate`` that
        DPS's step size absorbs). Eq. 20's ``1/(2 y_j)`` is infinite at zero counts; the floor
        ``1/rate`` (one photon) bounds it by ``rate / 2``.
        """
        return 1.0 / (2.0 * torch.clamp(y, min=1.0 / self.rate))
