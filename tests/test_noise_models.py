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


# ---------------------------------------------------------------------- Poisson
def test_poisson_draws_have_the_mean_and_variance_of_the_rate() -> None:
    from invkit.noise import PoissonNoise

    rate, n = 50.0, 40000
    z = torch.tensor([0.02, 0.3, 0.7], dtype=torch.float64).repeat(n, 1)
    y = PoissonNoise(rate).sample(z, torch.Generator().manual_seed(0))
    assert float(((y * rate) - (y * rate).round()).abs().max()) < 1e-9  # whole photon counts over the rate
    mean, var = y.mean(0), y.var(0)
    expect = z[0]
    assert torch.all((mean - expect).abs() < 4 * (expect / rate / n).sqrt())  # E y = z
    assert torch.all((var - expect / rate).abs() < 4 * (expect / rate) * math.sqrt(2 / n) + 4 * expect / rate**2)  # Var y = z / rate
    # clipped to [0, 1] as the official code does
    hi = PoissonNoise(5.0).sample(torch.full((2000, 1), 0.95, dtype=torch.float64), torch.Generator().manual_seed(1))
    assert float(hi.max()) == 1.0 and float(hi.min()) >= 0.0
    # the draws come from the generator passed
    again = PoissonNoise(rate).sample(z[:5], torch.Generator().manual_seed(0))
    assert torch.equal(again, y[:5])


def test_poisson_likelihood_and_gradient_and_the_dps_weights() -> None:
    from scipy.stats import poisson

    from invkit.noise import PoissonNoise

    noise = PoissonNoise(20.0)
    z = torch.tensor([[0.1, 0.5, 0.9]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.45, 1.0]], dtype=torch.float64)
    expect = -sum(poisson.logpmf(round(20 * yy), 20 * zz) for yy, zz in zip(y[0].tolist(), z[0].tolist()))
    assert float(noise.nll(y, z)[0]) == pytest.approx(expect, rel=1e-12)
    num = torch.zeros_like(z)
    for j in range(3):
        e = torch.zeros_like(z)
        e[0, j] = 1e-6
        num[0, j] = (noise.nll(y, z + e) - noise.nll(y, z - e))[0] / 2e-6
    torch.testing.assert_close(noise.nll_grad(y, z), num, rtol=1e-6, atol=1e-6)
    assert float(noise.nll(y, torch.tensor([[0.0, 0.5, 0.9]], dtype=torch.float64))[0]) == pytest.approx(
        float(noise.nll(y, z)[0]) - 20 * 0.1, rel=1e-12
    )  # z_j = 0 with zero counts is possible (and costs nothing)
    assert math.isinf(float(noise.nll(y, torch.tensor([[0.1, 0.0, 0.9]], dtype=torch.float64))[0]))  # z_j = 0 < k_j
    # eq. 20's 1/(2 y) is infinite at zero counts: the floor 1/rate bounds it by rate/2
    w = noise.shot_weights(torch.tensor([0.0, 0.01, 0.05, 0.5]))
    assert w.tolist() == pytest.approx([10.0, 10.0, 10.0, 1.0])
    with pytest.raises(ValueError, match="non-negative clean measurement"):
        noise.sample(torch.tensor([[-0.1, 0.2]]))
    with pytest.raises(ValueError, match="finite number > 0"):
        PoissonNoise(0.0)
    assert noise.sigma is None


# ---------------------------------------------------------------------- models by name
def test_noise_models_by_name_round_trip_through_their_spec() -> None:
    from invkit.noise import NOISE_MODELS, PoissonNoise, build_noise, noise_spec

    assert sorted(NOISE_MODELS) == ["gaussian", "poisson"]
    assert build_noise("poisson", ["rate=100"]) == PoissonNoise(100.0)
    assert build_noise("poisson") == PoissonNoise(255.0)  # the DPS paper's 255 photons at white
    assert build_noise("gaussian", {"sigma": 0.05}) == GaussianNoise(0.05)
    for model in (GaussianNoise(0.02), PoissonNoise(37.5)):
        spec = noise_spec(model)
        name = spec.pop("name")
        assert build_noise(name, spec) == model
    with pytest.raises(ValueError, match="unknown noise model 'laplace'; known: gaussian, poisson"):
        build_noise("laplace")
    with pytest.raises(ValueError, match=r"noise 'poisson': parameter 'rate' = -1.0 is out of range"):
        build_noise("poisson", ["rate=-1"])
    with pytest.raises(ValueError, match="unknown parameter.*'sigma'; known: rate"):
        build_noise("poisson", ["sigma=0.1"])
    with pytest.raises(ValueError, match="finite number > 0"):
        build_noise("poisson", ["rate=inf"])
    with pytest.raises(ValueError, match="cannot describe noise model LaplaceNoise"):
        noise_spec(LaplaceNoise(0.1))


@pytest.mark.parametrize(
    "name,args,shape,refused",
    [
        ("gaussian_blur", {"sigma": 1.0}, (3, 16, 16), False),
        ("uniform_blur", {}, (1, 12, 12), False),
        ("super_resolution", {"factor": 2}, (3, 16, 16), False),
        ("inpainting", {"fraction": 0.5}, (3, 8, 8), False),
        ("colorization", {}, (3, 8, 8), False),
        ("denoising", {}, (1, 5, 7), False),
        ("compressed_sensing", {"ratio": 4}, (3, 16, 16), True),  # Walsh-Hadamard rows: +-1
        ("bicubic_super_resolution", {}, (3, 16, 16), True),  # the cubic kernel's negative lobes
    ],
)
def test_poisson_refuses_operators_that_can_make_negative_measurements(name, args, shape, refused) -> None:
    from invkit import get_registry
    from invkit.noise import PoissonNoise, check_operator_nonnegative

    op = get_registry().build_operator(name, shape, args)
    check_operator_nonnegative(op, GaussianNoise(0.1), name)  # Gaussian noise takes any operator
    if not refused:
        check_operator_nonnegative(op, PoissonNoise(255.0), name)
        return
    with pytest.raises(ValueError) as err:
        check_operator_nonnegative(op, PoissonNoise(255.0), name)
    message = str(err.value)
    assert f"operator '{name}' can make negative ones" in message and "--noise gaussian" in message
    assert len(message.splitlines()) == 1


def test_an_operator_declaration_is_trusted_and_read_from_the_class() -> None:
    from invkit.noise import PoissonNoise, check_operator_nonnegative

    class Declared(Square):
        nonnegative = False

    with pytest.raises(ValueError, match=r"operator 'test_square' can make negative ones \(it declares nonnegative = False\)"):
        check_operator_nonnegative(Declared, PoissonNoise(255.0))  # the class alone: nothing is built or applied

    class Negative(Square):
        def forward(self, x):
            return -x

    with pytest.raises(ValueError, match="minimum is -1"):
        check_operator_nonnegative(Negative((1, 2, 3)), PoissonNoise(255.0))
    Negative.nonnegative = True  # trusted as declared: not applied
    check_operator_nonnegative(Negative((1, 2, 3)), PoissonNoise(255.0))
    check_operator_nonnegative(Square, PoissonNoise(255.0))  # an undeclared class: judged once it is built


def test_nonnegative_clean_drops_float_rounding_and_refuses_real_negatives() -> None:
    from invkit.noise import NEGATIVE_TOLERANCE, PoissonNoise, nonnegative_clean

    z = torch.tensor([[-1e-15, 0.0, 0.3]], dtype=torch.float64)
    assert nonnegative_clean(z, PoissonNoise(255.0), "blur").tolist() == [[0.0, 0.0, 0.3]]
    assert nonnegative_clean(z, GaussianNoise(0.1), "blur") is z
    with pytest.raises(ValueError, match=r"operator 'cs' makes negative ones of this image \(minimum -0.01\)"):
        nonnegative_clean(torch.tensor([-0.01, 0.5]), PoissonNoise(255.0), "cs")
    assert NEGATIVE_TOLERANCE * 255 < 1e-3  # far below one photon


def test_poisson_refuses_a_measurement_that_is_not_in_the_unit_range() -> None:
    """Poisson clips to [0, 1]: phase retrieval's magnitudes (zero frequency = the image's sum) would be cut, so it is refused."""
    from invkit import get_registry
    from invkit.noise import PoissonNoise, check_operator_nonnegative

    registry = get_registry()
    op = registry.build_operator("phase_retrieval", (1, 8, 8), {})
    assert float(op.forward(torch.ones(1, 1, 8, 8, dtype=torch.float64)).max()) > 1  # the clip would change it
    for target in (op, registry.operator_class("phase_retrieval")):
        check_operator_nonnegative(target, GaussianNoise(0.1), "phase_retrieval")
        with pytest.raises(ValueError) as err:
            check_operator_nonnegative(target, PoissonNoise(255.0), "phase_retrieval")
        message = str(err.value)
        assert "operator 'phase_retrieval' measures values beyond 1 (image_like = False" in message and "--noise gaussian" in message
        assert len(message.splitlines()) == 1
