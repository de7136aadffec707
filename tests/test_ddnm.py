"""DDNM and DDNM⁺ against a float64 re-implementation in the paper's VP symbols, exact data
consistency, the time-travel schedule against the official jump rule, and the refusals.

The reference never calls the solver's functions: it builds ``A`` as a dense matrix, takes its SVD
with numpy, computes ``ᾱ_t`` from DDPM's linear betas and the official timestep rule
(``skip = 1000 // T_sampling``), and runs the official code's update (``functions/svd_ddnm.py``:
eq. 12, the range-null correction ``x0 − A†(A x0 − y)`` or its ``Lambda``-scaled form, and
``Lambda_noise``) in [−1, 1] data units, with time travel by ``q(x_{t+1} | x_t)`` as in the
paper's Algorithm 2. Its random draws are the solver's (same generator, same calls), mapped to
pixels by the operator's ``V`` (white noise in any orthonormal basis).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import invkit
from invkit import GaussianNoise, Problem, RequirementError, jump_schedule, randn_rows
from invkit_priors.analytic import GaussianPrior
from invkit_solvers.ddnm import DDNM, DDNMPlus, ddnm_plus_lambda, ddnm_plus_noise_scales

F64 = torch.float64
SHAPE = (1, 8, 8)
RTOL = 1e-3
OPERATORS = {
    "inpainting": ("inpainting", ["fraction=0.5", "seed=0"]),
    "super_resolution": ("super_resolution", ["factor=2"]),
    "blur": ("gaussian_blur", ["sigma=1.0"]),  # one singular value (6e-4) below svd_rtol = 1e-3
}


def _prior() -> GaussianPrior:
    return GaussianPrior.power_law(0.5, 0.03, 1.0, 1.0 / 8.0)


def _problem(op_key: str, sigma_y: float, batch: int = 2) -> Problem:
    name, args = OPERATORS[op_key]
    op = invkit.get_registry().build_operator(name, SHAPE, args)
    truth = _prior().sample(batch, SHAPE, generator=torch.Generator().manual_seed(3)).to(F64)
    return Problem.simulate(op, truth, GaussianNoise(sigma_y), torch.Generator().manual_seed(4))


def official_jumps(t_sampling: int, travel_length: int, travel_repeat: int, interval: int | None = None) -> list[int]:
    """The official ``get_schedule_jump`` (timestep indices, ``-1`` = clean), re-derived; ``interval`` the
    paper's spacing ``s`` of the jump points (the code's is the travel length)."""
    jumps = {j: travel_repeat - 1 for j in range(0, t_sampling - travel_length, interval or travel_length)}
    t, ts = t_sampling, []
    while t >= 1:
        t -= 1
        ts.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(travel_length):
                t += 1
                ts.append(t)
    return ts + [-1]


def reference_ddnm(problem: Problem, prior, steps: int, eta: float, seed: int, plus: bool, travel=(1, 1, None)) -> torch.Tensor:
    """DDNM (``plus=False``) or DDNM⁺ in VP symbols, float64 (module docstring)."""
    op, y = problem.operator, problem.y
    batch, n = y.shape[0], op.in_numel
    shape = (batch, *op.in_shape)
    gen = torch.Generator().manual_seed(seed)

    def draw() -> torch.Tensor:  # the solver's draw, seen in pixels
        return op.V(randn_rows(gen, (batch, n), dtype=F64)).reshape(batch, -1)

    a = invkit.matrix_of(op)
    u, s, vt = np.linalg.svd(a, full_matrices=True)
    k = s.shape[0]
    keep = s > RTOL * s.max()
    s_inv = np.where(keep, 1.0 / np.where(keep, s, 1.0), 0.0)
    U, V, Vt = (torch.from_numpy(m) for m in (u, vt.T, vt))
    sk, sinv = torch.from_numpy(np.where(keep, s, 0.0)), torch.from_numpy(s_inv)

    def a_pinv(r):  # V Σ† Uᵀ r, padded with zeros beyond k
        c = torch.zeros(batch, n, dtype=F64)
        c[:, :k] = (r @ U)[:, :k] * sinv
        return c @ V.T

    A = torch.from_numpy(a)
    y_vp = 2.0 * y.reshape(batch, -1) - A @ torch.ones(n, dtype=F64)  # y' = A(2x − 1) + 2 n
    sigma_y = 2.0 * problem.sigma_y
    abar_all = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    skip = 1000 // steps

    def abar(t: int) -> float:
        return 1.0 if t < 0 else float(abar_all[t * skip])

    times = official_jumps(steps, *travel)
    x = draw()  # x_T ~ N(0, I)
    for i, j in zip(times, times[1:]):
        at, at_next = abar(i), abar(j)
        if j > i:  # time travel: q(x_{t+1} | x_t)
            x = math.sqrt(at_next / at) * x + math.sqrt(1.0 - at_next / at) * draw()
            continue
        sig = math.sqrt((1.0 - at) / at) / 2.0
        x0_ours = prior.denoise((0.5 + x / (2.0 * math.sqrt(at))).reshape(shape), sig).reshape(batch, -1)
        et = (x - math.sqrt(at) * (2.0 * x0_ours - 1.0)) / math.sqrt(1.0 - at)
        x0_t = (x - et * math.sqrt(1.0 - at)) / math.sqrt(at)  # eq. 12
        correction = a_pinv(x0_t @ A.T - y_vp)
        sigma_t, a_next = math.sqrt(1.0 - at_next), math.sqrt(at_next)
        z = draw()
        if not plus or sigma_y == 0.0:
            x0_hat = x0_t - correction
            x = a_next * x0_hat + sigma_t * eta * z + sigma_t * math.sqrt(1.0 - eta**2) * et
            continue
        # Lambda: λ_i = 1, or s_i σ_t √(1−η²)/(a σ_y) where σ_t < a σ_y / s_i (observed)
        inv_full = torch.zeros(n, dtype=F64)
        inv_full[:k] = sinv
        s_full = torch.zeros(n, dtype=F64)
        s_full[:k] = sk
        below = (inv_full > 0) & (sigma_t < a_next * sigma_y * inv_full)
        above = (inv_full > 0) & (sigma_t > a_next * sigma_y * inv_full)
        lam = torch.where(below, s_full * sigma_t * math.sqrt(1.0 - eta**2) / (a_next * sigma_y), torch.ones(n, dtype=F64))
        x0_hat = x0_t - ((correction @ V) * lam) @ V.T
        # Lambda_noise: (d1, d2) on (z, ε) per coefficient
        d1 = torch.full((n,), sigma_t * eta, dtype=F64)
        d2 = torch.full((n,), sigma_t * math.sqrt(1.0 - eta**2), dtype=F64)
        d2 = torch.where(below | above, torch.zeros_like(d2), d2)
        d1 = torch.where(above, torch.sqrt(torch.clamp(sigma_t**2 - (a_next * sigma_y * inv_full) ** 2, min=0.0)), d1)
        x = a_next * x0_hat + ((z @ V) * d1 + (et @ V) * d2) @ V.T
    return (0.5 + x / 2.0).reshape(shape)


CASES = [(op_key, sy) for op_key in OPERATORS for sy in (0.0, 0.05)]


@pytest.mark.parametrize("op_key,sigma_y", CASES, ids=[f"{o}-{'noisy' if s else 'noiseless'}" for o, s in CASES])
def test_ddnm_plus_equals_the_vp_algorithm(op_key: str, sigma_y: float) -> None:
    problem, prior = _problem(op_key, sigma_y), _prior()
    ours = DDNMPlus(eta=0.7).solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(5)).x
    ref = reference_ddnm(problem, prior, steps=10, eta=0.7, seed=5, plus=True)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    other = DDNMPlus(eta=0.6).solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(5)).x
    assert (other - ref).abs().max() > 1e-4  # the comparison can fail
    if sigma_y == 0.0:  # DDNM⁺ without noise is DDNM
        plain = DDNM(eta=0.7).solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(5)).x
        torch.testing.assert_close(plain, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("op_key", list(OPERATORS))
def test_time_travel_equals_the_vp_algorithm(op_key: str) -> None:
    problem, prior = _problem(op_key, 0.05), _prior()
    ours = DDNMPlus(eta=0.85, travel_length=2, travel_repeat=3).solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(6))
    ref = reference_ddnm(problem, prior, steps=10, eta=0.85, seed=6, plus=True, travel=(2, 3, None))
    torch.testing.assert_close(ours.x, ref, rtol=0, atol=1e-10)
    assert ours.info["evaluations"] == sum(1 for i, j in zip(official_jumps(10, 2, 3), official_jumps(10, 2, 3)[1:]) if j < i) == 10 + 4 * 2 * 2
    assert ours.info["travelled"] == 4 * 2 * 2
    # the paper's interval s = 1 (a jump point at every level), passed through the solver
    every = DDNMPlus(eta=0.85, travel_length=2, travel_repeat=2, travel_interval=1).solve(problem, prior, steps=6, generator=torch.Generator().manual_seed(7))
    ref_every = reference_ddnm(problem, prior, steps=6, eta=0.85, seed=7, plus=True, travel=(2, 2, 1))
    torch.testing.assert_close(every.x, ref_every, rtol=0, atol=1e-10)
    assert every.info["travelled"] == 4 * 2
    plain = DDNMPlus(eta=0.85).solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(6)).x
    assert (plain - ref).abs().max() > 1e-4


@pytest.mark.parametrize("t_sampling,length,repeat", [(10, 1, 1), (10, 1, 3), (10, 2, 2), (10, 3, 3), (100, 10, 3), (7, 5, 2), (3, 5, 4)])
def test_jump_schedule_is_the_official_rule_in_positions(t_sampling: int, length: int, repeat: int) -> None:
    positions = jump_schedule(t_sampling, length, repeat)
    assert positions == [t_sampling - 1 - t for t in official_jumps(t_sampling, length, repeat)]
    assert all(abs(p - q) == 1 for p, q in zip(positions, positions[1:]))


def test_jump_schedule_interval_and_validation() -> None:
    # interval 1 (the paper's Algorithm 2: travel back at every level) with l = 2, r = 2 on 4 levels:
    # jump points k = 1, 0 (k = 3 − p); jumps happen only on the way down
    assert jump_schedule(4, 2, 2, 1) == [0, 1, 2, 1, 0, 1, 2, 3, 2, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="travel_repeat must be >= 1"):
        jump_schedule(4, 1, 0)
    # the cost estimate follows the travel: r = 3 on every stretch of 1 level triples nearly every level
    assert DDNMPlus().evaluations_per_step == 1.0
    assert DDNMPlus(travel_repeat=3).evaluations_per_step == pytest.approx((100 + 2 * 99) / 100)


@pytest.mark.parametrize("op_key", ["inpainting", "super_resolution"])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_ddnm_output_satisfies_the_measurement(op_key: str, dtype: torch.dtype, tol: float) -> None:
    problem = _problem(op_key, 0.0, batch=3)
    problem = Problem(problem.operator, problem.y.to(dtype), problem.noise)
    x = DDNM().solve(problem, _prior(), steps=5, generator=torch.Generator().manual_seed(0)).x
    assert x.dtype == dtype
    assert float((problem.operator.forward(x) - problem.y).abs().max()) < tol
    # not trivially: the unobserved part came from the prior, not from a pseudo-inverse (zero there)
    pinv = problem.require_svd().pinv(problem.y)
    assert float((x - pinv).abs().max()) > 0.05


def test_ddnm_blur_fits_the_observed_directions_only() -> None:
    problem = _problem("blur", 0.0)
    setup = invkit.spectral_setup(problem)
    x = DDNM().solve(problem, _prior(), steps=5, generator=torch.Generator().manual_seed(0)).x
    xbar = setup.op.Vt(x)
    torch.testing.assert_close(xbar[:, setup.observed], setup.ybar[:, setup.observed], rtol=0, atol=1e-12)


def test_one_step_is_refused_and_short_schedules_do_not_travel() -> None:
    problem, prior = _problem("inpainting", 0.0), _prior()
    with pytest.raises(ValueError, match="needs steps >= 2"):
        DDNM().solve(problem, prior, steps=1)
    out = DDNMPlus(travel_length=5, travel_repeat=3).solve(problem, prior, steps=4, generator=torch.Generator().manual_seed(0))
    assert out.info["travelled"] == 0 and out.info["evaluations"] == 4


def test_ddnm_refuses_noise_naming_ddnm_plus_before_any_work() -> None:
    from _parts import CountingPrior

    problem = _problem("inpainting", 0.05)
    prior = CountingPrior(_prior())
    with pytest.raises(RequirementError, match=r"^solver 'ddnm' cannot take this problem: it needs noiseless measurements \(sigma_y = 0\), got sigma_y = 0.05 \(if the measurement has no noise, say so: --sigma-y 0\); solvers that take it: .*ddnm_plus"):
        DDNM().solve(problem, prior, steps=5)
    assert prior.calls == 0


def test_lambda_and_noise_scales_case_by_case() -> None:
    nstd = torch.tensor([0.1, 0.1, math.inf, 0.0], dtype=F64)
    observed = torch.tensor([True, True, False, True])
    eta = 0.6
    lam = ddnm_plus_lambda(nstd, observed, 0.05, eta)  # σ′ = 0.05 < 0.1: below; ν = 0: above
    torch.testing.assert_close(lam, torch.tensor([0.8 * 0.5, 0.8 * 0.5, 0.0, 1.0], dtype=F64))
    d_z, d_eps = ddnm_plus_noise_scales(nstd, observed, 0.2, eta)  # σ′ = 0.2 ≥ 0.1: above
    torch.testing.assert_close(d_z, torch.tensor([math.sqrt(0.03), math.sqrt(0.03), 0.12, 0.2], dtype=F64))
    torch.testing.assert_close(d_eps, torch.tensor([0.0, 0.0, 0.16, 0.0], dtype=F64))
    # every coefficient's noise adds up to the level: (λ ν)² + d_z² + d_ε² = σ′² where observed
    for sig in (0.05, 0.2):
        lam = ddnm_plus_lambda(nstd, observed, sig, eta)
        d_z, d_eps = ddnm_plus_noise_scales(nstd, observed, sig, eta)
        total = torch.where(observed, (lam * torch.where(observed, nstd, 0.0)) ** 2, torch.zeros_like(nstd)) + d_z**2 + d_eps**2
        torch.testing.assert_close(total, torch.full_like(total, sig**2))
