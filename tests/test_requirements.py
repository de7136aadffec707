"""Solver requirements: declared as data, checked before any work, refused in one line naming alternatives."""

from __future__ import annotations

import pytest
import torch

import invkit
from invkit import Capability, GaussianNoise, PoissonNoise, Problem, RequirementError
from invkit.requirements import capabilities, check_requirements
from invkit_priors.analytic import GaussianPrior

from _parts import CountingPrior, Doubling, Square

REG = invkit.get_registry()


def _gaussian():
    return REG.build("prior", "gaussian", ["kind=isotropic"])


def Counting() -> CountingPrior:
    """A differentiable prior that states no Gaussian form and counts its evaluations."""
    return CountingPrior(GaussianPrior.isotropic(), gaussian_form=False)


def test_capabilities_of_each_rung_and_noise():
    op = REG.build_operator("denoising", (1, 4, 4))
    have = capabilities(Problem(op, torch.zeros(1, 1, 4, 4), GaussianNoise(0.1)), _gaussian())
    assert have == frozenset(Capability) - {Capability.FOURIER_MAGNITUDES, Capability.NOISELESS}
    assert Capability.NOISELESS in capabilities(Problem(op, torch.zeros(1, 1, 4, 4), GaussianNoise(0.0)))
    nonlinear = capabilities(Problem(Square((1, 4, 4)), torch.zeros(1, 1, 4, 4)), Counting())
    assert nonlinear == {Capability.DIFFERENTIABLE, Capability.GAUSSIAN_NOISE, Capability.NOISELESS, Capability.LEAST_SQUARES_NOISE, Capability.PRIOR_GRADIENTS}
    big = capabilities(Problem(Doubling((1, 65, 64)), torch.zeros(1, 1, 65, 64)))
    assert big == {Capability.DIFFERENTIABLE, Capability.LINEAR, Capability.GAUSSIAN_NOISE, Capability.NOISELESS, Capability.LEAST_SQUARES_NOISE}
    poisson = capabilities(Problem(Square((1, 4, 4)), torch.zeros(1, 1, 4, 4), PoissonNoise(255.0)))
    assert poisson == {Capability.DIFFERENTIABLE, Capability.LEAST_SQUARES_NOISE}
    assert Capability.SVD in capabilities(Problem(Doubling((1, 4, 4)), torch.zeros(1, 1, 4, 4)))  # dense fallback


def test_ddrm_refuses_before_any_prior_evaluation_and_names_alternatives():
    prior = Counting()
    problem = Problem(Square((1, 4, 4)), torch.zeros(1, 1, 4, 4), GaussianNoise(0.1))
    ddrm = REG.build("solver", "ddrm")
    with pytest.raises(RequirementError, match=r"solver 'ddrm' cannot take this problem: it needs an SVD, but forward model 'test_square' .* is not linear; solvers that take it: dps$"):
        ddrm.solve(problem, prior, steps=3)
    assert prior.calls == 0
    big = Problem(Doubling((1, 65, 64)), torch.zeros(1, 1, 65, 64), GaussianNoise(0.1))
    with pytest.raises(RequirementError, match=r"too large for the dense fallback \(max\(m, n\) = 4160 > 4096; use a smaller image or raise"):
        ddrm.solve(big, prior, steps=3)
    assert prior.calls == 0


def test_registry_lists_the_solvers_that_take_a_problem():
    op = REG.build_operator("inpainting", (1, 4, 4), ["fraction=0.5", "seed=0"])
    problem = Problem(op, torch.zeros(1, op.out_numel), GaussianNoise(0.1))
    assert {"ddrm", "exact"} <= set(REG.solvers_for(problem, _gaussian()))
    assert "exact" not in REG.solvers_for(problem, Counting())
    with pytest.raises(RequirementError, match=r"solver 'exact' cannot take this problem: it needs a prior with a known Gaussian .*; solvers that take it: .*ddrm"):
        REG.check_solver("exact", problem, Counting())
    REG.check_solver("exact", problem, _gaussian())  # takes it
    # the solver's own dense limit (a solver argument) is the one judged
    with pytest.raises(RequirementError, match=r"16 > 8"):
        REG.check_solver("exact", problem, _gaussian(), ["max_size=8"])


def test_check_requirements_without_alternatives_and_error_types():
    problem = Problem(Square((1, 2, 2)), torch.zeros(1, 1, 2, 2))
    with pytest.raises(RequirementError) as info:
        check_requirements("mine", {Capability.LINEAR}, problem)
    assert str(info.value) == "solver 'mine' cannot take this problem: it needs a linear operator, but forward model 'test_square' on (1, 2, 2) is not linear"
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    check_requirements("mine", {Capability.LINEAR, Capability.PRIOR_GRADIENTS}, Problem(Doubling((1, 2, 2)), torch.zeros(1, 1, 2, 2)))
