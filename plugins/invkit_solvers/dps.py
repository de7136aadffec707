"""DPS: diffusion posterior sampling for general noisy inverse problems (Chung et al., ICLR 2023).

The paper's Algorithms 1 (Gaussian noise) and 2 (Poisson noise), in the paper's VP symbols
(state ``x_i`` in [−1, 1] data units, ``ᾱ_i``, ``β_i``, ``σ̃_i``)::

    x̂_0   = (x_i + (1 − ᾱ_i) ŝ_θ(x_i, i)) / √ᾱ_i                    (Tweedie, the denoiser)
    x'_i−1 = √α_i (1 − ᾱ_i−1)/(1 − ᾱ_i) x_i + √ᾱ_i−1 β_i/(1 − ᾱ_i) x̂_0 + σ̃_i z
    x_i−1  = x'_i−1 − ζ_i ∇_{x_i} ‖y − A(x̂_0)‖²_Λ,   ζ_i = ζ′ / ‖y − A(x̂_0)‖_Λ

with ``Λ = I`` for Gaussian noise (eq. 16) and ``Λ = diag(1/(2 y_j))`` for Poisson noise (eq. 20,
the shot-noise weighted least squares; :meth:`invkit.noise.PoissonNoise.shot_weights`, whose
floor ``y_j >= 1/rate`` guards zero counts). The gradient flows through the denoiser (autograd
through ``prior.denoise``) and through ``A`` by the forward model's own VJP
(:meth:`invkit.ForwardModel.vjp`), so any differentiable forward model works, linear or not.

**Our units.** invkit's state is ``x = x0 + σ n`` in [0, 1] units; the VP view at level σ is
``x_vp = √ᾱ d (x − c)`` with ``d = 2``, ``c = 1/2`` and ``ᾱ = 1/(1 + d²σ²)``
(:func:`invkit.vp.to_vp`). The first two terms of the update are DDPM's ancestral step, which
in our units is :func:`invkit.vp.ddim_step` with η = 1 (its derivation is there; between
respaced levels ``t > s`` it uses ``β′ = 1 − ᾱ_t/ᾱ_s`` and the fixed ``σ̃² = β̃ = (1 − ᾱ_s)/(1 −
ᾱ_t) β′``, as respaced DDPM does). The guidance term: ``∇_{x_vp,i} f = ∇_{x_i} f / (d √ᾱ_i)`` for
any ``f`` of our state, and a displacement ``Δ`` of ``x_vp,i−1`` is ``Δ / (d √ᾱ_i−1)`` of ours, so
the paper's ``x_vp,i−1 −= ζ_i ∇_{x_vp,i} f`` is, in our units,

    x_i−1 = x'_i−1 − κ_i ζ_i ∇_{x_i} f,   κ_i = 1 / (d² √(ᾱ_i ᾱ_i−1)) = √((1 + d²σ_i²)(1 + d²σ_i−1²)) / d²

(:func:`dps_guidance_scale`), with ``f = ‖y − A(x̂_0)‖²_Λ`` and ``y``, ``A`` in our [0, 1] units.
The residual norm in ``ζ_i`` is taken **per sample** (the official code takes one norm over the
whole batch, which couples the samples of a batch; here a row's trajectory does not depend on
the other rows).

**ζ′ against the official code's scale.** The official code steps ``x −= scale · ∇‖r‖``
(not ``∇‖r‖²/‖r‖ = 2 ∇‖r‖``: the factor 2) with ``r`` in [−1, 1] units. For a linear ``A`` the
residual in [−1, 1] units is ``d r``, so ``scale · d ∇_{x_vp}‖r‖ = 2 ζ′ ∇_{x_vp}‖r‖`` gives
``ζ′ = scale · d / 2 = scale``: the official configs' numbers carry over unchanged for linear
operators (twice the paper's ζ′ written for [−1, 1] residuals).

**Deviations, stated.** The paper's ADM networks learn their variance; our prior interface hides
it, so the fixed ``β̃`` is used (DDPM's ``σ_small``). The start is the VP prior's ``x_vp,T ~
N(0, I)`` mapped to our units, ``x_T = c + √(1/d² + σ_T²) n``. The official code clips ``x̂_0`` to
[−1, 1] at every step; the paper's algorithm does not, and neither do we from 100 steps up
(``clip_x0``; see "Few steps" below: below 100 steps we clip by default). Default schedule:
:func:`invkit.schedules.respaced_sigmas` — the prior's trained grid respaced to ``steps``
evaluations with both ends (all 1000 levels by default, as the paper); for a continuous-σ prior
a geometric spacing from ``sigma_max`` to ``sigma_min``.

**Step sizes.** ``zeta`` (ζ′) defaults per operator family (:data:`ZETA_PRESETS`, chosen by the
operator's registered name and the noise model), overridable with ``--solver-arg zeta=...``. The
presets are stated for the paper's 1000 steps and multiplied by ``1000 / steps`` (one push per
step: the same total guidance at any step count), at most by 10 (below 100 steps). How they were chosen (``benchmarks/dps.py
--part tune``; numbers in docs/measurements.md): the official configs' ``scale`` (deblurring 0.3,
×4 super-resolution 0.3, inpainting 0.5, phase retrieval 0.4, Poisson 0.3) times 1, 4, 8 and 16
at 250 steps on one tuning image (KDE's ``Autumn`` wallpaper, 128², never an evaluation photo)
with the default prior, best PSNR kept. 4× (the official value rescaled to 250 steps) beat 1× by
2.5–5.5 dB in every family; blur and super-resolution kept improving up to 16× (the grid's edge,
so presets 1.2), inpainting up to 8× (1.0), while Poisson deblurring and phase retrieval were best
at 4× (0.3, 0.4, the official values). So for our prior at 128² the guidance wants to be up to 4×
stronger than the official numbers; note that ``ζ′/‖r‖`` pushes each pixel by about ``ζ′/√n``, so
the best ζ′ also grows with the image size (tuned at 128² only). Untuned, stated: operators
without a preset (colorization, denoising, compressed sensing) get ``"default"`` (the official
0.3); ``saturated_blur`` inherits the blurs' 1.2; ``"poisson"`` (tuned on ``gaussian_blur``) serves
every operator under Poisson noise. The 1000/steps rule was measured at 250 (4×) and, for
motion deblurring, 100 steps (10×: 25.4 dB against 23.5 at 4×); the resulting defaults at 1000
steps and at 100 steps for the other families were not run. An explicit ``zeta`` is used as
given: one tuned at 250 steps is 4× too strong at 1000.

**Few steps.** The ancestral DDPM step with unclipped ``x̂_0`` breaks down at coarse schedules:
at 20 steps the default prior's estimates at the first levels reach ±10 (data range [0, 1]) and
the sample diverges (motion deblurring on the tuning image: 6.6 dB at every ζ′ from 1.2 to 15; the
prior alone 4.4 dB). Clipping ``x̂_0`` to [0, 1] (``clip_x0``, the official code's
``clip_denoised``) brings it to 20.2 dB, but at 100 steps it costs 1.1 dB (24.3 against 25.4), so
by default runs of fewer than :data:`CLIP_BELOW_STEPS` = 100 steps clip and longer ones do not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor

from invkit.forward import ForwardModel
from invkit.noise import PoissonNoise
from invkit.params import Arg
from invkit.prior import Prior
from invkit.problem import Problem
from invkit.random import Generators, randn_rows, resolve_generator
from invkit.requirements import Capability
from invkit.schedules import check_schedule, respaced_sigmas
from invkit.solver import Callback, Result, Solver, Step
from invkit.vp import ddim_step, vp_start_std

__all__ = ["DPS", "ZETA_PRESETS", "PRESET_STEPS", "MAX_PRESET_SCALE", "CLIP_BELOW_STEPS", "DATA_SCALE", "dps_guidance_scale", "dps_data_term", "dps_step", "zeta_preset"]

#: ``d``: the paper's data live in [−1, 1], twice our [0, 1] range.
DATA_SCALE = 2.0
_CENTER = 0.5

#: The step count the presets are stated for: the paper's (and the official configs') 1000.
PRESET_STEPS = 1000
#: The largest factor :func:`zeta_preset` scales a preset by (reached at 100 steps; fewer steps keep it).
MAX_PRESET_SCALE = 10.0
#: With ``clip_x0=None``, runs of fewer steps clip ``x̂_0`` to [0, 1] (module notes, "Few steps").
CLIP_BELOW_STEPS = 100

#: ζ′ per operator family at :data:`PRESET_STEPS` steps (registered operator name; ``"poisson"``
#: for Poisson noise), in the units of the module notes; :func:`zeta_preset` scales them to the
#: run's step count. Starting points were the official configs' ``scale`` (equal to our ζ′ for
#: linear operators): deblurring 0.3 (gaussian_deblur/motion_deblur), ×4 super-resolution 0.3,
#: random inpainting 0.5, phase retrieval 0.4; re-tuned as the module notes say ("Step sizes"):
#: blurs and super-resolution 4×, inpainting 2×, Poisson and phase retrieval unchanged.
#: Operators not listed get ``"default"`` (untuned).
ZETA_PRESETS: dict[str, float] = {
    "blur": 1.2,
    "gaussian_blur": 1.2,
    "anisotropic_blur": 1.2,
    "uniform_blur": 1.2,
    "saturated_blur": 1.2,
    "super_resolution": 1.2,
    "bicubic_super_resolution": 1.2,
    "inpainting": 1.0,
    "phase_retrieval": 0.4,
    "poisson": 0.3,
    "default": 0.3,
}


def zeta_preset(operator_name: str, noise: object, steps: int = PRESET_STEPS) -> float:
    """ζ′ for an operator family and noise model at ``steps`` steps: the family's preset (``"poisson"``
    under Poisson noise, else the operator's, else ``"default"``) times ``PRESET_STEPS / steps``,
    at most :data:`MAX_PRESET_SCALE` times (the rule was measured down to 100 steps, where the
    factor is 10; fewer steps keep 10 rather than extrapolate).

    The guidance a run applies in all is about ``steps · ζ′`` (one push per step), so the presets,
    stated for 1000 steps, grow as the steps shrink: the same total push at any step count
    (measured on the tuning image: at 250 steps 4× the official 1000-step value beats 1× by 2.5
    to 5.5 dB in every family; at 100 steps 10× beats 4× by 1.9 dB; docs/measurements.md).

    Example:
        >>> zeta_preset("inpainting", None) == ZETA_PRESETS["inpainting"]
        True
        >>> zeta_preset("inpainting", None, steps=250) == 4 * ZETA_PRESETS["inpainting"]
        True
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    key = "poisson" if isinstance(noise, PoissonNoise) else operator_name if operator_name in ZETA_PRESETS else "default"
    return ZETA_PRESETS[key] * min(PRESET_STEPS / steps, MAX_PRESET_SCALE)


def dps_guidance_scale(sigma: float, sigma_next: float, data_scale: float = DATA_SCALE) -> float:
    """``κ = √((1 + d²σ²)(1 + d²σ′²)) / d²``: the paper's VP guidance step expressed in our units (module notes).

    Example:
        >>> dps_guidance_scale(0.0, 0.0)  # no noise: only the (d √ᾱ)² = d² change of units
        0.25
    """
    d2 = data_scale * data_scale
    return math.sqrt((1.0 + d2 * sigma * sigma) * (1.0 + d2 * sigma_next * sigma_next)) / d2


def dps_data_term(op: ForwardModel, y: Tensor, x0_hat: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """The weighted residual ``r = y − A(x̂_0)`` and its per-row norm ``‖r‖_Λ = √(Σ_j Λ_j r_j²)``.

    Args:
        op: The forward model ``A``.
        y: Measurements ``(B, *out_shape)``.
        x0_hat: The denoiser's estimates ``(B, *in_shape)`` (not differentiated here).
        weights: ``Λ`` shaped like ``y`` (Poisson), or ``None`` for ``Λ = I``.

    Returns:
        ``(r, norm)``: ``r`` shaped like ``y``, ``norm`` of shape ``(B,)``.
    """
    r = y - op.forward(x0_hat)
    w = torch.ones_like(r) if weights is None else weights
    norm = (w * r * r).reshape(r.shape[0], -1).sum(1).sqrt()
    return r, norm


def dps_step(
    x: Tensor,
    x0_hat: Tensor,
    grad: Tensor,
    sigma: float,
    sigma_next: float,
    noise: Tensor | None,
) -> Tensor:
    """One DPS update in our units: DDPM's ancestral step from σ to σ′ minus ``κ`` times the guidance gradient.

    Args:
        x: The state at level σ.
        x0_hat: ``denoise(x, σ)``.
        grad: ``ζ_i ∇_{x} ‖y − A(x̂_0)‖²_Λ`` (per row, in our units).
        sigma: σ > 0.
        sigma_next: σ′, ``0 <= σ′ < σ``.
        noise: Standard normal ``z`` shaped like ``x`` (unused when σ′ = 0).

    Returns:
        ``ddim_step(x, x̂_0, σ, σ′, η=1, z) − κ(σ, σ′) · grad``.
    """
    return ddim_step(x, x0_hat, sigma, sigma_next, 1.0, noise) - dps_guidance_scale(sigma, sigma_next) * grad


class DPS(Solver):
    """DPS posterior sampler: DDPM ancestral steps guided by the measurement residual's gradient.

    Works with any differentiable forward model (linear or not; no SVD) and Gaussian or Poisson
    noise; the prior must be differentiable. See the module notes for the equations in our units.

    Args:
        zeta: ζ′, the step size of the guidance, used as given at any step count; ``None``: the
            preset of the operator family scaled to the run's steps (:func:`zeta_preset`).
        clip_x0: Clip ``x̂_0`` to [0, 1] before it enters the ancestral step and the residual
            (the official code's ``clip_denoised``; the paper's algorithm does not). ``None``: clip
            only in runs of fewer than :data:`CLIP_BELOW_STEPS` steps (module notes, "Few steps").

    Example:
        >>> import torch, invkit
        >>> from invkit_operators.denoising import Denoising
        >>> from invkit_priors.analytic import GaussianPrior
        >>> prior = GaussianPrior.isotropic(0.5, 0.04)
        >>> problem = invkit.Problem(Denoising((1, 4, 4)), torch.full((1, 1, 4, 4), 0.6), invkit.GaussianNoise(0.1))
        >>> out = DPS(zeta=0.5).solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(0))
        >>> tuple(out.x.shape), len(out.info["sigmas"])
        ((1, 1, 4, 4), 11)
    """

    name = "dps"
    row_generators = True
    default_steps = 1000
    #: A step differentiates through the prior: 2.7 plain evaluations at 128² (docs/measurements.md).
    evaluations_per_step = 3.0
    requires = frozenset({Capability.DIFFERENTIABLE, Capability.LEAST_SQUARES_NOISE, Capability.PRIOR_GRADIENTS})

    def __init__(
        self,
        *,
        zeta: Annotated[float | None, Arg("ζ′: guidance step size, used as given (default: the operator family's preset x 1000/steps)", min=0.0)] = None,
        clip_x0: Annotated[
            bool | None,
            Arg("clip the denoiser's estimate x̂0 to [0, 1] (the official code's clip_denoised); default: only below 100 steps"),
        ] = None,
    ) -> None:
        self.zeta = zeta
        self.clip_x0 = clip_x0

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
            problem: Forward model, measurements ``(B, *out_shape)`` and noise model.
            prior: A differentiable prior with ``denoise(x, sigma)`` in [0, 1] units.
            steps: Number of prior evaluations (default 1000, the paper's; at most the prior's
                trained levels); ignored when ``sigmas`` is given.
            generator: Source of all randomness: one generator, or one per batch row (then each
                sample is the same whatever batch it is drawn in).
            callback: Called with a :class:`~invkit.solver.Step` after every step.
            sigmas: Explicit descending schedule ``[σ_T, ..., σ_1]`` (a final 0 is appended if missing).

        Returns:
            ``Result(x, info={"sigmas", "zeta", "clip_x0", "residual"})``: ``clip_x0`` whether x̂_0 was clipped, ``residual`` is ``‖y − A(x)‖`` per
            row of the returned images (unweighted).
        """
        self.check(problem, prior)
        op, y = problem.operator, problem.y
        schedule = check_schedule(sigmas) if sigmas is not None else respaced_sigmas(prior, self.default_steps if steps is None else steps)
        zeta = self.zeta if self.zeta is not None else zeta_preset(getattr(op, "name", ""), problem.noise, len(schedule) - 1)
        weights = problem.noise.shot_weights(y) if isinstance(problem.noise, PoissonNoise) else None
        clip = self.clip_x0 if self.clip_x0 is not None else len(schedule) - 1 < CLIP_BELOW_STEPS
        generator = resolve_generator(generator, y.device)
        batch, shape = y.shape[0], (y.shape[0], *op.in_shape)

        x = _CENTER + vp_start_std(schedule[0], DATA_SCALE) * randn_rows(generator, shape, dtype=y.dtype, device=y.device)
        total = len(schedule) - 1
        for i in range(total):
            sigma, sigma_next = schedule[i], schedule[i + 1]
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                x0 = prior.denoise(xr, sigma)
                if clip:  # the gradient flows through the clip (zero where it clips), as the official code's
                    x0 = x0.clamp(0.0, 1.0)
                x0d = x0.detach()
                r, norm = dps_data_term(op, y, x0d, weights)
                # d/dz of Σ_b (ζ′/‖r_b‖) Σ_j Λ_j (y_j − z_j)²: −2 Λ r ζ′/‖r_b‖ (0 for a row that fits exactly)
                coeff = torch.where(norm > 0, zeta / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.zeros_like(norm))
                dz = -2.0 * coeff.view(batch, *([1] * (r.dim() - 1))) * (r if weights is None else weights * r)
                v = op.vjp(x0d, dz)
                (grad,) = torch.autograd.grad(x0, xr, grad_outputs=v)
            noise = randn_rows(generator, shape, dtype=y.dtype, device=y.device) if sigma_next > 0 else None
            x = dps_step(x.detach(), x0d, grad, sigma, sigma_next, noise).detach()
            if callback is not None:
                callback(Step(index=i, total=total, sigma=sigma_next, x=x, x0_hat=x0d))
        residual = problem.residual_norms(x)
        return Result(x=x, info={"sigmas": schedule, "zeta": zeta, "clip_x0": clip, "residual": residual.tolist(), "solver": "dps"})
