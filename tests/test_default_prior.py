"""The packaged default prior: loads by name, denoises real photos, handles grey, refuses bad sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import invkit
from invkit_priors.default_prior import DefaultPrior, default_weights_path, load_default_prior


@pytest.fixture(scope="module")
def prior() -> DefaultPrior:
    return load_default_prior()


def _crop(name: str, grey: bool = False) -> torch.Tensor:
    from skimage import data

    arr = getattr(data, name)().astype(np.float32) / 255.0
    x = torch.from_numpy(arr)
    x = x[None] if x.dim() == 2 else x.permute(2, 0, 1)
    x = x[None, :, 100:164, 200:264]
    return x.mean(1, keepdim=True) if grey else x


def test_weights_ship_with_their_metadata():
    from safetensors import safe_open

    path = default_weights_path()
    assert path.is_file() and path.stat().st_size < 30e6
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert meta["format"] == "invkit-prior-v1" and meta["architecture"] == "adm"
    assert int(meta["train_step"]) > 0 and dtypes == {"F16"}


def test_registered_as_default_and_used_by_name():
    prior = invkit.get_registry().build("prior", "default")
    assert isinstance(prior, DefaultPrior)
    assert prior.sigma_grid is not None and len(prior.sigma_grid) == 1000


@pytest.mark.parametrize("name,grey", [("astronaut", False), ("camera", True)])
def test_denoises_real_photos(prior, name, grey):
    """Evaluation photos (never trained on): the estimate is much closer than the noisy input."""
    x = _crop(name, grey)
    g = torch.Generator().manual_seed(0)
    for sigma in (0.05, 0.2):
        noisy = x + sigma * torch.randn(x.shape, generator=g)
        with torch.no_grad():
            est = prior.denoise(noisy, sigma)
        assert est.shape == x.shape
        mse_in = float(((noisy - x) ** 2).mean())
        mse_out = float(((est - x) ** 2).mean())
        assert mse_out < 0.5 * mse_in, (name, sigma, mse_in, mse_out)


def test_per_sample_sigma_and_bad_sizes(prior):
    x = torch.full((2, 3, 16, 24), 0.5)
    assert prior.denoise(x, torch.tensor([0.1, 0.5])).shape == x.shape
    with pytest.raises(ValueError, match="divisible by 8"):
        prior.denoise(torch.zeros(1, 3, 20, 24), 0.1)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\) or \(B, 3, H, W\)"):
        prior.denoise(torch.zeros(1, 2, 16, 16), 0.1)


def test_runs_nhwc_on_cpu_and_matches_nchw(prior):
    """The CPU speed-up (channels_last) moves the packaged prior's output by float32 rounding only."""
    assert prior.rgb.channels_last
    x = _crop("astronaut")
    g = torch.Generator().manual_seed(1)
    sigma = torch.tensor([0.02, 0.3, 1.5])
    noisy = x + sigma.view(-1, 1, 1, 1) * torch.randn((3, *x.shape[1:]), generator=g)
    fast = prior.denoise(noisy, sigma)
    try:
        prior.rgb.set_channels_last(False)
        plain = prior.denoise(noisy, sigma)
    finally:
        prior.rgb.set_channels_last(True)
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=0)


def test_grey_images_get_channel_independent_noise_and_ddrm_works_on_them(prior):
    """Copying a grey image to RGB gives noise identical in R, G, B, which the network never saw;
    DDRM then fell apart (10.7 dB here). With the decorrelating extra noise it restores."""
    import math

    import invkit
    from invkit_ddrm import DDRM
    from skimage import data

    x = torch.from_numpy(data.moon()[200:264, 200:264].astype(np.float32) / 255)[None, None]  # a training image
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    a, b = prior.denoise(noisy, 0.1), prior.denoise(noisy, 0.1)
    assert torch.equal(a, b)  # deterministic: the extra noise is seeded from sigma
    plain = prior.rgb.denoise(noisy.expand(-1, 3, -1, -1), 0.1).mean(1, keepdim=True)
    assert not torch.allclose(a, plain, atol=1e-3)
    # per-image sigma: each image as if alone
    two = prior.denoise(torch.cat([noisy, noisy]), torch.tensor([0.1, 0.3]))
    assert two.shape == (2, 1, 64, 64) and not torch.allclose(two[0], two[1], atol=1e-3)
    op = invkit.get_registry().build_operator("gaussian_blur", (1, 64, 64), {"sigma": 3.0})
    y = invkit.GaussianNoise(0.05).sample(op.forward(x), torch.Generator().manual_seed(0))
    out = DDRM().solve(invkit.Problem(op, y, invkit.GaussianNoise(0.05)), prior, steps=20, generator=torch.Generator().manual_seed(0)).x
    psnr = -10 * math.log10(float(((out.clamp(0, 1) - x) ** 2).mean()))
    blurry = -10 * math.log10(float(((y.clamp(0, 1) - x) ** 2).mean()))
    assert psnr > blurry + 2 and psnr > 25, (psnr, blurry)
