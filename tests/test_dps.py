"""DPS (Chung et al. 2023) against a float64 re-implementation of Algorithms 1 and 2 written in the
paper's VP symbols; its prior-only limit against the prior's moments; row independence; Poisson."""

from __future__ import annotations

import math

import pytest
import torch

import invkit
from invkit.noise import GaussianNoise, PoissonNoise
from invkit.requirements import RequirementError
from invkit_operators.blur import GaussianBlur
from invkit_operators.denoising import Denoising
from invkit_priors.analytic import GaussianPrior
from invkit_solvers.dps import DPS

from _parts import Square

F64 = torch.float64


def _prior() -> GaussianPrior:
    return GaussianPrior.power_law(0.5, 0.03, 1.0, 1.0 / 8.0)


def reference_dps(
    problem: invkit.Problem, prior: GaussianPrior, sigmas: list[float], zeta: float, seed: int, official: bool = False, clip: bool = False
) -> torch.Tensor:
    """Algorithm 1 (Λ = I) / Algorithm 2 (Λ = 1/(2 max(y, 1/rate))) in the paper's VP symbols, float64.

    The state is x_vp in [-1, 1] data units; ᾱ_i = 1/(1 + 4 σ_i²) for our levels σ_i; the DDPM
    posterior-mean coefficients and σ̃ are written out in ᾱ, α, β; the guidance is the gradient
    of ‖y − A(x̂0)‖²_Λ with respect to x_vp, scaled by ζ′/‖y − A(x̂0)‖_Λ. The random draws are
    the same calls, in the same order, as the solver's.

    ``official=True`` is instead the official code's step for a linear ``A`` acting on [-1, 1]
    images: ``x_vp −= scale · ∇_{x_vp} ‖y_vp − A(x̂0_vp)‖`` (the norm, not its square) with
    ``y_vp = A(2x − 1) = 2y − A(1)``, ``zeta`` read as ``scale``. ``clip=True`` clips ``x̂0_vp`` to
    [−1, 1] before the step and the residual (the official ``clip_denoised``), differentiated through.
    """
    gen = torch.Generator().manual_seed(seed)
    op, y = problem.operator, problem.y
    shape = (y.shape[0], *op.in_shape)
    lam = PoissonNoise(problem.noise.rate).shot_weights(y) if isinstance(problem.noise, PoissonNoise) else torch.ones_like(y)
    abar = [1.0 / (1.0 + 4.0 * s * s) for s in sigmas]
    x_vp = torch.randn(shape, generator=gen, dtype=F64)  # x_T ~ N(0, I)
    for i in range(len(sigmas) - 1):
        ab_t, ab_s = abar[i], abar[i + 1]
        alpha = ab_t / ab_s
        beta = 1.0 - alpha
        xv = x_vp.detach().requires_grad_(True)
        x_ours = 0.5 + xv / (2.0 * math.sqrt(ab_t))
        x0_vp = 2.0 * (prior.denoise(x_ours, sigmas[i]) - 0.5)
        if clip:
            x0_vp = x0_vp.clamp(-1.0, 1.0)
        x0 = 0.5 + x0_vp / 2.0
        if official:
            y_vp = 2.0 * y - op.forward(torch.ones_like(x0))
            r_vp = y_vp - op.forward(x0_vp)
            (g,) = torch.autograd.grad(zeta * torch.linalg.vector_norm(r_vp.reshape(r_vp.shape[0], -1), dim=1).sum(), xv)
        else:
            r = y - op.forward(x0)
            f = (lam * r * r).reshape(r.shape[0], -1).sum(1)
            zeta_i = zeta / f.detach().sqrt()
            (g,) = torch.autograd.grad((zeta_i * f).sum(), xv)
        mean = (math.sqrt(alpha) * (1 - ab_s) / (1 - ab_t)) * xv.detach() + (math.sqrt(ab_s) * beta / (1 - ab_t)) * x0_vp.detach()
        if sigmas[i + 1] > 0:
            sig_tilde = math.sqrt((1 - ab_s) / (1 - ab_t) * beta)
            mean = mean + sig_tilde * torch.randn(shape, generator=gen, dtype=F64)
        x_vp = mean - g
    return 0.5 + x_vp / 2.0


@pytest.mark.parametrize("noise", [GaussianNoise(0.05), PoissonNoise(40.0)], ids=["gaussian", "poisson"])
@pytest.mark.parametrize("op_name", ["blur", "square"])
def test_dps_equals_the_papers_algorithm_in_vp_symbols(noise, op_name) -> None:
    shape = (1, 8, 8)
    op = GaussianBlur(shape, sigma=1.0) if op_name == "blur" else Square(shape)
    truth = torch.rand((2, *shape), generator=torch.Generator().manual_seed(3), dtype=F64) * 0.8 + 0.1
    problem = invkit.Problem.simulate(op, truth, noise, torch.Generator().manual_seed(4))
    prior = _prior()
    sigmas = [float(s) for s in prior.sigma_grid.flip(0)[::125]] + [0.0]  # 8 respaced levels and 0
    ours = DPS(zeta=0.7, clip_x0=False).solve(problem, prior, sigmas=sigmas, generator=torch.Generator().manual_seed(5)).x
    ref = reference_dps(problem, prior, sigmas, 0.7, seed=5)
    assert ours.dtype == F64
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9)
    # the comparison can fail: a factor 2 in the guidance (the official scale's ∇‖r‖ read as ∇‖r‖²/‖r‖) is caught
    doubled = DPS(zeta=1.4, clip_x0=False).solve(problem, prior, sigmas=sigmas, generator=torch.Generator().manual_seed(5)).x
    assert (doubled - ref).abs().max() > 1e-4
    # clipping x̂0 (the official clip_denoised; DPS's default below 100 steps, as here): equal to the reference that clips,
    # on a bright prior whose estimates leave [0, 1] so that the clip bites
    bright = GaussianPrior.power_law(0.85, 0.05, 1.0, 1.0 / 8.0)
    clipped = DPS(zeta=0.7).solve(problem, bright, sigmas=sigmas, generator=torch.Generator().manual_seed(5))
    assert clipped.info["clip_x0"] is True
    torch.testing.assert_close(clipped.x, reference_dps(problem, bright, sigmas, 0.7, seed=5, clip=True), rtol=0, atol=1e-9)
    assert (clipped.x - reference_dps(problem, bright, sigmas, 0.7, seed=5)).abs().max() > 1e-4


def test_zeta_equals_the_official_codes_scale_for_a_linear_operator() -> None:
    """The module notes' claim ζ′ = scale: the official step x_vp −= scale·∇‖y_vp − A(x̂0_vp)‖ in [−1, 1] units."""
    shape = (1, 8, 8)
    op = GaussianBlur(shape, sigma=1.0)
    truth = torch.rand((2, *shape), generator=torch.Generator().manual_seed(3), dtype=F64) * 0.8 + 0.1
    problem = invkit.Problem.simulate(op, truth, GaussianNoise(0.05), torch.Generator().manual_seed(4))
    prior = _prior()
    sigmas = [float(s) for s in prior.sigma_grid.flip(0)[::125]] + [0.0]
    ours = DPS(zeta=0.3, clip_x0=False).solve(problem, prior, sigmas=sigmas, generator=torch.Generator().manual_seed(5)).x
    official = reference_dps(problem, prior, sigmas, 0.3, seed=5, official=True)
    torch.testing.assert_close(ours, official, rtol=0, atol=1e-9)
    # the paper's ζ′ written for [−1, 1] residuals is half of ours: reading scale as it would be off
    half = DPS(zeta=0.15, clip_x0=False).solve(problem, prior, sigmas=sigmas, generator=torch.Generator().manual_seed(5)).x
    assert (half - official).abs().max() > 1e-4


def test_without_guidance_the_samples_follow_the_prior() -> None:
    """ζ′ = 0 is the prior's ancestral sampler: the prior's mean and covariance within Monte-Carlo error."""
    from invkit_priors.analytic.bases import basis_matrix

    shape = (1, 2, 2)
    prior = GaussianPrior.power_law(0.4, 0.05, 1.0, 0.25)
    op = Denoising(shape)
    n = 1000
    problem = invkit.Problem(op, torch.zeros((n, *op.out_shape), dtype=F64), GaussianNoise(0.1))
    # all 1000 levels: the ancestral sampler with the fixed β̃ is exact only as the steps get fine
    # (at 50 steps its variance is ~25 % low, at 200 ~9 %, at 1000 ~2 %: docs/measurements.md)
    out = DPS(zeta=0.0).solve(problem, prior, generator=torch.Generator().manual_seed(0)).x.reshape(n, -1)
    form = prior.gaussian_form(shape).components[0]
    q = basis_matrix(form.basis).to(F64)
    cov = q @ torch.diag(form.eigenvalues.to(F64)) @ q.T
    mean = form.mean.reshape(-1).to(F64)
    sd = torch.diagonal(cov).sqrt()
    assert torch.all((out.mean(0) - mean).abs() < 4 * sd / math.sqrt(n))
    # each covariance entry within 4 standard errors (var of a sample covariance ≈ (c_ii c_jj + c_ij²)/n)
    se = ((torch.outer(sd * sd, sd * sd) + cov * cov) / n).sqrt()
    assert torch.all((torch.cov(out.T) - cov).abs() < 4 * se)
    # the check can fail: samples drawn with a wrong (halved) start spread are caught by it
    assert not torch.all((torch.cov(out.T) * 0.5 - cov).abs() < 4 * se)


def test_a_row_does_not_depend_on_the_other_rows() -> None:
    """The residual norm is per sample: perturbing row 1's measurement leaves row 0's sample identical."""
    shape = (1, 8, 8)
    op = GaussianBlur(shape, sigma=1.0)
    truth = torch.rand((2, *shape), generator=torch.Generator().manual_seed(3), dtype=F64)
    problem = invkit.Problem.simulate(op, truth, GaussianNoise(0.05), torch.Generator().manual_seed(4))
    y2 = problem.y.clone()
    y2[1] += 0.3
    other = invkit.Problem(op, y2, problem.noise)
    gens = lambda: [torch.Generator().manual_seed(s) for s in (7, 8)]  # noqa: E731
    a = DPS(zeta=0.5).solve(problem, _prior(), steps=20, generator=gens()).x
    b = DPS(zeta=0.5).solve(other, _prior(), steps=20, generator=gens()).x
    assert torch.equal(a[0], b[0]) and not torch.equal(a[1], b[1])


def test_dps_refuses_a_prior_without_gradients() -> None:
    class Frozen(invkit.Prior):
        differentiable = False
        sigma_grid = invkit.ddpm_sigma_grid()

        def denoise(self, x, sigma):
            return x

    problem = invkit.Problem(GaussianBlur((1, 8, 8), sigma=1.0), torch.zeros(1, 1, 8, 8), GaussianNoise(0.1))
    with pytest.raises(RequirementError, match="dps"):
        DPS().solve(problem, Frozen(), steps=2)


def _linear_operators() -> list[str]:
    reg = invkit.get_registry()
    return [n for n in reg.names("operator") if issubclass(reg.operator_class(n), invkit.LinearOperator)]


@pytest.mark.parametrize("noise_name", ["gaussian", "poisson"])
@pytest.mark.parametrize("name", _linear_operators())
def test_every_builtin_linear_operator_works_with_dps(name: str, noise_name: str) -> None:
    """Under Gaussian noise, and Poisson where A(x) >= 0: finite samples whose residual the guidance lowers."""
    reg = invkit.get_registry()
    shape = (3, 32, 32)
    op = reg.build_operator(name, shape)
    if noise_name == "poisson" and getattr(op, "nonnegative", None) is False:
        pytest.skip(f"{name} can go negative: Poisson noise is refused for it")
    noise = GaussianNoise(0.02) if noise_name == "gaussian" else PoissonNoise(255.0)
    prior = _prior()
    truth = prior.sample(1, shape, generator=torch.Generator().manual_seed(0)).clamp(0, 1).float()
    problem = invkit.Problem.simulate(op, truth, noise, torch.Generator().manual_seed(1))
    guided = DPS(zeta=0.5).solve(problem, prior, steps=30, generator=torch.Generator().manual_seed(2))
    free = DPS(zeta=0.0).solve(problem, prior, steps=30, generator=torch.Generator().manual_seed(2))
    assert bool(torch.isfinite(guided.x).all())
    assert guided.info["residual"][0] < 0.95 * free.info["residual"][0]


def test_the_presets_are_chosen_by_the_operator_and_noise_and_scaled_to_the_steps() -> None:
    from invkit_solvers.dps import MAX_PRESET_SCALE, PRESET_STEPS, ZETA_PRESETS, zeta_preset

    registered = set(invkit.get_registry().names("operator"))
    assert set(ZETA_PRESETS) - {"default", "poisson"} <= registered  # every key names a registered operator
    assert {"blur", "gaussian_blur", "super_resolution", "inpainting", "phase_retrieval"} <= set(ZETA_PRESETS)
    assert zeta_preset("inpainting", GaussianNoise(0.1)) == ZETA_PRESETS["inpainting"]
    assert zeta_preset("inpainting", PoissonNoise(255.0)) == ZETA_PRESETS["poisson"]  # the noise model decides first
    assert zeta_preset("no_such_operator", GaussianNoise(0.1), 250) == ZETA_PRESETS["default"] * PRESET_STEPS / 250
    assert zeta_preset("blur", None, 20) == zeta_preset("blur", None, 100) == ZETA_PRESETS["blur"] * MAX_PRESET_SCALE  # capped
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        zeta_preset("blur", None, 0)
    # the solver reports the ζ′ it used: the preset at its step count, or the given value as is
    shape = (1, 8, 8)
    op = GaussianBlur(shape, sigma=1.0)
    problem = invkit.Problem.simulate(op, torch.full((1, *shape), 0.5, dtype=F64), GaussianNoise(0.05), torch.Generator().manual_seed(0))
    out = DPS().solve(problem, _prior(), steps=5, generator=torch.Generator().manual_seed(0))
    assert out.info["zeta"] == pytest.approx(ZETA_PRESETS["gaussian_blur"] * MAX_PRESET_SCALE)
    # x̂0 is clipped by default only in runs of fewer than CLIP_BELOW_STEPS steps; clip_x0 decides when given
    from invkit_solvers.dps import CLIP_BELOW_STEPS

    assert out.info["clip_x0"] is True
    for steps, given, expected in ((CLIP_BELOW_STEPS, None, False), (CLIP_BELOW_STEPS - 1, None, True), (5, False, False)):
        run = DPS(zeta=0.1, clip_x0=given).solve(problem, _prior(), steps=steps, generator=torch.Generator().manual_seed(0))
        assert run.info["clip_x0"] is expected
    assert DPS(zeta=0.25).solve(problem, _prior(), steps=5, generator=torch.Generator().manual_seed(0)).info["zeta"] == 0.25
    poisson = invkit.Problem.simulate(op, torch.full((1, *shape), 0.5, dtype=F64), PoissonNoise(255.0), torch.Generator().manual_seed(0))
    assert DPS().solve(poisson, _prior(), steps=400, generator=torch.Generator().manual_seed(0)).info["zeta"] == pytest.approx(
        ZETA_PRESETS["poisson"] * PRESET_STEPS / 400
    )
