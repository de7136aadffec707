"""Analytic priors: bases, exact Gaussian / mixture denoisers against numpy and scipy oracles, Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import scipy.special
import scipy.stats
import torch

from invkit.dense import DenseSVD
from invkit.params import ParamError
from invkit.prior import ddpm_sigma_grid
from invkit.registry import get_registry
from invkit_priors.analytic import GaussianMixturePrior, GaussianPrior, PowerLawSpectrum
from invkit_priors.analytic.bases import DCTBasis, IdentityBasis, MatrixBasis, basis_matrix, dct_matrix
from invkit.dense import MatrixOperator as MatrixOp


# ---------------------------------------------------------------------- helpers
def spd(n: int, seed: int, scale: float = 0.05, floor: float = 0.002) -> np.ndarray:
    """A random, well but not trivially conditioned covariance."""
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((n, n))
    return scale * (g @ g.T) / n + floor * np.eye(n)


def np_denoise(x: np.ndarray, mu: np.ndarray, cov: np.ndarray, sigma: float) -> np.ndarray:
    """E[x0 | x] for x0 ~ N(mu, cov), x = x0 + sigma n; x is (n,)."""
    n = mu.size
    return mu + cov @ np.linalg.solve(cov + sigma**2 * np.eye(n), x - mu)


def np_mixture_denoise(x: np.ndarray, weights, mus, covs, sigma: float) -> np.ndarray:
    """Posterior mean of a Gaussian mixture from explicit responsibilities (scipy log-densities)."""
    n = x.size
    logs = np.array([np.log(w) + scipy.stats.multivariate_normal.logpdf(x, mean=m, cov=c + sigma**2 * np.eye(n)) for w, m, c in zip(weights, mus, covs)])
    r = np.exp(logs - scipy.special.logsumexp(logs))
    return sum(rk * np_denoise(x, m, c, sigma) for rk, m, c in zip(r, mus, covs))



def rand(shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------- bases
@pytest.mark.parametrize("shape", [(2, 5, 7), (1, 8, 8), (3, 1, 6)])
def test_dct_basis_orthonormal_and_equal_to_scipy(shape):
    basis = DCTBasis(shape)
    q = basis.matrix()
    n = math.prod(shape)
    assert float((q.T @ q - torch.eye(n, dtype=torch.float64)).abs().max()) < 1e-12
    assert float((q @ q.T - torch.eye(n, dtype=torch.float64)).abs().max()) < 1e-12
    x = rand((3, *shape), 0)
    expected = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho").reshape(3, n)
    np.testing.assert_allclose(basis.Vt(x).numpy(), expected, atol=1e-13)
    np.testing.assert_allclose(basis.V(basis.Vt(x)).numpy(), x.numpy(), atol=1e-13)
    np.testing.assert_allclose(dct_matrix(shape[2]).numpy(), scipy.fft.dct(np.eye(shape[2]), norm="ortho", axis=0), atol=1e-14)
    x32 = x.float()
    z32 = basis.Vt(x32)
    assert z32.dtype == torch.float32 and basis.V(z32).dtype == torch.float32
    np.testing.assert_allclose(z32.numpy(), expected, atol=1e-5)


def test_identity_and_matrix_bases():
    shape = (1, 2, 3)
    x = rand((2, *shape), 1)
    ident = IdentityBasis(shape)
    assert torch.equal(ident.V(ident.Vt(x)), x) and torch.equal(ident.matrix(), torch.eye(6, dtype=torch.float64))
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((6, 6)))
    mb = MatrixBasis(q, shape)
    np.testing.assert_allclose(mb.Vt(x).numpy(), x.reshape(2, 6).numpy() @ q, atol=1e-14)  # Qᵀ x per image
    np.testing.assert_allclose(basis_matrix(mb).numpy(), q, atol=1e-14)
    with pytest.raises(ValueError, match="not orthogonal"):
        MatrixBasis(q * 1.01, shape)
    with pytest.raises(ValueError, match=r"expected \(6, 6\)"):
        MatrixBasis(np.eye(5), shape)
    with pytest.raises(ValueError, match=r"expected \(B, 1, 2, 3\)"):
        mb.Vt(torch.zeros(1, 1, 3, 2))


# ---------------------------------------------------------------------- Gaussian denoiser
@pytest.mark.parametrize("shape", [(1, 3, 4), (2, 2, 3)])
def test_full_covariance_denoiser_equals_numpy(shape):
    n = math.prod(shape)
    cov = spd(n, seed=n)
    mean = rand(shape, 2)
    prior = GaussianPrior.full(mean, cov)
    assert prior.shape == shape and prior.channels == shape[0] and prior.image_size == shape[1:]
    np.testing.assert_allclose(prior.covariance().numpy(), cov, atol=1e-13)
    x = rand((3, *shape), 3) * 2 - 0.5
    mu = mean.numpy().reshape(n)
    for sigma in (0.01, 0.3, 5.0):
        out = prior.denoise(x, sigma).reshape(3, n).numpy()
        for b in range(3):
            np.testing.assert_allclose(out[b], np_denoise(x[b].reshape(n).numpy(), mu, cov, sigma), atol=1e-11)
    sig = torch.tensor([0.02, 0.5, 2.0], dtype=torch.float64)
    out = prior.denoise(x, sig).reshape(3, n).numpy()
    for b in range(3):
        np.testing.assert_allclose(out[b], np_denoise(x[b].reshape(n).numpy(), mu, cov, float(sig[b])), atol=1e-11)
    # Jacobian in x is Σ (Σ + sigma² I)^-1 (autograd through the denoiser)
    jac = torch.autograd.functional.jacobian(lambda v: prior.denoise(v.reshape(1, *shape), 0.3).reshape(n), x[0].reshape(n))
    np.testing.assert_allclose(jac.numpy(), cov @ np.linalg.inv(cov + 0.09 * np.eye(n)), atol=1e-11)


def test_isotropic_and_float32_and_sigma_edge_cases():
    prior = GaussianPrior.isotropic(0.4, 0.02)
    assert prior.shape is None and prior.channels is None and prior.data_center == pytest.approx(0.4)
    assert torch.equal(prior.sigma_grid, ddpm_sigma_grid())
    x = rand((3, 2, 5, 4), 4)
    sig = torch.tensor([0.1, 0.0, 1.0])
    out = prior.denoise(x.float(), sig)
    assert out.dtype == torch.float32
    k = 0.02 / (0.02 + sig.double() ** 2)
    expected = 0.4 + k.view(3, 1, 1, 1) * (x - 0.4)
    np.testing.assert_allclose(out.double().numpy(), expected.numpy(), atol=1e-6)
    assert torch.equal(out[1], x[1].float())  # sigma = 0 returns x
    assert torch.equal(prior.denoise(x, 0.0), x)
    with pytest.raises(ValueError, match=">= 0"):
        prior.denoise(x, -0.1)
    with pytest.raises(ValueError, match=r"expected a float or a \(B,\)"):
        prior.denoise(x, torch.ones(2))
    fixed = GaussianPrior.isotropic(0.4, 0.02, shape=(2, 5, 4))
    with pytest.raises(ValueError, match=r"built for images \(2, 5, 4\)"):
        fixed.denoise(torch.zeros(1, 2, 4, 4), 0.1)


def test_full_covariance_float32_close_to_float64():
    shape = (1, 3, 4)
    prior = GaussianPrior.full(0.5, spd(12, 7), shape=shape)
    x = rand((4, *shape), 5)
    sig = torch.tensor([0.01, 0.1, 0.5, 3.0])
    ref = prior.denoise(x, sig.double())
    out = prior.denoise(x.float(), sig)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.double().numpy(), ref.numpy(), atol=2e-6)


def test_full_rejects_bad_covariances():
    with pytest.raises(ValueError, match="positive semi-definite"):
        GaussianPrior.full(0.5, np.diag([1.0, -0.5, 1.0, 1.0]), shape=(1, 2, 2))
    a = np.eye(4)
    a[0, 1] = 0.3
    with pytest.raises(ValueError, match="not symmetric"):
        GaussianPrior.full(0.5, a, shape=(1, 2, 2))
    with pytest.raises(ValueError, match="pass shape"):
        GaussianPrior.full(0.5, np.eye(4))
    with pytest.raises(ValueError, match=">= 0"):
        GaussianPrior(0.5, torch.tensor([1.0, -1.0, 1.0, 1.0]), shape=(1, 2, 2))


def test_svd_operator_serves_as_basis():
    shape = (1, 2, 4)
    rng = np.random.default_rng(3)
    dense = DenseSVD(MatrixOp(shape, rng.standard_normal((8, 8))))
    lam = torch.from_numpy(rng.uniform(0.001, 0.1, 8))
    prior = GaussianPrior.diagonal(0.5, lam, dense)
    cov = dense.vh.T @ np.diag(lam.numpy()) @ dense.vh
    x = rand((2, *shape), 6)
    out = prior.denoise(x, 0.2).reshape(2, 8).numpy()
    for b in range(2):
        np.testing.assert_allclose(out[b], np_denoise(x[b].reshape(8).numpy(), np.full(8, 0.5), cov, 0.2), atol=1e-12)


# ---------------------------------------------------------------------- registry factories
def test_registry_factories_with_string_params():
    reg = get_registry()
    for name in ("gaussian", "gaussian_mixture"):
        assert name in reg.names("prior")
        assert reg.get("prior", name).factory.__name__ == name
    iso = reg.build("prior", "gaussian", ["kind=isotropic", "mean=0.3", "variance=0.01"])
    assert isinstance(iso, GaussianPrior) and iso.name == "gaussian" and iso.data_center == pytest.approx(0.3)
    x = rand((2, 3, 4, 5), 7)
    np.testing.assert_allclose(iso.denoise(x, 0.1).numpy(), (0.3 + 0.5 * (x - 0.3)).numpy(), atol=1e-14)

    default = reg.build("prior", "gaussian")
    assert torch.equal(default.parts((1, 4, 6)).eigenvalues, PowerLawSpectrum(0.04, 1.0, 1 / 32)((1, 4, 6)))  # kind=dct by default
    dct = reg.build("prior", "gaussian", ["kind=dct", "variance=0.02", "alpha=1.5", "cutoff=0.1"])
    assert dct.name == "gaussian" and dct.data_center == 0.5
    # independent covariance: D = kron(I_C, D_H ⊗ D_W) from scipy, lam from the documented formula
    shape = (2, 4, 6)
    c, h, w = shape
    d = np.kron(np.eye(c), np.kron(scipy.fft.dct(np.eye(h), norm="ortho", axis=0), scipy.fft.dct(np.eye(w), norm="ortho", axis=0)))
    fh, fw = np.meshgrid(np.arange(h) / (2 * h), np.arange(w) / (2 * w), indexing="ij")
    lam = np.tile(((1 + (fh**2 + fw**2) / 0.1**2) ** -1.5).reshape(-1), c)
    lam *= 0.02 / lam.mean()
    cov = d.T @ np.diag(lam) @ d
    np.testing.assert_allclose(dct.covariance(shape).numpy(), cov, atol=1e-14)
    x = rand((2, *shape), 8)
    out = dct.denoise(x, 0.15).reshape(2, -1).numpy()
    for b in range(2):
        np.testing.assert_allclose(out[b], np_denoise(x[b].reshape(-1).numpy(), np.full(48, 0.5), cov, 0.15), atol=1e-12)
    # lazily built per shape and cached
    first = dct.parts(shape)
    dct.denoise(rand((1, 1, 8, 8), 9), 0.1)
    assert dct.parts(shape) is first and dct.parts((1, 8, 8)).basis.shape == (1, 8, 8)
    assert float(dct.parts((1, 8, 8)).eigenvalues.mean()) == pytest.approx(0.02)

    mix = reg.build("prior", "gaussian_mixture", ["means=0.2,0.6,0.9", "weights=1,2,1", "variance=0.005"])
    assert isinstance(mix, GaussianMixturePrior) and mix.name == "gaussian_mixture"
    np.testing.assert_allclose(mix.weights.numpy(), [0.25, 0.5, 0.25])
    assert mix.data_center == pytest.approx(0.25 * 0.2 + 0.5 * 0.6 + 0.25 * 0.9)
    assert mix.denoise(rand((2, 1, 3, 3), 10), 0.1).shape == (2, 1, 3, 3)

    with pytest.raises(ValueError, match="only apply to kind=dct"):
        reg.build("prior", "gaussian", ["kind=isotropic", "alpha=2"])
    with pytest.raises(ParamError, match="variance"):
        reg.build("prior", "gaussian", ["variance=0"])
    with pytest.raises(ValueError, match="2 weights for 3 means"):
        reg.build("prior", "gaussian_mixture", ["means=0.1,0.5,0.9", "weights=1,2"])


def test_power_law_spectrum_shape():
    lam = PowerLawSpectrum(0.04, 1.0, 1 / 32)((3, 16, 16))
    assert float(lam.mean()) == pytest.approx(0.04)
    per_channel = lam.reshape(3, 16, 16)
    assert torch.equal(per_channel[0], per_channel[2])
    assert bool((per_channel[0, 0, :].diff() < 0).all())  # decays with frequency
    assert float(per_channel[0, 0, 0] / per_channel[0, -1, -1]) > 100


# ---------------------------------------------------------------------- mixture denoiser
def _mixture(shape, seed):
    n = math.prod(shape)
    weights = [0.2, 0.5, 0.3]
    mus = [rand(shape, seed + k) for k in range(3)]
    covs = [spd(n, seed + 10 + k, scale=0.02 * (k + 1), floor=0.001) for k in range(3)]
    prior = GaussianMixturePrior(weights, [GaussianPrior.full(m, c) for m, c in zip(mus, covs)])
    return prior, weights, [m.numpy().reshape(n) for m in mus], covs


def test_mixture_denoiser_equals_scipy_posterior_mean():
    shape = (1, 2, 3)
    n = 6
    prior, weights, mus, covs = _mixture(shape, 20)
    x = rand((4, *shape), 30) * 1.4 - 0.2
    for sigma in (0.03, 0.3, 3.0):
        out = prior.denoise(x, sigma).reshape(4, n).numpy()
        for b in range(4):
            np.testing.assert_allclose(out[b], np_mixture_denoise(x[b].reshape(n).numpy(), weights, mus, covs, sigma), atol=1e-10)
    sig = torch.tensor([0.01, 0.1, 0.0, 1.0], dtype=torch.float64)
    out = prior.denoise(x, sig).reshape(4, n).numpy()
    for b in (0, 1, 3):
        np.testing.assert_allclose(out[b], np_mixture_denoise(x[b].reshape(n).numpy(), weights, mus, covs, float(sig[b])), atol=1e-10)
    np.testing.assert_array_equal(out[2], x[2].reshape(n).numpy())
    out32 = prior.denoise(x.float(), sig.float())
    assert out32.dtype == torch.float32
    np.testing.assert_allclose(out32.reshape(4, n).double().numpy(), out, atol=1e-5)
    # data_center is the mixture mean's average
    assert prior.data_center == pytest.approx(sum(w * m.mean() for w, m in zip(weights, mus)))


def test_mixture_of_mixed_bases_equals_scipy():
    shape = (1, 3, 4)
    n = 12
    comps = [GaussianPrior.power_law(0.3, 0.02, 1.0, 0.1, shape=shape), GaussianPrior.isotropic(0.7, 0.01), GaussianPrior.full(0.5, spd(n, 40), shape=shape)]
    weights = [0.3, 0.3, 0.4]
    prior = GaussianMixturePrior(weights, comps)
    covs = [comps[0].covariance(), 0.01 * np.eye(n), spd(n, 40)]
    mus = [np.full(n, 0.3), np.full(n, 0.7), np.full(n, 0.5)]
    x = rand((3, *shape), 41)
    out = prior.denoise(x, 0.2).reshape(3, n).numpy()
    for b in range(3):
        np.testing.assert_allclose(out[b], np_mixture_denoise(x[b].reshape(n).numpy(), weights, mus, [np.asarray(c) for c in covs], 0.2), atol=1e-10)
    # extreme separation: log-sum-exp keeps responsibilities finite and exact
    far = GaussianMixturePrior([0.5, 0.5], [GaussianPrior.isotropic(-50.0, 1e-4), GaussianPrior.isotropic(50.0, 1e-4)])
    r = far.responsibilities(torch.full((1, 1, 8, 8), 49.0), 0.01)
    assert torch.isfinite(r).all() and float(r[0, 1]) == 1.0


# ---------------------------------------------------------------------- Monte Carlo
def test_gaussian_denoiser_mse_is_the_mmse():
    shape = (1, 6, 8)
    prior = GaussianPrior.power_law(0.5, 0.03, 1.0, 0.08, shape=shape)
    sigma, count = 0.1, 4000
    gen = torch.Generator().manual_seed(0)
    x0 = prior.sample(count, generator=gen)
    x = x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    lam = prior.parts().eigenvalues
    mmse = float((lam * sigma**2 / (lam + sigma**2)).mean())  # trace of the posterior covariance / n

    def mc(est):
        per = ((est - x0) ** 2).reshape(count, -1).mean(1)
        return float(per.mean()), float(per.std() / math.sqrt(count))

    mse, se = mc(prior.denoise(x, sigma))
    assert abs(mse - mmse) < 4 * se, (mse, mmse, se)
    # the check has teeth: the classic factor-2 sigma bug is many standard errors off
    wrong, _ = mc(prior.denoise(x, 2 * sigma))
    assert wrong - mmse > 10 * se


def test_mixture_denoiser_orthogonality_principle():
    """E[(x0 - D(x)) g(x)] = 0 for g = 1 and g = x_i: the defining property of the MMSE estimate."""
    shape = (1, 3, 4)
    n = 12
    mus = [0.5 + 0.3 * (rand(shape, 50 + k) - 0.5) for k in range(3)]  # overlapping components
    covs = [spd(n, 60 + k, scale=0.02 * (k + 1), floor=0.001) for k in range(3)]
    prior = GaussianMixturePrior([0.2, 0.5, 0.3], [GaussianPrior.full(m, c) for m, c in zip(mus, covs)])
    sigma, count = 0.3, 20000
    gen = torch.Generator().manual_seed(1)
    x0 = prior.sample(count, generator=gen)
    x = x0 + sigma * torch.randn(x0.shape, generator=gen, dtype=torch.float64)

    def max_z(est):
        res = (x0 - est).reshape(count, -1)
        stats = torch.cat([res, res * (x.reshape(count, -1) - 0.5)], dim=1)
        z = stats.mean(0) / (stats.std(0) / math.sqrt(count))
        return float(z.abs().max())

    crit = scipy.stats.norm.isf(1e-3 / (2 * 24))  # Bonferroni over 24 statistics
    assert max_z(prior.denoise(x, sigma)) < crit
    # a denoiser that ignores the noise in the responsibilities is caught
    comps = prior.components
    r = torch.softmax(torch.stack([c.log_density(x, 1e-3) for c in comps], 1) + torch.log(prior.weights), 1)
    naive = sum(r[:, k].view(-1, 1, 1, 1) * c.denoise(x, sigma) for k, c in enumerate(comps))
    assert max_z(naive) > 2 * crit


def test_prior_sample_moments():
    shape = (1, 2, 3)
    cov = spd(6, 60)
    prior = GaussianMixturePrior([0.3, 0.7], [GaussianPrior.full(0.2, cov, shape=shape), GaussianPrior.full(0.8, cov, shape=shape)])
    s = prior.sample(20000, generator=torch.Generator().manual_seed(2)).reshape(20000, 6).numpy()
    mean = 0.3 * 0.2 + 0.7 * 0.8
    total = cov + 0.3 * 0.7 * 0.6**2 * np.ones((6, 6))
    assert np.abs(s.mean(0) - mean).max() < 4 * np.sqrt(total.diagonal().max() / 20000)
    assert np.linalg.norm(np.cov(s.T) - total) / np.linalg.norm(total) < 0.05
