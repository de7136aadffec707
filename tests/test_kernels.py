"""Kernel construction helpers (invkit_operators.kernels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from invkit_operators.kernels import (
    box_kernel,
    disk_kernel,
    gaussian_kernel,
    gaussian_kernel_1d,
    kernel_from_params,
    kernel_size,
    load_kernel,
    motion_kernel,
)


# ---------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("value,expected", [(5, (5, 5)), ("5", (5, 5)), ("2x6", (2, 6)), ("2,6", (2, 6)), ((3, 4), (3, 4)), (4.0, (4, 4))])
def test_kernel_size_parses(value, expected):
    assert kernel_size(value) == expected


@pytest.mark.parametrize("value", ["0", "1,2,3", "abc", 2.5, (0, 3), -1])
def test_kernel_size_rejects(value):
    with pytest.raises(ValueError):
        kernel_size(value)


# ---------------------------------------------------------------------------- gaussian
@pytest.mark.parametrize("sigma", [0.8, 1.5, 3.0])
def test_gaussian_matches_scipy_impulse_response(sigma):
    k = gaussian_kernel(sigma).numpy()
    radius = math.ceil(3.0 * sigma)  # documented default support
    assert k.shape == (2 * radius + 1, 2 * radius + 1)
    canvas = np.zeros((2 * radius + 1, 2 * radius + 1))
    canvas[radius, radius] = 1.0
    ref = ndi.gaussian_filter(canvas, sigma, mode="constant", truncate=radius / sigma)  # scipy's radius: same
    np.testing.assert_allclose(k, ref, rtol=0, atol=1e-15)
    assert abs(k.sum() - 1.0) < 1e-14


def test_gaussian_explicit_size_and_even_size_error():
    k = gaussian_kernel(1.0, (3, 5)).numpy()
    r, c = np.meshgrid(np.arange(3) - 1, np.arange(5) - 2, indexing="ij")
    ref = np.exp(-(r**2 + c**2) / 2.0)
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-14)
    with pytest.raises(ValueError, match="odd"):
        gaussian_kernel(1.0, 4)


@pytest.mark.parametrize("sigma,size", [(1.7, None), (3.0, None), (0.6, 7)])
def test_one_gaussian_rule_for_blur_and_separable_blurs(sigma, size):
    """``blur``'s 2-D Gaussian and gaussian_blur's 1-D kernels are the same kernel."""
    from invkit_operators import blur as separable_blurs
    from invkit_operators.fft_blur import CircularBlur

    assert separable_blurs.gaussian_kernel_1d is gaussian_kernel_1d
    g = gaussian_kernel_1d(sigma, size)
    assert g.shape == (2 * math.ceil(3 * sigma) + 1 if size is None else size,)
    t = np.arange(g.shape[0]) - g.shape[0] // 2
    np.testing.assert_allclose(g, np.exp(-0.5 * (t / sigma) ** 2) / np.exp(-0.5 * (t / sigma) ** 2).sum(), rtol=0, atol=1e-16)
    side = g.shape[0] + 2
    sep = separable_blurs.GaussianBlur((1, side, side), sigma=sigma, size=size)
    two_d = gaussian_kernel(sigma, size).numpy()
    assert np.array_equal(np.outer(sep.kernel_h, sep.kernel_w), two_d)
    circ = CircularBlur((1, side, side), kernel="gaussian", sigma=sigma, size=size)
    assert np.array_equal(circ.kernel.numpy(), two_d)


def test_gaussian_tiny_sigma_is_a_delta():
    g = gaussian_kernel_1d(1e-200)
    assert g.tolist() == [0.0, 1.0, 0.0]


# ---------------------------------------------------------------------------- box
def test_box_even_and_alias():
    k = box_kernel((2, 6))
    assert k.shape == (2, 6) and torch.all(k == 1.0 / 12)
    torch.testing.assert_close(kernel_from_params("uniform", size=(4, 4)), box_kernel(4), rtol=0, atol=0)
    assert kernel_from_params("box").shape == (5, 5)  # documented default size


# ---------------------------------------------------------------------------- motion
@pytest.mark.parametrize("length,angle", [(15.0, 0.0), (9.0, 30.0), (21.0, 45.0), (7.5, 100.0), (1.0, 12.0), (40.0, -63.0)])
def test_motion_sums_to_one_nonnegative_centred(length, angle):
    k = motion_kernel(length, angle)
    assert abs(float(k.sum()) - 1.0) < 1e-14
    assert float(k.min()) >= 0.0
    assert k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
    torch.testing.assert_close(k, k.flip(0, 1), rtol=0, atol=1e-15)  # centred segment: point-symmetric


def test_motion_horizontal_line_of_the_right_length():
    k = motion_kernel(15.0, 0.0)
    assert tuple(k.shape) == (1, 15)
    torch.testing.assert_close(k, torch.full((1, 15), 1.0 / 15, dtype=torch.float64), rtol=0, atol=1e-15)
    even = motion_kernel(6.0, 0.0)  # 5 full taps and 2 half taps
    expect = torch.tensor([[0.5, 1, 1, 1, 1, 1, 0.5]], dtype=torch.float64) / 6.0
    torch.testing.assert_close(even, expect, rtol=0, atol=1e-15)
    torch.testing.assert_close(motion_kernel(15.0, 90.0), k.T, rtol=0, atol=0)
    torch.testing.assert_close(motion_kernel(15.0, 180.0), k, rtol=0, atol=0)
    assert tuple(motion_kernel(1.0, 0.0).shape) == (1, 1)


def test_motion_direction_and_length_at_an_angle():
    length, angle = 21.0, 30.0
    k = motion_kernel(length, angle).numpy()
    kh, kw = k.shape
    r, c = np.meshgrid(np.arange(kh) - kh // 2, np.arange(kw) - kw // 2, indexing="ij")
    t = math.radians(angle)
    along = -r * math.sin(t) + c * math.cos(t)  # rows grow downwards: up-right is +along
    across = r * math.cos(t) + c * math.sin(t)
    assert abs((k * along).sum()) < 1e-12 and abs((k * across).sum()) < 1e-12
    # a uniform segment of length L has variance L^2 / 12 along it; pixel area adds ~1/12
    var_along = float((k * along**2).sum())
    assert abs(var_along - (length**2 + 1) / 12) / (length**2 / 12) < 0.02
    assert float((k * across**2).sum()) < 0.2
    # 45 degrees: up-right, mirror-symmetric about the segment's own line
    k45 = motion_kernel(11.0, 45.0)
    assert k45[0, -1] > 0 and k45[0, 0] == 0
    torch.testing.assert_close(k45, k45.flip(0, 1).T, rtol=0, atol=1e-15)


# ---------------------------------------------------------------------------- disk
@pytest.mark.parametrize("radius,side", [(3.5, 7), (4.0, 9), (0.3, 1), (6.5, 13)])
def test_disk(radius, side):
    k = disk_kernel(radius)
    assert tuple(k.shape) == (side, side)
    assert abs(float(k.sum()) - 1.0) < 1e-14 and float(k.min()) >= 0
    torch.testing.assert_close(k, k.flip(0), rtol=0, atol=0)
    torch.testing.assert_close(k, k.T, rtol=0, atol=0)
    if radius > 3:
        # interior taps are fully covered: 1 / (covered area) ~ 1 / (pi r^2)
        assert abs(float(k[side // 2, side // 2]) * math.pi * radius**2 - 1.0) < 0.01


# ---------------------------------------------------------------------------- files
def test_load_npy(tmp_path):
    arr = np.random.default_rng(0).random((3, 4))
    np.save(tmp_path / "k.npy", arr)
    np.testing.assert_allclose(load_kernel(tmp_path / "k.npy").numpy(), arr / arr.sum(), rtol=1e-14)
    np.testing.assert_array_equal(load_kernel(tmp_path / "k.npy", normalize=False).numpy(), arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_load_png_8_and_16_bit(tmp_path, dtype):
    from PIL import Image

    top = np.iinfo(dtype).max
    arr = np.zeros((5, 3), dtype=dtype)
    arr[1:4, 1] = top
    arr[2, 0] = top // 3
    Image.fromarray(arr).save(tmp_path / "k.png")
    k = load_kernel(tmp_path / "k.png").numpy()
    ref = arr.astype(np.float64)
    np.testing.assert_allclose(k, ref / ref.sum(), rtol=1e-14)


def test_load_signed_kernels(tmp_path):
    psf = np.array([[0.0, -0.01, 0.0], [0.2, 1.0, 0.3], [0.0, -0.02, 0.0]])
    np.save(tmp_path / "psf.npy", psf)
    k = load_kernel(tmp_path / "psf.npy").numpy()  # negatives kept, sum normalised
    np.testing.assert_allclose(k, psf / psf.sum(), rtol=1e-14)
    deriv = np.array([[1.0, 0.0, -1.0]])
    np.save(tmp_path / "d.npy", deriv)
    with pytest.raises(ValueError, match="normalize=false"):
        load_kernel(tmp_path / "d.npy")
    np.testing.assert_array_equal(load_kernel(tmp_path / "d.npy", normalize=False).numpy(), deriv)


@pytest.mark.parametrize(
    "name,content,match",
    [
        ("nan.npy", np.array([[1.0, np.nan]]), "NaN"),
        ("zero.npy", np.zeros((2, 2)), "all zeros"),
        ("cube.npy", np.ones((2, 2, 2)), "2-D"),
        ("k.txt", None, r"\.npy"),
        ("missing.npy", None, "cannot read"),
    ],
)
def test_load_errors(tmp_path, name, content, match):
    path = tmp_path / name
    if content is not None:
        np.save(path, content)
    elif name.endswith(".txt"):
        path.write_text("1 2 3")
    with pytest.raises(ValueError, match=match):
        load_kernel(path)


def test_load_colour_png_refused(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((3, 3, 3), 200, dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"colour PSF is ambiguous, save the kernel as a single-channel \(grayscale\) PNG or a 2-D \.npy") as info:
        load_kernel(tmp_path / "rgb.png")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------- dispatcher
def test_kernel_from_params_mismatches(tmp_path):
    with pytest.raises(ValueError, match="kernel=file"):
        kernel_from_params("gaussian", kernel_file=str(tmp_path / "k.npy"))
    with pytest.raises(ValueError, match="kernel_file"):
        kernel_from_params("file")
    with pytest.raises(ValueError, match="size"):
        kernel_from_params("motion", size=(3, 3))
    with pytest.raises(ValueError, match="unknown kernel"):
        kernel_from_params("airy")
    torch.testing.assert_close(kernel_from_params("disk", radius=2.0), disk_kernel(2.0), rtol=0, atol=0)


def _tap_moments(k: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (ascending) of the tap-weighted covariance of tap positions, in px²."""
    rows, cols = torch.meshgrid(torch.arange(k.shape[0], dtype=torch.float64), torch.arange(k.shape[1], dtype=torch.float64), indexing="ij")
    pos = torch.stack([rows.reshape(-1), cols.reshape(-1)], 1)
    w = k.reshape(-1)
    mean = (w[:, None] * pos).sum(0)
    d = pos - mean
    return torch.linalg.eigvalsh((w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0))


def test_trajectory_kernels_are_seeded_camera_shakes_and_straight_without_intensity():
    from invkit_operators.kernels import trajectory_kernel

    k = trajectory_kernel()  # DPS's setting: 61 x 61, intensity 0.5
    assert tuple(k.shape) == (61, 61) and k.dtype == torch.float64
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-12) and bool((k >= 0).all())
    assert torch.equal(k, trajectory_kernel(61, 0.5, 0)) and not torch.equal(k, trajectory_kernel(61, 0.5, 1))
    # centred: the tap-weighted mean position is the anchor (the path is centred on its mean)
    rows = torch.arange(61, dtype=torch.float64)
    assert float((k.sum(1) * rows).sum()) == pytest.approx(30.0, abs=1e-9)
    assert float((k.sum(0) * rows).sum()) == pytest.approx(30.0, abs=1e-9)
    # intensity 0: a straight segment (covariance of rank one, variance L²/12 along it) of length
    # size - 1, shrunk to at most size - 3 along an axis to keep the one-pixel margin
    small, large = _tap_moments(trajectory_kernel(61, 0.0, 4)).tolist()
    assert small < 0.25  # (the bilinear splat adds less than 1/4 px² across)
    assert 58.0**2 / 12 * 0.98 < large < 60.0**2 / 12
    # intensity 0.5 wanders in two dimensions; every seed's kernel stays inside its support
    for seed in range(5):
        kk = trajectory_kernel(61, 0.5, seed)
        assert _tap_moments(kk)[0] > 1.0
        assert float(kk[0].sum() + kk[-1].sum() + kk[:, 0].sum() + kk[:, -1].sum()) == 0.0  # the one-pixel margin
    with pytest.raises(ValueError, match="odd integer >= 3"):
        trajectory_kernel(60)
    with pytest.raises(ValueError, match=r"intensity must be in \[0, 1\]"):
        trajectory_kernel(61, 1.5)


def test_the_blur_operator_takes_a_trajectory_kernel():
    from invkit.registry import get_registry
    from invkit_operators.kernels import trajectory_kernel

    op = get_registry().build_operator("blur", (1, 48, 48), ["kernel=trajectory", "size=21", "intensity=0.7", "seed=3"])
    assert torch.equal(op.kernel, trajectory_kernel(21, 0.7, 3))
    with pytest.raises(ValueError, match="size only applies to kernel=gaussian, box or trajectory"):
        get_registry().build_operator("blur", (1, 48, 48), ["kernel=disk", "size=5"])
