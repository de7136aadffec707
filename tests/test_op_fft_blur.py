"""The circular FFT blur operator ``blur`` (invkit_operators.fft_blur).

Oracles: ``scipy.ndimage.convolve(..., mode='wrap')`` (origin 0, the same anchor convention) for
``forward``, the explicit matrix built from it for ``adjoint`` and the SVD, and ``numpy.fft`` of
its impulse response for the transfer function.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from invkit.params import ParamError
from invkit.registry import Registry
from invkit_operators.fft_blur import CircularBlur, rfft2_layout


def scipy_blur(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Circular true convolution of every (B, C) plane with scipy."""
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[b, c] = ndi.convolve(x[b, c], k, mode="wrap")
    return out


def scipy_matrix(k: np.ndarray, h: int, w: int) -> np.ndarray:
    """The (H W) x (H W) matrix of one channel, column j = scipy's blur of the j-th impulse."""
    cols = []
    for j in range(h * w):
        e = np.zeros(h * w)
        e[j] = 1.0
        cols.append(ndi.convolve(e.reshape(h, w), k, mode="wrap").ravel())
    return np.stack(cols, axis=1)


def columns(fn, n: int) -> np.ndarray:
    """Matrix whose column j is fn(e_j) flattened (fn maps (B, n) -> anything of size n)."""
    eye = torch.eye(n, dtype=torch.float64)
    return fn(eye).reshape(n, -1).numpy().T


def save_npy(tmp_path, arr: np.ndarray, name: str = "k.npy") -> str:
    path = tmp_path / name
    np.save(path, arr)
    return str(path)


# ------------------------------------------------------------------------------ forward / adjoint
CONV_CASES = [
    ((3, 9, 12), {"kernel": "box", "size": 4}),
    ((1, 8, 7), {"kernel": "box", "size": "2x6"}),
    ((3, 8, 7), {"kernel": "box", "size": "6x2"}),
    ((1, 6, 8), {"kernel": "uniform", "size": "1x2"}),
    ((3, 16, 13), {"kernel": "gaussian", "sigma": 1.2}),
    ((1, 16, 21), {"kernel": "motion", "length": 9.0, "angle": 30.0}),
    ((2, 15, 14), {"kernel": "disk", "radius": 3.5}),
    ((1, 5, 4), {"kernel": "box", "size": "5x4"}),  # kernel as large as the image
]


@pytest.mark.parametrize("shape,params", CONV_CASES)
def test_forward_equals_scipy_wrap_convolution(shape, params):
    op = CircularBlur(shape, **params)
    x = np.random.default_rng(0).standard_normal((2, *shape))
    got = op.forward(torch.from_numpy(x)).numpy()
    ref = scipy_blur(x, op.kernel.numpy())
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13)


def test_forward_random_signed_file_kernel(tmp_path):
    rng = np.random.default_rng(1)
    k = rng.standard_normal((3, 4))
    op = CircularBlur((3, 9, 10), kernel="file", kernel_file=save_npy(tmp_path, k), normalize=False)
    np.testing.assert_array_equal(op.kernel.numpy(), k)
    x = rng.standard_normal((1, 3, 9, 10))
    np.testing.assert_allclose(op.forward(torch.from_numpy(x)).numpy(), scipy_blur(x, k), rtol=0, atol=1e-13)


@pytest.mark.parametrize("shape,params", [((1, 8, 7), {"kernel": "box", "size": "2x6"}), ((1, 9, 12), {"kernel": "motion", "length": 5.0, "angle": 60.0})])
def test_adjoint_is_the_transpose_of_scipys_matrix(shape, params):
    op = CircularBlur(shape, **params)
    _, h, w = shape
    a = scipy_matrix(op.kernel.numpy(), h, w)
    y = np.random.default_rng(2).standard_normal((2, *shape))
    got = op.adjoint(torch.from_numpy(y)).numpy().reshape(2, -1)
    np.testing.assert_allclose(got, y.reshape(2, -1) @ a, rtol=0, atol=1e-13)


def test_transfer_function_is_the_fft_of_scipys_impulse_response():
    op = CircularBlur((1, 9, 12), kernel="motion", length=7.0, angle=20.0)
    impulse = np.zeros((9, 12))
    impulse[0, 0] = 1.0
    psf = ndi.convolve(impulse, op.kernel.numpy(), mode="wrap")
    np.testing.assert_allclose(op.transfer_function.numpy(), np.fft.rfft2(psf), rtol=0, atol=1e-14)


# ------------------------------------------------------------------------------ SVD at tricky sizes
SIZES = [(8, 7), (9, 12), (7, 9), (8, 8), (1, 6), (6, 1), (2, 2), (1, 1), (3, 2)]


@pytest.mark.parametrize("h,w", SIZES)
def test_svd_factors_against_scipy_matrix(tmp_path, h, w):
    """V, U orthogonal; U S V^T equals scipy's matrix; s = |fft2(psf)| as a multiset."""
    rng = np.random.default_rng(h * 31 + w)
    k = rng.standard_normal((min(3, h), min(2, w)))  # signed: complex λ, negative real ones
    op = CircularBlur((2, h, w), kernel="file", kernel_file=save_npy(tmp_path, k), normalize=False)
    n = op.in_numel
    vmat = columns(op.V, n)
    umat = columns(op.U, n)
    np.testing.assert_allclose(vmat.T @ vmat, np.eye(n), rtol=0, atol=1e-13)
    np.testing.assert_allclose(umat.T @ umat, np.eye(n), rtol=0, atol=1e-13)
    s = op.singular_values.numpy()
    a1 = scipy_matrix(k, h, w)
    a = np.kron(np.eye(2), a1)  # same kernel in both channels
    np.testing.assert_allclose(umat @ np.diag(s) @ vmat.T, a, rtol=0, atol=1e-13)
    lam = np.fft.fft2(a1[:, 0].reshape(h, w))
    np.testing.assert_allclose(np.sort(s), np.sort(np.tile(np.abs(lam).ravel(), 2)), rtol=0, atol=1e-13)
    # Vt / Ut are the transposes
    x = rng.standard_normal((3, 2, h, w))
    np.testing.assert_allclose(op.Vt(torch.from_numpy(x)).numpy(), x.reshape(3, -1) @ vmat, rtol=0, atol=1e-13)
    np.testing.assert_allclose(op.Ut(torch.from_numpy(x)).numpy(), x.reshape(3, -1) @ umat, rtol=0, atol=1e-13)


def test_layout_counts():
    for h, w in SIZES + [(10, 10), (5, 5)]:
        self_idx, pair_idx, conj_idx, _ = rfft2_layout(h, w)
        expected_self = (1 + (h % 2 == 0)) * (1 + (w % 2 == 0))  # {0, H/2} x {0, W/2}
        assert self_idx.numel() == expected_self, (h, w)
        assert self_idx.numel() + 2 * pair_idx.numel() == h * w
        assert self_idx.numel() + pair_idx.numel() + conj_idx.numel() == h * (w // 2 + 1)


def nyquist_column(op: CircularBlur, pattern: np.ndarray) -> int:
    """Index of the spectral coordinate whose V column is ± the given unit-norm pattern."""
    vmat = columns(op.V, op.in_numel)
    overlap = np.abs(vmat.T @ pattern.ravel())
    i = int(np.argmax(overlap))
    assert abs(overlap[i] - 1.0) < 1e-12
    return i


def test_zero_transfer_at_nyquist_two_tap_box():
    """[0.5, 0.5] on an even width: λ = 0 at k_w = W/2 (both self-conjugate rows and the pairs)."""
    h, w = 4, 6
    op = CircularBlur((1, h, w), kernel="box", size="1x2")
    s = op.singular_values.numpy()
    assert np.sum(s == 0.0) == h  # the whole k_w = W/2 column, exactly zero
    pattern = np.tile((-1.0) ** np.arange(w), (h, 1)) / np.sqrt(h * w)
    i = nyquist_column(op, pattern)
    assert s[i] == 0.0
    e = torch.zeros(1, op.in_numel, dtype=torch.float64)
    e[0, i] = 1.0
    torch.testing.assert_close(op.U(e), op.V(e), rtol=0, atol=1e-15)  # sign(0) = +1, not 0
    assert abs(float(op.U(e).norm()) - 1.0) < 1e-14
    # pseudo-inverse: finite, and H H^+ H x = H x
    x = torch.randn(2, 1, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = op.forward(x)
    xp = op.pinv(y)
    assert torch.isfinite(xp).all()
    torch.testing.assert_close(op.forward(xp), y, rtol=0, atol=1e-13)


def test_round_off_zeros_are_exact_zeros():
    """A 5-tap box on W = 10 vanishes at k_w = 2, 4, 6, 8; the FFT gives ~1e-17 there, kept as exact 0."""
    op = CircularBlur((1, 4, 10), kernel="box", size="1x5")
    s = op.singular_values
    assert int((s == 0).sum()) == 4 * 4
    assert float(s[s > 0].min()) > 0.19
    x = torch.randn(1, 1, 4, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ref = ndi.convolve(x[0, 0].numpy(), op.kernel.numpy(), mode="wrap")
    np.testing.assert_allclose(op.forward(x)[0, 0].numpy(), ref, rtol=0, atol=1e-15)


@pytest.mark.parametrize(
    "shape,size,which",
    [((1, 4, 6), "1x3", "col"), ((1, 6, 5), "3x1", "row"), ((3, 6, 10), "3", "col"), ((3, 6, 10), "3", "row")],
)
def test_negative_transfer_at_self_conjugate_frequency(shape, size, which):
    """A 3-tap box has λ = -1/3 at the Nyquist frequency of its axis: s = 1/3 and U = -V there."""
    op = CircularBlur(shape, kernel="box", size=size)
    c, h, w = shape
    if which == "col":
        plane = np.tile((-1.0) ** np.arange(w), (h, 1))
    else:
        plane = np.tile(((-1.0) ** np.arange(h))[:, None], (1, w))
    pattern = np.zeros(shape)
    pattern[0] = plane / np.sqrt(h * w)
    i = nyquist_column(op, pattern)
    assert abs(op.singular_values[i].item() - 1.0 / 3.0) < 1e-15
    e = torch.zeros(1, op.in_numel, dtype=torch.float64)
    e[0, i] = 1.0
    torch.testing.assert_close(op.U(e), -op.V(e), rtol=0, atol=1e-15)
    # the column really is an eigenvector with eigenvalue -1/3
    torch.testing.assert_close(op.forward(op.V(e)), -op.V(e) / 3.0, rtol=0, atol=1e-15)


# ------------------------------------------------------------------------------ files through the operator
def test_png_kernel_file(tmp_path):
    from PIL import Image

    arr = np.array([[0, 64, 0], [128, 255, 32], [0, 16, 0]], dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "k.png")
    op = CircularBlur((1, 8, 9), kernel="file", kernel_file=str(tmp_path / "k.png"))
    ref_k = arr / arr.sum()
    np.testing.assert_allclose(op.kernel.numpy(), ref_k, rtol=1e-14)
    x = np.random.default_rng(3).random((1, 1, 8, 9))
    np.testing.assert_allclose(op.forward(torch.from_numpy(x)).numpy(), scipy_blur(x, ref_k), rtol=0, atol=1e-13)


# ------------------------------------------------------------------------------ errors
def test_kernel_larger_than_image_names_sizes():
    with pytest.raises(ValueError, match=r"19x19 .* 8x12"):
        CircularBlur((3, 8, 12))  # default gaussian sigma=3 -> 19x19
    with pytest.raises(ValueError, match=r"2x6 .* 8x5"):
        CircularBlur((1, 8, 5), kernel="box", size="2x6")


@pytest.mark.parametrize(
    "params,exc,match",
    [
        ({"kernel": "airy"}, ParamError, "kernel"),
        ({"sigma": 0.0}, ParamError, "sigma"),
        ({"length": 0.5, "kernel": "motion"}, ParamError, "length"),
        ({"radius": -1.0, "kernel": "disk"}, ParamError, "radius"),
        ({"size": "1,2,3", "kernel": "box"}, ParamError, "size"),
        ({"kernel": "gaussian", "sigma": 1.0, "size": 4}, ValueError, "odd"),
        ({"kernel": "motion", "size": 3}, ValueError, "size"),
        ({"kernel": "file"}, ValueError, "kernel_file"),
        ({"kernel_file": "k.npy", "sigma": 1.0}, ValueError, "kernel=file"),
    ],
)
def test_parameter_errors(params, exc, match):
    with pytest.raises(exc, match=match):
        CircularBlur((1, 16, 16), **params)


def test_spectral_vector_shape_checked():
    op = CircularBlur((1, 8, 8), kernel="box", size=3)
    with pytest.raises(ValueError, match="shape"):
        op.V(torch.zeros(1, 63))
    with pytest.raises(ValueError, match="shape"):
        op.U(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        op.Ut(torch.zeros(1, 1, 8, 7))


def test_cli_style_string_params():
    op = Registry().build_operator("blur", (1, 8, 7), ["kernel=box", "size=2x6"])
    assert tuple(op.kernel.shape) == (2, 6)


# ------------------------------------------------------------------------------ dtype, autograd, scale
def test_float32_matches_float64_and_gradcheck():
    op = CircularBlur((2, 9, 8), kernel="motion", length=5.0, angle=15.0)
    x = torch.rand(2, 2, 9, 8, generator=torch.Generator().manual_seed(4))
    for fn in (op.forward, op.adjoint):
        y32 = fn(x)
        assert y32.dtype == torch.float32
        torch.testing.assert_close(y32.double(), fn(x.double()), rtol=0, atol=1e-6)
    z = op.Ut(x)
    assert z.dtype == torch.float32
    torch.testing.assert_close(op.U(z), x, rtol=0, atol=1e-5)
    small = CircularBlur((1, 5, 4), kernel="box", size="2x3")
    xg = torch.rand(1, 1, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(6)).requires_grad_()
    assert torch.autograd.gradcheck(small.forward, (xg,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda v: small.U(small.Vt(v) * 2.0), (xg,), fast_mode=True)


def test_large_photo_is_cheap():
    """A 3 x 384 x 512 image: no dense matrix, exact round trips, forward = U S V^T x."""
    op = CircularBlur((3, 384, 512), kernel="motion", length=25.0, angle=35.0)
    state = [t for t in vars(op).values() if isinstance(t, torch.Tensor)]
    assert sum(t.numel() for t in state) < 20 * op.in_numel  # O(n), not O(n^2)
    x = torch.rand(1, 3, 384, 512, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(op.V(op.Vt(x)), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.svd_forward(x), op.forward(x), rtol=0, atol=1e-12)
    ref = ndi.convolve(x[0, 1].numpy(), op.kernel.numpy(), mode="wrap")
    np.testing.assert_allclose(op.forward(x)[0, 1].numpy(), ref, rtol=0, atol=1e-12)
