"""The Prior protocol: a diffusion model seen as an MMSE denoiser ``denoise(x, sigma)``.

Units (DESIGN.md, written once here): images and sigmas are in **[0, 1] pixel units**. A prior
receives ``x = x0 + sigma * noise`` with ``x0`` in [0, 1] and returns its estimate of ``x0``
(variance-exploding view, as in Karras et al.'s EDM). An adapter for a model trained on
[-1, 1] converts inside (``x' = 2x - 1``, ``sigma' = 2 sigma``, and back) and reports its trained
sigma grid in [0, 1] units. Solvers never see parameterisations or timesteps.

The VP helpers below turn a DDPM/ADM beta schedule into that grid:
``sigma_t = sqrt((1 - alphā_t) / alphā_t) / data_scale`` with ``data_scale = 2`` for [-1, 1].

Example:
    >>> from invkit.prior import ddpm_sigma_grid
    >>> grid = ddpm_sigma_grid()
    >>> round(float(grid[0]), 4), round(float(grid[-1]), 1)
    (0.005, 78.7)
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .params import Param

__all__ = ["Prior", "GaussianComponent", "GaussianForm", "sigma_rows", "linear_betas", "alphas_bar_from_betas", "vp_sigma_grid", "ddpm_sigma_grid"]


@dataclass(frozen=True)
class GaussianComponent:
    """A Gaussian ``N(mean, Q diag(eigenvalues) Qᵀ)`` on one image shape (float64, CPU).

    Attributes:
        shape: Image shape ``(C, H, W)``.
        mean: ``(C, H, W)`` mean image.
        eigenvalues: ``(n,)`` covariance eigenvalues, entry i belonging to basis coordinate i.
        basis: Orthogonal basis ``Q`` on ``shape``: any object with ``Vt`` (images ``(B, C, H, W)``
            -> ``(B, n)``) and ``V`` (the inverse), as an :class:`invkit.SVDOperator` has.
        iso: The common eigenvalue when the covariance is ``iso * I`` (no basis needed), else None.
        mean_value: The mean as a float when it is constant, else None.
    """

    shape: tuple[int, int, int]
    mean: Tensor
    eigenvalues: Tensor
    basis: Any
    iso: float | None
    mean_value: float | None

    def __post_init__(self) -> None:
        n = math.prod(self.shape)
        if tuple(self.mean.shape) != tuple(self.shape) or tuple(self.eigenvalues.shape) != (n,):
            raise ValueError(
                f"GaussianComponent: mean {tuple(self.mean.shape)} and eigenvalues {tuple(self.eigenvalues.shape)} "
                f"do not fit the shape {tuple(self.shape)} (expected {tuple(self.shape)} and ({n},))"
            )
        if self.iso is None and self.basis is None:
            raise ValueError("GaussianComponent: a basis (Vt/V) is needed unless the covariance is iso * I")

    @property
    def n(self) -> int:
        """Number of pixels ``C H W``."""
        return math.prod(self.shape)

    def root_apply(self, w: Tensor) -> Tensor:
        """``L0 w = Q (sqrt(λ) * w)`` for rows ``w`` ``(N, n)``: flattened zero-mean draws (float64).

        With ``w ~ N(0, I)``, ``mean + L0 w`` is a sample of this Gaussian.
        """
        if self.iso is not None:
            return math.sqrt(self.iso) * w
        return self.basis.V(torch.sqrt(self.eigenvalues) * w).reshape(w.shape[0], self.n).to(torch.float64)


@dataclass(frozen=True)
class GaussianForm:
    """A prior's closed form as a Gaussian mixture ``Σ_k w_k N(mean_k, Σ_k)`` (one component: a Gaussian).

    Attributes:
        weights: ``(K,)`` float64 mixture weights, positive, summing to 1.
        components: The ``K`` components on one image shape.
    """

    weights: Tensor
    components: tuple[GaussianComponent, ...]

    def __post_init__(self) -> None:
        if len(self.components) < 1 or self.weights.shape != (len(self.components),):
            raise ValueError(f"GaussianForm: {tuple(self.weights.shape)} weights for {len(self.components)} components; give one weight per component")
        if not bool((self.weights > 0).all()) or abs(float(self.weights.sum()) - 1.0) > 1e-9:
            raise ValueError(f"GaussianForm: weights must be positive and sum to 1, got {self.weights.tolist()}")
        if len({tuple(c.shape) for c in self.components}) != 1:
            raise ValueError("GaussianForm: every component must be on the same image shape")


class Prior(ABC):
    """A denoiser ``denoise(x, sigma) -> x0_hat`` plus what solvers need to schedule it.

    Attributes:
        name: Registry name.
        params: Parameter schema of the factory (``--prior-arg k=v``).
        channels: Image channels the prior models, or ``None`` for any.
        image_size: Preferred ``(H, W)``, or ``None`` if fully convolutional / any.
        size_multiple: ``H`` and ``W`` must be multiples of it (a UNet with L resolution levels
            needs ``2^(L-1)``); 1 for any size. Sizing (padding, cropping, cost) reads only this.
        sigma_grid: Ascending trained noise levels in [0, 1] units (1000 for a DDPM/ADM
            checkpoint), or ``None`` for a continuous-sigma model.
        data_center: The centre ``c`` of the data in [0, 1] units (0.5 for a model trained on
            [-1, 1], whose 0 is mid-grey); DDRM starts unobserved coefficients around it.
        differentiable: ``denoise`` supports autograd with respect to ``x`` (solvers that need
            gradients through the prior require it; a wrapped external denoiser sets False).
        tileable: ``denoise`` may be evaluated on overlapping tiles of a large image
            (:class:`invkit.TiledPrior`) without changing what the prior means: a network trained
            on crops, whose output at a pixel depends on a neighbourhood. The runner's
            ``--tile auto`` tiles only such priors; a prior with a global model (an analytic
            Gaussian on the whole image) keeps False, and ``--tile on`` still forces tiles.
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    channels: int | None = None
    image_size: tuple[int, int] | None = None
    size_multiple: int = 1
    sigma_grid: Tensor | None = None
    data_center: float = 0.5
    differentiable: bool = True
    tileable: bool = False

    @property
    def sigma_min(self) -> float:
        """Smallest noise level the prior handles (in [0, 1] units)."""
        return float(self.sigma_grid[0]) if self.sigma_grid is not None else 0.002

    @property
    def sigma_max(self) -> float:
        """Largest noise level the prior handles (in [0, 1] units)."""
        return float(self.sigma_grid[-1]) if self.sigma_grid is not None else 80.0

    @abstractmethod
    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """MMSE estimate of ``x0`` from ``x = x0 + sigma * n``.

        Args:
            x: Noisy images ``(B, C, H, W)`` in [0, 1] units.
            sigma: A float, or a tensor of shape ``(B,)`` with one level per batch element.

        Returns:
            ``(B, C, H, W)`` estimate of the clean images.
        """

    def gaussian_form(self, shape: Sequence[int]) -> GaussianForm | None:
        """The prior's exact Gaussian (or Gaussian-mixture) form on images of ``shape``, if it has one.

        A prior that can state it (the analytic priors) returns a :class:`GaussianForm`; the
        ``exact`` solver samples the posterior from it. The default is ``None``: no closed form.

        Raises:
            ValueError: The prior has a closed form but not for this shape.
        """
        return None

    def __call__(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        return self.denoise(x, sigma)


def sigma_rows(sigma: float | Tensor, batch: int) -> Tensor:
    """The noise level of each of ``batch`` images as a float64 CPU ``(batch,)`` tensor, validated.

    The one reading of ``denoise``'s ``sigma`` argument for every prior: a number, a 0-d or
    one-element tensor (shared by the batch), or a tensor of ``batch`` elements (``(B,)`` or
    shaped to broadcast, e.g. ``(B, 1, 1, 1)``).

    Raises:
        ValueError: Another shape, or a value that is negative, NaN or infinite.

    Example:
        >>> sigma_rows(0.1, 2).tolist(), sigma_rows(torch.tensor([0.0, 0.5]), 2).tolist()
        ([0.1, 0.1], [0.0, 0.5])
    """
    s = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu()
    if s.numel() == 1:
        s = s.reshape(1).expand(batch)
    elif s.numel() == batch:
        s = s.reshape(batch)  # e.g. (B, 1, 1, 1), shaped to broadcast against x
    if s.shape != (batch,):
        raise ValueError(f"sigma has shape {tuple(s.shape)}; expected a float or a (B,) = ({batch},) tensor")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ValueError(f"sigma must be finite and >= 0 (in [0, 1] pixel units), got {s.tolist() if batch <= 8 else 'a bad value'}")
    return s.contiguous()


def linear_betas(steps: int = 1000, start: float = 1e-4, end: float = 0.02) -> Tensor:
    """The linear beta schedule of DDPM/ADM (float64)."""
    return torch.linspace(start, end, steps, dtype=torch.float64)


def alphas_bar_from_betas(betas: Tensor) -> Tensor:
    """Cumulative products ``alphā_t = prod_{s<=t} (1 - beta_s)``."""
    return torch.cumprod(1.0 - betas.to(torch.float64), dim=0)


def vp_sigma_grid(alphas_bar: Tensor, data_scale: float = 2.0) -> Tensor:
    """VE noise levels of a VP schedule, in [0, 1] units: ``sqrt((1 - ab) / ab) / data_scale``."""
    ab = alphas_bar.to(torch.float64)
    return torch.sqrt((1.0 - ab) / ab) / data_scale


def ddpm_sigma_grid(steps: int = 1000) -> Tensor:
    """Sigma grid of the linear 1e-4..0.02 schedule for a [-1, 1] model, in [0, 1] units."""
    return vp_sigma_grid(alphas_bar_from_betas(linear_betas(steps)))
