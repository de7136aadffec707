"""Analytic priors: Gaussians and Gaussian mixtures, whose MMSE denoisers are exact in closed form.

They are test beds for solvers (the exact posterior is known, see :mod:`invkit_solvers.exact`)
and simple priors in their own right. Both follow :class:`invkit.Prior`: ``denoise(x, sigma)``
takes ``x = x0 + sigma * n`` and ``sigma`` in [0, 1] pixel units and returns ``E[x0 | x]``.

**Gaussian** ``N(mu, Σ)`` with ``Σ = Q diag(lam) Qᵀ``, ``Q`` the columns of an orthogonal basis
(:mod:`invkit_priors.analytic.bases`)::

    denoise(x, sigma) = mu + Q diag(lam / (lam + sigma²)) Qᵀ (x - mu)

**Mixture** ``Σ_k w_k N(mu_k, Σ_k)``: the posterior is again a mixture, so::

    denoise(x, sigma) = Σ_k r_k(x, sigma) denoise_k(x, sigma),
    r_k ∝ w_k N(x; mu_k, Σ_k + sigma² I)

with the responsibilities ``r_k`` computed from log-densities in each component's own basis and
normalised with a log-sum-exp (reductions in float64 where the device has it).

Conventions shared by both:

* ``sigma`` is a float or a ``(B,)`` tensor (one level per batch element); ``sigma = 0`` returns
  ``x`` unchanged (the posterior of a noiseless observation is a point mass at it).
* ``sigma_grid`` is :func:`invkit.prior.ddpm_sigma_grid` (the 1000-level DDPM grid), so solvers
  such as DDRM use their default schedule with these priors as with a checkpoint.
* ``data_center`` is the average of the prior mean over pixels (for a mixture, of the mixture
  mean ``Σ_k w_k mu_k``); DDRM starts unobserved coefficients around it.
* Constants are kept in float64 on the CPU and cast to the input's device and dtype on first
  use (cached); everything is batched and differentiable in ``x``.
* A prior built without an image shape (e.g. ``GaussianPrior.isotropic(0.5, 0.04)`` or the
  CLI's ``kind=dct``) adapts to the shape of each ``x`` and builds its basis lazily, once per
  shape; one built with a shape refuses others.

Example:
    >>> import torch
    >>> from invkit_priors.analytic import GaussianPrior
    >>> prior = GaussianPrior.isotropic(mean=0.5, variance=0.04)
    >>> x = torch.full((1, 1, 2, 2), 0.9)
    >>> round(prior.denoise(x, 0.2)[0, 0, 0, 0].item(), 6)  # halfway back to the mean: 0.04 / (0.04 + 0.04)
    0.7
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import numpy as np
import torch
from torch import Tensor

from invkit.forward import Operator, Shape, as_shape
from invkit.params import Arg, float_tuple, validated
from invkit.prior import GaussianComponent, GaussianForm, Prior, ddpm_sigma_grid, sigma_rows

from .bases import DCTBasis, IdentityBasis, MatrixBasis, basis_shape

__all__ = [
    "GaussianPrior",
    "GaussianMixturePrior",
    "GaussianParts",
    "PowerLawSpectrum",
    "gaussian",
    "gaussian_mixture",
]

_LOG_2PI = math.log(2.0 * math.pi)

_DEFAULT_ALPHA = 1.0
_DEFAULT_CUTOFF = 1.0 / 32.0


def _acc_dtype(device: torch.device) -> torch.dtype:
    """Dtype for reductions of log-densities: float64 unless the device lacks it (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _noise_var(sigma: float | Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(s2, zero)``: per-sample ``sigma²`` as ``(B,)`` in ``x``'s dtype (zeros replaced by 1) and the mask of zeros."""
    if x.dim() != 4:
        raise ValueError(f"denoise: x must be a batch of images (B, C, H, W); got shape {tuple(x.shape)}")
    s = sigma_rows(sigma, x.shape[0]).to(device=x.device, dtype=x.dtype)
    s2 = s * s
    zero = s2 == 0
    return torch.where(zero, torch.ones_like(s2), s2), zero


def _as_float64(value: Any, what: str) -> Tensor:
    t = value.detach() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value, dtype=np.float64))
    t = t.to(device="cpu", dtype=torch.float64)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} contains NaN or inf")
    return t


#: A Gaussian prior resolved for one image shape: the core's :class:`invkit.prior.GaussianComponent`.
GaussianParts = GaussianComponent


class PowerLawSpectrum:
    """Natural-image-like eigenvalues in the per-channel DCT basis, for any image shape.

    ``lam(f) ∝ (1 + (f / cutoff)²)^(-alpha)`` with ``f = sqrt(f_h² + f_w²)`` the coefficient's
    frequency in cycles per pixel (:meth:`DCTBasis.frequencies`), scaled so the average
    eigenvalue (the average per-pixel variance, ``trace(Σ) / n``) equals ``variance``.
    ``alpha = 1`` gives power ``∝ 1/f²`` above the cutoff (the classic natural-image spectrum);
    ``alpha = 0`` is white noise. Every channel gets the same spectrum.

    Args:
        variance: Average eigenvalue (> 0).
        alpha: Decay exponent (>= 0).
        cutoff: Corner frequency in cycles per pixel (> 0).

    Example:
        >>> lam = PowerLawSpectrum(0.04, 1.0, 1 / 32)((1, 8, 8))
        >>> round(float(lam.mean()), 6), bool(lam[0] == lam.max())
        (0.04, True)
    """

    def __init__(self, variance: float, alpha: float = _DEFAULT_ALPHA, cutoff: float = _DEFAULT_CUTOFF) -> None:
        if not variance > 0 or not alpha >= 0 or not cutoff > 0:
            raise ValueError(f"PowerLawSpectrum: need variance > 0, alpha >= 0, cutoff > 0; got {variance}, {alpha}, {cutoff}")
        self.variance, self.alpha, self.cutoff = float(variance), float(alpha), float(cutoff)

    def __call__(self, shape: Shape) -> Tensor:
        fh, fw = DCTBasis(shape).frequencies()
        lam = (1.0 + (fh * fh + fw * fw) / self.cutoff**2) ** (-self.alpha)
        return lam * (self.variance / lam.mean())

    def __repr__(self) -> str:
        return f"PowerLawSpectrum(variance={self.variance}, alpha={self.alpha}, cutoff={self.cutoff})"


EigenSpec = float | Tensor | np.ndarray | Callable[[Shape], Tensor]


class GaussianPrior(Prior):
    """Gaussian prior ``N(mu, Q diag(lam) Qᵀ)`` with its exact MMSE denoiser.

    ``denoise(x, sigma) = mu + Q diag(lam / (lam + sigma²)) Qᵀ (x - mu)``: one ``Vt`` and one
    ``V`` of the basis per call (no basis at all for an isotropic covariance).

    Args:
        mean: A float (constant image) or a ``(C, H, W)`` tensor, in [0, 1] units.
        eigenvalues: A float (``lam I``: isotropic, or the same variance on every basis
            coordinate), an ``(n,)`` tensor (entry i belongs to basis coordinate i), or a
            callable ``shape -> (n,) tensor`` evaluated once per image shape.
        basis: ``None`` (pixel basis), an orthogonal basis object (``Vt``/``V`` and ``shape``,
            any :class:`invkit.SVDOperator` too), or a callable ``shape -> basis`` such as the
            class :class:`~invkit_priors.analytic.bases.DCTBasis`, evaluated once per image shape.
        shape: Image shape ``(C, H, W)``, needed only when nothing else fixes it (a tensor
            eigenvalue vector in the pixel basis); otherwise inferred, or left open.

    Use the constructors :meth:`isotropic`, :meth:`diagonal`, :meth:`full` and
    :meth:`power_law` for the common cases.

    Raises:
        ValueError: Negative or non-finite eigenvalues; inconsistent shapes.
    """

    name = "gaussian"

    def __init__(
        self,
        mean: float | Tensor | np.ndarray,
        eigenvalues: EigenSpec,
        basis: Any = None,
        *,
        shape: Sequence[int] | str | None = None,
    ) -> None:
        shapes: list[tuple[str, Shape]] = []
        if shape is not None:
            shapes.append(("shape", as_shape(shape)))
        # mean
        if isinstance(mean, (Tensor, np.ndarray)) and np.ndim(mean) > 0:
            m = _as_float64(mean, "GaussianPrior: mean")
            if m.dim() != 3:
                raise ValueError(f"GaussianPrior: mean must be a float or a (C, H, W) tensor; got shape {tuple(m.shape)}")
            shapes.append(("mean", as_shape(m.shape)))
            self._mean: float | Tensor = m
        else:
            value = float(mean)
            if not math.isfinite(value):
                raise ValueError(f"GaussianPrior: mean must be finite, got {mean!r}")
            self._mean = value
        # basis
        self._basis_factory: Callable[[Shape], Any] | None = None
        self._basis: Any = None
        if basis is not None:
            if isinstance(basis, Operator) and not hasattr(basis, "Vt"):
                raise TypeError(f"GaussianPrior: {basis.label} has no SVD to serve as a basis; wrap it in invkit.DenseSVD")
            if isinstance(basis, type) or not hasattr(basis, "Vt"):
                if not callable(basis):
                    raise TypeError(f"GaussianPrior: basis must be a basis object (Vt/V), a callable shape -> basis, or None; got {basis!r}")
                self._basis_factory = basis
            else:
                shapes.append(("basis", basis_shape(basis)))
                self._basis = basis
        # eigenvalues
        self._eig_factory: Callable[[Shape], Tensor] | None = None
        self._eig: float | Tensor
        if callable(eigenvalues) and not isinstance(eigenvalues, (Tensor, np.ndarray)):
            self._eig_factory = eigenvalues
            self._eig = float("nan")
        elif isinstance(eigenvalues, (Tensor, np.ndarray)) and np.ndim(eigenvalues) > 0:
            lam = _as_float64(eigenvalues, "GaussianPrior: eigenvalues").reshape(-1)
            if bool((lam < 0).any()):
                raise ValueError(f"GaussianPrior: eigenvalues must be >= 0 (a covariance is positive semi-definite); min is {float(lam.min()):.3g}")
            self._eig = lam
        else:
            value = float(eigenvalues)  # type: ignore[arg-type]
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"GaussianPrior: eigenvalue must be finite and >= 0, got {eigenvalues!r}")
            self._eig = value
        # shape
        fixed: Shape | None = None
        for what, s in shapes:
            if fixed is None:
                fixed = s
            elif s != fixed:
                raise ValueError(f"GaussianPrior: {what} is for images {s} but {shapes[0][0]} is for {fixed}")
        if isinstance(self._eig, Tensor):
            if fixed is None:
                raise ValueError("GaussianPrior: an eigenvalue vector needs an image shape; pass shape=(C, H, W), a mean image or a basis")
            if self._eig.numel() != math.prod(fixed):
                raise ValueError(f"GaussianPrior: {self._eig.numel()} eigenvalues for images {fixed} with n = {math.prod(fixed)} pixels")
        self.shape: Shape | None = fixed
        if fixed is not None:
            self.channels = fixed[0]
            self.image_size = (fixed[1], fixed[2])
        self.sigma_grid = ddpm_sigma_grid()
        self.data_center = float(self._mean.mean()) if isinstance(self._mean, Tensor) else float(self._mean)
        self._parts: dict[Shape, GaussianParts] = {}
        self._consts: dict[tuple[Shape, str, torch.device, torch.dtype], Tensor] = {}
        # N(m, lam I) with constant m and lam on any shape is denoised pixel by pixel: tiles change
        # nothing; a basis (DCT, ...), an image-shaped mean or a fixed shape ties it to the whole image
        self.tileable = (
            basis is None and fixed is None and isinstance(self._mean, float) and isinstance(self._eig, float) and self._eig_factory is None
        )

    # ------------------------------------------------------------------ constructors
    @classmethod
    def isotropic(cls, mean: float | Tensor = 0.5, variance: float = 0.04, shape: Sequence[int] | str | None = None) -> "GaussianPrior":
        """``N(mean, variance I)``: white Gaussian around a constant or given mean image."""
        return cls(mean, float(variance), None, shape=shape)

    @classmethod
    def diagonal(cls, mean: float | Tensor, eigenvalues: Tensor | np.ndarray, basis: Any) -> "GaussianPrior":
        """``N(mean, Q diag(eigenvalues) Qᵀ)`` with ``Q`` the given orthogonal basis (fixes the shape)."""
        return cls(mean, eigenvalues, basis)

    @classmethod
    def full(cls, mean: float | Tensor, covariance: Tensor | np.ndarray, shape: Sequence[int] | str | None = None, rtol: float = 1e-10) -> "GaussianPrior":
        """``N(mean, covariance)`` from an explicit ``n × n`` covariance (small ``n``).

        The covariance is symmetrised and eigendecomposed with ``torch.linalg.eigh`` in float64;
        eigenvalues down to ``-rtol * max`` are treated as round-off and clipped to 0.

        Raises:
            ValueError: Not square, shape mismatch, clearly not symmetric or not PSD.
        """
        cov = _as_float64(covariance, "GaussianPrior.full: covariance")
        if isinstance(mean, (Tensor, np.ndarray)) and np.ndim(mean) > 0:
            img = as_shape(np.shape(mean))
        elif shape is not None:
            img = as_shape(shape)
        else:
            raise ValueError("GaussianPrior.full: pass shape=(C, H, W) or a mean image")
        n = math.prod(img)
        if cov.shape != (n, n):
            raise ValueError(f"GaussianPrior.full: covariance has shape {tuple(cov.shape)}; expected ({n}, {n}) for images {img}")
        scale = float(cov.abs().max()) if n else 0.0
        asym = float((cov - cov.T).abs().max()) if n else 0.0
        if asym > 1e-8 * max(scale, 1e-300):
            raise ValueError(f"GaussianPrior.full: covariance is not symmetric (max |Σ - Σᵀ| = {asym:.3g})")
        lam, q = torch.linalg.eigh(0.5 * (cov + cov.T))
        top = float(lam.max()) if n else 0.0
        if n and float(lam.min()) < -rtol * max(top, 0.0) - 1e-300:
            raise ValueError(f"GaussianPrior.full: covariance is not positive semi-definite (eigenvalue {float(lam.min()):.3g}, largest {top:.3g})")
        return cls(mean, lam.clamp_min(0.0), MatrixBasis(q, img, atol=1e-8), shape=img)

    @classmethod
    def power_law(
        cls,
        mean: float | Tensor = 0.5,
        variance: float = 0.04,
        alpha: float = _DEFAULT_ALPHA,
        cutoff: float = _DEFAULT_CUTOFF,
        shape: Sequence[int] | str | None = None,
    ) -> "GaussianPrior":
        """Natural-image-like Gaussian: :class:`PowerLawSpectrum` eigenvalues in the per-channel DCT basis.

        Without ``shape`` (and with a constant mean) the basis and spectrum are built lazily for
        each image shape seen by :meth:`denoise`.
        """
        return cls(mean, PowerLawSpectrum(variance, alpha, cutoff), DCTBasis, shape=shape)

    # ------------------------------------------------------------------ resolution
    def parts(self, shape: Sequence[int] | None = None) -> GaussianParts:
        """Mean image, eigenvalues and basis for images of ``shape`` (float64, CPU; cached per shape).

        Raises:
            ValueError: The prior was built for another shape, or no shape is known.
        """
        if shape is None:
            if self.shape is None:
                raise ValueError("GaussianPrior: this prior adapts to any image shape; pass shape=(C, H, W)")
            shape = self.shape
        img = as_shape(tuple(shape))
        hit = self._parts.get(img)
        if hit is not None:
            return hit
        if self.shape is not None and img != self.shape:
            raise ValueError(f"GaussianPrior: built for images {self.shape}; got images {img}")
        n = math.prod(img)
        if isinstance(self._mean, Tensor):
            mean, mean_value = self._mean, None
        else:
            mean, mean_value = torch.full(img, self._mean, dtype=torch.float64), self._mean
        if self._basis is not None:
            basis = self._basis
        elif self._basis_factory is not None:
            basis = self._basis_factory(img)
            if basis_shape(basis) != img:
                raise ValueError(f"GaussianPrior: basis factory returned a basis for {basis_shape(basis)}; expected {img}")
        else:
            basis = IdentityBasis(img)
        iso: float | None = None
        if self._eig_factory is not None:
            lam = _as_float64(self._eig_factory(img), "GaussianPrior: eigenvalues").reshape(-1)
            if lam.numel() != n or bool((lam < 0).any()):
                raise ValueError(f"GaussianPrior: eigenvalue factory must return {n} values >= 0 for images {img}")
        elif isinstance(self._eig, Tensor):
            lam = self._eig
        else:
            lam = torch.full((n,), self._eig, dtype=torch.float64)
            iso = self._eig  # lam I is the same in every orthogonal basis
        parts = GaussianParts(img, mean, lam, basis, iso, mean_value)
        self._parts[img] = parts
        return parts

    def gaussian_form(self, shape: Sequence[int]) -> GaussianForm:
        """This Gaussian on ``shape`` (one component of weight 1): what the ``exact`` solver samples from."""
        return GaussianForm(torch.ones(1, dtype=torch.float64), (self.parts(shape),))

    def _const(self, parts: GaussianParts, key: str, like: Tensor) -> Tensor:
        slot = (parts.shape, key, like.device, like.dtype)
        hit = self._consts.get(slot)
        if hit is None:
            hit = getattr(parts, key).to(device=like.device, dtype=like.dtype)
            self._consts[slot] = hit
        return hit

    def mean_image(self, shape: Sequence[int] | None = None) -> Tensor:
        """The ``(C, H, W)`` mean, float64."""
        return self.parts(shape).mean.clone()

    def covariance(self, shape: Sequence[int] | None = None) -> Tensor:
        """The explicit ``n × n`` float64 covariance ``Q diag(lam) Qᵀ`` (small ``n`` only)."""
        p = self.parts(shape)
        if p.iso is not None:
            return torch.eye(p.n, dtype=torch.float64) * p.iso
        lam = p.eigenvalues
        # Row j of Vt(e_j) is Qᵀ e_j; scaling by lam and applying V gives Q diag(lam) Qᵀ e_j = Σ e_j.
        rows = p.basis.Vt(torch.eye(p.n, dtype=torch.float64).reshape(p.n, *p.shape)) * lam
        cov = p.basis.V(rows).reshape(p.n, p.n).to(torch.float64)
        return 0.5 * (cov + cov.T)

    # ------------------------------------------------------------------ denoiser
    def _denoise_ll(self, x: Tensor, s2: Tensor, loglik: bool) -> tuple[Tensor, Tensor | None]:
        """Denoised images and (optionally) ``log N(x; mu, Σ + s2 I)`` per sample; ``s2 > 0`` is ``(B,)``."""
        p = self.parts(tuple(x.shape[1:]))
        b = x.shape[0]
        mu: float | Tensor = p.mean_value if p.mean_value is not None else self._const(p, "mean", x)
        d = x - mu
        ll: Tensor | None = None
        acc = _acc_dtype(x.device)
        if p.iso is not None:
            var = p.iso + s2
            out = mu + (p.iso / var).view(b, 1, 1, 1) * d
            if loglik:
                da = d.reshape(b, -1).to(acc)
                va = var.to(acc)
                ll = -0.5 * ((da * da).sum(1) / va + p.n * (torch.log(va) + _LOG_2PI))
        else:
            lam = self._const(p, "eigenvalues", x)
            z = p.basis.Vt(d)
            var = lam + s2[:, None]
            out = mu + p.basis.V(z * (lam / var))
            if loglik:
                za, va = z.to(acc), var.to(acc)
                ll = -0.5 * ((za * za / va).sum(1) + (torch.log(va) + _LOG_2PI).sum(1))
        return out, ll

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Exact MMSE estimate ``E[x0 | x0 + sigma n = x]`` (see the class docstring).

        Args:
            x: ``(B, C, H, W)`` in [0, 1] units, any floating dtype and device.
            sigma: A float or a ``(B,)`` tensor, >= 0, in [0, 1] units.

        Returns:
            ``(B, C, H, W)``, same dtype and device as ``x``.
        """
        s2, zero = _noise_var(sigma, x)
        out, _ = self._denoise_ll(x, s2, loglik=False)
        return torch.where(zero.view(-1, 1, 1, 1), x, out)

    def log_density(self, x: Tensor, sigma: float | Tensor = 0.0) -> Tensor:
        """``log N(x; mu, Σ + sigma² I)`` per sample, ``(B,)`` (float64 where the device has it).

        With ``sigma = 0`` this needs every eigenvalue > 0.
        """
        s2, zero = _noise_var(sigma, x)
        s2 = torch.where(zero, torch.zeros_like(s2), s2)
        _, ll = self._denoise_ll(x, s2, loglik=True)
        assert ll is not None
        return ll

    def sample(
        self,
        batch: int,
        shape: Sequence[int] | None = None,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``batch`` images from the prior: ``mu + Q (sqrt(lam) * eps)``.

        Args:
            batch: Number of images.
            shape: Image shape, when the prior does not fix one.
            generator: Source of randomness (on ``device``).
            dtype: Output dtype.
            device: Output device.
        """
        p = self.parts(shape)
        eps = torch.randn((batch, p.n), generator=generator, dtype=dtype, device=device)
        return self._from_white(p, eps)

    def _from_white(self, p: GaussianParts, eps: Tensor) -> Tensor:
        mu: float | Tensor = p.mean_value if p.mean_value is not None else self._const(p, "mean", eps)
        if p.iso is not None:
            return mu + math.sqrt(p.iso) * eps.reshape(eps.shape[0], *p.shape)
        lam = self._const(p, "eigenvalues", eps)
        return mu + p.basis.V(torch.sqrt(lam) * eps)

    def __repr__(self) -> str:
        mean = f"mean image {tuple(self._mean.shape)}" if isinstance(self._mean, Tensor) else f"mean={self._mean}"
        if self._eig_factory is not None:
            eig = repr(self._eig_factory)
        elif isinstance(self._eig, Tensor):
            eig = f"{self._eig.numel()} eigenvalues"
        else:
            eig = f"variance={self._eig}"
        basis = self._basis if self._basis is not None else getattr(self._basis_factory, "__name__", self._basis_factory)
        return f"GaussianPrior({mean}, {eig}, basis={basis}, shape={self.shape})"


class GaussianMixturePrior(Prior):
    """Mixture of Gaussians ``Σ_k w_k N(mu_k, Σ_k)`` with its exact MMSE denoiser.

    ``denoise(x, sigma) = Σ_k r_k denoise_k(x, sigma)`` with responsibilities
    ``r_k ∝ w_k N(x; mu_k, Σ_k + sigma² I)`` (:meth:`responsibilities`), each log-density
    evaluated in the component's own basis and normalised with a log-sum-exp.

    Args:
        weights: ``K`` positive weights (normalised here).
        components: ``K`` :class:`GaussianPrior` instances, for compatible image shapes.

    Raises:
        ValueError: Lengths differ, a weight is not positive and finite, or components are
            built for different shapes.

    Example:
        >>> import torch
        >>> prior = GaussianMixturePrior([0.5, 0.5], [GaussianPrior.isotropic(0.2, 0.01), GaussianPrior.isotropic(0.8, 0.01)])
        >>> x = torch.full((1, 1, 4, 4), 0.75)
        >>> prior.responsibilities(x, 0.05)[0].round(decimals=4).tolist()
        [0.0, 1.0]
    """

    name = "gaussian_mixture"

    def __init__(self, weights: Sequence[float] | Tensor | np.ndarray, components: Sequence[GaussianPrior]) -> None:
        comps = list(components)
        w = _as_float64(weights, "GaussianMixturePrior: weights").reshape(-1)
        if len(comps) == 0:
            raise ValueError("GaussianMixturePrior: needs at least one component")
        if w.numel() != len(comps):
            raise ValueError(f"GaussianMixturePrior: {w.numel()} weights for {len(comps)} components")
        if not bool((w > 0).all()):
            raise ValueError(f"GaussianMixturePrior: weights must be > 0, got {w.tolist()}")
        for c in comps:
            if not isinstance(c, GaussianPrior):
                raise TypeError(f"GaussianMixturePrior: components must be GaussianPrior instances, got {type(c).__name__}")
        shapes = {c.shape for c in comps if c.shape is not None}
        if len(shapes) > 1:
            raise ValueError(f"GaussianMixturePrior: components are built for different image shapes {sorted(shapes)}")
        self.components: list[GaussianPrior] = comps
        self.weights: Tensor = w / w.sum()
        self.shape: Shape | None = shapes.pop() if shapes else None
        if self.shape is not None:
            self.channels = self.shape[0]
            self.image_size = (self.shape[1], self.shape[2])
        self.sigma_grid = ddpm_sigma_grid()
        self.data_center = float(sum(float(wk) * c.data_center for wk, c in zip(self.weights, comps)))
        self._logw: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def _log_weights(self, like: Tensor) -> Tensor:
        slot = (like.device, like.dtype)
        hit = self._logw.get(slot)
        if hit is None:
            hit = torch.log(self.weights).to(device=like.device, dtype=like.dtype)
            self._logw[slot] = hit
        return hit

    def _terms(self, x: Tensor, s2: Tensor) -> tuple[list[Tensor], Tensor]:
        outs, lls = [], []
        for c in self.components:
            out, ll = c._denoise_ll(x, s2, loglik=True)
            outs.append(out)
            lls.append(ll)
        logits = torch.stack(lls, dim=1)  # (B, K)
        logits = logits + self._log_weights(logits)
        return outs, torch.softmax(logits, dim=1)

    def responsibilities(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """``(B, K)`` posterior component probabilities ``r_k ∝ w_k N(x; mu_k, Σ_k + sigma² I)``.

        ``sigma = 0`` needs components with every eigenvalue > 0.
        """
        s2, zero = _noise_var(sigma, x)
        s2 = torch.where(zero, torch.zeros_like(s2), s2)
        return self._terms(x, s2)[1]

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """Exact MMSE estimate ``E[x0 | x0 + sigma n = x]`` (see the class docstring)."""
        s2, zero = _noise_var(sigma, x)
        outs, resp = self._terms(x, s2)
        resp = resp.to(x.dtype)
        out = sum(resp[:, k].view(-1, 1, 1, 1) * o for k, o in enumerate(outs))
        return torch.where(zero.view(-1, 1, 1, 1), x, out)  # type: ignore[arg-type]

    def gaussian_form(self, shape: Sequence[int]) -> GaussianForm:
        """The mixture on ``shape``: its weights and each component's Gaussian (the ``exact`` solver's input)."""
        return GaussianForm(self.weights.clone(), tuple(c.parts(shape) for c in self.components))

    def mean_image(self, shape: Sequence[int] | None = None) -> Tensor:
        """The mixture mean ``Σ_k w_k mu_k`` as ``(C, H, W)`` float64."""
        return sum(float(w) * c.mean_image(shape or self.shape) for w, c in zip(self.weights, self.components))  # type: ignore[return-value]

    def sample(
        self,
        batch: int,
        shape: Sequence[int] | None = None,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Draw ``batch`` images: a component index per image, then a Gaussian draw from it.

        Returns:
            ``(batch, C, H, W)`` samples.
        """
        shape = shape or self.shape
        parts = [c.parts(shape) for c in self.components]
        comp = torch.multinomial(self.weights.to(device=device or "cpu"), batch, replacement=True, generator=generator)
        eps = torch.randn((batch, parts[0].n), generator=generator, dtype=dtype, device=device)
        out = torch.empty((batch, *parts[0].shape), dtype=dtype, device=eps.device)
        for k, (c, p) in enumerate(zip(self.components, parts)):
            idx = torch.nonzero(comp == k, as_tuple=False).reshape(-1)
            if idx.numel():
                out[idx] = c._from_white(p, eps[idx])
        return out

    def __repr__(self) -> str:
        return f"GaussianMixturePrior(weights={[round(float(w), 6) for w in self.weights]}, {len(self.components)} components)"


# ---------------------------------------------------------------------- registered factories
@validated
def gaussian(
    kind: Annotated[
        str,
        Arg(
            "covariance: dct (natural-image-like power-law spectrum in the per-channel 2-D DCT basis) or isotropic (white noise around the mean)",
            choices=("isotropic", "dct"),
        ),
    ] = "dct",
    mean: Annotated[float, Arg("mean grey level of every pixel, [0, 1] units")] = 0.5,
    variance: Annotated[
        float, Arg("per-pixel variance in [0, 1] units squared (kind=dct: average over coefficients, trace / n)", min=0.0, min_inclusive=False)
    ] = 0.04,
    alpha: Annotated[
        float | None,
        Arg("kind=dct: decay exponent, lam ∝ (1 + (f / cutoff)²)^-alpha (default 1: power ∝ 1/f² at high f, like natural images)", min=0.0),
    ] = None,
    cutoff: Annotated[
        float | None, Arg("kind=dct: corner frequency f0 in cycles per pixel (default 1/32)", min=0.0, min_inclusive=False)
    ] = None,
) -> GaussianPrior:
    """Gaussian prior with exact denoiser: natural-image-like power-law spectrum in the DCT basis, or isotropic.

    ``kind=dct`` (default): eigenvalues
    ``lam ∝ (1 + (f / cutoff)²)^(-alpha)`` in the per-channel orthonormal 2-D DCT basis, ``f`` the
    coefficient's frequency in cycles per pixel, scaled so their average is ``variance``
    (:class:`PowerLawSpectrum`); samples look like smooth natural-image textures.
    ``kind=isotropic``: ``N(mean, variance I)`` (white noise around a grey image). Either way
    the prior adapts to any image shape (the DCT basis is built once per shape).
    ``alpha``/``cutoff`` apply to ``kind=dct`` only.

    Example:
        >>> from invkit.registry import get_registry
        >>> prior = get_registry().build("prior", "gaussian", ["kind=dct", "variance=0.02"])
        >>> prior.name, prior.data_center
        ('gaussian', 0.5)
    """
    if kind == "isotropic":
        given = [k for k, v in (("alpha", alpha), ("cutoff", cutoff)) if v is not None]
        if given:
            raise ValueError(f"gaussian: {', '.join(given)} only apply to kind=dct; add kind=dct or drop them")
        return GaussianPrior.isotropic(mean, variance)
    if kind == "dct":
        return GaussianPrior.power_law(
            mean,
            variance,
            _DEFAULT_ALPHA if alpha is None else alpha,
            _DEFAULT_CUTOFF if cutoff is None else cutoff,
        )
    raise ValueError(f"gaussian: unknown kind {kind!r}; expected isotropic or dct")


@validated
def gaussian_mixture(
    means: Annotated[
        Sequence[float], Arg("comma-separated grey levels, one flat mean image per component, [0, 1] units", type=float_tuple)
    ] = (0.3, 0.7),
    weights: Annotated[
        Sequence[float] | None, Arg("comma-separated positive component weights, normalised (default: equal)", type=float_tuple)
    ] = None,
    variance: Annotated[float, Arg("per-pixel variance of every component (isotropic, shared)", min=0.0, min_inclusive=False)] = 0.01,
) -> GaussianMixturePrior:
    """Mixture of isotropic Gaussians around flat grey images, with exact denoiser.

    Component k is ``N(means[k], variance I)`` (every pixel of its mean image is ``means[k]``),
    with weight ``weights[k]`` (normalised; equal by default). Adapts to any image shape.

    Example:
        >>> from invkit.registry import get_registry
        >>> prior = get_registry().build("prior", "gaussian_mixture", ["means=0.2,0.6", "weights=1,3"])
        >>> [round(float(w), 2) for w in prior.weights], round(prior.data_center, 2)
        ([0.25, 0.75], 0.5)
    """
    means = tuple(float(m) for m in means)
    if not means:
        raise ValueError("gaussian_mixture: give at least one mean, e.g. means=0.3,0.7")
    if weights is None:
        weights = (1.0,) * len(means)
    weights = tuple(float(w) for w in weights)
    if len(weights) != len(means):
        raise ValueError(f"gaussian_mixture: {len(weights)} weights for {len(means)} means; give one weight per mean")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"gaussian_mixture: weights must be positive, got {weights}")
    return GaussianMixturePrior(weights, [GaussianPrior.isotropic(m, variance) for m in means])

