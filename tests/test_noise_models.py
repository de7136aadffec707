"""Noise models: draws, negative log-likelihood and its gradient against closed forms and autograd."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from invkit import GaussianNoise, Problem

from _parts import LaplaceNoise, Square


def test_gaussian_nll_equals_scipy_logpdf_and_grad_equals_autograd():
    g = torch.Generator().manual_seed(0)
    z = torch.rand(3, 2, 4, 5, generator=g, dtype=torch.float64)
    noise = GaussianNoise(0.07)
    y = noise.sample(z, g)
    want = -scipy.stats.norm(loc=z.numpy(), scale=0.07).logpdf(y.numpy()).reshape(3, -1).sum(1)
    assert torch.allclose(noise.nll(y, z), torch.from_numpy(want), rtol=1e-12, atol=0)
    zr = z.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(noise.nll(y, zr).sum(), zr)
    assert torch.allclose(noise.nll_grad(y, z), auto, rtol=1e-12, atol=1e-12)


def test_gaussian_sample_has_the_stated_std_and_is_seeded():
    noise = GaussianNoise(0.2)
    clean = torch.zeros(1, 200_000, dtype=torch.float64)
    a = noise.sample(clean, torch.Generator().manual_seed(1))
    b = noise.sample(clean, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert abs(float(a.std()) - 0.2) < 0.2 * 5 / math.sqrt(2 * 200_000)  # 5 standard errors


def test_noiseless_gaussian_is_a_point_mass():
    noise = GaussianNoise(0.0)
    z = torch.ones(2, 3)
    y = z.clone()
    y[1, 0] += 1e-3
    assert noise.nll(y, z).tolist() == [0.0, math.inf]
    assert torch.equal(noise.sample(z), z)
    with pytest.raises(ValueError, match="no likelihood gradient"):
        noise.nll_grad(y, z)


def test_problem_holds_any_noise_model_and_sigma_y_needs_one():
    x = torch.full((2, 1, 2, 3), 0.5)
    problem = Problem.simulate(Square((1, 2, 3)), x, LaplaceNoise(0.1), torch.Generator().manual_seed(0))
    assert isinstance(problem.noise, LaplaceNoise) and problem.y.shape == (2, 1, 2, 3)
    with pytest.raises(ValueError, match="LaplaceNoise has no noise standard deviation"):
        problem.sigma_y
    gauss = Problem.simulate(Square((1, 2, 3)), x, 0.0)
    assert torch.equal(gauss.y, x * x) and gauss.sigma_y == 0.0
