"""super_resolution (block averaging) and bicubic_super_resolution against independent oracles.

Oracles: ``F.avg_pool2d`` and a block-average matrix built with loops here; for bicubic, a matrix
built here from the Keys (a = -0.5) formula, ``F.interpolate(mode='bicubic', antialias=True)``
(everywhere, borders included) and PIL's ``BICUBIC`` resize in float mode. Every SVD map is
compared with the ``np.kron`` matrix, including the ``m < n`` ordering (trailing spectral
coordinates in the null space).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from invkit.dense import adjoint_matrix_of, matrix_of
from invkit.params import ParamError
from invkit_operators.super_resolution import BicubicSuperResolution, SuperResolution

TOL = 1e-12


# ---------------------------------------------------------------------------- test-side oracles
def block_matrix(n: int, r: int) -> np.ndarray:
    a = np.zeros((n // r, n))
    for i in range(n // r):
        for j in range(r):
            a[i, r * i + j] = 1.0 / r
    return a


def keys(t: float, a: float = -0.5) -> float:
    t = abs(t)
    if t <= 1:
        return (a + 2) * t**3 - (a + 3) * t**2 + 1
    if t < 2:
        return a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return 0.0


def bicubic_matrix(n: int, r: int) -> np.ndarray:
    """Antialiased cubic: output i centred at r (i + 1/2), kernel stretched by r, rows renormalised."""
    a = np.zeros((n // r, n))
    for i in range(n // r):
        for j in range(n):
            a[i, j] = keys((j + 0.5 - r * (i + 0.5)) / r)
        a[i] /= a[i].sum()
    return a


def kron_matrix(c: int, ah: np.ndarray, aw: np.ndarray) -> np.ndarray:
    return np.kron(np.eye(c), np.kron(ah, aw))


def basis_apply(fn, count: int, shape: tuple[int, ...]) -> np.ndarray:
    eye = torch.eye(count, dtype=torch.float64).reshape(count, *shape)
    return fn(eye).reshape(count, -1).numpy().T


def rand(shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


SHAPES_FACTORS = [((3, 16, 20), 4), ((1, 12, 18), 2), ((3, 9, 15), 3), ((1, 16, 24), 8), ((2, 24, 8), 8)]
IDS = [f"{'x'.join(map(str, s))}-r{r}" for s, r in SHAPES_FACTORS]


# ---------------------------------------------------------------------------- block averaging
@pytest.mark.parametrize("shape,r", SHAPES_FACTORS, ids=IDS)
def test_block_average_equals_avg_pool(shape, r):
    op = SuperResolution(shape, factor=r)
    x = rand((2, *shape))
    assert op.out_shape == (shape[0], shape[1] // r, shape[2] // r)
    want = F.avg_pool2d(x, r)
    assert (op.forward(x) - want).abs().max() < TOL
    assert (op.svd_forward(x) - want).abs().max() < TOL


@pytest.mark.parametrize(
    "cls,oracle",
    [(SuperResolution, block_matrix), (BicubicSuperResolution, bicubic_matrix)],
    ids=["block", "bicubic"],
)
@pytest.mark.parametrize("shape,r", SHAPES_FACTORS[:4], ids=IDS[:4])
def test_maps_match_numpy_kron(cls, oracle, shape, r):
    op = cls(shape, factor=r)
    c, h, w = shape
    want = kron_matrix(c, oracle(h, r), oracle(w, r))
    n, m = op.in_numel, op.out_numel
    k = min(m, n)
    assert np.abs(matrix_of(op) - want).max() < TOL
    assert np.abs(adjoint_matrix_of(op) - want.T).max() < TOL
    assert np.abs(basis_apply(op.svd_forward, n, op.in_shape) - want).max() < TOL
    assert np.abs(basis_apply(op.svd_adjoint, m, op.out_shape) - want.T).max() < TOL
    # singular triples paired as in the kron matrix; the first k spectral coordinates carry them
    vmat = basis_apply(op.V, n, (n,))
    umat = basis_apply(op.U, m, (m,))
    s = op.singular_values.numpy()
    assert s.shape == (k,)
    assert np.abs(want @ vmat[:, :k] - umat * s).max() < TOL
    assert np.abs(want.T @ umat - vmat[:, :k] * s).max() < TOL
    assert np.abs(want @ vmat[:, k:]).max() < TOL
    assert np.abs(np.sort(s) - np.sort(np.linalg.svd(want, compute_uv=False))).max() < TOL
    assert np.abs(vmat.T @ vmat - np.eye(n)).max() < TOL
    assert np.abs(umat.T @ umat - np.eye(m)).max() < TOL


def test_block_average_singular_values_are_one_over_r():
    op = SuperResolution((3, 16, 20), factor=4)
    assert np.abs(op.singular_values.numpy() - 0.25).max() < 1e-14


@pytest.mark.parametrize("shape,r", [((2, 8, 12), 4), ((1, 6, 9), 3), ((3, 4, 6), 1)], ids=["r4", "r3", "r1"])
def test_block_average_per_patch_svd_layout(shape, r):
    """U = I; the first m spectral coordinates are r * patch mean in the measurement's C-order."""
    op = SuperResolution(shape, factor=r)
    x = rand((2, *shape), seed=11)
    z = op.Vt(x)
    m = op.out_numel
    patch_means = F.avg_pool2d(x, r).reshape(2, -1)
    assert (z[:, :m] - r * patch_means).abs().max() < TOL
    y = rand((2, *op.out_shape), seed=12)
    assert torch.equal(op.Ut(y), y.reshape(2, -1))
    assert torch.equal(op.U(y.reshape(2, -1)), y)
    # the trailing n - m coordinates of every patch are orthogonal to the ones vector: zero mean
    tail = z.clone()
    tail[:, :m] = 0
    assert op.forward(op.V(tail)).abs().max() < TOL


def test_block_average_svd_is_linear_memory():
    """No H x H (or n x n) factor is built: what the operator holds is O(r^2), not O(H^2)."""
    op = SuperResolution((3, 64, 48), factor=8)
    x = torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(0))
    assert (op.V(op.Vt(x)) - x).abs().max() < 1e-5
    arrays = []
    for value in vars(op).values():
        for item in value.values() if isinstance(value, dict) else [value]:
            if isinstance(item, (torch.Tensor, np.ndarray)):
                arrays.append(item)
    assert arrays and max(a.size if isinstance(a, np.ndarray) else a.numel() for a in arrays) <= 8 * 8


def test_block_average_pinv_is_nearest_upsampling():
    op = SuperResolution((1, 12, 18), factor=3)
    y = rand((2, 1, 4, 6), seed=4)
    want = y.repeat_interleave(3, dim=-2).repeat_interleave(3, dim=-1)
    assert (op.pinv(y) - want).abs().max() < 1e-12


# ---------------------------------------------------------------------------- bicubic
@pytest.mark.parametrize("r", [2, 3, 4, 8])
@pytest.mark.parametrize("c", [1, 3])
def test_bicubic_equals_torch_interpolate_everywhere(r, c):
    shape = (c, 5 * r, 7 * r) if r < 8 else (c, 64, 40)
    op = BicubicSuperResolution(shape, factor=r)
    x = rand((2, *shape), seed=r)
    want = F.interpolate(x, scale_factor=1 / r, mode="bicubic", antialias=True, align_corners=False)
    assert tuple(want.shape[1:]) == op.out_shape
    assert (op.forward(x) - want).abs().max() < TOL


@pytest.mark.parametrize("r", [2, 4, 8])
def test_bicubic_equals_pil(r):
    h, w = 6 * r, 4 * r
    x = rand((1, 1, h, w), seed=7)
    img = Image.fromarray(x[0, 0].numpy().astype(np.float32), mode="F")
    want = np.asarray(img.resize((w // r, h // r), Image.BICUBIC), dtype=np.float64)
    got = BicubicSuperResolution((1, h, w), factor=r).forward(x)[0, 0].numpy()
    assert np.abs(got - want).max() < 1e-6  # PIL computes in float32


def test_bicubic_interior_rows_are_the_stretched_kernel():
    """Away from the borders no renormalisation happens: the weights are keys(t / r) / r."""
    r = 4
    a = BicubicSuperResolution((1, 32, 32), factor=r).factors[0]
    i = 4
    t = (np.arange(32) + 0.5 - r * (i + 0.5)) / r
    want = np.array([keys(v) for v in t]) / r
    assert np.abs(a[i] - want).max() < 1e-15
    assert np.count_nonzero(np.abs(a[i]) > 0) == 4 * r  # support: 4r taps (|t| < 2)


def test_bicubic_float32():
    op = BicubicSuperResolution((3, 16, 20))
    x = rand((2, 3, 16, 20), dtype=torch.float32)
    want = F.interpolate(x.double(), scale_factor=0.25, mode="bicubic", antialias=True).float()
    torch.testing.assert_close(op.forward(x), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(op.V(op.Vt(x)), x, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("cls", [SuperResolution, BicubicSuperResolution])
def test_cuda_matches_cpu(cls):
    op = cls((3, 32, 48), factor=4)
    x = rand((2, 3, 32, 48))
    y = op.forward(x)
    for fn, arg in (("forward", x), ("svd_forward", x), ("adjoint", y), ("pinv", y)):
        got = getattr(op, fn)(arg.cuda())
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), getattr(op, fn)(arg), rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------- shapes and errors
@pytest.mark.parametrize("cls", [SuperResolution, BicubicSuperResolution])
def test_factor_must_divide_both_sides(cls):
    with pytest.raises(ValueError, match=r"factor 3 must divide both H=8 and W=12 \(H=8 not divisible\).*crop the image to 6x12 or pad it to 9x12"):
        cls((3, 8, 12), factor=3)
    with pytest.raises(ValueError, match=r"H=10 and W=14 not divisible"):
        cls((1, 10, 14), factor=4)
    with pytest.raises(ParamError, match="factor"):
        cls((1, 8, 8), factor=0)


@pytest.mark.parametrize("cls", [SuperResolution, BicubicSuperResolution])
def test_image_smaller_than_factor_suggests_padding_only(cls):
    with pytest.raises(ValueError, match=r"H=6 and W=6 < 8, so cropping cannot help: pad it to 8x8") as info:
        cls((3, 6, 6), factor=8)
    assert "crop the image" not in str(info.value)
    with pytest.raises(ValueError, match=r"H=6 < 8, so cropping cannot help: pad it to 8x24"):
        cls((1, 6, 20), factor=8)


@pytest.mark.parametrize("cls", [SuperResolution, BicubicSuperResolution])
def test_default_factor_and_infer_in_shape(cls):
    op = cls(cls.check_shape)
    assert op.config == {"factor": 4} and op.out_shape == (3, 4, 5)
    assert cls.infer_in_shape((3, 4, 5), {}) == (3, 16, 20)
    assert cls.infer_in_shape((1, 10, 7), {"factor": "2"}) == (1, 20, 14)
    with pytest.raises(ValueError, match="shape"):
        cls.infer_in_shape((48,), {})


def test_wrong_shapes_refused():
    op = SuperResolution((3, 16, 20))
    with pytest.raises(ValueError, match="shape"):
        op.adjoint(torch.zeros(1, 3, 16, 20))
    with pytest.raises(ValueError, match="shape"):
        op.Ut(torch.zeros(1, 3, 5, 4))
    with pytest.raises(ValueError, match="shape"):
        op.U(torch.zeros(1, 61))
