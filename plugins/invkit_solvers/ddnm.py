"""DDNM and DDNM⁺: Denoising Diffusion Null-Space Model (Wang, Yu, Zhang, ICLR 2023).

The paper's Algorithms 1 (DDNM) and 2 (DDNM⁺), in its VP symbols (state ``x_t`` in [−1, 1]
data units, ``ᾱ_t``, ``A = U Σ Vᵀ``, pseudo-inverse ``A† = V Σ† Uᵀ``)::

    x_0|t  = (x_t − √(1 − ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t                         (eq. 12, Tweedie)
    DDNM:   x̂_0|t = A†y + (I − A†A) x_0|t                                   (eq. 13, range-null)
    DDNM⁺:  x̂_0|t = x_0|t − Σ_t A†(A x_0|t − y),   Σ_t = V diag(λ_t,i) Vᵀ    (eq. 17)
    x_t−1  ~ p̂(x_t−1 | x_t, x̂_0|t)                                         (eq. 18, noise Φ_t)

**The transition** ``p̂`` is realised as the official code does (``functions/svd_ddnm.py`` and
the operators' ``Lambda``/``Lambda_noise``), which is where the paper's numbers come from: with
``a = √ᾱ_t−1`` and ``σ_t = √(1 − ᾱ_t−1)`` (the next level's noise std) and a mixing weight η,
``x_t−1 = a x̂_0|t + σ_t (η z + √(1 − η²) ε_θ)`` in every coefficient the measurement does not
pin down. DDNM⁺ scales the range correction per singular value and replaces the noise there:

* ``s_i = 0`` (unobserved): ``λ_i`` irrelevant (``A†`` is 0 there); noise ``σ_t (η z + √(1−η²) ε_θ)``;
* ``σ_t ≥ a σ_y / s_i``: ``λ_i = 1``; noise ``√(σ_t² − a² σ_y²/s_i²) z`` (no ``ε_θ`` term);
* ``σ_t < a σ_y / s_i``: ``λ_i = √(1−η²) σ_t s_i / (a σ_y)``; noise ``η σ_t z``;

so that in each coefficient the noise of ``a λ_i ȳ_i`` plus the fresh noise add up to the level
``σ_t`` (the paper's ``γ_t,i = σ_t² − (a λ_t,i σ_y / s_i)²`` with η: at η = 0 this is exactly
eq. 19's ``λ_t,i = σ_t s_i / (a σ_y)`` and ``γ_t,i = 0``). With ``σ_y = 0`` DDNM⁺ is DDNM (as in
the paper and the code).

**In our units** (``x = x0 + σ n`` in [0, 1], ``x_vp = d√ᾱ (x − 1/2)``, ``d = 2``;
:mod:`invkit.vp`) dividing the transition by ``d a`` gives, with ``σ′`` our next level,
``ε̂ = (x − x̂_0)/σ`` (the model's noise estimate, :func:`invkit.vp.eps_from_x0`), ``x̄ = Vᵀx``
and ``ȳ_i = (Uᵀy)_i / s_i``, ``ν_i = σ_y / s_i`` (:func:`invkit.spectral.spectral_setup`)::

    DDNM:   x̄′_i = ȳ_i (observed) or x̂̄_i (not);   x′ = x̂_0′ + σ′ (η z + √(1−η²) ε̂)
    DDNM⁺:  unobserved   x̄′_i = x̂̄_i + σ′ (η z_i + √(1−η²) ε̂̄_i)
            σ′ ≥ ν_i     x̄′_i = ȳ_i + √(σ′² − ν_i²) z_i
            σ′ < ν_i     x̄′_i = x̂̄_i + √(1−η²) σ′ (ȳ_i − x̂̄_i)/ν_i + η σ′ z_i

since ``σ_t/(d a) = σ′`` and ``σ_y^vp = d σ_y`` ([−1, 1] noise is twice ours), so that
``σ_t < a σ_y^vp / s_i`` is ``σ′ < ν_i`` and ``λ_i = √(1−η²) σ′/ν_i``. (These are DDRM's eq. 8 cases with
``η_b = 1``: DDNM⁺'s SVD form and DDRM take the same transition; they differ in the start,
the schedule's time travel and, in DDNM, the observed coefficients' noise.)

**Time travel** (DDNM⁺, Algorithm 2 and the paper's Sec. 3.4): after reaching a jump point the
sampler goes back ``l`` levels by the forward process ``q(x_t+L | x_t)`` and comes down again,
``r`` times in all, at every ``s``-th level (:func:`invkit.schedules.jump_schedule`, shared with
RePaint). In our units ``q(x_{σ_big} | x_σ)`` is ``x + √(σ_big² − σ²) z``, one level at a time.

**Start.** The paper's and the code's ``x_T ~ N(0, I)`` in VP units, which in ours is
``x_T = c + √(1/d² + σ_T²) n`` (:func:`invkit.vp.vp_start_std`) with ``c`` the prior's data centre
(1/2 for the VP priors, as everywhere in :mod:`invkit.vp`).

**Deviations, stated.** (1) Time travel renoises the current state by ``q(x_t+1 | x_t)``, one
level at a time, as the paper's Algorithm 2 writes; the official code instead renoises its last
clean estimate **before** the range-space correction, ``√ᾱ x_0|t + √(1−ᾱ) z``, to the travel's
top level (one draw per jump). (2) A coefficient counts as observed when ``s_i > svd_rtol ·
max(s)`` (DDRM's rule; the official code zeroes singular values below 1e-3 for its dense
operators, and exact zeros for the others). (3) ``steps = 1`` is refused: the official schedule
rule (``skip = 1000 // steps``) makes a single step start at the lowest level (σ ≈ 0.005), where a
start from pure noise cannot be denoised. Defaults trace to the official code: η = 0.85 (``main.py``),
100 steps (``T_sampling: 100`` in every config), the schedule ``skip = 1000 // steps``
(:func:`invkit.schedules.ddrm_schedule`), time travel off (``travel_length: 1``,
``travel_repeat: 1``).

Cost per reverse step: one prior evaluation, one ``V`` and one ``Vᵀ``; a time-travel jump back
costs no evaluation but each level walked down again costs one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor

from invkit.params import Arg
from invkit.prior import Prior
from invkit.problem import Problem
from invkit.random import Generators, randn_rows, resolve_generator
from invkit.requirements import Capability
from invkit.schedules import jump_schedule, sampler_schedule
from invkit.solver import Callback, Result, Solver, Step
from invkit.spectral import SpectralSetup, spectral_setup
from invkit.vp import vp_start_std

__all__ = ["DDNM", "DDNMPlus", "ddnm_range_null", "ddnm_plus_lambda", "ddnm_plus_noise_scales", "ddnm_step", "ddnm_plus_step", "ddnm_travel"]


# ---------------------------------------------------------------------- the paper's steps, in spectral coefficients
def ddnm_range_null(x0bar: Tensor, ybar: Tensor, observed: Tensor) -> Tensor:
    """Eq. 13 in spectral coefficients: ``Vᵀ(A†y + (I − A†A) x_0|t)`` is ``ȳ_i`` where observed, ``x̄_0|t,i`` elsewhere."""
    return torch.where(observed, ybar, x0bar)


def ddnm_plus_lambda(nstd: Tensor, observed: Tensor, sigma_next: float, eta: float) -> Tensor:
    """Eq. 19 with η: ``λ_i = 1`` where ``σ′ ≥ ν_i``, ``√(1−η²) σ′/ν_i`` where ``σ′ < ν_i``, 0 where unobserved.

    ``ν_i = σ_y / s_i`` (``nstd``, +inf where unobserved).
    """
    keep = math.sqrt(max(0.0, 1.0 - eta * eta))
    safe = torch.where(observed & (nstd > 0), nstd, torch.ones_like(nstd))
    lam = torch.where(sigma_next >= nstd, torch.ones_like(nstd), keep * sigma_next / safe)
    return torch.where(observed, lam, torch.zeros_like(nstd))


def ddnm_plus_noise_scales(nstd: Tensor, observed: Tensor, sigma_next: float, eta: float) -> tuple[Tensor, Tensor]:
    """Eq. 18's noise with η: stds ``(d_z, d_ε)`` of the fresh draw ``z`` and of the model's ``ε̂``.

    Unobserved: ``(η σ′, √(1−η²) σ′)``; ``σ′ ≥ ν_i``: ``(√(σ′² − ν_i²), 0)``; ``σ′ < ν_i``: ``(η σ′, 0)``.
    """
    keep = math.sqrt(max(0.0, 1.0 - eta * eta))
    above = observed & (sigma_next >= nstd)
    below = observed & (sigma_next < nstd)
    d_z = torch.full_like(nstd, eta * sigma_next)
    d_z = torch.where(above, torch.sqrt(torch.clamp(sigma_next**2 - torch.where(above, nstd, torch.zeros_like(nstd)) ** 2, min=0.0)), d_z)
    d_eps = torch.where(above | below, torch.zeros_like(nstd), torch.full_like(nstd, keep * sigma_next))
    return d_z, d_eps


def ddnm_step(xbar: Tensor, x0bar: Tensor, ybar: Tensor, observed: Tensor, sigma: float, sigma_next: float, eta: float, z: Tensor) -> Tensor:
    """One DDNM reverse step in spectral coefficients (Algorithm 1, lines 3-5, our units).

    ``x̄′ = x̂̄_0 + σ′ (η z + √(1−η²) ε̂̄)`` with ``x̂̄_0`` from :func:`ddnm_range_null` and
    ``ε̂̄ = (x̄ − x̄_0|t)/σ`` the model's noise estimate (``V`` is orthogonal, so the spectral
    coefficients of ``ε̂`` are ``(x̄ − x̄_0|t)/σ``).

    Args:
        xbar: ``(B, n)`` ``Vᵀx`` at level ``σ``.
        x0bar: ``(B, n)`` ``Vᵀ denoise(x, σ)``.
        ybar: ``(B, n)`` ``ȳ``.
        observed: ``(n,)`` observed mask.
        sigma: σ > 0.
        sigma_next: σ′ < σ (0 for the last step, which returns ``x̂̄_0``).
        eta: η in [0, 1].
        z: ``(B, n)`` standard normal draws.
    """
    xhat = ddnm_range_null(x0bar, ybar, observed)
    keep = math.sqrt(max(0.0, 1.0 - eta * eta))
    return xhat + sigma_next * (eta * z + keep * (xbar - x0bar) / sigma)


def ddnm_plus_step(
    xbar: Tensor, x0bar: Tensor, setup: SpectralSetup, sigma: float, sigma_next: float, eta: float, z: Tensor
) -> Tensor:
    """One DDNM⁺ reverse step in spectral coefficients (Algorithm 2, lines 6-8, our units).

    ``x̂̄_0 = x̄_0|t − λ (x̄_0|t − ȳ)`` (eq. 17; :func:`ddnm_plus_lambda`), then
    ``x̄′ = x̂̄_0 + d_z z + d_ε ε̂̄`` (:func:`ddnm_plus_noise_scales`). With ``σ_y = 0`` this is
    :func:`ddnm_step` (the paper's and the code's DDNM⁺ reduce to DDNM there).
    """
    if setup.sigma_y == 0.0:
        return ddnm_step(xbar, x0bar, setup.ybar, setup.observed, sigma, sigma_next, eta, z)
    lam = ddnm_plus_lambda(setup.nstd, setup.observed, sigma_next, eta)
    xhat = x0bar - lam * (x0bar - setup.ybar)
    d_z, d_eps = ddnm_plus_noise_scales(setup.nstd, setup.observed, sigma_next, eta)
    return xhat + d_z * z + d_eps * (xbar - x0bar) / sigma


def ddnm_travel(x: Tensor, sigma: float, sigma_back: float, z: Tensor) -> Tensor:
    """Time travel one level back: ``q(x_σb | x_σ)`` is ``x + √(σ_b² − σ²) z`` in our units (σ_b > σ)."""
    return x + math.sqrt((sigma_back - sigma) * (sigma_back + sigma)) * z


class DDNM(Solver):
    """DDNM (noiseless): range-null-space decomposition through the SVD, for any SVD operator.

    Exact data consistency: the output ``x`` satisfies ``H x = y`` on every observed singular
    direction. It requires noiseless measurements (:attr:`~invkit.Capability.NOISELESS`): noisy
    ones are refused in one line naming the solvers that take them (``ddnm_plus`` among them).

    Args:
        eta: η, the weight of fresh noise in each transition (0: deterministic).
        svd_rtol: Coefficients with ``s_i <= svd_rtol · max(s)`` are treated as unobserved.
        max_dense: Largest ``max(m, n)`` for the dense SVD fallback of operators without one.

    Example:
        >>> import torch, invkit
        >>> from invkit_priors.analytic import GaussianPrior
        >>> op = invkit.get_registry().build_operator("inpainting", (1, 4, 4), ["fraction=0.5", "seed=0"])
        >>> y = op.forward(torch.full((1, 1, 4, 4), 0.6))
        >>> out = DDNM().solve(invkit.Problem(op, y), GaussianPrior.isotropic(0.5, 0.04), steps=10, generator=torch.Generator().manual_seed(0))
        >>> float((op.forward(out.x) - y).abs().max()) < 1e-6
        True
    """

    name = "ddnm"
    row_generators = True
    default_steps = 100
    requires = frozenset({Capability.SVD, Capability.GAUSSIAN_NOISE, Capability.NOISELESS})

    def __init__(
        self,
        *,
        eta: Annotated[float, Arg("η: weight of fresh noise in each transition (0 = deterministic)", min=0.0, max=1.0)] = 0.85,
        svd_rtol: Annotated[
            float, Arg("relative singular-value threshold below which a coefficient is unobserved", min=0.0, max=1.0, max_inclusive=False)
        ] = 1e-3,
        max_dense: Annotated[int, Arg("largest max(m, n) for the dense SVD fallback", min=1)] = 4096,
    ) -> None:
        self.eta = eta
        self.svd_rtol = svd_rtol
        self.max_dense = max_dense

    def _positions(self, steps: int) -> list[int]:
        return jump_schedule(steps)

    def _step(self, xbar: Tensor, x0bar: Tensor, setup: SpectralSetup, sigma: float, sigma_next: float, z: Tensor) -> Tensor:
        return ddnm_step(xbar, x0bar, setup.ybar, setup.observed, sigma, sigma_next, self.eta, z)

    @torch.no_grad()
    def solve(
        self,
        problem: Problem,
        prior: Prior,
        *,
        steps: int | None = None,
        generator: Generators | None = None,
        callback: Callback | None = None,
        sigmas: Sequence[float] | None = None,
    ) -> Result:
        """Draw one posterior sample per measurement in ``problem.y``.

        Args:
            problem: Operator, measurements ``(B, *out_shape)`` and Gaussian noise model.
            prior: Any prior with ``denoise(x, sigma)`` in [0, 1] units.
            steps: Number of levels (default 100, the official configs'); ignored when
                ``sigmas`` is given. With time travel the prior is evaluated more often
                (``info["evaluations"]``).
            generator: One generator, or one per batch row (then each sample is the same
                whatever batch it is drawn in).
            callback: Called with a :class:`~invkit.solver.Step` after every reverse step.
            sigmas: Explicit descending schedule ``[σ_T, ..., σ_1]`` (a final 0 is appended if missing).

        Returns:
            ``Result(x, info={"sigmas", "observed", "evaluations", "travelled", "solver"})``:
            ``travelled`` counts the levels walked back by time travel (0 when it is off, or when
            the schedule is not longer than the travel length).

        Raises:
            ValueError: ``steps = 1`` (see the module notes).
        """
        self.check(problem, prior)
        schedule = sampler_schedule(prior, steps, sigmas, default_steps=self.default_steps, solver=self.name)
        positions = self._positions(len(schedule) - 1)
        setup = spectral_setup(problem, svd_rtol=self.svd_rtol, max_dense=self.max_dense)
        op, y = setup.op, problem.y
        generator = resolve_generator(generator, y.device)
        batch, n = y.shape[0], op.in_numel

        def draw() -> Tensor:
            return randn_rows(generator, (batch, n), dtype=y.dtype, device=y.device)

        # x_T ~ N(0, I) in VP units; V is orthogonal, so the spectral start is the same law around Vᵀc
        center = op.Vt(torch.full((1, *op.in_shape), float(prior.data_center), dtype=y.dtype, device=y.device))
        xbar = center + vp_start_std(schedule[0]) * draw()
        x0 = torch.full((batch, *op.in_shape), 0.5, dtype=y.dtype, device=y.device)
        total = sum(1 for p, q in zip(positions, positions[1:]) if q > p)
        done = travelled = 0
        for p, q in zip(positions, positions[1:]):
            if q < p:  # time travel: q(x_{t+1} | x_t)
                xbar = ddnm_travel(xbar, schedule[p], schedule[q], draw())
                travelled += 1
                continue
            sigma, sigma_next = schedule[p], schedule[q]
            x0 = prior.denoise(op.V(xbar), sigma)
            xbar = self._step(xbar, op.Vt(x0), setup, sigma, sigma_next, draw())
            if callback is not None:
                callback(Step(index=done, total=total, sigma=sigma_next, x=op.V(xbar), x0_hat=x0))
            done += 1
        info = {"sigmas": schedule, "observed": int(setup.observed.sum()), "evaluations": done, "travelled": travelled, "solver": self.name}
        return Result(x=op.V(xbar), info=info)


class DDNMPlus(DDNM):
    """DDNM⁺: the noisy form (range correction scaled per singular value) with optional time travel.

    Works for every SVD operator with and without Gaussian noise (``σ_y = 0`` is DDNM).

    Args:
        eta: η, the weight of fresh noise in each transition.
        travel_length: ``l``, levels a time-travel jump goes back (1: one level).
        travel_repeat: ``r``, times each stretch is walked down in all (1: no time travel).
        travel_interval: ``s``, spacing of the jump points in levels (default ``l``, the official code's).
        svd_rtol: Coefficients with ``s_i <= svd_rtol · max(s)`` are treated as unobserved.
        max_dense: Largest ``max(m, n)`` for the dense SVD fallback of operators without one.
    """

    name = "ddnm_plus"
    requires = frozenset({Capability.SVD, Capability.GAUSSIAN_NOISE})

    def __init__(
        self,
        *,
        eta: Annotated[float, Arg("η: weight of fresh noise in each transition (0 = deterministic)", min=0.0, max=1.0)] = 0.85,
        travel_length: Annotated[int, Arg("time travel: levels a jump goes back (l)", min=1)] = 1,
        travel_repeat: Annotated[int, Arg("time travel: times each stretch is walked down in all (r; 1 = off)", min=1)] = 1,
        travel_interval: Annotated[int | None, Arg("time travel: spacing of the jump points in levels (s; default l)", min=1)] = None,
        svd_rtol: Annotated[
            float, Arg("relative singular-value threshold below which a coefficient is unobserved", min=0.0, max=1.0, max_inclusive=False)
        ] = 1e-3,
        max_dense: Annotated[int, Arg("largest max(m, n) for the dense SVD fallback", min=1)] = 4096,
    ) -> None:
        super().__init__(eta=eta, svd_rtol=svd_rtol, max_dense=max_dense)
        self.travel_length = travel_length
        self.travel_repeat = travel_repeat
        self.travel_interval = travel_interval

    @property
    def evaluations_per_step(self) -> float:  # type: ignore[override]
        """Prior evaluations per level of the default schedule (1 without time travel)."""
        steps = self.default_steps
        positions = self._positions(steps)
        return sum(1 for p, q in zip(positions, positions[1:]) if q > p) / steps

    def _positions(self, steps: int) -> list[int]:
        return jump_schedule(steps, self.travel_length, self.travel_repeat, self.travel_interval)

    def _step(self, xbar: Tensor, x0bar: Tensor, setup: SpectralSetup, sigma: float, sigma_next: float, z: Tensor) -> Tensor:
        return ddnm_plus_step(xbar, x0bar, setup, sigma, sigma_next, self.eta, z)
