"""The ``exact`` solver: posterior moments against independent numpy formulas, exact samples, seeds, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

import invkit
from invkit import GaussianNoise, Prior, Problem, Step
from invkit.dense import MatrixOperator as MatrixOp
from invkit.registry import get_registry
from invkit_operators.denoising import Denoising
from invkit_operators.inpainting import Inpainting
from invkit_priors.analytic import GaussianMixturePrior, GaussianPrior
from invkit_solvers.exact import (
    ExactSolver,
    exact_posterior,
    gaussian_posterior,
    posterior_moments,
    repeat_measurements,
    simulate_problem,
)


# ---------------------------------------------------------------------- helpers

class Flat(Prior):
    """A non-analytic prior (identity denoiser)."""

    name = "flat"

    def denoise(self, x, sigma):
        return x


def spd(n: int, seed: int, scale: float = 0.05, floor: float = 0.002) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, n))
    return scale * (g @ g.T) / n + floor * np.eye(n)


def info_form(a, mu, cov, y, sigma_y):
    """Posterior N(m, C) with C = (Σ⁻¹ + AᵀA/σ²)⁻¹, m = C (Σ⁻¹ mu + Aᵀ y / σ²); y is (B, m)."""
    prec = np.linalg.inv(cov)
    c = np.linalg.inv(prec + a.T @ a / sigma_y**2)
    c = 0.5 * (c + c.T)
    mean = (c @ (prec @ mu[:, None] + a.T @ y.T / sigma_y**2)).T
    return mean, c


def check_moments(samples: np.ndarray, mean: np.ndarray, cov: np.ndarray, alpha: float = 1e-3) -> tuple[float, float]:
    """Aggregate Monte Carlo test of sample moments against exact ones.

    Mean: max |z| over the coordinates with spread, against the Bonferroni-corrected two-sided
    normal quantile. Covariance: squared Frobenius error of the sample covariance divided by its
    Monte Carlo expectation sum_ij Var(d_i d_j) / N (fourth moments estimated from the samples,
    so it holds for mixtures too); the ratio is about 1, and a 10% error in the covariance
    makes it >> 3. Returns (max |z|, ratio).
    """
    count, n = samples.shape
    d = samples - mean
    var = np.diag(cov)
    live = var > 1e-12 * var.max()
    assert np.abs(d.mean(0)[~live]).max(initial=0.0) < 1e-9
    z = d.mean(0)[live] / np.sqrt(var[live] / count)
    crit = scipy.stats.norm.isf(alpha / (2 * live.sum()))
    assert np.abs(z).max() < crit, (np.abs(z).max(), crit)
    centered = samples - samples.mean(0)
    emp = centered.T @ centered / (count - 1)
    prods = d[:, :, None] * d[:, None, :]
    expected = prods.var(0).sum() / count
    ratio = float(((emp - cov) ** 2).sum() / expected)
    assert ratio < 3.0, ratio
    return float(np.abs(z).max()), ratio


def rand(shape, seed, dtype=torch.float64):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def make_prior(kind: str, shape):
    n = math.prod(shape)
    if kind == "full":
        cov = spd(n, n)
        return GaussianPrior.full(rand(shape, 1), cov), cov
    if kind == "dct":
        prior = GaussianPrior.power_law(0.4, 0.03, 1.0, 0.1, shape=shape)
        return prior, prior.covariance().numpy()
    prior = GaussianPrior.isotropic(0.5, 0.02)
    return prior, 0.02 * np.eye(n)


def make_operator(kind: str, shape):
    n = math.prod(shape)
    if kind == "matrix":
        return MatrixOp(shape, np.random.default_rng(5).standard_normal((7, n)) / math.sqrt(n))
    if kind == "denoising":
        return Denoising(shape)
    return Inpainting(shape, fraction=0.5, seed=3)


# ---------------------------------------------------------------------- Gaussian posterior
@pytest.mark.parametrize("prior_kind", ["full", "dct", "isotropic"])
@pytest.mark.parametrize("op_kind", ["matrix", "denoising", "inpainting"])
@pytest.mark.parametrize("sigma_y", [0.05, 0.3])
def test_gaussian_posterior_equals_information_form(prior_kind, op_kind, sigma_y):
    shape = (1, 3, 4)
    prior, cov = make_prior(prior_kind, shape)
    op = make_operator(op_kind, shape)
    problem = simulate_problem(op, rand((3, *shape), 2), sigma_y, torch.Generator().manual_seed(4))
    mean, post_cov = gaussian_posterior(problem, prior)
    a_np = np.stack([op.forward(torch.eye(12, dtype=torch.float64)[j].reshape(1, *shape))[0].reshape(-1).numpy() for j in range(12)], axis=1)
    mu = prior.mean_image(shape).numpy().reshape(-1)
    ref_mean, ref_cov = info_form(a_np, mu, cov, problem.y.reshape(3, -1).numpy(), sigma_y)
    assert mean.shape == (3, 12) and post_cov.shape == (12, 12)
    np.testing.assert_allclose(mean.numpy(), ref_mean, atol=1e-10)
    np.testing.assert_allclose(post_cov.numpy(), ref_cov, atol=1e-12)


def test_noiseless_inpainting_is_the_conditional_gaussian():
    shape = (1, 4, 5)
    n = 20
    cov = spd(n, 11)
    mean_img = rand(shape, 12)
    prior = GaussianPrior.full(mean_img, cov)
    op = Inpainting(shape, fraction=0.4, seed=1)
    obs = op.mask.reshape(-1).numpy()
    x_true = prior.sample(2, generator=torch.Generator().manual_seed(13))
    problem = simulate_problem(op, x_true, 0.0)
    mean, post_cov = gaussian_posterior(problem, prior)
    mean, post_cov = mean.numpy(), post_cov.numpy()
    y = problem.y.numpy()
    mu = mean_img.numpy().reshape(-1)
    np.testing.assert_allclose(mean[:, obs], y, atol=1e-12)
    s_oo, s_uo, s_uu = cov[np.ix_(obs, obs)], cov[np.ix_(~obs, obs)], cov[np.ix_(~obs, ~obs)]
    ref_u = mu[~obs] + (s_uo @ np.linalg.solve(s_oo, (y - mu[obs]).T)).T
    np.testing.assert_allclose(mean[:, ~obs], ref_u, atol=1e-12)
    np.testing.assert_allclose(post_cov[np.ix_(~obs, ~obs)], s_uu - s_uo @ np.linalg.solve(s_oo, s_uo.T), atol=1e-12)
    assert np.abs(post_cov[obs]).max() < 1e-12
    # samples: observed pixels reproduced exactly, the rest with the conditional moments
    count = 8000
    res = ExactSolver().solve(repeat_measurements(problem, count), prior, generator=torch.Generator().manual_seed(14))
    samples = res.x.reshape(2 * count, n).numpy()
    np.testing.assert_allclose(samples[:, obs], np.repeat(y, count, axis=0), atol=1e-12)
    check_moments(samples[:count], mean[0], post_cov)
    check_moments(samples[count:], mean[1], post_cov)


def test_noiseless_rank_deficient_uses_the_pseudo_inverse():
    """sigma_y = 0 with a singular A Σ Aᵀ: duplicated and zero rows in A, and a rank-deficient Σ."""
    shape = (1, 3, 4)
    n = 12
    rng = np.random.default_rng(21)
    base = rng.standard_normal((5, n))
    a = np.vstack([base, base[:2], np.zeros((1, n))])  # m = 8, rank 5
    g = rng.standard_normal((n, 9))
    cov = g @ g.T / 9 * 0.05  # rank 9
    prior = GaussianPrior.full(0.5, cov, shape=shape)
    x_true = prior.sample(3, generator=torch.Generator().manual_seed(22))
    problem = simulate_problem(MatrixOp(shape, a), x_true, 0.0)
    post = exact_posterior(problem, prior)
    assert post.components[0].rank == 5
    mean, post_cov = post.mean.numpy(), post.component_covariance(0).numpy()
    y = problem.y.numpy()
    # the documented formula, with numpy's pseudo-inverse
    s = a @ cov @ a.T
    gain = cov @ a.T @ np.linalg.pinv(s, rcond=1e-10, hermitian=True)
    np.testing.assert_allclose(mean, 0.5 + (gain @ (y - a @ np.full(n, 0.5)).T).T, atol=1e-10)
    np.testing.assert_allclose(post_cov, cov - gain @ a @ cov, atol=1e-12)
    np.testing.assert_allclose(mean @ a.T, y, atol=1e-12)  # consistent data reproduced exactly
    eig = np.linalg.eigvalsh(post_cov)
    assert eig.min() > -1e-14  # PSD by construction
    x = ExactSolver().solve(problem, prior, generator=torch.Generator().manual_seed(0)).x.reshape(3, n).numpy()
    np.testing.assert_allclose(x @ a.T, y, atol=1e-12)


def test_noiseless_denoising_returns_y():
    prior = GaussianPrior.power_law(shape=(2, 3, 3))
    y = rand((2, 2, 3, 3), 3)
    res = ExactSolver().solve(Problem(Denoising((2, 3, 3)), y), prior, generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(res.x.numpy(), y.numpy(), atol=1e-12)


def test_samples_match_exact_moments():
    shape = (1, 3, 4)
    prior, cov = make_prior("full", shape)
    op = make_operator("matrix", shape)
    problem = simulate_problem(op, rand((1, *shape), 31), 0.1, torch.Generator().manual_seed(32))
    mean, post_cov = gaussian_posterior(problem, prior)
    count = 20000
    res = ExactSolver().solve(repeat_measurements(problem, count), prior, generator=torch.Generator().manual_seed(33))
    zmax, ratio = check_moments(res.x.reshape(count, -1).numpy(), mean[0].numpy(), post_cov.numpy())
    # teeth: the prior covariance in place of the posterior one fails the same criterion
    with pytest.raises(AssertionError):
        check_moments(res.x.reshape(count, -1).numpy(), mean[0].numpy(), 1.1 * post_cov.numpy())


def test_same_seed_same_samples():
    shape = (1, 3, 4)
    prior, _ = make_prior("dct", shape)
    problem = simulate_problem(make_operator("matrix", shape), rand((4, *shape), 41), 0.05, torch.Generator().manual_seed(42))
    solver = ExactSolver()
    a = solver.solve(problem, prior, generator=torch.Generator().manual_seed(7)).x
    b = solver.solve(problem, prior, generator=torch.Generator().manual_seed(7)).x
    c = solver.solve(problem, prior, generator=torch.Generator().manual_seed(8)).x
    assert torch.equal(a, b) and not torch.equal(a, c)
    mix = GaussianMixturePrior([0.5, 0.5], [prior, GaussianPrior.isotropic(0.6, 0.01)])
    a = solver.solve(problem, mix, generator=torch.Generator().manual_seed(7))
    b = solver.solve(problem, mix, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.x, b.x) and torch.equal(a.info["component"], b.info["component"])


# ---------------------------------------------------------------------- mixtures
def _np_mixture_posterior(a, y, sigma_y, weights, mus, covs):
    """Posterior weights, mean and covariance of a mixture, all in numpy (y is (m,))."""
    m = a.shape[0]
    logs = np.array([np.log(w) + scipy.stats.multivariate_normal.logpdf(y, mean=a @ mu, cov=a @ c @ a.T + sigma_y**2 * np.eye(m)) for w, mu, c in zip(weights, mus, covs)])
    pi = np.exp(logs - scipy.special.logsumexp(logs))
    parts = [info_form(a, mu, c, y[None], sigma_y) for mu, c in zip(mus, covs)]
    mean = sum(p * pm[0][0] for p, pm in zip(pi, parts))
    cov = sum(p * (pc + np.outer(pm[0] - mean, pm[0] - mean)) for p, (pm, pc) in zip(pi, parts))
    return pi, mean, cov


def _three_component_mixture():
    """A 3-component full-covariance mixture on (1, 2, 4) images and a random 5x8 operator."""
    shape, n = (1, 2, 4), 8
    weights = [0.3, 0.5, 0.2]
    mus = [0.5 + 0.3 * (rand(shape, 60 + k) - 0.5) for k in range(3)]
    covs = [spd(n, 70 + k, scale=0.03 * (k + 1), floor=0.002) for k in range(3)]
    prior = GaussianMixturePrior(weights, [GaussianPrior.full(mu, c) for mu, c in zip(mus, covs)])
    a = np.random.default_rng(80).standard_normal((5, n)) / math.sqrt(n)
    return shape, n, weights, mus, covs, prior, a


def test_mixture_posterior_weights_moments_and_samples():
    shape, n, weights, mus, covs, prior, a = _three_component_mixture()
    sigma_y = 0.1
    problem = simulate_problem(MatrixOp(shape, a), prior.sample(2, generator=torch.Generator().manual_seed(81)), sigma_y, torch.Generator().manual_seed(82))
    post = exact_posterior(problem, prior)
    mean, cov = posterior_moments(problem, prior)
    mus_np = [mu.numpy().reshape(-1) for mu in mus]
    for b in range(2):
        pi, ref_mean, ref_cov = _np_mixture_posterior(a, problem.y[b].numpy(), sigma_y, weights, mus_np, covs)
        np.testing.assert_allclose(post.weights[b].numpy(), pi, atol=1e-12)
        np.testing.assert_allclose(mean[b].numpy(), ref_mean, atol=1e-11)
        np.testing.assert_allclose(cov[b].numpy(), ref_cov, atol=1e-12)
    # all three components matter for measurement 0 (weights about 0.02, 0.26, 0.72)
    assert float(post.weights[0].min()) > 0.01, post.weights
    count = 20000
    res = ExactSolver().solve(repeat_measurements(problem, count), prior, generator=torch.Generator().manual_seed(83))
    samples = res.x.reshape(2, count, n).numpy()
    comp = res.info["component"].reshape(2, count).numpy()
    for b in range(2):
        freq = np.bincount(comp[b], minlength=3) / count
        pi = post.weights[b].numpy()
        z = (freq - pi) / np.sqrt(pi * (1 - pi) / count + 1e-300)
        assert np.abs(z).max() < scipy.stats.norm.isf(1e-3 / 6)
        check_moments(samples[b], mean[b].numpy(), cov[b].numpy())
    assert torch.equal(res.info["weights"][0], post.weights[0])


def test_one_generator_per_row_mixture_samples_are_batch_independent_and_exact():
    shape, n, _, _, _, prior, a = _three_component_mixture()
    problem = simulate_problem(MatrixOp(shape, a), prior.sample(1, generator=torch.Generator().manual_seed(81)), 0.1, torch.Generator().manual_seed(82))
    count = 6000
    many = repeat_measurements(problem, count)
    res = ExactSolver().solve(many, prior, generator=invkit.sample_generators(5, 0, count))
    # row i is what generator i alone gives for a batch of one
    for i in (0, 17, count - 1):
        one = ExactSolver().solve(problem, prior, generator=invkit.sample_generators(5, i, 1))
        assert int(one.info["component"][0]) == int(res.info["component"][i])
        torch.testing.assert_close(one.x[0], res.x[i], atol=1e-12, rtol=0)  # batched matmuls round differently
    # and the rows are exact posterior draws: component frequencies and moments
    post = exact_posterior(problem, prior)
    mean, cov = posterior_moments(problem, prior)
    freq = np.bincount(res.info["component"].numpy(), minlength=3) / count
    pi = post.weights[0].numpy()
    z = (freq - pi) / np.sqrt(pi * (1 - pi) / count + 1e-300)
    assert np.abs(z).max() < scipy.stats.norm.isf(1e-3 / 6)
    check_moments(res.x.reshape(count, n).numpy(), mean[0].numpy(), cov[0].numpy())
    with pytest.raises(ValueError, match="2 generators for a batch of 3"):
        ExactSolver().solve(repeat_measurements(problem, 3), prior, generator=invkit.sample_generators(5, 0, 2))


def test_mixture_noiseless_inpainting_weights():
    shape = (1, 3, 4)
    n = 12
    weights = [0.4, 0.6]
    mus = [rand(shape, 90), rand(shape, 91)]
    covs = [spd(n, 92, scale=0.02), spd(n, 93, scale=0.05)]
    prior = GaussianMixturePrior(weights, [GaussianPrior.full(mu, c) for mu, c in zip(mus, covs)])
    op = Inpainting(shape, fraction=0.5, seed=4)
    obs = op.mask.reshape(-1).numpy()
    problem = simulate_problem(op, prior.sample(3, generator=torch.Generator().manual_seed(94)), 0.0)
    post = exact_posterior(problem, prior)
    for b in range(3):
        y = problem.y[b].numpy()
        logs = np.array([np.log(w) + scipy.stats.multivariate_normal.logpdf(y, mu.numpy().reshape(-1)[obs], c[np.ix_(obs, obs)]) for w, mu, c in zip(weights, mus, covs)])
        np.testing.assert_allclose(post.weights[b].numpy(), np.exp(logs - scipy.special.logsumexp(logs)), atol=1e-12)
    x = ExactSolver().solve(problem, prior, generator=torch.Generator().manual_seed(95)).x.reshape(3, n).numpy()
    np.testing.assert_allclose(x[:, obs], problem.y.numpy(), atol=1e-12)


def test_mixture_noiseless_point_mass_component():
    """sigma_y = 0: a point mass that explains y exactly wins (limit sigma_y -> 0); one that does not, loses."""
    shape = (1, 2, 3)
    point = rand(shape, 100)
    prior = GaussianMixturePrior([0.99, 0.01], [GaussianPrior.full(0.5, spd(6, 101), shape=shape), GaussianPrior.isotropic(point, 0.0)])
    op = Inpainting(shape, fraction=0.5, seed=0)
    hit = exact_posterior(Problem(op, op.forward(point[None])), prior)
    np.testing.assert_allclose(hit.weights.numpy(), [[0.0, 1.0]])
    np.testing.assert_allclose(hit.mean.numpy(), point.reshape(1, -1).numpy(), atol=1e-14)
    miss = exact_posterior(Problem(op, op.forward(point[None]) + 0.01), prior)
    np.testing.assert_allclose(miss.weights.numpy(), [[1.0, 0.0]])


# ---------------------------------------------------------------------- solver surface and errors
def test_registry_solver_dtype_and_callback():
    reg = get_registry()
    assert "exact" in reg.names("solver")
    solver = reg.build("solver", "exact")
    assert isinstance(solver, ExactSolver) and solver.name == "exact" == reg.get("solver", "exact").factory.name
    prior = reg.build("prior", "gaussian", ["kind=dct"])
    y = rand((2, 3, 6, 6), 110, dtype=torch.float32)
    steps: list[Step] = []
    res = solver.solve(Problem(Denoising((3, 6, 6)), y, GaussianNoise(0.1)), prior, steps=50, generator=torch.Generator().manual_seed(0), callback=steps.append)
    assert res.x.shape == (2, 3, 6, 6) and res.x.dtype == torch.float32
    assert res.info["posterior_mean"].dtype == torch.float32 and res.info["n"] == 108 and res.info["m"] == 108
    assert len(steps) == 1 and steps[0].total == 1 and steps[0].x is res.x


def test_errors_are_clear():
    shape = (1, 3, 4)
    op = Denoising(shape)
    problem = Problem(op, torch.zeros(1, *shape))
    with pytest.raises(TypeError, match="needs a prior with a known Gaussian .*form.*solvers that take it: (.*, )?ddrm"):
        ExactSolver().solve(problem, Flat())
    big = Denoising((1, 65, 64))
    with pytest.raises(ValueError, match=r"too large \(max\(m, n\) = 4160 > 4096"):
        ExactSolver().solve(Problem(big, torch.zeros(1, 1, 65, 64)), GaussianPrior.isotropic())
    with pytest.raises(ValueError, match=r"built for images \(1, 2, 2\)"):
        ExactSolver().solve(problem, GaussianPrior.isotropic(shape=(1, 2, 2)))
    mix = GaussianMixturePrior([1.0, 2.0], [GaussianPrior.isotropic(), GaussianPrior.isotropic(0.3)])
    with pytest.raises(TypeError, match="posterior_moments"):
        gaussian_posterior(problem, mix)
    # a one-component mixture states a Gaussian form: the same posterior as the Gaussian itself
    one = GaussianMixturePrior([1.0], [GaussianPrior.isotropic()])
    y = Problem(op, torch.full((1, *shape), 0.3), GaussianNoise(0.1))
    for got, want in zip(gaussian_posterior(y, one), gaussian_posterior(y, GaussianPrior.isotropic())):
        assert torch.allclose(got, want, rtol=0, atol=1e-15)


def test_any_prior_stating_a_gaussian_form_works():
    """exact dispatches on the capability (Prior.gaussian_form), not on invkit_priors' classes."""
    from invkit.prior import GaussianComponent, GaussianForm

    class MyGaussian(Prior):  # not an invkit_priors class: N(0.4, 0.02 I) stated by hand
        def denoise(self, x, sigma):  # pragma: no cover - not used by exact
            raise AssertionError("exact must not evaluate the denoiser")

        def gaussian_form(self, shape):
            n = math.prod(shape)
            comp = GaussianComponent(tuple(shape), torch.full(tuple(shape), 0.4, dtype=torch.float64),
                                     torch.full((n,), 0.02, dtype=torch.float64), None, 0.02, 0.4)
            return GaussianForm(torch.ones(1, dtype=torch.float64), (comp,))

    op = Denoising((1, 2, 3))
    problem = Problem(op, torch.full((1, 1, 2, 3), 0.9, dtype=torch.float64), GaussianNoise(0.1))
    mine = ExactSolver().solve(problem, MyGaussian(), generator=torch.Generator().manual_seed(0))
    ref = ExactSolver().solve(problem, GaussianPrior.isotropic(0.4, 0.02), generator=torch.Generator().manual_seed(0))
    assert torch.equal(mine.x, ref.x)
    # posterior mean of N(0.4, 0.02) seen through noise 0.1: 0.4 + 0.02/(0.02+0.01) (0.9-0.4)
    assert torch.allclose(mine.info["posterior_mean"], torch.full((1, 1, 2, 3), 0.4 + 2 / 3 * 0.5, dtype=torch.float64), atol=1e-14)
