"""invkit.vp against the VP formulas written out here in ᾱ/β symbols (float64).

The reference side never calls the functions under test: it builds β, α, ᾱ itself, maps images
with ``x_t = √ᾱ d (x - 1/2)`` by hand and applies DDIM's update in VP space.
"""

from __future__ import annotations

import math

import pytest
import torch

from invkit.prior import ddpm_sigma_grid, vp_sigma_grid
from invkit.vp import (
    alpha_bar_from_sigma,
    ddim_noise_scale,
    ddim_step,
    eps_from_x0,
    from_vp,
    sigma_from_alpha_bar,
    to_vp,
    x0_from_eps,
)

F64 = torch.float64
BETAS = torch.linspace(1e-4, 0.02, 1000, dtype=F64)  # DDPM's linear schedule, written out
ALPHAS = 1.0 - BETAS
AB = torch.cumprod(ALPHAS, dim=0)


def ab_at(t: int) -> float:
    """ᾱ_t, with ᾱ_{-1} = 1 (the clean end)."""
    return 1.0 if t < 0 else float(AB[t])


def sigma_ref(ab: float, d: float) -> float:
    """σ = √(1 - ᾱ) / (d √ᾱ), written out."""
    return math.sqrt(1.0 - ab) / (d * math.sqrt(ab))


def images(seed: int, shape: tuple[int, ...] = (3, 2, 4, 4)) -> torch.Tensor:
    return torch.rand(shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def normal(seed: int, shape: tuple[int, ...] = (3, 2, 4, 4)) -> torch.Tensor:
    return torch.randn(shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- σ <-> ᾱ


def test_sigma_from_alpha_bar_is_the_prior_grid_bit_for_bit() -> None:
    grid = sigma_from_alpha_bar(AB)
    assert grid.dtype == F64
    assert torch.equal(grid, vp_sigma_grid(AB))
    assert torch.equal(grid, ddpm_sigma_grid())
    for t in (0, 1, 500, 999):
        assert sigma_from_alpha_bar(float(AB[t])) == pytest.approx(float(grid[t]), rel=4e-16)  # math.sqrt: <= 1 ulp
        assert sigma_from_alpha_bar(float(AB[t])) == pytest.approx(sigma_ref(float(AB[t]), 2.0), rel=1e-15)


def test_sigma_alpha_bar_round_trip_and_data_scale() -> None:
    grid = ddpm_sigma_grid()
    back = alpha_bar_from_sigma(grid)
    assert torch.allclose(back, AB, rtol=1e-14, atol=0)
    assert torch.allclose(sigma_from_alpha_bar(back), grid, rtol=1e-11, atol=0)  # 1 - ᾱ near ᾱ = 1 limits this
    assert torch.allclose(alpha_bar_from_sigma(grid), 1.0 / (1.0 + 4.0 * grid**2), rtol=1e-15, atol=0)
    for d in (1.0, 2.0, 255.0):
        for ab in (0.9999, 0.5, 1e-4):
            s = sigma_from_alpha_bar(ab, data_scale=d)
            assert s == pytest.approx(sigma_ref(ab, d), rel=1e-14)
            assert alpha_bar_from_sigma(s, data_scale=d) == pytest.approx(ab, rel=1e-12)
    assert sigma_from_alpha_bar(1.0) == 0.0 and alpha_bar_from_sigma(0.0) == 1.0
    assert isinstance(sigma_from_alpha_bar(0.5), float) and isinstance(alpha_bar_from_sigma(0.5), float)
    assert alpha_bar_from_sigma(torch.tensor([0, 1])).dtype == F64  # integer tensors become float64


# ---------------------------------------------------------------- to_vp / from_vp


@pytest.mark.parametrize("d", [1.0, 2.0])
@pytest.mark.parametrize("t", [0, 250, 999])
def test_to_vp_is_the_vp_forward_process(d: float, t: int) -> None:
    ab = ab_at(t)
    sigma = sigma_ref(ab, d)
    x0, eps = images(0), normal(1)
    x = x0 + sigma * eps  # our VE state
    x_t = to_vp(x, sigma, data_scale=d)
    x0p = d * (x0 - 0.5)  # the model's data range [-d/2, d/2]
    assert torch.allclose(x_t, math.sqrt(ab) * x0p + math.sqrt(1.0 - ab) * eps, rtol=0, atol=1e-12)
    assert torch.allclose(from_vp(x_t, ab, data_scale=d), x, rtol=1e-13, atol=1e-13)
    if d == 2.0:
        assert torch.allclose(to_vp(x, sigma), math.sqrt(ab) * (2 * x - 1), rtol=1e-14, atol=1e-14)
        assert torch.allclose(from_vp(x_t, ab), (x_t / math.sqrt(ab) + 1) / 2, rtol=1e-14, atol=1e-14)


def test_vp_maps_per_row_levels() -> None:
    ts = [0, 400, 999]
    sig = torch.tensor([sigma_ref(ab_at(t), 2.0) for t in ts], dtype=F64)
    ab = torch.tensor([ab_at(t) for t in ts], dtype=F64)
    x = images(2)
    x_t = to_vp(x, sig)
    for b in range(3):
        assert torch.allclose(x_t[b], to_vp(x[b : b + 1], float(sig[b]))[0], rtol=0, atol=1e-15)
    assert torch.allclose(from_vp(x_t, ab), x, rtol=1e-12, atol=1e-12)
    assert torch.equal(from_vp(to_vp(x, 0.0), 1.0), x)  # σ = 0: x_t = 2x - 1 exactly, and back


# ---------------------------------------------------------------- ε̂ <-> x̂0


@pytest.mark.parametrize("d", [1.0, 2.0])
@pytest.mark.parametrize("t", [0, 500, 999])
def test_eps_is_the_vp_noise_prediction(d: float, t: int) -> None:
    ab = ab_at(t)
    sigma = sigma_ref(ab, d)
    x, x0_hat = images(3) + sigma * normal(4), images(5)
    x_t = math.sqrt(ab) * d * (x - 0.5)
    eps_vp = (x_t - math.sqrt(ab) * d * (x0_hat - 0.5)) / math.sqrt(1.0 - ab)
    eps = eps_from_x0(x, x0_hat, sigma)
    assert torch.allclose(eps, eps_vp, rtol=1e-11, atol=1e-11)
    # the other way: x̂0' = (x_t - √(1-ᾱ) ε̂) / √ᾱ, then x̂0 = x̂0'/d + 1/2
    x0p = (x_t - math.sqrt(1.0 - ab) * eps_vp) / math.sqrt(ab)
    assert torch.allclose(x0_from_eps(x, eps_vp, sigma), x0p / d + 0.5, rtol=1e-10, atol=1e-10)
    assert torch.allclose(x0_from_eps(x, eps, sigma), x0_hat, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- DDIM step


def ddim_vp_reference(x: torch.Tensor, x0_hat: torch.Tensor, t: int, t_prev: int, eta: float, z: torch.Tensor, d: float) -> torch.Tensor:
    """DDIM (Song et al. eq. 12, c from eq. 16) in VP space, mapped to [0, 1] units and back."""
    ab, ab_prev = ab_at(t), ab_at(t_prev)
    x_t = math.sqrt(ab) * d * (x - 0.5)
    x0p = d * (x0_hat - 0.5)
    eps = (x_t - math.sqrt(ab) * x0p) / math.sqrt(1.0 - ab)
    c = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab)) * math.sqrt(1.0 - ab / ab_prev)
    x_prev = math.sqrt(ab_prev) * x0p + math.sqrt(max(1.0 - ab_prev - c**2, 0.0)) * eps + c * z
    return x_prev / (d * math.sqrt(ab_prev)) + 0.5


PAIRS = [(999, 949), (999, 500), (500, 499), (250, 200), (50, 9), (1, 0), (0, -1), (10, -1), (999, -1)]


@pytest.mark.parametrize("d", [1.0, 2.0])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize(("t", "t_prev"), PAIRS)
def test_ddim_step_equals_the_vp_update(t: int, t_prev: int, eta: float, d: float) -> None:
    sigma, sigma_next = sigma_ref(ab_at(t), d), (0.0 if t_prev < 0 else sigma_ref(ab_at(t_prev), d))
    x = images(6) + sigma * normal(7)
    x0_hat, z = images(8), normal(9)
    ours = ddim_step(x, x0_hat, sigma, sigma_next, eta, z)
    ref = ddim_vp_reference(x, x0_hat, t, t_prev, eta, z, d)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-12), float((ours - ref).abs().max())


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_ddim_step_to_zero_is_x0_hat_exactly(eta: float) -> None:
    x, x0_hat, z = images(10) + 3.0 * normal(11), images(12), normal(13)
    assert torch.equal(ddim_step(x, x0_hat, 3.0, 0.0, eta, z), x0_hat)
    assert torch.equal(ddim_step(x, x0_hat, 3.0, 0.0, eta), x0_hat)  # no noise needed at σ' = 0
    # per-row tensor levels reaching 0 also land on x̂0 exactly
    out = ddim_step(x, x0_hat, torch.full((3,), 3.0, dtype=F64), torch.zeros(3, dtype=F64), eta, z)
    assert torch.equal(out, x0_hat)


@pytest.mark.parametrize("t", [1, 2, 100, 500, 999])
def test_eta_one_variance_is_ddpm_posterior_variance(t: int) -> None:
    beta_tilde = (1.0 - ab_at(t - 1)) / (1.0 - ab_at(t)) * float(BETAS[t])  # DDPM's β̃_t, VP units
    ours = beta_tilde / (4.0 * ab_at(t - 1))  # a VP std at t-1 maps to ours by 1/(2 √ᾱ_{t-1})
    sigma, sigma_next = sigma_ref(ab_at(t), 2.0), sigma_ref(ab_at(t - 1), 2.0)
    assert ddim_noise_scale(sigma, sigma_next, 1.0) ** 2 == pytest.approx(ours, rel=1e-9)
    # and the step's noise coefficient is that c: x'(z) - x'(0) = c z
    x, x0_hat, z = images(14) + sigma * normal(15), images(16), normal(17)
    diff = ddim_step(x, x0_hat, sigma, sigma_next, 1.0, z) - ddim_step(x, x0_hat, sigma, sigma_next, 1.0, torch.zeros_like(z))
    assert torch.allclose(diff, math.sqrt(ours) * z, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("t", [1, 100, 999])
def test_eta_one_mean_is_ddpm_posterior_mean(t: int) -> None:
    # μ̃_t(x_t, x0') = √ᾱ_{t-1} β_t/(1-ᾱ_t) x0' + √α_t (1-ᾱ_{t-1})/(1-ᾱ_t) x_t   (DDPM eq. 7)
    ab, ab_prev, beta, alpha = ab_at(t), ab_at(t - 1), float(BETAS[t]), float(ALPHAS[t])
    sigma, sigma_next = sigma_ref(ab, 2.0), sigma_ref(ab_prev, 2.0)
    x, x0_hat = images(18) + sigma * normal(19), images(20)
    x_t, x0p = math.sqrt(ab) * (2 * x - 1), 2 * x0_hat - 1
    mu = math.sqrt(ab_prev) * beta / (1 - ab) * x0p + math.sqrt(alpha) * (1 - ab_prev) / (1 - ab) * x_t
    mean = ddim_step(x, x0_hat, sigma, sigma_next, 1.0, torch.zeros_like(x))
    assert torch.allclose(mean, (mu / math.sqrt(ab_prev) + 1) / 2, rtol=1e-9, atol=1e-9)


def test_ddim_noise_scale_formula_and_independence_of_data_scale() -> None:
    assert ddim_noise_scale(5.0, 3.0, 1.0) == pytest.approx(2.4, rel=1e-15)
    assert ddim_noise_scale(5.0, 3.0, 0.5) == pytest.approx(1.2, rel=1e-15)
    assert ddim_noise_scale(5.0, 3.0, 0.0) == 0.0
    assert ddim_noise_scale(5.0, 0.0, 1.0) == 0.0
    assert ddim_noise_scale(5.0, 5.0, 1.0) == 0.0
    for d in (1.0, 2.0, 7.0):  # c_vp / (d √ᾱ') with the VP formula, for several d: one answer
        for t, tp in ((999, 949), (10, 3)):
            ab, abp = ab_at(t), ab_at(tp)
            c_vp = 0.7 * math.sqrt((1 - abp) / (1 - ab)) * math.sqrt(1 - ab / abp)
            # for a model of range d, the same ᾱ pair means σ's scaled by 1/d: compare in that model's σ
            c = ddim_noise_scale(sigma_ref(ab, d), sigma_ref(abp, d), 0.7)
            assert c == pytest.approx(c_vp / (d * math.sqrt(abp)), rel=1e-10)


def test_ddim_step_per_row_levels_match_scalar_calls() -> None:
    x, x0_hat, z = images(21) + 2.0 * normal(22), images(23), normal(24)
    s = torch.tensor([2.0, 1.0, 0.5], dtype=F64)
    sn = torch.tensor([1.5, 0.0, 0.1], dtype=F64)
    out = ddim_step(x, x0_hat, s, sn, 0.6, z)
    for b in range(3):
        ref = ddim_step(x[b : b + 1], x0_hat[b : b + 1], float(s[b]), float(sn[b]), 0.6, z[b : b + 1])
        assert torch.allclose(out[b : b + 1], ref, rtol=0, atol=1e-15)
    assert ddim_noise_scale(s, sn, 1.0).shape == (3,)


def test_ddim_step_deterministic_and_float32() -> None:
    x, x0_hat = images(25) + normal(26), images(27)
    out = ddim_step(x, x0_hat, 1.0, 0.25, 0.0)  # η = 0 needs no noise: x̂0 + σ' ε̂
    assert torch.allclose(out, x0_hat + 0.25 * (x - x0_hat), rtol=0, atol=1e-15)
    out32 = ddim_step(x.float(), x0_hat.float(), 1.0, 0.25, 0.5, normal(28).float())
    assert out32.dtype == torch.float32


def test_ddim_errors() -> None:
    x = images(29)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        ddim_step(x, x, 1.0, 0.5, 1.5, x)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        ddim_noise_scale(1.0, 0.5, -0.1)
    with pytest.raises(ValueError, match="0 <= sigma_next <= sigma"):
        ddim_step(x, x, 1.0, 2.0, 0.0)
    with pytest.raises(ValueError, match="sigma > 0"):
        ddim_step(x, x, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="0 <= sigma_next"):
        ddim_noise_scale(1.0, -0.5, 0.0)
    with pytest.raises(ValueError, match="needs noise"):
        ddim_step(x, x, 1.0, 0.5, 0.5)
