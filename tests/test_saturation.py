"""The built-in nonlinear forward model ``saturated_blur``: forward equals the operation it names,
its VJP equals finite differences, SVD solvers refuse it and DPS solves it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

import invkit
from invkit.checks import check_vjp
from invkit.requirements import RequirementError
from invkit_operators.saturation import SaturatedBlur


def test_forward_is_a_reflect_gaussian_blur_then_tanh() -> None:
    x = torch.rand(2, 3, 17, 19, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = SaturatedBlur((3, 17, 19), sigma=1.5, gamma=4.0)
    taps = 2 * math.ceil(3 * 1.5) + 1
    g = np.exp(-0.5 * (np.arange(taps) - taps // 2) ** 2 / 1.5**2)
    g /= g.sum()
    blurred = ndi.convolve1d(ndi.convolve1d(x.numpy(), g, axis=-1, mode="reflect"), g, axis=-2, mode="reflect")
    expect = np.tanh(4.0 * blurred) / np.tanh(4.0)
    np.testing.assert_allclose(op.forward(x).numpy(), expect, rtol=0, atol=1e-13)


def test_its_vjp_is_exact_and_it_is_not_linear() -> None:
    op = SaturatedBlur((2, 14, 15), sigma=2.0, gamma=6.0)
    assert check_vjp(op).passed
    x = torch.rand(1, 2, 14, 15, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert not torch.allclose(op.forward(2 * x), 2 * op.forward(x))
    assert not isinstance(op, invkit.LinearOperator)


def test_ddrm_refuses_it_and_dps_solves_it() -> None:
    from invkit_priors.analytic import GaussianPrior
    from invkit_solvers.ddrm import DDRM
    from invkit_solvers.dps import DPS

    shape = (1, 16, 16)
    op = SaturatedBlur(shape, sigma=1.0, gamma=3.0)
    prior = GaussianPrior.power_law(0.5, 0.03, 1.0, 1.0 / 8.0)
    truth = prior.sample(1, shape, generator=torch.Generator().manual_seed(2))
    problem = invkit.Problem.simulate(op, truth, invkit.GaussianNoise(0.01), torch.Generator().manual_seed(3))
    with pytest.raises(RequirementError, match="solvers that take it: dps"):
        DDRM().solve(problem, prior, steps=5)
    x = DPS(zeta=1.0).solve(problem, prior, steps=200, generator=torch.Generator().manual_seed(4)).x
    residual = float((problem.y - op.forward(x)).norm())
    prior_only = DPS(zeta=0.0).solve(problem, prior, steps=200, generator=torch.Generator().manual_seed(4)).x
    assert residual < 0.5 * float((problem.y - op.forward(prior_only)).norm())  # the measurement pulls the sample
    assert float((x - truth).norm()) < float((prior_only - truth).norm())
