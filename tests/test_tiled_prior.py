"""invkit.tiled: tiles cover the image, windows blend to a positive normaliser, and TiledPrior equals
the untiled prior for a local denoiser whose receptive-field radius is at most the margin.

The exactness tests use :class:`LocalPrior`, an analytic denoiser whose output at a pixel depends
only on inputs within radius ``r`` (a fixed ``(2r+1)^2`` kernel with reflect padding, a channel
mix and a pointwise nonlinearity); reflect padding at the image border is reproduced by the
border tiles, which are flush with the border.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import invkit
from invkit.prior import Prior, sigma_rows
from invkit.tiled import CPU_BATCH_PIXELS, MAX_BATCH_PIXELS, TiledPrior, default_batch, tile_grid, tile_windows

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class LocalPrior(Prior):
    """``D(x, s) = (x + s tanh(k * x + 0.1 mean_c(k * x))) / (1 + s)``, ``k`` a fixed (2r+1)^2 kernel.

    Records the tiles and sigmas of every call in ``calls``.
    """

    name = "local"

    def __init__(self, radius: int, multiple: int = 4) -> None:
        self.radius = radius
        self.size_multiple = multiple
        self.sigma_grid = None
        self.data_center = 0.25
        self.channels = None
        size = 2 * radius + 1
        g = torch.Generator().manual_seed(radius)
        k = torch.rand(size, size, generator=g, dtype=torch.float64) + 0.5  # asymmetric: a flip would show
        self.kernel = k / k.sum()
        self.calls: list[tuple[Tensor, Tensor]] = []

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        b, c = x.shape[:2]
        s = sigma_rows(sigma, b)
        self.calls.append((x.detach().clone(), s.clone()))
        r = self.radius
        k = self.kernel.to(device=x.device, dtype=x.dtype).expand(c, 1, 2 * r + 1, 2 * r + 1)
        blur = F.conv2d(F.pad(x, (r, r, r, r), mode="reflect") if r else x, k, groups=c)
        col = s.to(device=x.device, dtype=x.dtype).view(b, 1, 1, 1)
        return (x + col * torch.tanh(blur + 0.1 * blur.mean(dim=1, keepdim=True))) / (1 + col)


def _rand(*shape: int, seed: int = 0, device: str = "cpu") -> Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)


# --- tile_grid and tile_windows ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "multiple"),
    [(96, 80, 64, 16, 8), (72, 100, 32, 16, 4), (20, 96, 32, 8, 4), (32, 32, 32, 16, 4), (256, 200, 64, 0, 8), (40, 48, 16, 12, 4)],
)
def test_tile_grid_covers_flush_and_aligned(h, w, tile, overlap, multiple):
    grid = tile_grid(h, w, tile, overlap, multiple)
    cover = torch.zeros(h, w, dtype=torch.int64)
    for top, left, th, tw in grid:
        assert (th, tw) == (min(tile, h), min(tile, w)), "every tile is full size"
        assert top % multiple == 0 and left % multiple == 0
        assert 0 <= top <= h - th and 0 <= left <= w - tw
        cover[top : top + th, left : left + tw] += 1
    assert bool((cover > 0).all()), "every pixel is in a tile"
    tops = sorted({g[0] for g in grid})
    lefts = sorted({g[1] for g in grid})
    assert len(grid) == len(tops) * len(lefts), "the grid is the product of the axes' starts"
    for starts, n, size in ((tops, h, grid[0][2]), (lefts, w, grid[0][3])):
        assert starts[0] == 0 and starts[-1] == n - size, "first and last tile flush with the borders"
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:])), "neighbours overlap by >= overlap"


@pytest.mark.parametrize(
    ("h", "w", "tile", "overlap", "margin"),
    [(96, 80, 64, 16, None), (72, 100, 32, 16, 8), (72, 100, 32, 16, 0), (20, 96, 32, 8, 2), (256, 200, 64, 0, 0), (40, 48, 16, 12, 6)],
)
def test_windows_positive_and_one_inside(h, w, tile, overlap, margin):
    m = overlap // 4 if margin is None else margin
    grid = tile_grid(h, w, tile, overlap)
    windows = tile_windows(h, w, tile, overlap, margin)
    assert windows.shape == (len(grid), grid[0][2], grid[0][3])
    total = torch.zeros(h, w, dtype=torch.float64)
    for (top, left, th, tw), win in zip(grid, windows):
        total[top : top + th, left : left + tw] += win
        assert bool((win >= 0).all()) and bool((win <= 1).all())
        # Per axis: 0 within the margin of an edge inside the image, 1 from overlap - margin on.
        lo_y = overlap - m if top > 0 else 0
        hi_y = th - (overlap - m) if top + th < h else th
        lo_x = overlap - m if left > 0 else 0
        hi_x = tw - (overlap - m) if left + tw < w else tw
        if lo_y < hi_y and lo_x < hi_x:
            assert bool((win[lo_y:hi_y, lo_x:hi_x] == 1).all()), "the window is 1 in the tile's interior"
        if top > 0:
            assert bool((win[:m] == 0).all())
        if top + th < h:
            assert bool((win[th - m :] == 0).all())
        if left > 0:
            assert bool((win[:, :m] == 0).all())
        if left + tw < w:
            assert bool((win[:, tw - m :] == 0).all())
    assert bool((total > 0).all()), f"normaliser min {float(total.min())}"


def test_windows_partition_of_unity_on_a_regular_grid():
    # n = tile + k (tile - overlap): no flush shift, neighbours overlap by exactly `overlap`.
    tile, overlap = 32, 16
    n = tile + 3 * (tile - overlap)
    total = torch.zeros(n, n, dtype=torch.float64)
    for (top, left, th, tw), win in zip(tile_grid(n, n, tile, overlap), tile_windows(n, n, tile, overlap)):
        total[top : top + th, left : left + tw] += win
    assert torch.allclose(total, torch.ones_like(total), atol=1e-15, rtol=0)


# --- exactness for a local denoiser --------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("shape", "sigma"),
    [
        ((1, 3, 72, 100), 0.3),  # neither side a multiple of the stride
        ((1, 1, 20, 96), 0.1),  # one axis smaller than a tile
        ((2, 3, 32, 32), torch.tensor([0.2, 1.5])),  # exactly one tile: straight to the inner prior
        ((2, 3, 48, 44), torch.tensor([0.05, 2.0])),  # per-image sigma
        ((1, 1, 32, 36), 0.7),  # one side exactly a tile, the other just over
    ],
)
def test_tiled_equals_untiled_for_radius_within_margin(device, shape, sigma):
    inner = LocalPrior(radius=4)
    tiled = TiledPrior(inner, tile=32, overlap=16)  # margin 4
    x = _rand(*shape, device=device)
    out, ref = tiled.denoise(x, sigma), inner.denoise(x, sigma)
    assert out.dtype == torch.float64 and out.device == x.device
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    if shape[-2:] == (32, 32):
        assert torch.equal(out, ref)


@pytest.mark.parametrize(("radius", "margin"), [(0, 0), (8, 8), (2, 3)])
def test_tiled_exact_at_other_margins(radius, margin):
    inner = LocalPrior(radius=radius)
    x = _rand(1, 3, 60, 76, seed=1)
    out = TiledPrior(inner, tile=32, overlap=16, margin=margin).denoise(x, 0.4)
    torch.testing.assert_close(out, inner.denoise(x, 0.4), atol=1e-12, rtol=0)


def test_radius_beyond_margin_differs():
    inner = LocalPrior(radius=5)
    x = _rand(1, 3, 72, 100)
    err = float((TiledPrior(inner, tile=32, overlap=16).denoise(x, 0.3) - inner.denoise(x, 0.3)).abs().max())
    assert err > 1e-6, "a radius beyond the margin must show at the seams (the exactness test can fail)"


def test_gradient_equals_untiled():
    inner = LocalPrior(radius=4)
    tiled = TiledPrior(inner, tile=32, overlap=16, batch=3)
    v = _rand(2, 3, 48, 68, seed=2)
    sigma = torch.tensor([0.3, 1.1])
    grads, outs = [], []
    for prior in (tiled, inner):
        x = _rand(2, 3, 48, 68, seed=3).requires_grad_(True)
        out = prior.denoise(x, sigma)
        (out * v).sum().backward()
        grads.append(x.grad)
        outs.append(out.detach())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-12, rtol=0)
    # With a gradient recorded the values are those of an unrecorded call.
    assert torch.equal(outs[0], tiled.denoise(_rand(2, 3, 48, 68, seed=3), sigma))


# --- batching ------------------------------------------------------------------------------------


def test_batch_does_not_change_tiles_or_result():
    inner = LocalPrior(radius=2)
    x = _rand(2, 3, 72, 100, seed=4)
    sigma = torch.tensor([0.3, 0.9])
    outs, seen = [], []
    for batch in (1, 3, 7, None):
        inner.calls.clear()
        outs.append(TiledPrior(inner, tile=32, overlap=16, batch=batch).denoise(x, sigma))
        seen.append((torch.cat([c[0] for c in inner.calls]), torch.cat([c[1] for c in inner.calls])))
        n_tiles = len(tile_grid(72, 100, 32, 16)) * 2
        assert [c[0].shape[0] for c in inner.calls] == _chunks(n_tiles, batch or CPU_BATCH_PIXELS // (32 * 32))
    for out, (tiles, sigmas) in zip(outs[1:], seen[1:]):
        assert torch.equal(tiles, seen[0][0]) and torch.equal(sigmas, seen[0][1]), "the inner prior sees the same tiles"
        assert torch.equal(out, outs[0])
    tiles_per_image = seen[0][0].shape[0] // 2
    assert torch.equal(seen[0][1], sigma.to(torch.float64).repeat_interleave(tiles_per_image))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batch_does_not_change_the_result_on_cuda():
    """On CUDA (default batch: MAX_BATCH_PIXELS of tiles, 8 of 256²) batches of 1, 3 and the
    default give the same result to float64 rounding (cuDNN may pick another convolution
    algorithm per batch size, so bits are not promised; a misplaced tile is off by far more)."""
    inner = LocalPrior(radius=2)
    x = _rand(2, 3, 72, 100, seed=4).cuda()
    sigma = torch.tensor([0.3, 0.9], device="cuda")
    outs = [TiledPrior(inner, tile=32, overlap=16, batch=batch).denoise(x, sigma) for batch in (1, 3, None)]
    assert all(out.device.type == "cuda" for out in outs)
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], rtol=0, atol=1e-12)


def _chunks(n: int, step: int) -> list[int]:
    return [min(step, n - k) for k in range(0, n, step)]


@pytest.fixture(scope="module")
def default_prior() -> Prior:
    from invkit_priors.default.prior import load_default_prior

    return load_default_prior()


@pytest.mark.parametrize("channels", [3, 1])
def test_default_prior_batch_independent(default_prior, channels):
    # RGB in float32; grey in float64 (stays float64). Tiles of 64: 2 x 2 tiles of a 96 x 80 image.
    dtype = torch.float32 if channels == 3 else torch.float64
    x = _rand(1, channels, 96, 80, seed=5).to(dtype)
    outs = [TiledPrior(default_prior, tile=64, overlap=16, batch=batch).denoise(x, 0.2) for batch in (1, 3, None)]
    assert outs[0].dtype == dtype and outs[0].shape == x.shape
    for out in outs[1:]:
        # The tiles, sigmas and blend are batch-independent (test above); the network's float32
        # convolutions and linears round differently for different batch sizes on the CPU
        # (oneDNN, ~1e-7), so the default prior itself is batch-independent only to rounding.
        torch.testing.assert_close(out, outs[0], atol=2e-5, rtol=0)


# --- attributes and errors -----------------------------------------------------------------------


def test_forwards_the_prior_attributes(default_prior):
    tiled = TiledPrior(default_prior, tile=64, overlap=16)
    assert tiled.name == "tiled(default)"
    assert tiled.sigma_grid is default_prior.sigma_grid
    assert (tiled.data_center, tiled.channels, tiled.size_multiple, tiled.differentiable) == (
        default_prior.data_center, default_prior.channels, default_prior.size_multiple, default_prior.differentiable)
    assert (tiled.sigma_min, tiled.sigma_max) == (default_prior.sigma_min, default_prior.sigma_max)
    assert tiled.image_size is None and tiled.gaussian_form((3, 8, 8)) is None
    assert tiled.rgb is default_prior.rgb, "other public attributes are the inner prior's"
    with pytest.raises(AttributeError):
        _ = tiled._private
    assert isinstance(tiled, invkit.Prior) and invkit.TiledPrior is TiledPrior
    clone = copy.deepcopy(TiledPrior(LocalPrior(1), tile=32, overlap=16))
    assert clone.tile == 32 and clone.inner.radius == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(tile=32, overlap=32), "0 <= overlap < tile"),
        (dict(tile=32, overlap=-4), "0 <= overlap < tile"),
        (dict(tile=60, overlap=16), r"multiples of the prior's size_multiple 8; use e.g. tile=56, overlap=16"),
        (dict(tile=64, overlap=12), r"multiples of the prior's size_multiple 8; use e.g. tile=64, overlap=8"),
        (dict(tile=64, overlap=16, margin=9), r"margin <= overlap / 2; use e.g. margin=4"),
        (dict(tile=64, overlap=16, batch=0), "at least 1 tile"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TiledPrior(LocalPrior(radius=1, multiple=8), **kwargs)


def test_bad_image_size_raises():
    tiled = TiledPrior(LocalPrior(radius=1, multiple=8), tile=32, overlap=16)
    with pytest.raises(ValueError, match=r"multiples of the prior's size_multiple 8; pad or crop it \(e.g. to 96x72\)"):
        tiled.denoise(torch.zeros(1, 3, 100, 72), 0.1)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        tiled.denoise(torch.zeros(3, 64, 64), 0.1)
    with pytest.raises(ValueError, match="size_multiple 8"):
        tile_grid(100, 72, 32, 16, 8)


def test_default_batch_is_one_256_tile_on_cpu_and_more_on_a_gpu():
    assert default_batch(256 * 256, "cpu") == 1 and default_batch(512 * 512, "cpu") == 1
    assert default_batch(128 * 128, "cpu") == 4
    assert default_batch(256 * 256, "cuda") == MAX_BATCH_PIXELS // (256 * 256) == 8
