"""The packaged default prior: loads by name, denoises real photos, handles grey, refuses bad sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import invkit
from invkit_priors.default.prior import DefaultPrior, default_weights_path, load_default_prior


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


def test_grey_images_get_channel_independent_noise_and_ddrm_works_on_them(prior, monkeypatch):
    """Copying a grey image to RGB gives noise identical in R, G, B, which the network never saw;
    DDRM then fell apart (10.8 dB here). With the decorrelating extra noise it restores."""
    import math

    import invkit
    from invkit_solvers.ddrm import DDRM
    from skimage import data

    x = torch.from_numpy(data.moon()[200:264, 200:264].astype(np.float32) / 255)[None, None]  # a training image
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    # what the RGB network is given: channel mean = the grey input, channel noise iid at sqrt(3) sigma
    seen = []
    real = prior.rgb.denoise
    monkeypatch.setattr(prior.rgb, "denoise", lambda y3, s, **kw: seen.append((y3, torch.as_tensor(s))) or real(y3, s, **kw))
    big = 0.5 + 0.1 * torch.randn((1, 1, 128, 128), generator=torch.Generator().manual_seed(2))  # grey + noise σ
    prior.denoise(big, 0.1)
    y3, s3 = seen[-1]
    torch.testing.assert_close(y3.mean(1, keepdim=True), big, atol=1e-6, rtol=0)
    assert float(s3) == pytest.approx(math.sqrt(3) * 0.1)
    n = (y3 - 0.5).reshape(3, -1).double()  # total noise per channel
    cov = n @ n.T / n.shape[1] / (3 * 0.1**2)  # should be close to the identity (iid, variance 3 sigma^2)
    assert torch.allclose(cov, torch.eye(3, dtype=torch.float64), atol=0.03), cov
    a, b = prior.denoise(noisy, 0.1), prior.denoise(noisy, torch.tensor(0.1))
    assert torch.equal(a, prior.denoise(noisy, 0.1))  # deterministic
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # the same noise for a float and a float32 tensor
    plain = real(noisy.expand(-1, 3, -1, -1), 0.1).mean(1, keepdim=True)
    assert not torch.allclose(a, plain, atol=1e-3)
    # batch independence: each image as if alone; sigma = 0 returns the input unchanged
    other = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    two = prior.denoise(torch.cat([noisy, other, noisy]), torch.tensor([0.1, 0.3, 0.0]))
    torch.testing.assert_close(two[0:1], a, atol=1e-5, rtol=0)
    torch.testing.assert_close(two[1:2], prior.denoise(other, 0.3), atol=1e-5, rtol=0)
    assert torch.equal(two[2:3], noisy)
    # different inputs get different extra noise (DDRM's samples must not share one pattern)
    seen.clear()
    prior.denoise(big, 0.1)
    prior.denoise(big + 0.01, 0.1)
    assert not torch.allclose(seen[0][0] - big, seen[1][0] - big - 0.01, atol=1e-3)
    monkeypatch.undo()
    op = invkit.get_registry().build_operator("gaussian_blur", (1, 64, 64), {"sigma": 3.0})
    y = invkit.GaussianNoise(0.05).sample(op.forward(x), torch.Generator().manual_seed(0))
    out = DDRM().solve(invkit.Problem(op, y, invkit.GaussianNoise(0.05)), prior, steps=20, generator=torch.Generator().manual_seed(0)).x
    psnr = -10 * math.log10(float(((out.clamp(0, 1) - x) ** 2).mean()))
    blurry = -10 * math.log10(float(((y.clamp(0, 1) - x) ** 2).mean()))
    assert psnr > blurry + 2 and psnr > 25, (psnr, blurry)


def test_clip_keeps_the_estimate_in_range_and_never_further_from_the_truth():
    """``--prior-arg clip=true``: the estimate is the unclipped one clipped to [0, 1] (rows with
    sigma = 0 stay the input), so per pixel it is never further from a clean image in [0, 1]; the
    default stays unclipped. Saturated colours at high noise are where the network leaves the range."""
    import invkit

    reg = invkit.get_registry()
    plain, clipped = reg.build("prior", "default", []), reg.build("prior", "default", ["clip=true"])
    assert plain.rgb.clip is False and clipped.rgb.clip is True
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 3, 32, 32, generator=g)
    x0[1] = (x0[1] > 0.5).float()  # saturated: pixels at 0 and 1, where estimates overshoot
    for c in (3, 1):
        clean = x0[:, :c]
        sigma = torch.tensor([0.8, 0.3])
        noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn(clean.shape, generator=g)
        a, b = plain.denoise(noisy, sigma), clipped.denoise(noisy, sigma)
        assert torch.equal(b, a.clamp(0, 1))  # grey too: the channels' average is clipped, not each channel
        assert bool(((b - clean).abs() <= (a - clean).abs()).all())
        assert bool(((a < 0) | (a > 1)).any())  # the test has something to clip
    # a batch mixing sigma = 0 rows (the input itself, even out of range) and clipped ones
    x = torch.full((2, 3, 8, 8), 1.5)
    out = clipped.denoise(x, torch.tensor([0.0, 0.5]))
    assert torch.equal(out[0], x[0]) and bool((out[1] <= 1).all())


def test_clip_reaches_checkpoint_priors(tmp_path):
    """``--prior checkpoint --prior-arg clip=true`` (the default weights as a checkpoint file)."""
    import invkit
    from invkit_priors.default.prior import default_weights_path

    reg = invkit.get_registry()
    on = reg.build("prior", "checkpoint", [f"path={default_weights_path()}", "clip=true"])
    off = reg.build("prior", "checkpoint", [f"path={default_weights_path()}"])
    assert on.clip is True and off.clip is False
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)).round()  # saturated
    y = x + 0.8 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    assert torch.equal(on.denoise(y, 0.8), off.denoise(y, 0.8).clamp(0, 1))
    assert torch.equal(on.denoise(y, 0.8, clip=False), off.denoise(y, 0.8))


def test_clip_is_a_keyword_of_the_python_loaders():
    """``load_default_prior(clip=True)`` and ``load_checkpoint_prior(..., clip=True)`` set it, as
    ``--prior-arg clip=true`` does; both default to unclipped."""
    from invkit_priors.checkpoints.load import load_checkpoint_prior
    from invkit_priors.default.prior import default_weights_path, load_default_prior

    assert load_default_prior(clip=True).rgb.clip is True and load_default_prior().rgb.clip is False
    path = default_weights_path()
    assert load_checkpoint_prior(path, clip=True).clip is True and load_checkpoint_prior(path).clip is False


def test_clip_is_declared_for_every_network_prior():
    import invkit

    reg = invkit.get_registry()
    for name in ("default", "checkpoint", "adm-ffhq256"):
        assert "clip" in {p.name for p in reg.get("prior", name).params}, name
