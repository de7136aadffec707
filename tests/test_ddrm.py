"""DDRM against independent references on priors whose answer is known in closed form.

The reference below propagates the mean and variance of every spectral coefficient exactly
through the DDRM update (written from the paper's eqs. 7-8, in numpy): with a Gaussian prior
that is diagonal in the operator's V basis, the denoiser is linear per coefficient, so each
coefficient of DDRM's output is Gaussian with moments the recursion gives without Monte-Carlo
error. DDRM's samples are then compared with one Bonferroni-corrected max-z criterion.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import invkit
from invkit.dense import MatrixOperator as MatrixOp
from invkit import DenseSVD, GaussianNoise, Problem, ddpm_sigma_grid
from invkit_solvers.ddrm import DDRM, ddrm_schedule

ALPHA = 1e-3  # family-wise false-alarm rate of each statistical test


class SpectralGaussian(invkit.Prior):
    """N(mu, V diag(lam) V^T) with V the basis of an SVD operator: exact, linear denoiser."""

    def __init__(self, basis, mu_bar: torch.Tensor, lam: torch.Tensor, center: float = 0.5):
        self.basis, self.mu_bar, self.lam = basis, mu_bar, lam
        self.sigma_grid = ddpm_sigma_grid()
        self.data_center = center

    def denoise(self, x, sigma):
        z = self.basis.Vt(x)
        r = self.lam / (self.lam + sigma**2)
        return self.basis.V(self.mu_bar + r * (z - self.mu_bar))


class GreyPrior(invkit.Prior):
    """Denoiser that always answers mid-grey."""

    sigma_grid = ddpm_sigma_grid()

    def denoise(self, x, sigma):
        return torch.full_like(x, 0.5)


class IsoGaussian(invkit.Prior):
    """N(0.5, v I): exact denoiser 0.5 + v / (v + sigma^2) (x - 0.5)."""

    sigma_grid = ddpm_sigma_grid()

    def __init__(self, v: float):
        self.v = v

    def denoise(self, x, sigma):
        return 0.5 + self.v / (self.v + sigma**2) * (x - 0.5)


def reference_moments(s, ybar, sigma_y, mu_bar, lam, c_bar, sigmas, eta, eta_b, rtol):
    """Exact per-coefficient mean and variance of DDRM's output (numpy, float64)."""
    s = np.asarray(s, dtype=float)
    smax = s.max() if s.size else 0.0
    obs = s > rtol * smax
    nstd = np.where(obs, sigma_y / np.where(obs, s, 1.0), np.inf)
    sT = sigmas[0]
    start_obs = obs & (sT >= nstd)
    m = np.where(start_obs, ybar, c_bar)
    v = np.where(start_obs, sT**2 - np.where(start_obs, nstd, 0.0) ** 2, sT**2)
    for sn, st in zip(sigmas[:-1], sigmas[1:]):
        r = lam / (lam + sn**2)
        # x_hat = mu + r (xbar - mu) = r xbar + (1 - r) mu
        out_m, out_v = np.empty_like(m), np.empty_like(v)
        for i in range(len(m)):
            if not obs[i]:
                c = math.sqrt(1 - eta**2) * st / sn
                a, b, add = (1 - c) * r[i] + c, (1 - c) * (1 - r[i]) * mu_bar[i], eta**2 * st**2
            elif st < nstd[i]:
                c = math.sqrt(1 - eta**2) * st / nstd[i]
                a, b, add = (1 - c) * r[i], (1 - c) * (1 - r[i]) * mu_bar[i] + c * ybar[i], eta**2 * st**2
            else:
                a, b, add = (1 - eta_b) * r[i], (1 - eta_b) * (1 - r[i]) * mu_bar[i] + eta_b * ybar[i], st**2 - nstd[i] ** 2 * eta_b**2
            out_m[i], out_v[i] = a * m[i] + b, a * a * v[i] + add
        m, v = out_m, out_v
    return m, v, obs, nstd


def spectral_data(op, y, center):
    """Singular values padded to n, ȳ = Uᵀy / s (0 where s = 0) and the data centre's Vᵀ c̄, in numpy."""
    n = op.in_numel
    s_full = np.zeros(n)
    s_full[: len(op.singular_values)] = op.singular_values.numpy()
    ut = np.pad(op.Ut(y)[0].numpy(), (0, n - op.out_numel))
    nz = s_full > 0
    ybar = np.zeros(n)
    ybar[nz] = ut[nz] / s_full[nz]
    c_bar = op.Vt(torch.full((1, *op.in_shape), center, dtype=torch.float64))[0].numpy()
    return s_full, ybar, c_bar


def max_z_ok(samples: np.ndarray, mean: np.ndarray, var: np.ndarray) -> tuple[float, float]:
    """Max |z| of per-coefficient sample means and variances vs exact moments, and its bound."""
    n_s = samples.shape[0]
    keep = var > 1e-20
    zm = (samples.mean(0) - mean)[keep] / np.sqrt(var[keep] / n_s)
    zv = (samples.var(0, ddof=1) - var)[keep] / (var[keep] * math.sqrt(2.0 / (n_s - 1)))
    # deterministic coefficients (zero variance) must be exact
    det_err = np.abs(samples[:, ~keep] - mean[~keep]).max() if (~keep).any() else 0.0
    assert det_err < 1e-9, f"deterministic coefficients off by {det_err}"
    tests = 2 * int(keep.sum())
    bound = scipy.stats.norm.ppf(1 - ALPHA / (2 * tests))
    return float(max(np.abs(zm).max(), np.abs(zv).max())), float(bound)


def make_problem(sing, shape=(1, 4, 6), m=None, seed=0):
    """Operator with chosen singular values, random orthogonal U, V; m < n leaves s_i = 0 coefficients."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    m = m or len(sing)
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = u[:, : len(sing)] @ np.diag(sing) @ v[:, : len(sing)].T
    return MatrixOp(shape, a)


@pytest.mark.parametrize(
    "sigma_y,sing,eta,eta_b,rtol",
    [
        (0.0, [2.0, 1.0, 0.5, 0.2, 0.05, 0.01, 1e-5], 0.85, 1.0, 1e-3),  # noiseless; 1e-5 below svd_rtol
        (0.05, [2.0, 1.0, 0.5, 0.2, 0.05, 0.01, 0.002], 0.85, 1.0, 1e-3),  # noisy: all three branches
        (0.05, [1.5, 0.3, 0.04, 0.004], 0.5, 0.7, 1e-3),  # other eta / eta_b
        (0.05, [1.0, 0.1, 1e-4], 0.85, 1.0, 1e-6),  # observed but noisier than sigma_T: start fallback
    ],
)
def test_ddrm_matches_exact_recursion(sigma_y, sing, eta, eta_b, rtol):
    op = DenseSVD(make_problem(sing))
    n = op.in_numel
    rng = np.random.default_rng(1)
    lam = torch.from_numpy(rng.uniform(0.01, 0.2, n))
    mu_bar = op.Vt(torch.full((1, *op.in_shape), 0.5, dtype=torch.float64))[0] + torch.from_numpy(rng.normal(0, 0.1, n))
    prior = SpectralGaussian(op, mu_bar, lam)
    x_true = op.V((mu_bar + lam.sqrt() * torch.from_numpy(rng.standard_normal(n)))[None])
    y = op.forward(x_true) + sigma_y * torch.from_numpy(rng.standard_normal((1, op.out_numel)))
    samples_n = 4000
    problem = Problem(op, y.repeat(samples_n, 1), GaussianNoise(sigma_y))
    solver = DDRM(eta=eta, eta_b=eta_b, svd_rtol=rtol)
    out = solver.solve(problem, prior, steps=20, generator=torch.Generator().manual_seed(7))
    z = op.Vt(out.x).numpy()

    s_full, ybar, c_bar = spectral_data(op, y, prior.data_center)
    sigmas = ddrm_schedule(prior, 20)
    mean, var, obs, nstd = reference_moments(s_full, ybar, sigma_y, mu_bar.numpy(), lam.numpy(), c_bar, sigmas, eta, eta_b, solver.svd_rtol)
    # the cases exercise the branches they claim to
    assert (~obs).any()
    if sigma_y > 0:  # branch 3 at sigma_T, branch 2 near the end
        assert (obs & (nstd <= sigmas[0])).any() and (obs & (nstd > sigmas[-2])).any()
    if rtol < 1e-3:
        assert (obs & (nstd > sigmas[0])).any()
    zmax, bound = max_z_ok(z, mean, var)
    assert zmax < bound, f"max |z| = {zmax:.2f} >= {bound:.2f}"


def test_all_singular_values_zero_is_branch_one_everywhere():
    op = DenseSVD(MatrixOp((1, 3, 4), np.zeros((2, 12))))
    assert float(op.singular_values.abs().max()) == 0.0
    rng = np.random.default_rng(2)
    lam = torch.from_numpy(rng.uniform(0.01, 0.1, 12))
    mu_bar = torch.from_numpy(rng.normal(0.5, 0.2, 12))
    prior = SpectralGaussian(op, mu_bar, lam, center=0.3)
    problem = Problem(op, torch.zeros(3000, 2, dtype=torch.float64), GaussianNoise(0.1))
    out = DDRM().solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(3))
    c_bar = op.Vt(torch.full((1, 1, 3, 4), 0.3, dtype=torch.float64))[0].numpy()
    sigmas = ddrm_schedule(prior, 10)
    mean, var, obs, _ = reference_moments(np.zeros(12), np.zeros(12), 0.1, mu_bar.numpy(), lam.numpy(), c_bar, sigmas, 0.85, 1.0, 1e-3)
    assert not obs.any()
    zmax, bound = max_z_ok(op.Vt(out.x).numpy(), mean, var)
    assert zmax < bound
    # unobserved everywhere: the posterior is the prior, N(mu, lam)
    np.testing.assert_allclose(mean, mu_bar.numpy(), atol=0.02)


def test_eta_zero_is_deterministic_ddim():
    """With s = 0 and eta = 0, DDRM is DDIM: x_t = x0 + sigma_t (x_{t+1} - x0) / sigma_{t+1}."""
    op = DenseSVD(MatrixOp((1, 3, 3), np.zeros((1, 9))))
    rng = np.random.default_rng(4)
    prior = SpectralGaussian(op, torch.from_numpy(rng.normal(0.5, 0.1, 9)), torch.from_numpy(rng.uniform(0.01, 0.1, 9)))
    states = []
    problem = Problem(op, torch.zeros(2, 1, dtype=torch.float64), GaussianNoise(0.0))
    out = DDRM(eta=0.0).solve(problem, prior, steps=15, generator=torch.Generator().manual_seed(5), callback=lambda st: states.append(st.x.clone()))
    sigmas = ddrm_schedule(prior, 15)
    x = states[0]
    for sn, st in zip(sigmas[1:-1], sigmas[2:]):
        x0 = prior.denoise(x, sn)
        x = x0 + st * (x - x0) / sn
    torch.testing.assert_close(out.x, x, rtol=0, atol=1e-12)


def test_dense_and_efficient_svd_sample_the_same_distribution():
    """Singular vectors are unique only up to sign/rotation: compare distributions, not pixels."""
    reg = invkit.get_registry()
    name = "super_resolution" if "super_resolution" in reg.names("operator") else "inpainting"
    args = {"factor": 2} if name == "super_resolution" else {"fraction": 0.4}
    op = reg.build_operator(name, (1, 4, 6), args)
    dense = DenseSVD(op)


    x_true = torch.rand(1, 1, 4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = op.forward(x_true) + 0.05 * torch.randn(1, *op.out_shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    S = 3000
    runs = []
    for which, seed in ((op, 10), (dense, 11)):
        problem = Problem(which, y.repeat(S, *([1] * len(op.out_shape))), GaussianNoise(0.05))
        runs.append(DDRM().solve(problem, IsoGaussian(0.05), steps=20, generator=torch.Generator().manual_seed(seed)).x.reshape(S, -1).numpy())
    a, b = runs
    zm = (a.mean(0) - b.mean(0)) / np.sqrt((a.var(0, ddof=1) + b.var(0, ddof=1)) / S)
    # Var of a sample variance for Gaussian data: 2 var^2 / (S - 1)
    zv = (a.var(0, ddof=1) - b.var(0, ddof=1)) / np.sqrt(2 * (a.var(0) ** 2 + b.var(0) ** 2) / (S - 1))
    bound = scipy.stats.norm.ppf(1 - ALPHA / (2 * 2 * a.shape[1]))
    assert max(np.abs(zm).max(), np.abs(zv).max()) < bound


def test_seed_reproduces_bit_for_bit_and_differs_across_seeds():
    op = invkit.get_registry().build_operator("denoising", (3, 5, 4))


    y = torch.rand(2, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    problem = Problem(op, y, GaussianNoise(0.05))
    run = lambda seed: DDRM().solve(problem, IsoGaussian(0.1), steps=8, generator=torch.Generator().manual_seed(seed)).x
    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    assert run(3).dtype == torch.float32


def test_step_in_blocks_of_coefficients_is_bit_for_bit_the_whole_step(monkeypatch):
    """The loop writes the new x̄ a block of coefficients at a time: same numbers as one block."""
    import invkit_solvers.ddrm as ddrm_module

    op = invkit.get_registry().build_operator("gaussian_blur", (3, 8, 10), {"sigma": 1.0})
    y = torch.rand(2, 3, 8, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    run = lambda: DDRM(eta=0.7).solve(Problem(op, y, GaussianNoise(0.05)), IsoGaussian(0.1), steps=6, generator=torch.Generator().manual_seed(2)).x
    whole = run()
    assert len(ddrm_module._blocks(op.in_numel, 2)) == 1
    monkeypatch.setattr(ddrm_module, "STEP_BLOCK", 14)
    assert len(ddrm_module._blocks(op.in_numel, 2)) == 35  # 7 columns per block, the last one partial
    assert torch.equal(run(), whole)


def test_states_kept_by_a_callback_stay_intact_when_V_returns_a_view():
    """An operator's V may return a view of x̄ (the plugin guide's example does): Step.x kept from
    an earlier step must not be rewritten by the next step."""
    base = invkit.get_registry().build_operator("denoising", (1, 4, 5))

    class ViewV(type(base)):
        def V(self, z):
            return z.reshape(z.shape[0], *self.in_shape)

    op = ViewV((1, 4, 5))
    y = torch.rand(1, 1, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kept, copies = [], []
    DDRM().solve(Problem(op, y, GaussianNoise(0.05)), IsoGaussian(0.1), steps=5, generator=torch.Generator().manual_seed(1),
                 callback=lambda st: (kept.append(st.x), copies.append(st.x.clone())))
    assert len(kept) == 5 and all(torch.equal(a, b) for a, b in zip(kept, copies))


def test_one_generator_per_row_makes_samples_independent_of_the_batch():
    op = invkit.get_registry().build_operator("gaussian_blur", (3, 8, 8), {"sigma": 1.0})
    y = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    gens = lambda: invkit.sample_generators(7, 0, 3)
    three = DDRM().solve(Problem(op, y.expand(3, -1, -1, -1), GaussianNoise(0.05)), IsoGaussian(0.1), steps=6, generator=gens()).x
    for i in range(3):
        one = DDRM().solve(Problem(op, y, GaussianNoise(0.05)), IsoGaussian(0.1), steps=6, generator=[gens()[i]]).x
        torch.testing.assert_close(one[0], three[i], atol=1e-6, rtol=0)
    assert float((three[0] - three[1]).abs().max()) > 1e-3
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        DDRM().solve(Problem(op, y.expand(3, -1, -1, -1), GaussianNoise(0.05)), IsoGaussian(0.1), steps=6, generator=gens()[:2])


def test_noiseless_observed_coefficients_reproduce_the_measurement():
    op = invkit.get_registry().build_operator("denoising", (1, 4, 4))


    y = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = DDRM().solve(Problem(op, y), GreyPrior(), steps=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.x, y, rtol=0, atol=1e-12)


def test_schedule_and_validation():
    class P:
        sigma_grid = ddpm_sigma_grid()

    grid = ddpm_sigma_grid()
    sched = ddrm_schedule(P(), 20)
    assert sched[:-1] == [float(grid[t]) for t in range(950, -1, -50)] and sched[-1] == 0.0
    assert len(ddrm_schedule(P(), 3)) == 4

    class Continuous:
        sigma_grid = None
        sigma_min, sigma_max = 0.01, 10.0

    geo = ddrm_schedule(Continuous(), 4)
    np.testing.assert_allclose(geo, [10.0, 1.0, 0.1, 0.01, 0.0])
    with pytest.raises(ValueError, match="exceeds the prior's 1000"):
        ddrm_schedule(P(), 1001)
    with pytest.raises(invkit.ParamError, match="'eta' = 1.5 is out of range"):
        DDRM(eta=1.5)
    op = invkit.get_registry().build_operator("denoising", (1, 2, 2))


    problem = Problem(op, torch.zeros(1, 1, 2, 2), GaussianNoise(0.1))
    # sigma_y / s = 0.1 and the schedule's smallest level above 0.1 is 0.171: eta_b <= 1.71 is valid
    DDRM(eta_b=1.5).solve(problem, GreyPrior(), steps=20, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"eta_b = 2.0 makes a transition variance .* negative .*use eta_b <= 1.711"):
        DDRM(eta_b=2.0).solve(problem, GreyPrior(), steps=20, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="strictly decreasing"):
        DDRM().solve(problem, GreyPrior(), sigmas=[1.0, 2.0], generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="NaN"):
        Problem(op, torch.full((1, 1, 2, 2), float("nan")))


def test_tiny_singular_values_do_not_amplify_rounding_float32():
    """Noiseless problems with tiny singular values (down to 1e-10) are stable in float32."""
    sing = np.geomspace(1.0, 1e-10, 24)
    op = DenseSVD(make_problem(sing, shape=(1, 4, 6), m=24))
    x_true = torch.rand(1, 1, 4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = op.forward(x_true).float()


    out = DDRM().solve(Problem(op, y), IsoGaussian(0.08), steps=20, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.x).all() and float(out.x.abs().max()) < 5.0
    # with the threshold off, the same problem blows up: the threshold is what saves it
    # (how far depends on the LAPACK build's last singular vectors: 7.7 with scipy 1.17.1 / numpy
    # 2.4.6, above 10 with earlier builds; a pixel of an image in [0, 1] at several units is blown up)
    bad = DDRM(svd_rtol=0.0).solve(Problem(op, y), IsoGaussian(0.08), steps=20, generator=torch.Generator().manual_seed(0))
    assert float(bad.x.abs().max()) > 3.0 and float(bad.x.abs().max()) > 5 * float(out.x.abs().max())


def test_eta_b_bound_is_the_smallest_over_the_schedule():
    op = invkit.get_registry().build_operator("denoising", (1, 2, 2))


    problem = Problem(op, torch.zeros(1, 1, 2, 2), GaussianNoise(0.1))
    with pytest.raises(ValueError, match=r"use eta_b <= 1.711"):  # not the first failing level's 86.9
        DDRM(eta_b=100.0).solve(problem, GreyPrior(), steps=20, generator=torch.Generator().manual_seed(0))
    # sigma_T is not a transition target: eta_b = 1.02 is valid when only sigma_T would violate it
    problem = Problem(op, torch.zeros(1, 1, 2, 2), GaussianNoise(0.99))
    DDRM(eta_b=1.02).solve(problem, GreyPrior(), sigmas=[1.0, 0.5], generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("sigma_y", [0.0, 0.2])
def test_start_distribution_and_data_centre_with_a_short_schedule(sigma_y):
    """With sigma_T small the chain remembers its start: N(ybar, sigma_T^2 - nstd^2) or N(cbar, sigma_T^2)."""
    sing = [2.0, 1.0, 0.5, 0.3, 0.1, 0.05]
    op = DenseSVD(make_problem(sing, shape=(1, 3, 4), m=8, seed=3))
    n = op.in_numel
    rng = np.random.default_rng(5)
    lam = torch.from_numpy(rng.uniform(1.0, 2.0, n))  # a broad prior: the denoiser keeps most of the start
    center = 0.2
    mu_bar = op.Vt(torch.full((1, *op.in_shape), 0.7, dtype=torch.float64))[0]
    prior = SpectralGaussian(op, mu_bar, lam, center=center)
    y = op.forward(op.V(mu_bar[None])) + sigma_y * torch.from_numpy(rng.standard_normal((1, op.out_numel)))
    sigmas = [0.3, 0.12]
    samples_n = 4000
    out = DDRM().solve(Problem(op, y.repeat(samples_n, 1), GaussianNoise(sigma_y)), prior, sigmas=sigmas, generator=torch.Generator().manual_seed(9))
    s_full, ybar, c_bar = spectral_data(op, y, center)
    mean, var, obs, nstd = reference_moments(s_full, ybar, sigma_y, mu_bar.numpy(), lam.numpy(), c_bar, sigmas + [0.0], 0.85, 1.0, 1e-3)
    if sigma_y > 0:  # both start cases are exercised
        assert (obs & (nstd > sigmas[0])).any() and (obs & (nstd < sigmas[0]) & (nstd > 0.1)).any()
    zmax, bound = max_z_ok(op.Vt(out.x).numpy(), mean, var)
    assert zmax < bound, f"max |z| = {zmax:.2f} >= {bound:.2f}"


def test_step_functions_are_eq8_case_by_case():
    """ddrm_step against eq. 8 written out per coefficient in plain Python floats."""
    from invkit_solvers.ddrm import ddrm_initial, ddrm_step

    g = torch.Generator().manual_seed(11)
    n = 9
    xbar_next, xhat, ybar, eps = (torch.randn(1, n, generator=g, dtype=torch.float64) for _ in range(4))
    nstd = torch.tensor([math.inf, math.inf, 0.05, 0.2, 0.5, 0.3, 1.0, 0.01, 0.4], dtype=torch.float64)
    observed = torch.isfinite(nstd)
    sigma_t, sigma_next, eta, eta_b = 0.3, 0.45, 0.85, 0.9
    got = ddrm_step(xbar_next, xhat, ybar, observed, nstd, sigma_t, sigma_next, eta, eta_b, eps)[0].tolist()
    c = math.sqrt(1 - eta**2)
    for i in range(n):
        x0, xn, yb, e, ns = float(xhat[0, i]), float(xbar_next[0, i]), float(ybar[0, i]), float(eps[0, i]), float(nstd[i])
        if not math.isfinite(ns):
            want = x0 + c * sigma_t * (xn - x0) / sigma_next + eta * sigma_t * e
        elif sigma_t < ns:
            want = x0 + c * sigma_t * (yb - x0) / ns + eta * sigma_t * e
        else:
            want = (1 - eta_b) * x0 + eta_b * yb + math.sqrt(sigma_t**2 - ns**2 * eta_b**2) * e
        assert got[i] == pytest.approx(want, rel=1e-14, abs=1e-15), i
    # eq. 7: the start
    cbar = torch.full((1, n), 0.5, dtype=torch.float64)
    mean, std = ddrm_initial(ybar, cbar, observed, nstd, 0.45)
    for i in range(n):
        ns = float(nstd[i])
        if math.isfinite(ns) and 0.45 >= ns:
            assert (float(mean[0, i]), float(std[i])) == pytest.approx((float(ybar[0, i]), math.sqrt(0.45**2 - ns**2)), rel=1e-14)
        else:
            assert (float(mean[0, i]), float(std[i])) == (0.5, 0.45)
