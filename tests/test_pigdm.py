"""ΠGDM against a float64 re-implementation written in the paper's VP symbols, its guidance against a
dense-matrix computation, and its refusals.

The references never call the solver's functions: they build ``H`` as a dense matrix from the
operator's ``forward``, take its SVD with numpy, compute ``ᾱ_t`` from DDPM's linear betas and the
official timestep rule, and work in [−1, 1] data units where the paper's ``r_t² = 1 − ᾱ_t``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import invkit
from invkit.noise import GaussianNoise
from invkit.requirements import RequirementError
from invkit_priors.analytic import GaussianPrior
from invkit_solvers.pigdm import PiGDM

from _parts import CountingPrior, LaplaceNoise, Saturate

F64 = torch.float64
SHAPE = (1, 8, 8)
OPERATORS = {
    "inpainting": ("inpainting", ["fraction=0.5", "seed=0"]),
    "super_resolution": ("super_resolution", ["factor=2"]),
    "blur": ("gaussian_blur", ["sigma=1.0"]),  # one singular value (6e-4) below svd_rtol = 1e-3
}


def _prior() -> GaussianPrior:
    return GaussianPrior.power_law(0.5, 0.03, 1.0, 1.0 / 8.0)


def _problem(op_key: str, sigma_y: float, batch: int = 2) -> invkit.Problem:
    name, args = OPERATORS[op_key]
    op = invkit.get_registry().build_operator(name, SHAPE, args)
    truth = _prior().sample(batch, SHAPE, generator=torch.Generator().manual_seed(3)).to(F64)
    return invkit.Problem.simulate(op, truth, GaussianNoise(sigma_y), torch.Generator().manual_seed(4))


def dense_matrix(op) -> np.ndarray:
    """``H`` (m × n, float64) from the operator's forward applied to the pixel basis."""
    n = math.prod(op.in_shape)
    cols = op.forward(torch.eye(n, dtype=F64).reshape(n, *op.in_shape)).reshape(n, -1)
    return cols.T.numpy()


def truncated(h: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """``(H_t, H_t⁺)``: ``H`` with singular values ``<= rtol · max(s)`` set to zero, and its pseudo-inverse."""
    u, s, vh = np.linalg.svd(h, full_matrices=False)
    keep = s > rtol * s.max()
    s_t = np.where(keep, s, 0.0)
    inv = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
    return (u * s_t) @ vh, (vh.T * inv) @ u.T


def reference_pigdm(problem: invkit.Problem, prior, steps: int, eta: float, weight: float, seed: int, rtol: float = 1e-3) -> torch.Tensor:
    """ΠGDM in VP symbols, float64: the official code's update with the paper's noisy form times r_t².

    ``x_T = √ᾱ_T H⁺y' + √(1−ᾱ_T) n``; per step ``x̂_t`` from the prior (via our units), ``ε̂``,
    ``g = ∇_{x_t} <m, x̂_t>`` with ``m = H⁺y' − H⁺H x̂_t`` (σ_y = 0) or
    ``m = r_t² H_tᵀ(r_t² H_t H_tᵀ + σ'_y² I)⁻¹ (y' − H x̂_t)``, ``r_t² = 1 − ᾱ_t``, ``σ'_y = 2σ_y``;
    ``x_{t−1} = √ᾱ_{t−1} x̂_t + c1 z + c2 ε̂ + w √ᾱ_{t−1} √ᾱ_t g``. Timesteps ``0, 1000//steps, ...``.
    The random draws are the same calls, in the same order, as the solver's.
    """
    gen = torch.Generator().manual_seed(seed)
    op, y = problem.operator, problem.y
    batch = y.shape[0]
    shape = (batch, *op.in_shape)
    h = dense_matrix(op)
    h_t, h_pinv = truncated(h, rtol)
    H, Ht, Hp = (torch.from_numpy(a) for a in (h, h_t, h_pinv))
    abar_all = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    ts = list(range(0, 1000, 1000 // steps))
    abars = [float(abar_all[t]) for t in reversed(ts)] + [1.0]
    y_vp = 2.0 * y.reshape(batch, -1) - (H @ torch.ones(H.shape[1], dtype=F64))  # y' = H(2x − 1) + 2 noise
    s_vp = 2.0 * problem.sigma_y

    x_vp = math.sqrt(abars[0]) * (y_vp @ Hp.T).reshape(shape) + math.sqrt(1.0 - abars[0]) * torch.randn(shape, generator=gen, dtype=F64)
    for i in range(len(abars) - 1):
        ab_t, ab_s = abars[i], abars[i + 1]
        sigma_t = math.sqrt((1.0 - ab_t) / ab_t) / 2.0
        xv = x_vp.detach().requires_grad_(True)
        x0_vp = 2.0 * (prior.denoise(0.5 + xv / (2.0 * math.sqrt(ab_t)), sigma_t) - 0.5)
        eps = (xv.detach() - math.sqrt(ab_t) * x0_vp.detach()) / math.sqrt(1.0 - ab_t)
        res = y_vp - x0_vp.detach().reshape(batch, -1) @ H.T
        if s_vp == 0.0:
            m = res @ Hp.T  # H⁺y' − H⁺H x̂
        else:
            r2 = 1.0 - ab_t
            cov = r2 * Ht @ Ht.T + s_vp**2 * torch.eye(H.shape[0], dtype=F64)
            m = r2 * torch.linalg.solve(cov, res.T).T @ Ht
        (g,) = torch.autograd.grad((m * x0_vp.reshape(batch, -1)).sum(), xv)
        c1 = eta * math.sqrt((1.0 - ab_t / ab_s) * (1.0 - ab_s) / (1.0 - ab_t))
        c2 = math.sqrt(max(0.0, 1.0 - ab_s - c1 * c1))
        x_vp = math.sqrt(ab_s) * x0_vp.detach() + c2 * eps + weight * math.sqrt(ab_s) * math.sqrt(ab_t) * g
        if ab_s < 1.0 and eta > 0:
            x_vp = x_vp + c1 * torch.randn(shape, generator=gen, dtype=F64)
    return 0.5 + x_vp.detach() / 2.0


@pytest.mark.parametrize("sigma_y", [0.0, 0.05], ids=["noiseless", "noisy"])
@pytest.mark.parametrize("op_key", list(OPERATORS))
def test_pigdm_equals_the_vp_algorithm(op_key: str, sigma_y: float) -> None:
    problem = _problem(op_key, sigma_y)
    prior = _prior()
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    ours = PiGDM(eta=0.7, weight=0.8).solve(problem, prior, steps=10, generator=gen()).x
    ref = reference_pigdm(problem, prior, steps=10, eta=0.7, weight=0.8, seed=5)
    assert ours.dtype == F64
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    # the comparison can fail: another guidance weight is caught
    other = PiGDM(eta=0.7, weight=1.0).solve(problem, prior, steps=10, generator=gen()).x
    assert (other - ref).abs().max() > 1e-4
    # r_t in the wrong units (the paper's σ²/(1+σ²) read with our σ, i.e. data variance 1 instead of 1/d²)
    # changes a noisy run; without noise r_t cancels (k_i = 1) and the result does not move
    wrong_r = PiGDM(eta=0.7, weight=0.8, data_variance=1.0).solve(problem, prior, steps=10, generator=gen()).x
    if sigma_y > 0:
        assert (wrong_r - ref).abs().max() > 1e-4
    else:
        torch.testing.assert_close(wrong_r, ref, rtol=0, atol=1e-10)


def _guidance_from_steps(problem, prior, sigmas, weight, svd_rtol):
    """Run PiGDM with η = 0 and read each step's guidance ``G`` off the callback: ``x′ − (x̂ + σ′/σ (x − x̂))``, over ``w``."""
    seen = []
    PiGDM(eta=0.0, weight=weight, svd_rtol=svd_rtol).solve(
        problem, prior, sigmas=sigmas, generator=torch.Generator().manual_seed(0), callback=lambda s: seen.append((s.x.clone(), s.x0_hat.clone()))
    )
    out = []
    for i in range(1, len(seen)):  # step i starts from step i−1's output
        x, (x_new, x0) = seen[i - 1][0], seen[i]
        sigma, sigma_next = sigmas[i], sigmas[i + 1] if i + 1 < len(sigmas) else 0.0
        ddim = x0 + (sigma_next / sigma) * (x - x0)
        out.append((sigma, x, x0, ((x_new - ddim) / weight).reshape(x.shape[0], -1).numpy()))
    return out


@pytest.mark.parametrize("sigma_y", [0.0, 0.05], ids=["noiseless", "noisy"])
@pytest.mark.parametrize("op_key", ["inpainting", "blur"])
def test_guidance_equals_the_dense_expression(op_key: str, sigma_y: float) -> None:
    """``G = r² Jᵀ Hᵀ (r² H Hᵀ + σ_y² I)⁻¹ (y − H x̂)`` with explicit matrices (noiseless: ``Jᵀ pinv(H) (y − H x̂)``)."""
    problem = _problem(op_key, sigma_y)
    prior = _prior()
    sigmas = [4.0, 1.0, 0.3, 0.08, 0.02, 0.005]
    # noisy: the plain formula, so no coefficient is thresholded; noiseless: the default threshold, as numpy's pinv(rcond)
    rtol = 1e-12 if sigma_y > 0 else 1e-3
    h = dense_matrix(problem.operator)
    cov = prior.covariance(SHAPE).numpy()
    n = cov.shape[0]
    y = problem.y.reshape(problem.y.shape[0], -1).numpy()
    steps = _guidance_from_steps(problem, prior, sigmas, 0.6, rtol)
    assert len(steps) == len(sigmas) - 1
    for sigma, _, x0, got in steps:
        jac = cov @ np.linalg.inv(cov + sigma**2 * np.eye(n))  # the Gaussian denoiser's Jacobian Σ(Σ + σ²I)⁻¹
        res = y - x0.reshape(x0.shape[0], -1).numpy() @ h.T
        if sigma_y > 0:
            r2 = sigma**2 / (1.0 + 4.0 * sigma**2)  # unit variance in [−1, 1] is 1/4 in [0, 1] units
            w = r2 * np.linalg.solve(r2 * h @ h.T + sigma_y**2 * np.eye(h.shape[0]), res.T).T @ h
        else:
            w = res @ np.linalg.pinv(h, rcond=1e-3).T
        want = w @ jac  # rows: (Jᵀ wᵀ)ᵀ = w J
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * max(1.0, np.abs(want).max()))
        assert np.abs(want).max() > 1e-3  # the guidance is not trivially zero


def test_noiseless_guidance_leaves_thresholded_coefficients_alone() -> None:
    """σ_y = 0: with the default svd_rtol the blur's tiny singular value (6e-4) is not inverted; with a tiny rtol it is."""
    problem = _problem("blur", 0.0)
    prior = _prior()
    sigmas = [1.0, 0.1, 0.01]
    h = dense_matrix(problem.operator)
    _, _, vh = np.linalg.svd(h)
    weak = vh[-1]  # the right singular vector of the smallest singular value
    thresholded = _guidance_from_steps(problem, prior, sigmas, 1.0, 1e-3)
    full = _guidance_from_steps(problem, prior, sigmas, 1.0, 1e-12)
    cov = prior.covariance(SHAPE).numpy()
    for (sigma, _, _, g_thr), (_, _, _, g_full) in zip(thresholded, full):
        # G = Jᵀ w with w = H⁺(y − H x̂) (thresholded or not): undo Jᵀ and look at w along the weak direction
        jac = cov @ np.linalg.inv(cov + sigma**2 * np.eye(cov.shape[0]))
        w_thr = np.linalg.solve(jac.T, g_thr.T).T
        w_full = np.linalg.solve(jac.T, g_full.T).T
        assert np.abs(w_thr @ weak).max() < 1e-8
        assert np.abs(w_full @ weak).max() > 1e-3


@pytest.mark.parametrize("what", ["nonlinear", "no_gradients", "laplace_noise"])
def test_refuses_before_evaluating_the_prior(what: str) -> None:
    op = invkit.get_registry().build_operator("inpainting", SHAPE, ["fraction=0.5", "seed=0"])
    grey = torch.full((1, *SHAPE), 0.5, dtype=F64)
    prior = CountingPrior(_prior(), differentiable=False if what == "no_gradients" else None)
    if what == "nonlinear":
        sat = Saturate(SHAPE)
        problem, words = invkit.Problem(sat, sat.forward(grey), GaussianNoise(0.05)), "an SVD"
    elif what == "laplace_noise":
        problem, words = invkit.Problem(op, op.forward(grey), LaplaceNoise(0.05)), "Gaussian measurement noise"
    else:
        problem, words = invkit.Problem(op, op.forward(grey), GaussianNoise(0.05)), "gradients through the prior"
    with pytest.raises(RequirementError, match="solver 'pigdm'") as info:
        PiGDM().solve(problem, prior, steps=3, generator=torch.Generator().manual_seed(0))
    assert words in str(info.value)
    assert prior.calls == 0


def test_defaults_and_rows() -> None:
    """Default schedule is the official timestep rule at 100 steps; a row does not depend on the others."""
    assert PiGDM.default_steps == 100
    solver = PiGDM()
    assert (solver.eta, solver.weight, solver.data_variance, solver.svd_rtol) == (0.0, 1.0, 0.25, 1e-3)
    problem = _problem("super_resolution", 0.05)
    out = PiGDM(eta=1.0).solve(problem, _prior(), steps=5, generator=[torch.Generator().manual_seed(s) for s in (7, 8)])
    grid = invkit.ddpm_sigma_grid()
    assert out.info["sigmas"] == [float(grid[t]) for t in (800, 600, 400, 200, 0)] + [0.0]
    y2 = problem.y.clone()
    y2[1] += 0.3
    other = PiGDM(eta=1.0).solve(invkit.Problem(problem.operator, y2, problem.noise), _prior(), steps=5, generator=[torch.Generator().manual_seed(s) for s in (7, 8)])
    assert torch.equal(out.x[0], other.x[0]) and not torch.equal(out.x[1], other.x[1])
    assert bool(torch.isfinite(out.x).all())
