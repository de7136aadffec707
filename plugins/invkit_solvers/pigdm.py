"""ΠGDM: pseudoinverse-guided diffusion models (Song, Vahdat, Mardani, Kautz, ICLR 2023).

**The paper, in its VP symbols** (data ``x0'`` in [−1, 1], state ``x_t``, ``ᾱ_t``, measurement
``y' = H x0' + σ'_y z``). The denoiser's estimate is ``x̂_t = (x_t − √(1 − ᾱ_t) ε_θ)/√ᾱ_t``; ΠGDM
approximates ``p_t(x0' | x_t) ≈ N(x̂_t, r_t² I)`` and hence ``p_t(y' | x_t) ≈ N(H x̂_t, r_t² H Hᵀ +
σ'_y² I)``, whose score is the vector-Jacobian product (the paper's noisy form)

    ∇_{x_t} log p_t(y' | x_t) ≈ ((y' − H x̂_t)ᵀ (r_t² H Hᵀ + σ'_y² I)⁻¹ H ∂x̂_t/∂x_t)ᵀ.

Its noiseless form (the pseudo-inverse guidance, and what the official code computes)
``g = ((H⁺y' − H⁺H x̂_t)ᵀ ∂x̂_t/∂x_t)ᵀ`` is ``r_t²`` times the ``σ'_y → 0`` limit of
that score (``Hᵀ(H Hᵀ)⁻¹ = H⁺``). The paper's ``r_t² = σ_t²/(1 + σ_t²)`` with the VE level
``σ_t² = (1 − ᾱ_t)/ᾱ_t``, i.e. ``r_t² = 1 − ᾱ_t``: the exact posterior variance when
``x0' ~ N(0, I)`` (unit variance per pixel in [−1, 1] units). The official code (NVlabs/RED-diff,
``algos/pgdm.py``, with ``_configs/algo/pgdm.yaml``: ``awd: True``, ``grad_term_weight: 1``) takes the
noiseless ``g`` through autograd (``grad(<H⁺y' − H⁺H x̂_t, x̂_t>, x_t)``) and steps

    x_{t−1} = √ᾱ_{t−1} x̂_t + c1 z + c2 ε_θ + w √ᾱ_{t−1} √ᾱ_t g,
    c1 = η √((1 − ᾱ_t/ᾱ_{t−1})(1 − ᾱ_{t−1})/(1 − ᾱ_t)),   c2 = √(1 − ᾱ_{t−1} − c1²),

i.e. DDIM from the guided estimate ``x̂_t + w √ᾱ_t g`` keeping the model's ``ε_θ``. Here ``g`` is
the noisy form times ``r_t²``, which is the official ``g`` exactly when ``σ_y = 0``:

    g = (r_t² (y' − H x̂_t)ᵀ (r_t² H Hᵀ + σ'_y² I)⁻¹ H ∂x̂_t/∂x_t)ᵀ.

**Our units.** invkit's state is ``x = x0 + σ n`` in [0, 1] units; ``x_t = d √ᾱ (x − c)``,
``x0' = d (x0 − c)``, ``ᾱ = 1/(1 + d²σ²)``, ``d = 2``, ``c = 1/2`` (:mod:`invkit.vp`). For a linear
``H`` the measurement maps as ``y' = d (y − H c)``, so residuals scale by ``d`` and ``σ'_y = d σ_y``.

*r_t.* If ``x0 ~ N(c, v I)`` in our units then ``x0 | x`` has variance ``r² = v σ²/(v + σ²)``. The
paper's unit variance in [−1, 1] is ``v = 1/d²`` here, so

    r_t² = σ_t² / (1 + d² σ_t²)          (= (1 − ᾱ_t)/d², the paper's r_t² over d²).

Reading the paper's ``σ_t²/(1 + σ_t²)`` with our σ instead is off by up to ``d² = 4`` (at large σ),
and it is what :func:`pigdm_r2` with ``data_variance = 1`` gives. ``data_variance`` (``v``) is
exposed for data whose per-pixel variance is known to differ from the paper's assumption; its
default 0.25 is the paper's.

*The guidance.* With ``J = ∂x̂0/∂x`` (our denoiser's Jacobian), ``∂x̂_t/∂x_t = J/√ᾱ_t`` and
``(r'²HHᵀ + σ'_y²I)⁻¹ (y' − H x̂0') = (r²HHᵀ + σ_y²I)⁻¹ (y − H x̂0) / d`` (``r' = d r``), so the
official displacement ``w √ᾱ_{t−1} √ᾱ_t g`` of ``x_{t−1}`` is ``w d √ᾱ_{t−1} G`` with

    G = r_t² Jᵀ Hᵀ (r_t² H Hᵀ + σ_y² I)⁻¹ (y − H x̂0),

and a VP displacement at ``t−1`` is ``1/(d √ᾱ_{t−1})`` of ours. Every ``d`` and ``ᾱ`` cancels::

    x̂0    = denoise(x_t, σ_t)
    G      = Jᵀ V diag(k_i) (ȳ − Vᵀ x̂0),    k_i = r_t² / (r_t² + σ_y²/s_i²)   (observed i; 0 elsewhere)
    x_{t−1} = ddim_step(x_t, x̂0, σ_t, σ_{t−1}, η, z) + w G

(``ȳ_i = (Uᵀy)_i/s_i``: :func:`invkit.spectral.spectral_setup`; ``r² Hᵀ(r²HHᵀ + σ_y²I)⁻¹ = V diag(r²
s_i/(r² s_i² + σ_y²)) Uᵀ`` and ``(Uᵀ(y − H x̂0))_i = s_i (ȳ_i − (Vᵀx̂0)_i)``). The DDIM part is
:func:`invkit.vp.ddim_step` (its derivation is there). ``G`` is the guided estimate's shift: the step
is DDIM from ``x̂0 + w G`` with the prior's ``ε̂ = (x_t − x̂0)/σ_t``. With ``σ_y = 0`` every ``k_i = 1``
and ``G = Jᵀ H⁺ (y − H x̂0)``: the paper's pseudo-inverse guidance, with no ``r_t`` left. ``Jᵀ v``
is one vector-Jacobian product through the prior (autograd through ``prior.denoise``). The last
step (``σ_{t−1} = 0``) returns ``x̂0 + w G``.

**Deviations, stated.**

* ``g`` is the paper's noisy form times ``r_t²`` (above): the form that reduces to the official
  noiseless ``g`` at ``σ_y = 0``. Without the ``r_t²`` the same weights would make the guidance
  ``1/r_t² = 1/(1 − ᾱ_t)`` times stronger (10⁴ at the last DDPM level, ``ᾱ = 0.9999``; not run).
* The weight ``√ᾱ_{t−1} √ᾱ_t`` (official code, ``awd: True``) rather than the ``√ᾱ_t`` that the
  paper's Algorithm 1 is reported to use (its text could not be retrieved here; the official code
  is what ran). In our units the official weight is exactly ``w`` (above).
* Coefficients with ``s_i <= svd_rtol · max(s)`` get no guidance (``k_i = 0``), with or without
  noise, as in DDRM. The official ``H_pinv`` divides by every nonzero singular value (its blur
  operators, DDRM's, zero small ones when they are built), and the paper's noisy form has no
  threshold. Reason: an exact blur has singular values near 1e-7 whose ``1/s_i`` would magnify
  float32 rounding of ``y`` by 1e7; with noise the gain on ``Uᵀ(y − H x̂0)``, ``r² s_i/(r² s_i² +
  σ_y²) <= min(1/s_i, r/(2σ_y))``, still reaches ``r/(2σ_y)`` (at ``s_i = σ_y/r``), which for small
  ``σ_y`` exceeds the bound ``1/(svd_rtol · max(s))`` that the threshold gives (``1e3/max(s)`` with
  DDRM's default ``svd_rtol = 1e-3``, used here).
* The start is the official ``initialize``: ``x_T' = √ᾱ_T H⁺y' + √(1 − ᾱ_T) n``, which in our
  units is ``x_T = H⁺y + (I − H⁺H) c + σ_T n`` (``H⁺`` thresholded as above). The official
  null-space value is 0 in [−1, 1] units, ``c = 1/2``; we use the prior's ``data_center``, as DDRM
  does (the same for a prior centred on mid-grey).
* ``steps = 1`` is refused: the official schedule rule makes a single step start at the lowest
  level (σ ≈ 0.005), where the start's ``H⁺y`` keeps its noise.
* Only the official defaults: no ``mcg``, ``cond_awd`` (classifier guidance) or ``awd: False``
  (``ε_θ`` recomputed from the guided estimate) branches. The solver does not clip ``x̂0`` (nor does
  the official code); a prior built with ``clip=true`` returns it clipped, and the guidance
  gradient is then zero at the clipped pixels.

**Defaults.** Schedule: the official ``get_timesteps`` (``utils/functions.py``: ``skip = (1000 −
0) // num_steps``, timesteps ``0, skip, ...``), which is :func:`invkit.schedules.ddrm_schedule`.
Steps: 100 (the RED-diff README's example run, ``num_steps=100``, and the 100 NFEs the paper is
reported to use, not verified here; RED-diff's ``_configs/exp/default.yaml`` has 50). ``eta = 0`` and ``weight = 1``: the
official ``_configs/algo/pgdm.yaml`` (``eta: 0.0``, ``grad_term_weight: 1``); a later copy of that
config (mandt-lab/c-pigdm) sets ``eta: 1.0``, and η = 0 makes every step after the start
deterministic, so the spread of the samples comes from the start alone. None of the defaults were
re-tuned (no image runs were made for this solver).

Cost per step: one prior evaluation with its vector-Jacobian product (DPS's step, the same work,
measured 2.7 plain evaluations at 128²; ΠGDM's own in benchmarks/svd_solvers.py), one ``Vᵀ`` of ``x̂0`` and one ``V`` of the guidance vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor

from invkit.params import Arg
from invkit.prior import Prior
from invkit.problem import Problem
from invkit.random import Generators, randn_rows, resolve_generator
from invkit.requirements import Capability
from invkit.schedules import sampler_schedule
from invkit.solver import Callback, Result, Solver, Step
from invkit.spectral import spectral_setup
from invkit.vp import ddim_step

__all__ = ["PiGDM", "DATA_SCALE", "PAPER_DATA_VARIANCE", "pigdm_r2", "pigdm_gain", "pigdm_guidance", "pigdm_step"]

#: ``d``: the paper's data live in [−1, 1], twice our [0, 1] range.
DATA_SCALE = 2.0
#: ``v = 1/d²``: the per-pixel data variance behind the paper's ``r_t² = σ_t²/(1 + σ_t²)`` (unit
#: variance in [−1, 1] units), in our [0, 1] units.
PAPER_DATA_VARIANCE = 1.0 / DATA_SCALE**2


def pigdm_r2(sigma: float, data_variance: float = PAPER_DATA_VARIANCE) -> float:
    """``r_t² = v σ²/(v + σ²)``: the variance of ``x0 | x`` at level σ for data ``N(c, v I)`` (our units).

    With the default ``v = 1/d²`` this is ``σ²/(1 + d²σ²)``, the paper's ``r_t² = 1 − ᾱ_t`` divided
    by ``d²`` (module notes).

    Example:
        >>> pigdm_r2(0.5)  # 0.25 / (1 + 4 · 0.25)
        0.125
    """
    s2 = float(sigma) ** 2
    return data_variance * s2 / (data_variance + s2)


def pigdm_gain(observed: Tensor, nstd: Tensor, r2: float) -> Tensor:
    """``k_i = r_t² / (r_t² + σ_y²/s_i²)`` on observed coefficients, 0 elsewhere.

    ``r_t² s_i² / (r_t² s_i² + σ_y²)``: the spectral form of ``r_t² Hᵀ(r_t² H Hᵀ + σ_y² I)⁻¹ H``. It is 1
    on every observed coefficient when ``σ_y = 0`` (the pseudo-inverse).

    Args:
        observed: ``(n,)`` observed mask.
        nstd: ``(n,)`` ``σ_y/s_i`` (``+inf`` where unobserved).
        r2: ``r_t² > 0``.
    """
    noise2 = torch.where(observed, nstd, torch.zeros_like(nstd)) ** 2
    return torch.where(observed, r2 / (r2 + noise2), torch.zeros_like(nstd))


def pigdm_guidance(ybar: Tensor, xbar_hat: Tensor, observed: Tensor, nstd: Tensor, r2: float) -> Tensor:
    """The spectral vector the VJP is applied to: ``Vᵀ r_t² Hᵀ (r_t² H Hᵀ + σ_y² I)⁻¹ (y − H x̂0)``.

    Equal to ``k ⊙ (ȳ − x̄̂)`` (:func:`pigdm_gain`); the guidance is ``G = Jᵀ V (this)``.

    Args:
        ybar: ``(B, n)`` ``ȳ`` (see :class:`invkit.spectral.SpectralSetup`).
        xbar_hat: ``(B, n)`` ``Vᵀ x̂0``.
        observed: ``(n,)`` observed mask.
        nstd: ``(n,)`` ``σ_y/s_i``.
        r2: ``r_t²``.
    """
    return pigdm_gain(observed, nstd, r2) * (ybar - xbar_hat)


def pigdm_step(
    x: Tensor,
    x0_hat: Tensor,
    guidance: Tensor,
    sigma: float,
    sigma_next: float,
    eta: float,
    noise: Tensor | None,
    weight: float = 1.0,
) -> Tensor:
    """One ΠGDM update in our units: ``ddim_step(x, x̂0, σ, σ′, η, z) + w G``.

    Args:
        x: The state at level σ.
        x0_hat: ``denoise(x, σ)``.
        guidance: ``G = Jᵀ V k ⊙ (ȳ − Vᵀx̂0)`` (the VJP of :func:`pigdm_guidance`'s vector).
        sigma: σ > 0.
        sigma_next: σ′, ``0 <= σ′ < σ``.
        eta: η in [0, 1].
        noise: Standard normal ``z`` shaped like ``x`` (unused when η = 0 or σ′ = 0).
        weight: ``w``, the official ``grad_term_weight``.
    """
    return ddim_step(x, x0_hat, sigma, sigma_next, eta, noise) + weight * guidance


class PiGDM(Solver):
    """ΠGDM posterior sampler for any operator with an SVD (its own, or the dense fallback), with or without noise.

    DDIM steps whose clean estimate is pushed by the pseudo-inverse guidance, a vector-Jacobian
    product through the prior (so the prior must be differentiable). See the module notes for the
    equations in our units.

    Args:
        eta: η, the DDIM stochasticity (0: deterministic after the start, 1: DDPM-like).
        weight: ``w``, the guidance weight (the official ``grad_term_weight``).
        data_variance: ``v``, the per-pixel data variance behind ``r_t² = v σ²/(v + σ²)`` in [0, 1]
            units (0.25: the paper's unit variance in [−1, 1]). Matters only with noise.
        svd_rtol: Coefficients with ``s_i <= svd_rtol * max(s)`` get no guidance.
        max_dense: Largest ``max(m, n)`` for the dense SVD fallback of operators without one.

    Example:
        >>> import torch, invkit
        >>> from invkit_operators.denoising import Denoising
        >>> from invkit_priors.analytic import GaussianPrior
        >>> prior = GaussianPrior.isotropic(0.5, 0.04)
        >>> problem = invkit.Problem(Denoising((1, 4, 4)), torch.full((1, 1, 4, 4), 0.6), invkit.GaussianNoise(0.1))
        >>> out = PiGDM().solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(0))
        >>> tuple(out.x.shape), len(out.info["sigmas"])
        ((1, 1, 4, 4), 11)
    """

    name = "pigdm"
    row_generators = True
    default_steps = 100
    #: A step differentiates through the prior, as DPS's does.
    evaluations_per_step = 3.0
    requires = frozenset({Capability.SVD, Capability.GAUSSIAN_NOISE, Capability.PRIOR_GRADIENTS})

    def __init__(
        self,
        *,
        eta: Annotated[float, Arg("η: DDIM stochasticity (0 = deterministic after the start)", min=0.0, max=1.0)] = 0.0,
        weight: Annotated[float, Arg("w: guidance weight (the official grad_term_weight)", min=0.0)] = 1.0,
        data_variance: Annotated[
            float, Arg("v: per-pixel data variance in [0, 1] units behind r_t^2 = v s^2/(v + s^2) (0.25: the paper's)", min=0.0, min_inclusive=False)
        ] = PAPER_DATA_VARIANCE,
        svd_rtol: Annotated[
            float, Arg("relative singular-value threshold below which a coefficient gets no guidance", min=0.0, max=1.0, max_inclusive=False)
        ] = 1e-3,
        max_dense: Annotated[int, Arg("largest max(m, n) for the dense SVD fallback", min=1)] = 4096,
    ) -> None:
        self.eta = eta
        self.weight = weight
        self.data_variance = data_variance
        self.svd_rtol = svd_rtol
        self.max_dense = max_dense

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
            problem: Linear operator with an SVD (or small enough for the dense one), measurements
                ``(B, *out_shape)`` and Gaussian noise (σ_y = 0 allowed).
            prior: A differentiable prior with ``denoise(x, sigma)`` in [0, 1] units.
            steps: Number of prior evaluations (default 100); ignored when ``sigmas`` is given.
            generator: Source of all randomness: one generator, or one per batch row (then each
                sample is the same whatever batch it is drawn in).
            callback: Called with a :class:`~invkit.solver.Step` after every step (``x0_hat`` is
                the prior's estimate before guidance).
            sigmas: Explicit descending schedule ``[σ_T, ..., σ_1]`` (a final 0 is appended if missing).

        Returns:
            ``Result(x, info={"sigmas", "observed", "residual"})``: ``observed`` the number of guided
            coefficients, ``residual`` ``‖y − H x‖`` per row of the returned images.
        """
        self.check(problem, prior)
        schedule = sampler_schedule(prior, steps, sigmas, default_steps=self.default_steps, solver="pigdm")
        spec = spectral_setup(problem, svd_rtol=self.svd_rtol, max_dense=self.max_dense)
        op, y = spec.op, problem.y
        observed, ybar, nstd = spec.observed, spec.ybar, spec.nstd
        generator = resolve_generator(generator, y.device)
        shape = (y.shape[0], *op.in_shape)

        # the official start: H⁺y on the guided coefficients, the data centre elsewhere, plus σ_T n
        center = torch.full((1, *op.in_shape), float(prior.data_center), dtype=y.dtype, device=y.device)
        start = op.V(torch.where(observed, ybar, op.Vt(center).expand_as(ybar)))
        x = start + schedule[0] * randn_rows(generator, shape, dtype=y.dtype, device=y.device)

        total = len(schedule) - 1
        for i in range(total):
            sigma, sigma_next = schedule[i], schedule[i + 1]
            r2 = pigdm_r2(sigma, self.data_variance)
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                x0 = prior.denoise(xr, sigma)
                x0d = x0.detach()
                v = op.V(pigdm_guidance(ybar, op.Vt(x0d), observed, nstd, r2))
                (grad,) = torch.autograd.grad(x0, xr, grad_outputs=v)
            noise = randn_rows(generator, shape, dtype=y.dtype, device=y.device) if sigma_next > 0 and self.eta > 0 else None
            x = pigdm_step(x.detach(), x0d, grad.detach(), sigma, sigma_next, self.eta, noise, self.weight).detach()
            if callback is not None:
                callback(Step(index=i, total=total, sigma=sigma_next, x=x, x0_hat=x0d))
        residual = problem.residual_norms(x)
        return Result(
            x=x,
            info={"sigmas": schedule, "observed": int(observed.sum()), "residual": residual.tolist(), "solver": "pigdm"},
        )
