"""The ``exact`` solver: exact posterior sampling for Gaussian and Gaussian-mixture priors.

It takes any prior that states its closed form (:meth:`invkit.Prior.gaussian_form`, the
``gaussian_prior`` capability), not particular prior classes.

For a linear operator ``A`` (materialised as a dense ``m × n`` float64 matrix with
:func:`invkit.dense.matrix_of`), Gaussian noise ``y = A x + sigma_y n`` (``sigma_y`` in [0, 1]
pixel units, possibly 0) and a Gaussian prior ``N(mu, Σ)``, ``Σ = Q diag(lam) Qᵀ``, the
posterior is Gaussian with::

    mean = mu + Σ Aᵀ (A Σ Aᵀ + sigma_y² I)⁺ (y - A mu)
    cov  = Σ - Σ Aᵀ (A Σ Aᵀ + sigma_y² I)⁺ A Σ

**How it is computed.** Write ``x = mu + L0 w`` with ``L0 = Q diag(sqrt(lam))`` and
``w ~ N(0, I)``, and take the thin SVD ``B = A L0 = U diag(s) Vh`` (``k = min(m, n)``
singular triplets, ``Vh`` with orthonormal rows). In these whitened
coordinates the posterior is ``w | y ~ N(w̄, R²)`` with::

    w̄ = Vhᵀ diag(s / (s² + sigma_y²)) Uᵀ (y - A mu)
    R  = I - Vhᵀ diag(1 - sqrt(f)) Vh,   f = sigma_y² / (s² + sigma_y²)

(``R`` is the symmetric square root of ``I - Bᵀ (B Bᵀ + sigma_y² I)⁺ B``). For ``sigma_y = 0``
the singular values at or below ``max(s) · max(m, n) · eps`` count as zero: their
coefficients get ``1/s → 0`` and ``f = 1``, which is the pseudo-inverse of a rank-deficient
``A Σ Aᵀ`` (a measurement outside its range is projected onto it). Then
``mean = mu + L0 w̄``, ``cov = (L0 R)(L0 R)ᵀ`` (positive semi-definite by construction, no
subtraction), and exact samples are ``mu + L0 (w̄ + R eps)``. Cost: one SVD of an ``m × n``
matrix per prior component, ``O(m n min(m, n))``; sampling is ``O(n k)`` per sample plus a basis
transform. This is the formula above without ever forming ``(A Σ Aᵀ + sigma_y² I)⁺``, whose
condition number is the square of ``B``'s.

**Mixtures** ``Σ_k w_k N(mu_k, Σ_k)``: the posterior is the mixture of the component posteriors
with weights ``π_k ∝ w_k N(y; A mu_k, A Σ_k Aᵀ + sigma_y² I)`` (log-densities from the same
SVDs, normalised with a log-sum-exp). Samples draw the component per measurement with the
generator, then a Gaussian sample; the posterior mean and covariance follow from the law of
total variance. With ``sigma_y = 0`` the evidence is the limit ``sigma_y → 0``: among the
components whose support ``y - A mu_k ∈ range(A Σ_k Aᵀ)`` fits best, those of lowest rank win and
are weighed by their densities on that support (for full-rank ``Σ_k`` every component has
the support ``range(A)``, so this is the ordinary density of the projected measurement).

Everything is computed in float64 on the CPU (images of at most ``max_size = 4096`` pixels);
samples come back on ``y``'s device and in its dtype. Randomness only through the
``generator`` (on ``y``'s device type): one ``randn`` of shape ``(B, n)`` (after, for mixtures
with more than one component, one ``multinomial`` draw of the components), so the same seed
gives the same samples bit for bit; or, with one generator per batch row, row ``b``'s component
and ``randn(n)`` from ``generator[b]`` alone.

Example:
    >>> import torch
    >>> from invkit import Problem, GaussianNoise
    >>> from invkit_operators.denoising import Denoising
    >>> from invkit_priors.analytic import GaussianPrior
    >>> from invkit_solvers.exact import ExactSolver, gaussian_posterior
    >>> prior = GaussianPrior.isotropic(0.5, 0.04)
    >>> problem = Problem(Denoising((1, 2, 2)), torch.full((1, 1, 2, 2), 0.9), GaussianNoise(0.2))
    >>> mean, cov = gaussian_posterior(problem, prior)
    >>> [round(v, 6) for v in mean[0].tolist()], round(float(cov[0, 0]), 6)
    ([0.7, 0.7, 0.7, 0.7], 0.02)
    >>> result = ExactSolver().solve(problem, prior, generator=torch.Generator().manual_seed(0))
    >>> result.x.shape
    torch.Size([1, 1, 2, 2])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any

import torch
from torch import Tensor

from invkit.dense import DEFAULT_MAX_SIZE, DenseSizeError, DenseSVD, matrix_of
from invkit.forward import LinearOperator, Shape
from invkit.noise import GaussianNoise
from invkit.params import Arg
from invkit.prior import GaussianComponent, GaussianForm, Prior
from invkit.problem import Problem
from invkit.random import Generators, randn_rows, resolve_generator
from invkit.requirements import Capability
from invkit.solver import Callback, Result, Solver, Step

__all__ = [
    "ExactSolver",
    "ExactPosterior",
    "GaussianComponentPosterior",
    "exact_posterior",
    "gaussian_posterior",
    "posterior_moments",
    "repeat_measurements",
    "simulate_problem",
]

_F64 = torch.float64
_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------- Problem helpers
def repeat_measurements(problem: Problem, count: int) -> Problem:
    """The same problem with every measurement repeated ``count`` times (consecutively).

    The ``exact`` solver returns one sample per measurement, so this is how to draw ``count``
    posterior samples per measurement: sample ``b * count + j`` belongs to measurement ``b``.

    Example:
        >>> import torch
        >>> from invkit import Problem
        >>> from invkit_operators.denoising import Denoising
        >>> repeat_measurements(Problem(Denoising((1, 2, 2)), torch.zeros(2, 1, 2, 2)), 3).y.shape
        torch.Size([6, 1, 2, 2])
    """
    return problem.repeat(count)


def simulate_problem(
    operator: LinearOperator,
    x: Tensor,
    sigma_y: float = 0.0,
    generator: torch.Generator | None = None,
) -> Problem:
    """Measure clean images: ``Problem(operator, operator(x) + sigma_y n, GaussianNoise(sigma_y))`` (:meth:`invkit.Problem.simulate`)."""
    return Problem.simulate(operator, x, GaussianNoise(float(sigma_y)), generator)


# ---------------------------------------------------------------------- posterior
@dataclass
class GaussianComponentPosterior:
    """Posterior of one Gaussian prior component, for every measurement of a batch (float64, CPU).

    Attributes:
        parts: The prior component resolved for the image shape.
        mean: ``(B, n)`` posterior means.
        vh: ``(k, n)`` right singular vectors of ``A L0`` (orthonormal rows).
        singular_values: ``(k,)`` singular values of ``A L0``.
        shrink: ``(k,)`` ``1 - sqrt(f)``: how much of the prior spread each direction loses.
        log_evidence: ``(B,)`` ``log N(y; A mu, A Σ Aᵀ + sigma_y² I)`` (for ``sigma_y = 0``: the
            density on the support, see :attr:`rank` and :attr:`off_support`).
        rank: Number of singular values counted as non-zero.
        off_support: ``(B,)`` norm of the part of ``y - A mu`` outside ``range(A Σ Aᵀ)``
            (only meaningful for ``sigma_y = 0``).
    """

    parts: GaussianComponent
    mean: Tensor
    vh: Tensor
    singular_values: Tensor
    shrink: Tensor
    log_evidence: Tensor
    rank: int
    off_support: Tensor

    def root_apply(self, eps: Tensor) -> Tensor:
        """``L0 R eps`` for rows ``eps`` ``(N, n)``: zero-mean draws with this covariance."""
        w = eps - ((eps @ self.vh.T) * self.shrink) @ self.vh
        return self.parts.root_apply(w)

    def covariance(self) -> Tensor:
        """The ``(n, n)`` posterior covariance ``(L0 R)(L0 R)ᵀ``."""
        n = self.parts.n
        lt = self.root_apply(torch.eye(n, dtype=_F64))  # row j = L0 R e_j = column j of L0 R (R symmetric)
        cov = lt.T @ lt
        return 0.5 * (cov + cov.T)


@dataclass
class ExactPosterior:
    """Exact posterior of an analytic prior given a batch of ``B`` measurements.

    Attributes:
        shape: Image shape ``(C, H, W)``.
        sigma_y: Measurement noise std.
        components: One :class:`GaussianComponentPosterior` per prior component.
        weights: ``(B, K)`` posterior component probabilities (all ones for ``K = 1``).
    """

    shape: Shape
    sigma_y: float
    components: list[GaussianComponentPosterior]
    weights: Tensor
    _cov_cache: dict[int, Tensor] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        """Number of pixels."""
        return math.prod(self.shape)

    @property
    def mean(self) -> Tensor:
        """``(B, n)`` posterior means ``Σ_k π_k m_k``."""
        return sum(self.weights[:, k : k + 1] * c.mean for k, c in enumerate(self.components))  # type: ignore[return-value]

    def component_covariance(self, k: int) -> Tensor:
        """``(n, n)`` covariance of component ``k``'s posterior (the same for every measurement)."""
        if k not in self._cov_cache:
            self._cov_cache[k] = self.components[k].covariance()
        return self._cov_cache[k]

    def covariance(self) -> Tensor:
        """``(B, n, n)`` posterior covariances (law of total variance for mixtures)."""
        mean = self.mean
        b, n = mean.shape
        out = torch.zeros(b, n, n, dtype=_F64)
        for k, c in enumerate(self.components):
            pi = self.weights[:, k]
            dev = c.mean - mean
            out += pi[:, None, None] * (self.component_covariance(k)[None] + dev[:, :, None] * dev[:, None, :])
        return 0.5 * (out + out.transpose(1, 2))

    def sample(self, generator: Generators | None = None) -> tuple[Tensor, Tensor]:
        """One exact sample per measurement.

        Draws, in this order: for ``K > 1`` one ``torch.multinomial`` of the components,
        then one ``torch.randn((B, n))`` (both on the generator's device). With one generator
        per row, row ``b`` draws its component and then its ``randn(n)`` from ``generator[b]``.

        Returns:
            ``(samples (B, n) float64, component index (B,) int64)``.
        """
        b, n = self.weights.shape[0], self.n
        if generator is not None and not isinstance(generator, torch.Generator):
            gens = list(generator)
            if len(gens) != b:
                raise ValueError(f"generator: {len(gens)} generators for a batch of {b}; pass one per batch row")
            rows = [self._sample_row(i, g) for i, g in enumerate(gens)]
            comp = torch.tensor([c for c, _ in rows], dtype=torch.long)
            eps = torch.stack([e for _, e in rows]) if rows else torch.empty(0, n, dtype=_F64)
        else:
            device = generator.device if generator is not None else torch.device("cpu")
            if len(self.components) > 1:
                comp = torch.multinomial(self.weights.to(device), 1, replacement=True, generator=generator).reshape(b).cpu()
            else:
                comp = torch.zeros(b, dtype=torch.long)
            eps = torch.randn((b, n), generator=generator, dtype=_F64, device=device).cpu()
        out = torch.empty(b, n, dtype=_F64)
        for k, c in enumerate(self.components):
            idx = torch.nonzero(comp == k, as_tuple=False).reshape(-1)
            if idx.numel():
                out[idx] = c.mean[idx] + c.root_apply(eps[idx])
        return out, comp

    def _sample_row(self, row: int, generator: torch.Generator) -> tuple[int, Tensor]:
        comp = 0
        if len(self.components) > 1:
            comp = int(torch.multinomial(self.weights[row : row + 1].to(generator.device), 1, generator=generator))
        return comp, randn_rows(generator, (1, self.n), dtype=_F64, device=generator.device)[0].cpu()


def _gaussian_form(prior: Prior, op: LinearOperator) -> GaussianForm:
    form_of = getattr(prior, "gaussian_form", None)
    try:
        form = form_of(op.in_shape) if form_of is not None else None
    except ValueError as exc:
        raise ValueError(f"solver 'exact': prior does not fit {op.label}: {exc}") from None
    if form is not None and any(tuple(c.shape) != tuple(op.in_shape) for c in form.components):
        raise ValueError(f"solver 'exact': the prior's Gaussian form is for images {form.components[0].shape}, not {op.label}")
    if form is None:
        raise TypeError(
            f"solver 'exact' needs a prior with a known Gaussian form (Prior.gaussian_form), such as the analytic "
            f"priors 'gaussian' and 'gaussian_mixture'; got {type(prior).__name__} (prior '{getattr(prior, 'name', '')}'). "
            f"For other priors use a diffusion solver such as 'ddrm'"
        )
    return form


def _dense_matrix(op: LinearOperator, max_size: int) -> Tensor:
    n, m = op.in_numel, op.out_numel
    if n > max_size or m > max_size:
        raise ValueError(
            f"solver 'exact': {op.label} has n = {n} pixels and m = {m} measurements; the exact posterior "
            f"materialises dense n x n and m x n matrices and is limited to {max_size} per side. Use a smaller "
            f"image (e.g. 1 x 64 x 64 = 4096) or pass max_size= explicitly"
        )
    if isinstance(op, DenseSVD):
        return torch.from_numpy(op.matrix).to(_F64)
    try:
        return torch.from_numpy(matrix_of(op, max_size=max_size))
    except DenseSizeError as exc:  # pragma: no cover - guarded above
        raise ValueError(f"solver 'exact': {exc}") from None


def _component_posterior(a: Tensor, y: Tensor, parts: GaussianComponent, sigma_y: float) -> GaussianComponentPosterior:
    m, n = a.shape
    mu = parts.mean.reshape(n)
    if parts.iso is not None:
        b_mat = a * math.sqrt(parts.iso)
    else:
        aq = parts.basis.Vt(a.reshape(m, *parts.shape)).reshape(m, n).to(_F64)  # row i = Qᵀ a_i, i.e. A Q
        b_mat = aq * torch.sqrt(parts.eigenvalues)
    u, s, vh = torch.linalg.svd(b_mat, full_matrices=False)
    r = y - mu @ a.T  # (B, m)
    c = r @ u  # (B, k)
    k = s.numel()
    if sigma_y > 0:
        s2y = sigma_y * sigma_y
        denom = s * s + s2y
        coef = s / denom
        f = s2y / denom
        r_perp = r - c @ u.T
        quad = (c * c / denom).sum(1) + (r_perp * r_perp).sum(1) / s2y
        logdet = torch.log(denom).sum() + (m - k) * math.log(s2y)
        log_ev = -0.5 * (quad + logdet + m * _LOG_2PI)
        rank = k
    else:
        tol = float(s.max()) * max(m, n) * torch.finfo(_F64).eps if k else 0.0
        keep = s > tol
        safe = torch.where(keep, s, torch.ones_like(s))
        coef = torch.where(keep, 1.0 / safe, torch.zeros_like(s))
        f = torch.where(keep, torch.zeros_like(s), torch.ones_like(s))
        ck = c * keep
        r_perp = r - ck @ u.T
        rank = int(keep.sum())
        quad = (ck * coef).pow(2).sum(1)
        logdet = (torch.log(safe * safe) * keep).sum()
        log_ev = -0.5 * (quad + logdet + rank * _LOG_2PI)
    w_mean = (c * coef) @ vh
    return GaussianComponentPosterior(
        parts=parts,
        mean=mu + parts.root_apply(w_mean),
        vh=vh,
        singular_values=s,
        shrink=1.0 - torch.sqrt(f),
        log_evidence=log_ev,
        rank=rank,
        off_support=torch.linalg.vector_norm(r_perp, dim=1),
    )


def _mixture_weights(prior_w: Tensor, comps: list[GaussianComponentPosterior], y: Tensor, a: Tensor, sigma_y: float) -> Tensor:
    logits = torch.stack([c.log_evidence for c in comps], dim=1) + torch.log(prior_w)[None]  # (B, K)
    if sigma_y == 0 and len(comps) > 1:
        # Limit sigma_y -> 0: the density of component k behaves like
        # sigma_y^-(m - rank_k) exp(-off_k² / (2 sigma_y²)) times its density on the support.
        off = torch.stack([c.off_support for c in comps], dim=1)  # (B, K)
        scale = 1.0 + torch.linalg.vector_norm(y, dim=1) + max(float(torch.linalg.vector_norm(c.parts.mean.reshape(-1) @ a.T)) for c in comps)
        fits = off <= off.min(dim=1, keepdim=True).values + 1e-8 * scale[:, None]
        ranks = torch.tensor([c.rank for c in comps], dtype=torch.long)[None].expand_as(off)
        big = torch.iinfo(torch.long).max
        min_rank = torch.where(fits, ranks, torch.full_like(ranks, big)).min(dim=1, keepdim=True).values
        allowed = fits & (ranks == min_rank)
        logits = torch.where(allowed, logits, torch.full_like(logits, -math.inf))
    return torch.softmax(logits, dim=1)


def exact_posterior(problem: Problem, prior: Prior, max_size: int = DEFAULT_MAX_SIZE) -> ExactPosterior:
    """The exact posterior of ``prior`` given ``problem`` (see the module docstring).

    Args:
        problem: Linear operator, measurements ``(B, *out_shape)`` and Gaussian noise.
        prior: Any prior with a Gaussian form (:meth:`invkit.Prior.gaussian_form`).
        max_size: Largest ``n`` (and ``m``) to materialise.

    Raises:
        TypeError: The prior states no Gaussian form, the operator is not linear, or the noise is not Gaussian.
        ValueError: Too large, or the prior's form does not fit the image shape.
    """
    if not isinstance(problem.noise, GaussianNoise):
        raise TypeError(f"solver 'exact' needs Gaussian measurement noise (invkit.GaussianNoise); got {type(problem.noise).__name__}")
    op = problem.operator
    if not isinstance(op, LinearOperator):
        raise TypeError(f"solver 'exact' needs a linear operator; {op.label} is not linear")
    shape = op.in_shape
    form = _gaussian_form(prior, op)
    parts = list(form.components)
    a = _dense_matrix(op, max_size)
    sigma_y = problem.sigma_y
    y = problem.y.detach().reshape(problem.y.shape[0], -1).to(device="cpu", dtype=_F64)
    posts = [_component_posterior(a, y, p, sigma_y) for p in parts]
    if len(parts) > 1:
        weights = _mixture_weights(form.weights, posts, y, a, sigma_y)
    else:
        weights = torch.ones(y.shape[0], 1, dtype=_F64)
    return ExactPosterior(shape, sigma_y, posts, weights)


def gaussian_posterior(problem: Problem, prior: Prior, max_size: int = DEFAULT_MAX_SIZE) -> tuple[Tensor, Tensor]:
    """Posterior mean and covariance for a Gaussian prior (a Gaussian form with one component).

    Returns:
        ``(mean (B, n), cov (n, n))`` in float64, images flattened in C order over ``(C, H, W)``;
        the covariance does not depend on the measurement.

    Raises:
        TypeError: ``prior``'s Gaussian form has several components (use :func:`posterior_moments`).
    """
    form = _gaussian_form(prior, problem.operator)
    if len(form.components) != 1:
        raise TypeError(f"gaussian_posterior needs a Gaussian prior, got {type(prior).__name__}; use posterior_moments for mixtures")
    post = exact_posterior(problem, prior, max_size)
    return post.mean, post.component_covariance(0)


def posterior_moments(problem: Problem, prior: Prior, max_size: int = DEFAULT_MAX_SIZE) -> tuple[Tensor, Tensor]:
    """Exact posterior mean ``(B, n)`` and covariance ``(B, n, n)`` (float64) of a Gaussian or mixture prior."""
    post = exact_posterior(problem, prior, max_size)
    return post.mean, post.covariance()


# ---------------------------------------------------------------------- solver
class ExactSolver(Solver):
    """Exact posterior samples for Gaussian / Gaussian-mixture priors (dense, n <= 4096): the reference for other solvers.

    One sample per measurement in the batch (repeat ``y`` for more, see
    :func:`repeat_measurements`). ``steps`` is ignored (nothing is iterated); the callback is
    called once, with the samples and the posterior mean.

    Args:
        max_size: Largest image size ``n = C H W`` (and measurement size ``m``) it materialises.

    ``Result.info`` holds ``posterior_mean`` (``(B, C, H, W)``, like ``x``), ``weights``
    (``(B, K)`` posterior component probabilities), ``component`` (``(B,)`` the component each
    sample came from), ``rank`` (per component, of ``A Σ_k Aᵀ`` as used), ``n``, ``m`` and ``sigma_y``.
    """

    name = "exact"
    row_generators = True
    default_steps = 1
    evaluations_per_step = 0.0  # closed form: no denoiser steps
    requires = frozenset({Capability.DENSE, Capability.GAUSSIAN_NOISE, Capability.GAUSSIAN_PRIOR})

    def __init__(
        self,
        max_size: Annotated[int, Arg("largest n = C*H*W (and m) to materialise as dense matrices", min=1)] = DEFAULT_MAX_SIZE,
    ) -> None:
        # the schema (ExactSolver.params) is read off this signature, and calls are validated by it (invkit.Solver)
        self.max_size = max_size
        self.max_dense = self.max_size  # the dense limit Solver.check judges the problem by

    def solve(
        self,
        problem: Problem,
        prior: Prior,
        *,
        steps: int | None = None,
        generator: Generators | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """Draw one exact posterior sample per measurement.

        Args:
            problem: Linear operator, ``y`` and Gaussian noise.
            prior: Any prior with a Gaussian form (:meth:`invkit.Prior.gaussian_form`).
            steps: Ignored.
            generator: Source of all randomness (``None``: a fresh, randomly seeded one); one
                generator, or one per batch row.
            callback: Called once with a :class:`invkit.Step`.

        Returns:
            ``Result(x=(B, C, H, W) samples on y's device and in its dtype, info={...})``.
        """
        self.check(problem, prior)
        post = exact_posterior(problem, prior, self.max_size)
        samples, comp = post.sample(resolve_generator(generator, problem.y.device))
        y = problem.y
        dtype = y.dtype if y.is_floating_point() else torch.get_default_dtype()
        shape = (samples.shape[0], *post.shape)
        x = samples.reshape(shape).to(device=y.device, dtype=dtype)
        mean = post.mean.reshape(shape).to(device=y.device, dtype=dtype)
        info: dict[str, Any] = {
            "posterior_mean": mean,
            "weights": post.weights,
            "component": comp,
            "rank": [c.rank for c in post.components],
            "n": post.n,
            "m": problem.operator.out_numel,
            "sigma_y": post.sigma_y,
        }
        if callback is not None:
            callback(Step(index=0, total=1, sigma=0.0, x=x, x0_hat=mean))
        return Result(x=x, info=info)
