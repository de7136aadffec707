"""DiffPIR: denoising diffusion models for plug-and-play image restoration (Zhu et al., CVPR-W 2023).

Half-quadratic splitting with a diffusion denoiser: at each level the prior's clean estimate is
pulled toward the measurement by a proximal (data) step, and the state is re-noised from the
result. The paper's Algorithm 1 in its VP symbols (state ``x_t`` in [−1, 1] data units, ``ᾱ_t``,
``σ̄_t = √(1 − ᾱ_t)/√ᾱ_t``)::

    x̂_0   = denoise(x_t)                                                  (line 3)
    x̂_0′  = argmin_x ‖y − H x‖² + ρ_t ‖x − x̂_0‖²,   ρ_t = λ σ_n² / σ̄_t²   (line 4)
    ε̂     = (x_t − √ᾱ_t x̂_0′) / √(1 − ᾱ_t)                               (line 5, effective noise)
    x_t−1 = √ᾱ_t−1 x̂_0′ + √(1 − ᾱ_t−1) (√(1 − ζ) ε̂ + √ζ ε),   ε ~ N(0, I)  (line 7)

**Our units.** invkit's state is ``x = x0 + σ n`` in [0, 1] units, the VP view ``x_t = d √ᾱ (x −
1/2)`` with ``d = 2`` and ``ᾱ = 1/(1 + d²σ²)`` (:mod:`invkit.vp`). Line 5 becomes ``ε̂ = d √ᾱ_t
(x − x̂_0′)/√(1 − ᾱ_t) = (x − x̂_0′)/σ_t`` (because ``σ = √(1 − ᾱ)/(d √ᾱ)``). In line 7, map
``x_t−1`` back with ``x′ = x_t−1/(d √ᾱ′) + 1/2`` and ``x̂_0′ ↦ d (x̂_0′ − 1/2)``: the first term gives
``x̂_0′`` and ``√(1 − ᾱ′)/(d √ᾱ′) = σ′``, so

    x_t−1 = x̂_0′ + σ_t−1 (√(1 − ζ) ε̂ + √ζ ε),   ε̂ = (x_t − x̂_0′)/σ_t        (:func:`diffpir_step`)

and ``σ_t−1 = 0`` returns ``x̂_0′`` (the paper's ``ᾱ_0 = 1``). The data step is invariant under
the affine change of units (for a linear ``H``, ``‖y_vp − H x_vp‖² = d² ‖y − H x‖²`` and
``‖x_vp − z_vp‖² = d² ‖x − z‖²`` share their minimiser), so it is done in [0, 1] units with
``y`` as measured, and only ρ carries units:

    ρ_t = λ σ_y² / σ_t²     (σ_y and σ_t both in [0, 1] units; :func:`diffpir_rho`)

**λ against the official code's ``lambda_``.** The official scripts compute
``rhos.append(lambda_*(sigma**2)/(sigma_ks[i]**2))`` with ``sigma = max(0.001, noise_level_img)``
in [0, 1] units (``noise_level_img = 12.75/255``, the noise is added as ``2 · noise_level_img`` in
[−1, 1] units) and ``sigma_ks[i] = sqrt_1m_alphas_cumprod[i]/sqrt_alphas_cumprod[i]`` — the
[−1, 1]-unit ``σ̄_t = d σ_t``; the data step then runs on ``x0/2 + 0.5`` against ``y`` in [0, 1]
(deblurring, super-resolution) or on [−1, 1] data against a mask (inpainting; the same
minimiser). So ``ρ_official = λ_official σ_y²/(d² σ_t²)``, and with both noise levels in one unit
system **λ = λ_official / d² = λ_official / 4** (:data:`LAMBDA_PER_OFFICIAL`). The ``lam``
parameter is in our units; the presets are the official numbers divided by 4.

**The data step through the SVD.** With ``H = U Σ Vᵀ``, ``x̄ = Vᵀx``, ``z̄ = Vᵀ x̂_0`` and ``ȳ_i =
(Uᵀy)_i/s_i`` (:func:`invkit.spectral.spectral_setup`) the problem separates per coefficient:

    x̄_i = (s_i² ȳ_i + ρ z̄_i)/(s_i² + ρ) = z̄_i + w_i (ȳ_i − z̄_i),   w_i = s_i²/(s_i² + ρ)

on observed coefficients and ``x̄_i = z̄_i`` elsewhere (:func:`diffpir_data_step`). Equivalently
``w_i = σ_t²/(σ_t² + λ (σ_y/s_i)²)``: a Wiener weight between the measurement's noise ``σ_y/s_i``
and ``σ_t/√λ``. Noiseless measurements (σ_y = 0) are the exact limit ρ → 0: ``w_i = 1``, the
observed coefficients are replaced by ``ȳ_i`` and ``H x̂_0′ = y`` on the observed range (the
official code instead floors ``σ_n`` at 0.001). A coefficient counts as observed when ``s_i >
svd_rtol · max(s)``, in the noisy case too (DDRM's rule: below the threshold ``w_i ȳ_i`` would
magnify float32 rounding of ``y`` up to ``1/(2√ρ)``-fold); the step is then the exact minimiser for
the thresholded operator ``U Σ_thr Vᵀ``. This serves every operator with an SVD — masks, blurs,
super-resolution, colorization, compressed sensing — not only the FFT blurs of the official code.

**Forward models without an SVD** (linear, too large for the dense fallback): the data step is
``cg_iters`` conjugate-gradient iterations on ``(HᵀH + ρ I) x = Hᵀy + ρ x̂_0`` from ``x = x̂_0``
(per row, a fixed count: a row's result does not depend on the batch). Noiseless problems
(ρ = 0) run the same iterations on the normal equations ``HᵀH x = Hᵀy`` from ``x̂_0``: the iterates
stay in ``x̂_0 + range(Hᵀ)`` and converge to ``x̂_0 + H⁺(y − H x̂_0)``, the exact noiseless step
(null space kept, observed part replaced); directions of small singular value converge last, so
the fixed iteration count regularises them as the SVD path's threshold does. Nonlinear models are
refused by the requirements (LINEAR).

**Schedule** (:func:`diffpir_timesteps`), the official scripts' rule for ``iter_num = steps``
over the prior's ``L`` trained levels: ``skip_type="quad"`` takes ``seq = int(√linspace(0, L²,
steps))`` with ``seq[-1] −= 1``, ``"uniform"`` takes ``seq = [i · (L // steps)]`` plus ``L − 1``
when ``L // steps > 1`` (so ``steps + 1`` levels, as the official code); the visited timesteps are
``t = L − 1 − seq`` (the code's ``find_nearest`` on ``sigmas[seq[i]]``), those above ``t_start``
skipped. The levels are ``σ = sigma_grid[t]`` then 0. A continuous-σ prior uses the official
training grid (linear β from 1e-4 to 0.02, 1000 levels: :func:`invkit.prior.ddpm_sigma_grid`).

**Start.** ``t_start=None`` (default): the paper's ``x_T ~ N(0, I)`` in our units, ``x = c +
√(1/d² + σ_T²) n`` with ``c`` the prior's data centre. ``t_start`` given: the official code's
``x = √ᾱ_s (2 x_init − 1) + √(1 − ᾱ_s) n``, i.e. ``x = x_init + σ_s n`` at the first visited level
``σ_s``, with ``x_init`` the data step applied to the flat image ``c`` at ``ρ_s`` (the
least-squares image closest to grey).

**Deviations, stated.**

* σ_y = 0 is the exact limit of the closed form, not ``σ_n = max(0.001, σ_n)``.
* Coefficients below ``svd_rtol`` count as unobserved (above).
* The last step lands on ``x̂_0′`` (the paper's Algorithm 1, ``ᾱ_0 = 1``); the official code
  evaluates the model at its last timestep ``t = 0`` but returns the state there, noisy at
  ``σ = grid[0]`` (≈ 0.005 for DDPM): same number of prior evaluations, the last one used.
* ``t_start`` below the top: the official code initialises at ``ᾱ_{t_start}`` but first
  evaluates the model at the next visited timestep (lower, unless ``t_start`` is on the grid); we
  start at the first visited level, so the state's noise is the level the prior is told. Its
  ``x_init`` is per task there (``y`` for deblurring, the bicubic upsampling for SR, ``y · mask``
  for inpainting); here the data step on grey, one rule for every operator.
* A quad schedule with repeated timesteps (``steps >= 502`` of 1000 levels) visits each once
  (the official loop would step from a level to itself).
* **λ is raised for short noisy schedules** (``kappa``, :func:`diffpir_lambda`): a noisy data step
  adds up to ``a_t = σ_y max_i s_i/(s_i² + ρ_t)`` of measurement noise to a state the next step
  tells the denoiser holds ``σ′``; the run's λ is the smallest ``λ_used ≥ λ`` with ``a_t ≤ κσ′``
  on every step but the last, κ = 1.25, over the operator's observed singular values (the
  s-free bound ``a_t ≤ σ_t/(2√λ)`` on the CG path). At the papers' 100 steps (the only noisy
  step count the paper reports) even the bound, 1.44, is below the deblurring/SR presets, so
  nothing changes there; with few steps the last jumps are large and the paper's fixed λ falls
  off a cliff. Measured on the tuning wallpapers (KDE ``Autumn``, ``ColorfulCups``, ``BytheWater``;
  ``benchmarks/diffpir_floor.py``: 128², ``gaussian_blur sigma=1.5``, σ_y = 0.05, one sample,
  default prior; numbers in docs/measurements.md): the paper's λ = 1.75 gives 5.6 dB (mean) at
  10 quad steps and 15.1 at 20; κ = 1.25 gives 22.7 and 25.7 (λ 44 and 9.6), and 27.0 at 50
  steps against 27.1 with the paper's λ. κ was chosen from {1, 1.25, 1.5, 2} there: best at 20
  steps, 0.8 dB behind κ = 1 at 10, 0.12 dB lost at 50 (none for κ ≥ 1.5, which lose 2.7–9 dB at 10). κ = 0
  restores the paper's fixed λ.
* Not exposed, at their official defaults: ``eta = 0`` (the code's extra DDIM noise inside
  ``√(1 − ζ)``, not in the paper), ``iter_num_U = 1`` (repeats per step), ``guidance_scale = 1``.

**Defaults** (:data:`PRESETS`, by registered operator name; ``lam``/``zeta`` override), traced to
the official repository (yuanzhi-zhu/DiffPIR: scripts at commit 13c3c76, ``configs/`` at 1112e2f)
and not re-tuned on images:

* blurs: ``main_ddpir_deblur.py`` sets ``lambda_ = 1.0``, ``zeta = 0.1`` (lines 50, 59) and runs
  ``lambdas = [lambda_*i for i in range(7,8)]``, ``zeta*i for i in range(3,4)`` (its ``#
  experiments`` block): λ_official = 7, ζ = 0.3, so λ = 1.75;
* super-resolution: ``main_ddpir_sisr.py`` runs ``zeta_i in [0.25]`` and sweeps
  ``lambdas = [lambda_*i for i in range(2,13)]`` (λ_official 2 … 12, no single value); we take 7,
  the deblurring value and the sweep's middle — **untuned**, stated;
* inpainting: ``main_ddpir_inpainting.py`` / ``configs/inpaint.yaml``: ``lambda_ = 1.``,
  ``zeta = 1.0`` (noiseless, 20 NFEs): λ = 0.25, ζ = 1 (λ does not act on noiseless problems);
* other operators (colorization, compressed sensing, denoising): the deblurring pair, untuned.

``steps`` defaults to 100 (``iter_num = 100`` in the deblurring and SR scripts and configs, the
paper's main tables; the inpainting script uses 20), ``skip_type="quad"`` (all three scripts and
configs). ``configs/deblur.yaml`` and ``configs/sisr.yaml`` list ``lambda_: 1, zeta: 0.1``, the
scripts' base values before their experiment loops. The slides' ablation (λ < 1 amplifies noise,
λ > 1000 is nearly unconditional, ζ near 1 blurs) is in official units: divide λ by 4.

Cost per step: one prior evaluation, one ``V`` and one ``Vᵀ`` (SVD path) or ``2 · cg_iters``
operator applications (CG path), plus O(n) elementwise work.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Annotated

import torch
from torch import Tensor

from invkit.forward import ForwardModel
from invkit.params import Arg
from invkit.prior import Prior, ddpm_sigma_grid
from invkit.problem import Problem
from invkit.random import Generators, randn_rows, resolve_generator
from invkit.requirements import Capability, capabilities
from invkit.schedules import check_schedule
from invkit.solver import Callback, Result, Solver, Step
from invkit.spectral import spectral_setup
from invkit.vp import vp_start_std

__all__ = [
    "DiffPIR",
    "DATA_SCALE",
    "LAMBDA_PER_OFFICIAL",
    "PRESETS",
    "SKIP_TYPES",
    "diffpir_preset",
    "diffpir_timesteps",
    "diffpir_sigmas",
    "diffpir_rho",
    "diffpir_data_step",
    "diffpir_cg",
    "diffpir_step",
    "diffpir_lambda",
]

#: ``d``: the paper's data live in [−1, 1], twice our [0, 1] range.
DATA_SCALE = 2.0
#: ``λ = λ_official · LAMBDA_PER_OFFICIAL`` (module notes: the official ρ divides a [0, 1]-unit
#: σ_n² by a [−1, 1]-unit σ̄_t² = d² σ_t²).
LAMBDA_PER_OFFICIAL = 1.0 / DATA_SCALE**2
#: The official codes' ``skip_type`` values.
SKIP_TYPES = ("quad", "uniform")

#: ``(λ_official, ζ)`` per registered operator name (``"default"`` for the rest), in the official
#: code's convention; :func:`diffpir_preset` converts λ to ours. Sources in the module notes.
PRESETS: dict[str, tuple[float, float]] = {
    "blur": (7.0, 0.3),
    "gaussian_blur": (7.0, 0.3),
    "anisotropic_blur": (7.0, 0.3),
    "uniform_blur": (7.0, 0.3),
    "super_resolution": (7.0, 0.25),
    "bicubic_super_resolution": (7.0, 0.25),
    "inpainting": (1.0, 1.0),
    "default": (7.0, 0.3),
}


def diffpir_preset(operator_name: str) -> tuple[float, float]:
    """``(λ, ζ)`` in our units for an operator family: its :data:`PRESETS` entry (else ``"default"``), λ divided by 4.

    Example:
        >>> diffpir_preset("gaussian_blur")
        (1.75, 0.3)
        >>> diffpir_preset("no_such_operator") == diffpir_preset("default")
        True
    """
    lam_official, zeta = PRESETS.get(operator_name, PRESETS["default"])
    return lam_official * LAMBDA_PER_OFFICIAL, zeta


def diffpir_timesteps(steps: int, skip_type: str = "quad", levels: int = 1000, t_start: int | None = None) -> list[int]:
    """The timesteps the official code visits, in visiting (descending) order.

    ``"quad"``: ``seq = [int(v) for v in √linspace(0, L², steps)]``, ``seq[-1] −= 1``;
    ``"uniform"``: ``seq = [i · (L // steps) for i < steps]`` plus ``L − 1`` if ``L // steps > 1``.
    The timesteps are ``L − 1 − seq``; those above ``t_start`` (default ``L − 1``) are skipped, and a
    timestep repeated by the quad rule is kept once.

    Args:
        steps: The official ``iter_num``, ``1 <= steps <= L`` (``>= 2`` for ``"quad"``).
        skip_type: ``"quad"`` or ``"uniform"``.
        levels: L, the number of trained levels.
        t_start: Largest timestep visited (``0 <= t_start < L``), or None for ``L − 1``.

    Raises:
        ValueError: An argument out of range, or no timestep left at or below ``t_start``.

    Example:
        >>> diffpir_timesteps(5, "quad", 100)
        [99, 49, 29, 13, 0]
        >>> diffpir_timesteps(4, "uniform", 100)
        [99, 74, 49, 24, 0]
    """
    if skip_type not in SKIP_TYPES:
        raise ValueError(f"skip_type must be one of {', '.join(SKIP_TYPES)}, got {skip_type!r}")
    steps = operator.index(steps)
    if not 1 <= steps <= levels:
        raise ValueError(f"steps = {steps!r} is outside 1..{levels} (the prior's trained noise levels); use 1 <= steps <= {levels}")
    if skip_type == "quad":
        if steps < 2:
            raise ValueError("the quad skip schedule needs steps >= 2 (the official rule indexes past the grid at 1); use steps >= 2 or skip_type=uniform (--solver-arg skip_type=uniform)")
        step = float(levels * levels) / (steps - 1)  # numpy.linspace(0, L², steps): i · step, the last entry exactly L²
        seq = [int(math.sqrt(i * step)) for i in range(steps - 1)] + [levels]
        seq[-1] -= 1
    else:
        skip = levels // steps
        seq = [i * skip for i in range(steps)]
        if skip > 1:
            seq.append(levels - 1)
    top = levels - 1 if t_start is None else operator.index(t_start)
    if not 0 <= top < levels:
        raise ValueError(f"t_start = {t_start!r} is outside 0..{levels - 1} (the prior's trained timesteps)")
    out: list[int] = []
    for t in (levels - 1 - s for s in seq):
        if t <= top and (not out or t != out[-1]):
            out.append(t)
    if not out:
        raise ValueError(f"no timestep of the schedule is at or below t_start = {t_start}")
    return out


def diffpir_sigmas(prior: Prior, steps: int, skip_type: str = "quad", t_start: int | None = None) -> tuple[list[float], list[int]]:
    """The schedule ``[σ_{t_0}, ..., σ_{t_K}, 0]`` of :func:`diffpir_timesteps` on the prior's grid, and the timesteps.

    A continuous-σ prior (``sigma_grid is None``) uses the official training grid
    (:func:`invkit.prior.ddpm_sigma_grid`, 1000 levels).
    """
    grid = prior.sigma_grid if getattr(prior, "sigma_grid", None) is not None else ddpm_sigma_grid()
    ts = diffpir_timesteps(steps, skip_type, len(grid), t_start)
    return [float(grid[t]) for t in ts] + [0.0], ts


def diffpir_rho(lam: float, sigma_y: float, sigma: float) -> float:
    """``ρ_t = λ σ_y² / σ_t²`` (both noise levels in [0, 1] units; λ in ours, λ_official/4).

    Example:
        >>> diffpir_rho(1.0, 0.05, 0.5)
        0.010000000000000002
    """
    if not sigma > 0.0:
        raise ValueError(f"the data step needs a level sigma > 0, got {sigma}")
    return lam * sigma_y * sigma_y / (sigma * sigma)


def diffpir_lambda(
    lam: float, sigmas: Sequence[float], kappa: float, sigma_y: float | None = None, singular_values: Tensor | None = None
) -> float:
    """λ for a noisy schedule: the paper's λ, raised where its data steps would add more noise than the next level holds.

    With noise, the data step moves observed coefficient ``i`` by ``w_i (ȳ_i − z̄_i)``, adding
    measurement noise of std up to ``a_t = σ_y max_i s_i/(s_i² + ρ_t)`` (``w_i = s_i²/(s_i² +
    ρ_t)``, the noise of ``ȳ_i`` being ``σ_y/s_i``), to a state the next step tells the denoiser
    holds noise ``σ′``. The run's λ is the smallest ``λ_used ≥ λ`` with ``a_t ≤ κσ′`` on every step
    but the last (``σ′ = 0``); ``a_t`` falls as ρ (so λ) grows, so it is found by bisection over the
    operator's observed singular values. Without them (no SVD) the bound ``a_t ≤ σ_y/(2√ρ_t) =
    σ_t/(2√λ)`` (at ``s_i² = ρ_t``) gives ``λ_used = max(λ, max_t (σ_t/(2κσ′))²)``.

    At the papers' 100 quad steps the largest ratio ``σ_t/σ′`` (before the last step) is 3.0 and
    even the bound (1.44 at κ = 1.25) stays below the blur and SR presets; with few steps the last
    jumps are large (9.9 at 20 quad steps, 19.9 at 10) and the fixed λ lets the denoiser meet
    noise it is not told about (docs/measurements.md). Operators whose singular values keep away
    from ``√ρ_t`` need less than the bound.

    Args:
        lam: λ (ours).
        sigmas: The schedule ``[σ_T, ..., σ_1, 0]``.
        kappa: κ; 0 keeps λ (the paper).
        sigma_y: The noise std (needed with ``singular_values``).
        singular_values: The observed singular values ``s_i > 0`` (any shape); None: the bound.

    Example:
        >>> sig = [0.2, 0.094, 0.049, 0.005, 0.0]  # the end of 20 quad steps
        >>> round(diffpir_lambda(1.75, sig, 1.25), 4)
        15.3664
        >>> diffpir_lambda(1.75, [0.2, 0.15, 0.0], 1.25), diffpir_lambda(1.75, sig, 0.0)
        (1.75, 1.75)
        >>> import torch  # singular values far from √ρ_t need less than the bound
        >>> exact = diffpir_lambda(1.75, sig, 1.25, 0.05, torch.tensor([1.0, 0.9]))
        >>> 1.75 <= exact < 15.3664
        True
    """
    if not kappa > 0.0:
        return lam
    steps = [(a, b) for a, b in zip(sigmas, sigmas[1:]) if b > 0.0]
    bound = max([lam] + [(a / (2.0 * kappa * b)) ** 2 for a, b in steps])
    if singular_values is None or sigma_y is None or not sigma_y > 0.0 or bound == lam:
        return bound
    s = singular_values.detach().reshape(-1).double()
    s = s[s > 0]
    if s.numel() == 0:
        return lam

    def fits(lam_try: float) -> bool:
        return all(sigma_y * float((s / (s * s + lam_try * sigma_y**2 / (a * a))).max()) <= kappa * b for a, b in steps)

    if fits(lam):
        return lam
    # fits(bound) holds (the bound is above every a_t); below lam (or a vanishing λ for lam = 0) it fails
    lo, hi = math.log(lam) if lam > 0.0 else math.log(bound) - 60.0, math.log(bound)
    if fits(math.exp(lo)):
        return math.exp(lo)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(math.exp(mid)) else (mid, hi)
    return math.exp(hi)


def diffpir_data_step(zbar: Tensor, ybar: Tensor, s: Tensor, observed: Tensor, rho: float) -> Tensor:
    """Line 4 through the SVD: ``argmin ‖y − Hx‖² + ρ‖x − z‖²`` per spectral coefficient.

    ``x̄_i = z̄_i + w_i (ȳ_i − z̄_i)`` with ``w_i = s_i²/(s_i² + ρ)`` where observed, 0 elsewhere;
    ρ = 0 (noiseless) gives exactly ``w_i = 1``: observed coefficients replaced by ``ȳ_i``.

    Args:
        zbar: ``(B, n)`` ``Vᵀ`` of the prior's estimate ``x̂_0``.
        ybar: ``(B, n)`` ``ȳ`` (0 where unobserved).
        s: ``(n,)`` singular values padded with zeros.
        observed: ``(n,)`` observed mask.
        rho: ρ >= 0.

    Returns:
        ``(B, n)`` ``Vᵀ x̂_0′``.
    """
    if rho == 0.0:
        w = observed.to(zbar.dtype)
    else:
        s2 = s * s
        w = torch.where(observed, s2 / (s2 + rho), torch.zeros_like(s2))
    return zbar + w * (ybar - zbar)


def _rows_dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).reshape(a.shape[0], -1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def diffpir_cg(op: ForwardModel, y: Tensor, z: Tensor, rho: float, iters: int) -> Tensor:
    """Line 4 without an SVD: ``iters`` conjugate-gradient steps on ``(HᵀH + ρI) x = Hᵀy + ρ z`` from ``x = z``.

    Each row is its own system (row scalars), with a fixed iteration count, so a row's result
    does not depend on the batch; a row whose residual vanishes stays put.

    Args:
        op: A linear forward model (``forward`` and ``adjoint``).
        y: Measurements ``(B, *out_shape)``.
        z: The prior's estimates ``(B, *in_shape)``.
        rho: ρ >= 0 (0: the noiseless step, CG on the normal equations).
        iters: Number of iterations (>= 1).
    """
    tiny = torch.finfo(z.dtype).tiny
    # a row stops once its residual is at rounding level (10² eps relative to the start): iterating
    # further divides rounding by rounding (with ρ = 0 and fewer measurements than unknowns the
    # normal equations are singular and CG would blow up)
    stop = (1e2 * torch.finfo(z.dtype).eps) ** 2

    def normal(v: Tensor) -> Tensor:
        return op.adjoint(op.forward(v)) + rho * v

    x = z.clone()
    r = op.adjoint(y - op.forward(z))  # b − A z with b = Hᵀy + ρ z
    p = r.clone()
    rs = _rows_dot(r, r)
    floor = stop * rs
    for _ in range(iters):
        ap = normal(p)
        pap = _rows_dot(p, ap)
        live = (rs > floor) & (pap > 0)
        alpha = torch.where(live, rs / pap.clamp_min(tiny), torch.zeros_like(pap))
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = _rows_dot(r, r)
        beta = torch.where(live, rs_new / rs.clamp_min(tiny), torch.zeros_like(rs))
        p = r + beta * p
        rs = torch.where(live, rs_new, rs)
    return x


def diffpir_step(
    x: Tensor,
    x0_hat: Tensor,
    sigma: float,
    sigma_next: float,
    zeta: float,
    data_step: Callable[[Tensor], Tensor],
    noise: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """One reverse step in our units: data step, effective ε̂, re-noising with ζ (lines 4-7).

    ``x̂_0′ = data_step(x̂_0)``, ``ε̂ = (x − x̂_0′)/σ``, ``x′ = x̂_0′ + σ′ (√(1 − ζ) ε̂ + √ζ ε)``;
    ``σ′ = 0`` returns ``x̂_0′``.

    Args:
        x: The state at level σ > 0.
        x0_hat: ``denoise(x, σ)``.
        sigma: σ.
        sigma_next: σ′, ``0 <= σ′ < σ``.
        zeta: ζ in [0, 1].
        data_step: The proximal map ``x̂_0 ↦ x̂_0′`` at this level's ρ.
        noise: Standard normal ``ε`` shaped like ``x`` (unused when σ′ = 0 or ζ = 0).

    Returns:
        ``(x′, x̂_0′)``.
    """
    x0_data = data_step(x0_hat)
    if sigma_next == 0.0:
        return x0_data.clone(), x0_data
    out = x0_data + (sigma_next * math.sqrt(1.0 - zeta) / sigma) * (x - x0_data)
    if zeta > 0.0:
        if noise is None:
            raise ValueError("diffpir_step with zeta > 0 needs noise (a standard normal tensor shaped like x)")
        out = out + (sigma_next * math.sqrt(zeta)) * noise
    return out, x0_data


class DiffPIR(Solver):
    """DiffPIR: diffusion denoising steps interleaved with a closed-form proximal data step (HQS).

    Linear operators with Gaussian noise: the data step is exact through the operator's SVD (its
    own or the dense fallback), conjugate gradients otherwise (noisy problems only). See the module
    notes for the equations in our units, λ's relation to the official code's and the defaults.

    Args:
        lam: λ in our units (``ρ_t = λ σ_y²/σ_t²``, both in [0, 1] units; the official ``lambda_``
            is 4λ). ``None``: the operator family's preset (:func:`diffpir_preset`).
        zeta: ζ, the share of fresh noise in the re-noising (0: DDIM-like, 1: all fresh).
            ``None``: the preset.
        skip_type: The official skip schedule, ``"quad"`` or ``"uniform"``.
        t_start: Largest trained timestep visited (the official ``t_start``), starting from the
            measurement there; ``None``: the top, from pure noise (the paper).
        svd_rtol: Coefficients with ``s_i <= svd_rtol * max(s)`` count as unobserved.
        max_dense: Largest ``max(m, n)`` for the dense SVD fallback; larger operators without an
            SVD take the CG data step.
        cg_iters: Conjugate-gradient iterations per data step when there is no SVD.
        kappa: κ of the noisy λ floor (:func:`diffpir_lambda`): the run uses the smallest
            λ ≥ ``lam`` whose data steps add at most κ times the next level's noise (over the
            operator's singular values; ``max(λ, max_t (σ_t/(2κσ′))²)`` on the CG path), one λ
            for the whole run, also when ``lam`` is given; 0 keeps the paper's fixed λ.

    Example:
        >>> import torch, invkit
        >>> from invkit_priors.analytic import GaussianPrior
        >>> op = invkit.get_registry().build_operator("inpainting", (1, 4, 4), ["fraction=0.5"])
        >>> problem = invkit.Problem(op, torch.full((1, 8), 0.6, dtype=torch.float64))
        >>> out = DiffPIR().solve(problem, GaussianPrior.isotropic(0.5, 0.04), steps=10, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.allclose(op.forward(out.x), problem.y)), out.info["data_step"]
        (True, 'svd')
    """

    name = "diffpir"
    row_generators = True
    default_steps = 100
    requires = frozenset({Capability.LINEAR, Capability.GAUSSIAN_NOISE})

    def __init__(
        self,
        *,
        lam: Annotated[
            float | None, Arg("λ in our units: rho = λ sigma_y²/sigma² (the official lambda_ is 4λ); default: the operator family's preset", min=0.0)
        ] = None,
        zeta: Annotated[float | None, Arg("ζ: share of fresh noise when re-noising (0 to 1); default: the operator family's preset", min=0.0, max=1.0)] = None,
        skip_type: Annotated[str, Arg("skip schedule of the official code over the trained levels", choices=SKIP_TYPES)] = "quad",
        t_start: Annotated[
            int | None, Arg("largest trained timestep visited, starting there from the measurement (default: the top, from noise)", min=0)
        ] = None,
        svd_rtol: Annotated[
            float, Arg("relative singular-value threshold below which a coefficient is unobserved", min=0.0, max=1.0, max_inclusive=False)
        ] = 1e-3,
        max_dense: Annotated[int, Arg("largest max(m, n) for the dense SVD fallback (larger: conjugate gradients)", min=1)] = 4096,
        cg_iters: Annotated[int, Arg("conjugate-gradient iterations per data step for operators without an SVD", min=1)] = 20,
        kappa: Annotated[
            float, Arg("largest ratio of the noise a noisy data step adds to the next level's noise (raises λ for the run, given or preset); 0: the paper's fixed λ", min=0.0)
        ] = 1.25,
    ) -> None:
        self.lam = lam
        self.zeta = zeta
        self.skip_type = skip_type
        self.t_start = t_start
        self.svd_rtol = svd_rtol
        self.max_dense = max_dense
        self.cg_iters = cg_iters
        self.kappa = kappa

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
            problem: Linear operator, measurements ``(B, *out_shape)`` and Gaussian noise.
            prior: Any prior with ``denoise(x, sigma)`` in [0, 1] units.
            steps: The official ``iter_num`` (default 100): prior evaluations with
                ``skip_type="quad"``, one more with ``"uniform"`` (as the official code); ignored
                when ``sigmas`` is given.
            generator: One generator, or one per batch row (then each sample is the same
                whatever batch it is drawn in).
            callback: Called with a :class:`~invkit.solver.Step` after every step (``x0_hat`` is
                the prior's estimate, before the data step).
            sigmas: Explicit descending schedule ``[σ_T, ..., σ_1]`` (a final 0 is appended if
                missing); not combined with ``t_start``.

        Returns:
            ``Result(x, info={"sigmas", "timesteps", "lam", "zeta", "data_step", "observed"})``
            (``lam`` the λ used, after the floor):
            ``data_step`` is ``"svd"`` or ``"cg"``, ``observed`` the number of observed
            coefficients (None on the CG path), ``timesteps`` None for explicit ``sigmas``.

        Raises:
            ValueError: ``sigmas`` together with ``t_start``, or a schedule out of range.
        """
        self.check(problem, prior)
        op, y = problem.operator, problem.y
        if sigmas is not None:
            if self.t_start is not None:
                raise ValueError("solver 'diffpir': t_start selects levels of the skip schedule; with explicit sigmas start them where you want")
            schedule, timesteps = check_schedule(sigmas), None
        else:
            schedule, timesteps = diffpir_sigmas(prior, self.default_steps if steps is None else steps, self.skip_type, self.t_start)
        preset_lam, preset_zeta = diffpir_preset(getattr(op, "name", ""))
        lam = preset_lam if self.lam is None else float(self.lam)
        zeta = preset_zeta if self.zeta is None else float(self.zeta)
        sigma_y = problem.sigma_y
        generator = resolve_generator(generator, y.device)
        batch, shape = y.shape[0], (y.shape[0], *op.in_shape)

        observed_count: int | None
        svals: Tensor | None
        if Capability.SVD in capabilities(problem, max_dense=self.max_dense):
            spec = spectral_setup(problem, svd_rtol=self.svd_rtol, max_dense=self.max_dense)
            sop, ybar, s, observed = spec.op, spec.ybar, spec.s, spec.observed
            observed_count, path, svals = int(observed.sum()), "svd", s[observed]

            def prox(rho: float) -> Callable[[Tensor], Tensor]:
                return lambda z: sop.V(diffpir_data_step(sop.Vt(z), ybar, s, observed, rho))

        else:
            observed_count, path, svals = None, "cg", None

            def prox(rho: float) -> Callable[[Tensor], Tensor]:
                return lambda z: diffpir_cg(op, y, z, rho, self.cg_iters)

        if sigma_y > 0.0:  # the floor: over the observed singular values, or their bound without an SVD
            lam = diffpir_lambda(lam, schedule, self.kappa, sigma_y, svals)
        center = float(prior.data_center)
        start = schedule[0]
        if self.t_start is None:
            x = center + vp_start_std(start, DATA_SCALE) * randn_rows(generator, shape, dtype=y.dtype, device=y.device)
        else:
            flat = torch.full(shape, center, dtype=y.dtype, device=y.device)
            x_init = prox(diffpir_rho(lam, sigma_y, start))(flat)
            x = x_init + start * randn_rows(generator, shape, dtype=y.dtype, device=y.device)

        total = len(schedule) - 1
        for i in range(total):
            sigma, sigma_next = schedule[i], schedule[i + 1]
            x0 = prior.denoise(x, sigma)
            noise = randn_rows(generator, shape, dtype=y.dtype, device=y.device) if sigma_next > 0.0 and zeta > 0.0 else None
            x, _ = diffpir_step(x, x0, sigma, sigma_next, zeta, prox(diffpir_rho(lam, sigma_y, sigma)), noise)
            if callback is not None:
                callback(Step(index=i, total=total, sigma=sigma_next, x=x, x0_hat=x0))
        info = {"sigmas": schedule, "timesteps": timesteps, "lam": lam, "zeta": zeta, "data_step": path, "observed": observed_count, "solver": "diffpir"}
        return Result(x=x, info=info)
