"""DiffPIR (Zhu et al. 2023) against a float64 re-implementation of Algorithm 1 in the paper's VP symbols
(data step in [0, 1] units as the official deblurring/SR scripts do it, λ in the official convention),
its data step against a dense solve, the noiseless limit, λ's factor 4, and the official skip schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import invkit
from invkit.dense import MatrixOperator
from invkit.noise import GaussianNoise
from invkit.requirements import RequirementError
from invkit.spectral import spectral_setup
from invkit_priors.analytic import GaussianPrior
from invkit_solvers.diffpir import (
    LAMBDA_PER_OFFICIAL,
    DiffPIR,
    diffpir_cg,
    diffpir_data_step,
    diffpir_lambda,
    diffpir_preset,
    diffpir_rho,
    diffpir_sigmas,
    diffpir_timesteps,
)

F64 = torch.float64
RTOL = 1e-3  # the solver's default svd_rtol
OPERATORS = {
    "inpainting": ["fraction=0.5", "seed=0"],
    "gaussian_blur": ["sigma=1.0"],  # 8x8: one singular value below RTOL (unobserved), the next 1.6e-3
    "super_resolution": ["factor=2"],
}


def _prior() -> GaussianPrior:
    return GaussianPrior.power_law(0.5, 0.03, 1.0, 1.0 / 8.0)


def _op(name: str, shape=(1, 8, 8), args=None):
    return invkit.get_registry().build_operator(name, shape, OPERATORS.get(name, []) if args is None else args)


def _problem(op, sigma_y: float, rows: int = 2) -> invkit.Problem:
    truth = torch.rand((rows, *op.in_shape), generator=torch.Generator().manual_seed(3), dtype=F64) * 0.8 + 0.1
    return invkit.Problem.simulate(op, truth, GaussianNoise(sigma_y), torch.Generator().manual_seed(4))


def dense(op) -> np.ndarray:
    """``H`` as an ``m × n`` numpy matrix, from the forward model applied to the unit images."""
    n = op.in_numel
    basis = torch.eye(n, dtype=F64).reshape(n, *op.in_shape)
    return op.forward(basis).reshape(n, -1).T.numpy()


def official_timesteps(iter_num: int, skip_type: str, levels: int = 1000, t_start: int | None = None) -> list[int]:
    """The official scripts' ``seq`` (numpy, as written there) mapped to timesteps ``L − 1 − seq``, skipping those above t_start."""
    skip = levels // iter_num
    if skip_type == "uniform":
        seq = [i * skip for i in range(iter_num)]
        if skip > 1:
            seq.append(levels - 1)
    else:
        seq = [int(s) for s in list(np.sqrt(np.linspace(0, levels**2, iter_num)))]
        seq[-1] = seq[-1] - 1
    top = levels - 1 if t_start is None else t_start
    out = [levels - 1 - s for s in seq if levels - 1 - s <= top]
    return [t for i, t in enumerate(out) if i == 0 or t != out[i - 1]]


def dense_data_step(h: np.ndarray, y: np.ndarray, z: np.ndarray, rho: float, rtol: float = RTOL) -> np.ndarray:
    """argmin ‖y − H_thr x‖² + ρ‖x − z‖² per row (numpy), H_thr = H with singular values <= rtol·max cut.

    ρ > 0: ``solve(H_thrᵀH_thr + ρI, H_thrᵀy + ρz)``; ρ = 0: ``z + pinv(H, rtol)(y − H z)`` (the limit).
    """
    u, s, vt = np.linalg.svd(h, full_matrices=False)
    keep = s > rtol * s.max()
    h_thr = (u[:, keep] * s[keep]) @ vt[keep]
    if rho == 0.0:
        return z + (np.linalg.pinv(h, rcond=rtol) @ (y - z @ h.T).T).T
    a = h_thr.T @ h_thr + rho * np.eye(h.shape[1])
    return np.linalg.solve(a, (h_thr.T @ y.T + rho * z.T)).T


def reference_diffpir(problem, prior, timesteps, lam_official, zeta, seed, from_measurement=False) -> torch.Tensor:
    """Algorithm 1 in VP symbols, float64: x_vp in [−1, 1], ᾱ_t of the prior's grid at the official timesteps.

    ρ_t = λ_official σ_n² / σ̄_t² with σ_n in [0, 1] units and σ̄_t = √(1 − ᾱ_t)/√ᾱ_t (the official
    ``rhos``); the data step runs on ``x0/2 + 0.5`` against y in [0, 1] (the official deblur/SR
    scripts), densely. The start is x_T ~ N(0, I), or with ``from_measurement`` the official
    ``√ᾱ_s (2 x_init − 1) + √(1 − ᾱ_s) n`` with x_init the data step applied to grey. The random
    draws are the solver's calls, in its order.
    """
    gen = torch.Generator().manual_seed(seed)
    op = problem.operator
    h = dense(op)
    y = problem.y.reshape(problem.y.shape[0], -1).numpy()
    sigma_n = problem.sigma_y
    shape = (problem.y.shape[0], *op.in_shape)
    grid = prior.sigma_grid
    abar = [1.0 / (1.0 + 4.0 * float(grid[t]) ** 2) for t in timesteps] + [1.0]

    def rho(ab: float) -> float:
        return lam_official * sigma_n**2 / ((1.0 - ab) / ab)

    def data_step(x0_vp: torch.Tensor, ab: float) -> torch.Tensor:
        x0_p = (x0_vp / 2 + 0.5).reshape(shape[0], -1).numpy()
        out = dense_data_step(h, y, x0_p, rho(ab) if sigma_n > 0 else 0.0)
        return torch.from_numpy(out).reshape(shape) * 2 - 1

    if from_measurement:
        x_init_vp = data_step(torch.zeros(shape, dtype=F64), abar[0])  # grey is 0 in [−1, 1]
        x_vp = math.sqrt(abar[0]) * x_init_vp + math.sqrt(1 - abar[0]) * torch.randn(shape, generator=gen, dtype=F64)
    else:
        x_vp = torch.randn(shape, generator=gen, dtype=F64)
    for i in range(len(timesteps)):
        ab, ab_next = abar[i], abar[i + 1]
        x_ours = 0.5 + x_vp / (2.0 * math.sqrt(ab))
        x0_vp = 2.0 * (prior.denoise(x_ours, float(grid[timesteps[i]])) - 0.5)
        x0_vp = data_step(x0_vp, ab)
        eps_hat = (x_vp - math.sqrt(ab) * x0_vp) / math.sqrt(1 - ab)
        if ab_next < 1.0 and zeta > 0:
            eps = torch.randn(shape, generator=gen, dtype=F64)
        else:
            eps = torch.zeros(shape, dtype=F64)
        x_vp = math.sqrt(ab_next) * x0_vp + math.sqrt(1 - ab_next) * (math.sqrt(1 - zeta) * eps_hat + math.sqrt(zeta) * eps)
    return 0.5 + x_vp / 2.0


@pytest.mark.parametrize("sigma_y", [0.0, 0.05], ids=["noiseless", "noisy"])
@pytest.mark.parametrize("name", list(OPERATORS))
def test_diffpir_equals_algorithm_1_in_vp_symbols(name, sigma_y) -> None:
    op = _op(name)
    problem, prior = _problem(op, sigma_y), _prior()
    lam_official, zeta = 7.0, 0.3
    ts = official_timesteps(8, "quad")
    out = DiffPIR(lam=lam_official / 4, zeta=zeta, kappa=0.0).solve(problem, prior, steps=8, generator=torch.Generator().manual_seed(5))
    assert out.info["timesteps"] == ts and out.x.dtype == F64
    ref = reference_diffpir(problem, prior, ts, lam_official, zeta, seed=5)
    torch.testing.assert_close(out.x, ref, rtol=0, atol=1e-10)
    # the comparison can fail: another ζ moves the sample
    other = DiffPIR(lam=lam_official / 4, zeta=0.6, kappa=0.0).solve(problem, prior, steps=8, generator=torch.Generator().manual_seed(5))
    assert (other.x - ref).abs().max() > 1e-4


def test_start_from_the_measurement_at_t_start() -> None:
    """t_start: the official x = √ᾱ_s (2 x_init − 1) + √(1 − ᾱ_s) n at the first visited level, uniform skips."""
    op = _op("gaussian_blur")
    problem, prior = _problem(op, 0.05), _prior()
    ts = official_timesteps(10, "uniform", t_start=500)
    assert ts[0] == 499 and len(ts) == 6
    out = DiffPIR(lam=0.5, zeta=0.2, skip_type="uniform", t_start=500, kappa=0.0).solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(6))
    assert out.info["timesteps"] == ts
    ref = reference_diffpir(problem, prior, ts, 2.0, 0.2, seed=6, from_measurement=True)
    torch.testing.assert_close(out.x, ref, rtol=0, atol=1e-10)
    assert (reference_diffpir(problem, prior, ts, 2.0, 0.2, seed=6) - ref).abs().max() > 1e-4  # the start matters


def test_lambda_is_the_official_lambda_over_four() -> None:
    """ρ = λσ_y²/σ² in our units equals the official λ_off σ_n²/σ̄_t² (σ̄_t in [−1, 1] units) at λ = λ_off/4."""
    for sigma in (0.01, 0.3, 5.0):
        abar = 1.0 / (1.0 + 4.0 * sigma**2)
        sigma_bar = math.sqrt(1 - abar) / math.sqrt(abar)  # the official sigma_ks
        official = 7.0 * 0.05**2 / sigma_bar**2
        assert diffpir_rho(7.0 * LAMBDA_PER_OFFICIAL, 0.05, sigma) == pytest.approx(official, rel=1e-12)
        assert diffpir_rho(7.0, 0.05, sigma) == pytest.approx(4 * official, rel=1e-12)
    assert LAMBDA_PER_OFFICIAL == 0.25 and diffpir_preset("gaussian_blur") == (1.75, 0.3)
    # end to end: the official λ passed unconverted is caught by the VP-symbol reference
    op = _op("gaussian_blur")
    problem, prior = _problem(op, 0.05), _prior()
    ts = official_timesteps(8, "quad")
    ref = reference_diffpir(problem, prior, ts, 7.0, 0.3, seed=5)
    right = DiffPIR(lam=7.0 / 4, zeta=0.3, kappa=0.0).solve(problem, prior, steps=8, generator=torch.Generator().manual_seed(5)).x
    wrong = DiffPIR(lam=7.0, zeta=0.3, kappa=0.0).solve(problem, prior, steps=8, generator=torch.Generator().manual_seed(5)).x
    torch.testing.assert_close(right, ref, rtol=0, atol=1e-10)
    assert (wrong - ref).abs().max() > 1e-3
    # the preset is what a run without lam uses
    preset = DiffPIR(zeta=0.3, kappa=0.0).solve(problem, prior, steps=8, generator=torch.Generator().manual_seed(5))
    assert preset.info["lam"] == 1.75 and torch.equal(preset.x, right)


def test_lambda_floor_keeps_the_data_steps_noise_below_the_next_level() -> None:
    """λ_used = max(λ, max over non-final steps of (σ_t/(2κσ′))²): the data step's added noise,
    at most σ_t/(2√λ), stays within κ σ′; the papers' 100 steps keep the preset, few steps raise it."""
    for steps, raised in ((100, False), (20, True), (8, True)):
        sig, _ = diffpir_sigmas(_prior(), steps)
        ratio = max(a / b for a, b in zip(sig, sig[1:]) if b > 0)
        lam = diffpir_lambda(1.75, sig, 1.25)
        assert lam == pytest.approx(max(1.75, (ratio / 2.5) ** 2), rel=1e-12)
        assert (lam > 1.75) == raised
        # the bound it enforces: σ_t/(2√λ) <= κ σ′ on every non-final step
        assert all(a / (2 * math.sqrt(lam)) <= 1.25 * b * (1 + 1e-12) for a, b in zip(sig, sig[1:]) if b > 0)
    assert diffpir_lambda(1.75, [0.049, 0.005, 0.0], 0.0) == 1.75  # κ = 0: the paper's fixed λ
    assert diffpir_lambda(1.75, [0.2, 0.15, 0.0], 1.25) == 1.75
    # with the operator's singular values: the smallest λ >= the paper's with a_t = σ_y max_i s_i/(s_i² + ρ_t) <= κσ′
    op = _op("gaussian_blur")
    spec = spectral_setup(_problem(op, 0.05), svd_rtol=RTOL)
    s_obs = spec.s[spec.observed]
    sig, _ = diffpir_sigmas(_prior(), 8)
    exact = diffpir_lambda(1.75, sig, 1.25, 0.05, s_obs)

    def worst(lam: float) -> float:  # max over non-final steps of a_t / (κσ′)
        return max(0.05 * float((s_obs / (s_obs**2 + lam * 0.05**2 / a**2)).max()) / (1.25 * b) for a, b in zip(sig, sig[1:]) if b > 0)

    assert 1.75 < exact < diffpir_lambda(1.75, sig, 1.25)  # raised, below the s-free bound
    assert worst(exact) <= 1.0 + 1e-9 and worst(exact * 0.99) > 1.0  # it holds, and a smaller λ breaks it
    assert 1.75 <= diffpir_lambda(1.75, sig, 1.25, 0.05, torch.ones(3)) < exact  # s_i = 1: further from √ρ_t, less to raise
    # a noisy run uses it (reported), a noiseless one does not need it
    noisy = DiffPIR(zeta=0.3).solve(_problem(op, 0.05), _prior(), steps=8, generator=torch.Generator().manual_seed(5))
    assert noisy.info["sigmas"] == sig and noisy.info["lam"] == pytest.approx(exact, rel=1e-12)
    paper = DiffPIR(zeta=0.3, lam=noisy.info["lam"], kappa=0.0).solve(_problem(op, 0.05), _prior(), steps=8, generator=torch.Generator().manual_seed(5))
    assert torch.equal(noisy.x, paper.x)  # the floor only changes λ
    clean = DiffPIR(zeta=0.3).solve(_problem(op, 0.0), _prior(), steps=8, generator=torch.Generator().manual_seed(5))
    assert clean.info["lam"] == 1.75


def _svd_step(problem, z: torch.Tensor, rho: float, svd_rtol: float = RTOL) -> torch.Tensor:
    spec = spectral_setup(problem, svd_rtol=svd_rtol)
    return spec.op.V(diffpir_data_step(spec.op.Vt(z), spec.ybar, spec.s, spec.observed, rho))


@pytest.mark.parametrize(
    "name,shape,args",
    [
        ("inpainting", (1, 8, 8), None),
        ("gaussian_blur", (1, 8, 8), None),
        ("super_resolution", (1, 8, 8), None),
        ("bicubic_super_resolution", (1, 8, 8), ["factor=2"]),
        ("colorization", (3, 4, 4), []),
        ("compressed_sensing", (1, 8, 8), ["ratio=2"]),
    ],
)
def test_data_step_is_the_dense_minimiser(name, shape, args) -> None:
    op = _op(name, shape, args)
    problem = _problem(op, 0.05)
    z = torch.rand((2, *op.in_shape), generator=torch.Generator().manual_seed(7), dtype=F64)
    h = dense(op)
    y = problem.y.reshape(2, -1).numpy()
    for rho in (1e-3, 0.3, 20.0):
        ours = _svd_step(problem, z, rho, svd_rtol=0.0).reshape(2, -1).numpy()
        a = h.T @ h + rho * np.eye(h.shape[1])
        direct = np.linalg.solve(a, h.T @ y.T + rho * z.reshape(2, -1).numpy().T).T
        np.testing.assert_allclose(ours, direct, rtol=0, atol=1e-9)
        assert np.abs(ours - z.reshape(2, -1).numpy()).max() > 1e-3  # the step moves z


@pytest.mark.parametrize("name", list(OPERATORS))
def test_noiseless_limit(name) -> None:
    """ρ → 0 converges to the ρ = 0 step, which fits y exactly on the observed range and keeps z elsewhere."""
    op = _op(name)
    problem = _problem(op, 0.0)
    z = torch.rand((2, *op.in_shape), generator=torch.Generator().manual_seed(8), dtype=F64)
    exact = _svd_step(problem, z, 0.0)
    gaps = [float((_svd_step(problem, z, rho) - exact).abs().max()) for rho in (1e-4, 1e-6, 1e-8, 1e-10)]
    assert all(b < a for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1e-5 and gaps[0] > 1e-9
    h = dense(op)
    resid = problem.y.reshape(2, -1).numpy() - exact.reshape(2, -1).numpy() @ h.T
    u, s, _ = np.linalg.svd(h, full_matrices=False)
    obs = s > RTOL * s.max()
    np.testing.assert_allclose(resid @ u[:, obs], 0.0, atol=1e-10)  # Hx = y on the observed range
    if not obs.all():  # the blur: what is below the threshold is left to the prior, not fitted
        assert np.abs(resid @ u[:, ~obs]).max() > 1e-6
    np.testing.assert_allclose(exact.reshape(2, -1).numpy(), dense_data_step(h, problem.y.reshape(2, -1).numpy(), z.reshape(2, -1).numpy(), 0.0), atol=1e-10)


def test_without_an_svd_conjugate_gradients() -> None:
    """A plain matrix operator with the dense fallback switched off (max_dense = 1): CG converges to the SVD path."""
    rng = np.random.default_rng(0)
    op = MatrixOperator((1, 4, 4), rng.standard_normal((10, 16)) / 4)
    problem, prior = _problem(op, 0.05), _prior()
    z = torch.rand((2, *op.in_shape), generator=torch.Generator().manual_seed(9), dtype=F64)
    torch.testing.assert_close(diffpir_cg(op, problem.y, z, 0.3, 40), _svd_step(problem, z, 0.3, svd_rtol=0.0), rtol=0, atol=1e-9)
    assert (diffpir_cg(op, problem.y, z, 0.3, 2) - _svd_step(problem, z, 0.3, svd_rtol=0.0)).abs().max() > 1e-6  # few iterations: not yet
    # (κ = 0: the λ floor differs between the paths, the bound without an SVD)
    cg = DiffPIR(lam=1.0, zeta=0.3, max_dense=1, cg_iters=40, svd_rtol=1e-9, kappa=0.0).solve(problem, prior, steps=6, generator=torch.Generator().manual_seed(2))
    svd = DiffPIR(lam=1.0, zeta=0.3, svd_rtol=1e-9, kappa=0.0).solve(problem, prior, steps=6, generator=torch.Generator().manual_seed(2))
    assert cg.info["data_step"] == "cg" and svd.info["data_step"] == "svd"
    torch.testing.assert_close(cg.x, svd.x, rtol=0, atol=1e-7)
    # noiseless (ρ = 0): CG on the normal equations from z converges to the exact noiseless step z + H⁺(y − Hz)
    clean = _problem(op, 0.0)
    torch.testing.assert_close(diffpir_cg(op, clean.y, z, 0.0, 60), _svd_step(clean, z, 0.0, svd_rtol=0.0), rtol=0, atol=1e-8)
    out = DiffPIR(max_dense=1, cg_iters=60).solve(clean, prior, steps=4, generator=torch.Generator().manual_seed(2))
    assert out.info["data_step"] == "cg" and float((op.forward(out.x) - clean.y).abs().max()) < 1e-8
    # a row's CG does not see the other rows, even far from convergence (3 iterations)
    few = DiffPIR(lam=1.0, zeta=0.3, max_dense=1, cg_iters=3)
    gens = [torch.Generator().manual_seed(s) for s in (4, 5)]
    both = few.solve(problem, prior, steps=4, generator=gens).x
    alone = few.solve(invkit.Problem(op, problem.y[1:], problem.noise), prior, steps=4, generator=[torch.Generator().manual_seed(5)]).x
    torch.testing.assert_close(both[1:], alone, rtol=0, atol=1e-12)


def test_official_skip_schedules() -> None:
    # worked by hand: quad, L = 1000, iter_num = 4: √linspace(0, 1e6, 4) = 0, 577.4, 816.5, 1000 -> seq 0, 577, 816, 999
    assert diffpir_timesteps(4, "quad") == [999, 422, 183, 0]
    # uniform: skip = 250, seq 0, 250, 500, 750 and L − 1 appended -> 5 timesteps
    assert diffpir_timesteps(4, "uniform") == [999, 749, 499, 249, 0]
    assert diffpir_timesteps(4, "quad", t_start=500) == [422, 183, 0]  # the official `if t_i > t_start: continue`
    assert diffpir_timesteps(1000, "uniform") == list(range(999, -1, -1))  # skip = 1: nothing appended
    for k in (2, 3, 7, 20, 100, 333):
        for kind in ("quad", "uniform"):
            assert diffpir_timesteps(k, kind) == official_timesteps(k, kind), (k, kind)
            assert diffpir_timesteps(k, kind, t_start=300) == official_timesteps(k, kind, t_start=300), (k, kind)
    assert len(diffpir_timesteps(1000, "quad")) == len(set(official_timesteps(1000, "quad"))) < 1000  # repeats visited once
    # the solver's levels are the prior's grid at those timesteps, then 0; uniform makes steps + 1 evaluations
    prior = _prior()
    calls = []
    op = _op("inpainting")
    out = DiffPIR(skip_type="uniform").solve(
        _problem(op, 0.05), prior, steps=4, generator=torch.Generator().manual_seed(0), callback=lambda st: calls.append(st.sigma)
    )
    assert out.info["sigmas"] == [float(prior.sigma_grid[t]) for t in (999, 749, 499, 249, 0)] + [0.0]
    assert len(calls) == 5 and calls[-1] == 0.0
    for bad in (dict(steps=1, skip_type="quad"), dict(steps=1001), dict(steps=4, t_start=1000)):
        with pytest.raises(ValueError):
            diffpir_timesteps(**bad)
