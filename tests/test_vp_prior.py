"""VP adapter: [0, 1]-unit denoise(x, sigma) from epsilon/x0/v networks, timesteps, learned sigma."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from invkit.prior import Prior, alphas_bar_from_betas, linear_betas
from invkit_priors.networks.adm import ADMConfig, ADMUNet
from invkit_priors.networks.ddpm import DDPMConfig, DDPMUNet
from invkit_priors.adapters.vp import VPDiffusionPrior
from _nets import randomize as _randomize

ADM_TINY = dict(
    image_size=16, num_channels=32, channel_mult="1,2", num_res_blocks=1, attention_resolutions="8",
    num_head_channels=16, resblock_updown=True,
)
AB = alphas_bar_from_betas(linear_betas())


def numpy_alphas_bar() -> np.ndarray:
    """alphas-bar of the linear 1e-4..0.02 schedule, computed independently."""
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Perturbed parameters (see _nets.randomize), in eval mode."""
    return _randomize(model, seed).eval()


def tiny_adm(**overrides) -> ADMUNet:
    torch.manual_seed(0)
    return randomize(ADMUNet(ADMConfig.from_flags({**ADM_TINY, **overrides})))


class Recorder(torch.nn.Module):
    """Wraps a model and records the timesteps and inputs it receives."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, **kw) -> torch.Tensor:
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return self.inner(x, t, **kw)


def test_sigma_grid_matches_betas() -> None:
    prior = VPDiffusionPrior(tiny_adm(), AB)
    assert isinstance(prior, Prior)
    ab = numpy_alphas_bar()
    expected = np.sqrt((1 - ab) / ab) / 2
    np.testing.assert_allclose(prior.sigma_grid.numpy(), expected, rtol=1e-12)
    assert torch.all(prior.sigma_grid[1:] > prior.sigma_grid[:-1])
    assert prior.sigma_min == pytest.approx(0.005, abs=1e-6)
    assert prior.sigma_max == pytest.approx(78.7, abs=0.05)
    assert prior.num_timesteps == 1000 and prior.data_center == 0.5
    assert prior.channels == 3 and prior.image_size == (16, 16)


def test_timesteps_on_between_and_outside_grid() -> None:
    prior = VPDiffusionPrior(tiny_adm(), AB)
    grid = prior.sigma_grid
    ints = torch.arange(1000, dtype=torch.float64)
    assert torch.equal(prior.timesteps_for(grid), ints)
    assert torch.equal(prior.timesteps_for(grid.float()), ints)  # float32-rounded grid still exact
    assert prior.timesteps_for(float(grid[123])).item() == 123.0
    mid = torch.sqrt(grid[:-1] * grid[1:])  # geometric midpoints: halfway in log sigma
    torch.testing.assert_close(prior.timesteps_for(mid), ints[:-1] + 0.5, atol=1e-9, rtol=0)
    assert prior.timesteps_for(torch.tensor([0.0, 1e-4, 500.0])).tolist() == [0.0, 0.0, 999.0]


def reference_x0(model: torch.nn.Module, x: torch.Tensor, t: list[int]) -> torch.Tensor:
    """The DDPM x0 estimate at integer timesteps, written independently of the adapter."""
    ab = torch.tensor(numpy_alphas_bar()[t], dtype=x.dtype).view(-1, 1, 1, 1)
    x_t = ab.sqrt() * (2 * x - 1)
    with torch.no_grad():
        eps = model(x_t, torch.tensor(t, dtype=torch.float32))[:, :3]
    x0_pm1 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    return (x0_pm1 + 1) / 2


@pytest.mark.parametrize("learn_sigma", [False, True])
def test_denoise_equals_ddpm_formula_at_trained_timesteps(learn_sigma: bool) -> None:
    # float64 end to end: at t = 999 the formula multiplies eps by sigma' = 157, which would turn
    # float32 rounding of the network input into 1e-4 differences.
    model = Recorder(tiny_adm(learn_sigma=learn_sigma).double())
    prior = VPDiffusionPrior(model, AB, learned_sigma=learn_sigma)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 16, 16, generator=g, dtype=torch.float64)
    ts = [0, 417, 999]
    sigma = prior.sigma_grid[ts].float()  # what a solver holds: float32 grid values, one per sample
    out = prior.denoise(x, sigma)
    assert out.shape == x.shape and out.dtype == torch.float64
    assert model.calls[-1][1].tolist() == [0.0, 417.0, 999.0]
    expected = reference_x0(model.inner, x, ts)
    # sigma went through float32, so the VP scaling differs from the exact grid's by ~1e-7 relative.
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # A float sigma applies to the whole batch and matches per-sample calls.
    exact = prior.denoise(x, prior.sigma_grid[ts])
    torch.testing.assert_close(exact, expected, atol=1e-10, rtol=1e-10)
    single = prior.denoise(x[1:2], float(prior.sigma_grid[417]))
    torch.testing.assert_close(single, exact[1:2], atol=1e-10, rtol=1e-10)


def test_ddpm_unet_through_the_adapter() -> None:
    torch.manual_seed(0)
    model = randomize(DDPMUNet(DDPMConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,), resolution=8)))
    prior = VPDiffusionPrior(model, AB)
    x = torch.rand(2, 3, 8, 12)
    out = prior.denoise(x, prior.sigma_grid[[10, 600]])
    torch.testing.assert_close(out, reference_x0(model, x, [10, 600]), atol=2e-5, rtol=1e-4)


class Oracle(torch.nn.Module):
    """Knows the clean image and the noise, and outputs the exact epsilon, x0 or v target."""

    def __init__(self, x0_pm1: torch.Tensor, eps: torch.Tensor, ab: torch.Tensor, kind: str, learned: bool) -> None:
        super().__init__()
        self.x0, self.eps, self.ab, self.kind, self.learned = x0_pm1, eps, ab, kind, learned

    def forward(self, x_vp: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, b = self.ab.sqrt(), (1 - self.ab).sqrt()
        torch.testing.assert_close(x_vp, a * self.x0 + b * self.eps, atol=1e-5, rtol=1e-5)
        target = {"epsilon": self.eps, "x0": self.x0, "v": a * self.eps - b * self.x0}[self.kind]
        if self.learned:  # variance channels: garbage the adapter must drop
            target = torch.cat([target, torch.full_like(target, 1e6)], dim=1)
        return target


@pytest.mark.parametrize("kind", ["epsilon", "x0", "v"])
@pytest.mark.parametrize("learned", [False, True])
def test_all_parameterisations_recover_x0_off_grid(kind: str, learned: bool) -> None:
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 3, 4, 4, generator=g)
    n = torch.randn(2, 3, 4, 4, generator=g)
    sigma = torch.tensor([0.0731, 3.3])  # not on the grid
    x = x0 + sigma.view(-1, 1, 1, 1) * n
    s2 = 2 * sigma.view(-1, 1, 1, 1)
    ab = 1 / (1 + s2**2)
    oracle = Oracle(2 * x0 - 1, n, ab, kind, learned)
    prior = VPDiffusionPrior(oracle, AB, prediction=kind, learned_sigma=learned)
    torch.testing.assert_close(prior.denoise(x, sigma), x0, atol=2e-5, rtol=1e-5)


def test_wrong_learned_sigma_setting_is_explained() -> None:
    prior = VPDiffusionPrior(tiny_adm(learn_sigma=True), AB, learned_sigma=False)
    with pytest.raises(ValueError, match="set learned_sigma=True"):
        prior.denoise(torch.rand(1, 3, 8, 8), 0.5)


def test_sigma_zero_and_validation() -> None:
    prior = VPDiffusionPrior(tiny_adm(), AB, prediction="x0")
    x = torch.rand(2, 3, 8, 8)
    assert prior.denoise(x, 0.0) is x
    mixed = prior.denoise(x, torch.tensor([0.0, 0.2]))
    assert torch.equal(mixed[0], x[0]) and not torch.equal(mixed[1], x[1])
    with pytest.raises(ValueError, match="shape"):
        prior.denoise(x, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="finite and >= 0"):
        prior.denoise(x, -0.1)
    with pytest.raises(ValueError, match="prediction"):
        VPDiffusionPrior(tiny_adm(), AB, prediction="score")
    with pytest.raises(ValueError, match="decreasing"):
        VPDiffusionPrior(tiny_adm(), AB.flip(0))


def test_class_label_is_bound() -> None:
    model = tiny_adm(class_cond=True)
    x = torch.rand(2, 3, 8, 8)
    sigma = float(VPDiffusionPrior(model, AB).sigma_grid[300])
    p3 = VPDiffusionPrior(model, AB, class_label=3)
    p5 = VPDiffusionPrior(model, AB, class_label=torch.tensor([5, 5]))
    out3 = p3.denoise(x, sigma)
    assert not torch.allclose(out3, p5.denoise(x, sigma))
    ab = float(AB[300])
    x_t = math.sqrt(ab) * (2 * x - 1)
    with torch.no_grad():
        eps = model(x_t, torch.tensor([300.0, 300.0]), torch.tensor([3, 3]))
    torch.testing.assert_close(out3, ((x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab) + 1) / 2, atol=2e-5, rtol=1e-4)


def test_gradients_flow_to_x_only_when_requested() -> None:
    prior = VPDiffusionPrior(tiny_adm(), AB)
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    prior.denoise(x, 0.3).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert not prior.denoise(x.detach(), 0.3).requires_grad


def test_fully_convolutional_small_adm_at_32x48() -> None:
    torch.manual_seed(0)
    model = randomize(ADMUNet(ADMConfig.from_flags({**ADM_TINY, "image_size": 32})))
    prior = VPDiffusionPrior(model, AB)
    out = prior.denoise(torch.rand(1, 3, 32, 48), 0.1)
    assert out.shape == (1, 3, 32, 48) and torch.isfinite(out).all()


def test_half_precision_option() -> None:
    model = tiny_adm()
    x = torch.rand(1, 3, 8, 8)
    ref = VPDiffusionPrior(model, AB).denoise(x, 0.05)
    half = VPDiffusionPrior(model, AB, half=True)
    assert model.torso_dtype == torch.float16
    out = half.denoise(x, 0.05)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=5e-3, rtol=5e-3)


def test_channels_last_layout_is_opt_in_and_agrees_with_nchw() -> None:
    x = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(3))
    nchw_model = tiny_adm()
    nchw = VPDiffusionPrior(nchw_model, AB)
    assert not nchw.channels_last and nchw_model.input_blocks[0][0].weight.is_contiguous()
    nhwc_model = Recorder(tiny_adm())
    nhwc = VPDiffusionPrior(nhwc_model, AB, channels_last=True)
    assert nhwc.channels_last
    assert nhwc_model.inner.input_blocks[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    sigma = torch.tensor([0.05, 0.8])
    out = nhwc.denoise(x, sigma)
    assert nhwc_model.calls[-1][0].is_contiguous(memory_format=torch.channels_last)
    assert out.is_contiguous()
    torch.testing.assert_close(out, nchw.denoise(x, sigma), atol=2e-5, rtol=1e-4)
    nhwc.set_channels_last(False)
    assert nhwc_model.inner.input_blocks[0][0].weight.is_contiguous()
    nhwc.denoise(x, sigma)
    assert nhwc_model.calls[-1][0].is_contiguous()
    with pytest.raises(ValueError, match="channels_last=True needs an nn.Module"):
        VPDiffusionPrior(lambda x, t: x, AB, channels_last=True)


def test_nchw_mode_runs_nchw_even_for_an_nhwc_strided_input() -> None:
    """An image permuted from HWC is NHWC in memory; in NCHW mode the network still gets NCHW."""
    model = Recorder(tiny_adm())
    prior = VPDiffusionPrior(model, AB)
    hwc = torch.rand(16, 24, 3, generator=torch.Generator().manual_seed(4))
    x = hwc.permute(2, 0, 1)[None]
    assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    out = prior.denoise(x, 0.2)
    assert model.calls[-1][0].is_contiguous()
    torch.testing.assert_close(out, prior.denoise(x.contiguous(), 0.2), atol=0, rtol=0)


def test_the_prior_states_its_network_size_multiple_and_sizing_reads_only_that():
    from invkit.runner.sizing import prior_multiple

    net = ADMUNet(ADMConfig.from_flags(ADM_TINY))
    prior = VPDiffusionPrior(net, alphas_bar_from_betas(linear_betas()))
    assert prior.size_multiple == net.size_multiple > 1 and prior_multiple(prior) == net.size_multiple
    plain = VPDiffusionPrior(lambda x, t: torch.zeros_like(x), alphas_bar_from_betas(linear_betas()))
    assert plain.size_multiple == 1 and Prior.size_multiple == 1

    class Duck:  # a duck-typed prior: only what it states counts, never its attributes' attributes
        model = net

    assert prior_multiple(Duck()) == 1
    Duck.size_multiple = 16
    assert prior_multiple(Duck()) == 16
