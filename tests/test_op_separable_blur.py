"""Separable blurs (gaussian_blur, uniform_blur, anisotropic_blur) against independent oracles.

Oracles: ``scipy.ndimage.convolve`` (true convolution, modes constant / reflect / mirror) for
the exact forward, and matrices built here with numpy (``np.pad`` + ``np.convolve`` for the
1-D convolution matrices, ``np.linalg.svd`` + threshold for the thresholded ones, ``np.kron``
for the 2-D operator) for forward, adjoint and every SVD map. The pairing test compares each
spectral triple ``(s_i, u_i, v_i)`` with the ``np.kron`` matrix, which is what catches the
official DDRM code's ``repeat``/``repeat_interleave`` mix-up (sorted singular values cannot).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from invkit.dense import adjoint_matrix_of, matrix_of
from invkit.params import ParamError
from invkit_operators.blur import AnisotropicBlur, GaussianBlur, SeparableConvolution, UniformBlur

TOL = 1e-12
NP_PAD = {"zero": "constant", "reflect": "symmetric", "mirror": "reflect"}
SCIPY_MODE = {"zero": "constant", "reflect": "reflect", "mirror": "mirror"}


# ---------------------------------------------------------------------------- test-side oracles
def gauss(sigma: float, size: int | None = None) -> np.ndarray:
    if size is None:
        size = 2 * math.ceil(3 * sigma) + 1
    t = np.arange(size) - size // 2
    g = np.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def conv_matrix(kernel: np.ndarray, n: int, boundary: str) -> np.ndarray:
    """Column j = true convolution of e_j, padded with numpy's pad, anchor K // 2."""
    size = len(kernel)
    left, right = size - 1 - size // 2, size // 2
    cols = []
    for j in range(n):
        e = np.zeros(n)
        e[j] = 1.0
        cols.append(np.convolve(np.pad(e, (left, right), mode=NP_PAD[boundary]), kernel, mode="valid"))
    return np.stack(cols, axis=1)


def thresholded(a: np.ndarray, threshold: float) -> np.ndarray:
    u, s, vh = np.linalg.svd(a)
    s = np.where(s < threshold, 0.0, s)
    return (u * s) @ vh


def expected_matrix(c: int, kh: np.ndarray, kw: np.ndarray, h: int, w: int, boundary: str, threshold: float) -> np.ndarray:
    ah, aw = conv_matrix(kh, h, boundary), conv_matrix(kw, w, boundary)
    if threshold > 0:
        ah, aw = thresholded(ah, threshold), thresholded(aw, threshold)
    return np.kron(np.eye(c), np.kron(ah, aw))


def scipy_blur(x: torch.Tensor, kh: np.ndarray, kw: np.ndarray, boundary: str) -> np.ndarray:
    k2 = np.outer(kh, kw)
    xs = x.numpy()
    out = np.empty_like(xs)
    for b in range(xs.shape[0]):
        for c in range(xs.shape[1]):
            out[b, c] = ndi.convolve(xs[b, c], k2, mode=SCIPY_MODE[boundary])
    return out


def basis_apply(fn, count: int, shape: tuple[int, ...]) -> np.ndarray:
    eye = torch.eye(count, dtype=torch.float64).reshape(count, *shape)
    return fn(eye).reshape(count, -1).numpy().T


class AsymmetricConv(SeparableConvolution):
    """Test-only operator with asymmetric (and an even-length) kernel: catches a missing flip."""

    name = "asymmetric_test"
    params = ()

    def __init__(self, in_shape, boundary: str, threshold: float = 0.0) -> None:
        super().__init__(in_shape)
        self._setup(KH_ASYM, KW_ASYM, boundary, threshold, "kernel")


KH_ASYM = np.array([0.1, 0.5, 0.25])
KW_ASYM = np.array([0.6, -0.2, 0.3, 0.05])


# (factory, kernel_h, kernel_w) -- kernels computed here, independently of the module
def configs():
    out = []
    for boundary in ("zero", "reflect", "mirror"):
        out += [
            (lambda s, b=boundary: GaussianBlur(s, sigma=1.3, boundary=b), gauss(1.3), gauss(1.3), boundary),
            (lambda s, b=boundary: GaussianBlur(s, sigma=2.0, size=5, boundary=b), gauss(2.0, 5), gauss(2.0, 5), boundary),
            (lambda s, b=boundary: UniformBlur(s, size=5, boundary=b), np.full(5, 0.2), np.full(5, 0.2), boundary),
            (lambda s, b=boundary: UniformBlur(s, size=4, boundary=b), np.full(4, 0.25), np.full(4, 0.25), boundary),
            (
                lambda s, b=boundary: AnisotropicBlur(s, sigma_h=0.8, sigma_w=2.1, boundary=b),
                gauss(0.8),
                gauss(2.1),
                boundary,
            ),
            (lambda s, b=boundary: AsymmetricConv(s, b), KH_ASYM, KW_ASYM, boundary),
        ]
    return out


CONFIGS = configs()
CONFIG_IDS = [f"{i}-{c[3]}" for i, c in enumerate(CONFIGS)]


# ---------------------------------------------------------------------------- exact forward
@pytest.mark.parametrize("factory,kh,kw,boundary", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("shape", [(3, 17, 23), (1, 24, 15)])
def test_forward_equals_scipy_convolve(factory, kh, kw, boundary, shape):
    op = factory(shape)
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want = scipy_blur(x, kh, kw, boundary)
    assert np.abs(op.forward(x).numpy() - want).max() < TOL
    # the SVD form of the threshold-free operator is the same convolution
    assert np.abs(op.svd_forward(x).numpy() - want).max() < TOL


def test_forward_on_larger_image_is_exact_and_lazy():
    """The exact path needs no 1-D matrices or SVD (O(K) memory) and stays exact at 3x96x128."""
    op = GaussianBlur((3, 96, 128), sigma=3.0)
    x = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = op.forward(x)
    op.adjoint(y)
    assert op._factors_np is None and op._svd is None
    assert np.abs(y.numpy() - scipy_blur(x, gauss(3.0), gauss(3.0), "reflect")).max() < TOL


@pytest.mark.parametrize("boundary", ["zero", "reflect", "mirror"])
def test_kernel_as_large_as_image(boundary):
    op = UniformBlur((1, 7, 9), size=7, boundary=boundary)
    x = torch.rand(1, 1, 7, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    box = np.full(7, 1 / 7)
    assert np.abs(op.forward(x).numpy() - scipy_blur(x, box, box, boundary)).max() < TOL
    assert np.abs(matrix_of(op) - expected_matrix(1, box, box, 7, 9, boundary, 0.0)).max() < TOL


# ---------------------------------------------------------------------------- matrices and SVD maps
MATRIX_CASES = [
    # (factory, kh, kw, boundary, threshold, shape)
    (lambda s: GaussianBlur(s, sigma=1.5, boundary="zero", threshold=3e-2), gauss(1.5), gauss(1.5), "zero", 3e-2, (2, 11, 16)),
    (lambda s: GaussianBlur(s, sigma=1.0, boundary="reflect"), gauss(1.0), gauss(1.0), "reflect", 0.0, (3, 9, 13)),
    (lambda s: UniformBlur(s, size=4, boundary="reflect", threshold=0.2), np.full(4, 0.25), np.full(4, 0.25), "reflect", 0.2, (1, 12, 10)),
    (lambda s: UniformBlur(s, size=3, boundary="mirror"), np.full(3, 1 / 3), np.full(3, 1 / 3), "mirror", 0.0, (1, 14, 19)),
    (
        lambda s: AnisotropicBlur(s, sigma_h=2.0, sigma_w=0.6, boundary="zero", threshold=3e-2),
        gauss(2.0),
        gauss(0.6),
        "zero",
        3e-2,
        (1, 16, 21),
    ),
    (
        lambda s: AnisotropicBlur(s, sigma_h=0.7, sigma_w=1.8, size_h=3, size_w=9, boundary="mirror"),
        gauss(0.7, 3),
        gauss(1.8, 9),
        "mirror",
        0.0,
        (3, 8, 13),
    ),
    (lambda s: AsymmetricConv(s, "reflect"), KH_ASYM, KW_ASYM, "reflect", 0.0, (1, 13, 17)),
    (lambda s: AsymmetricConv(s, "mirror", threshold=0.1), KH_ASYM, KW_ASYM, "mirror", 0.1, (2, 9, 12)),
]
MATRIX_IDS = [f"case{i}-{c[3]}-thr{c[4]}" for i, c in enumerate(MATRIX_CASES)]


@pytest.mark.parametrize("factory,kh,kw,boundary,threshold,shape", MATRIX_CASES, ids=MATRIX_IDS)
def test_maps_match_numpy_kron(factory, kh, kw, boundary, threshold, shape):
    op = factory(shape)
    c, h, w = shape
    n = c * h * w
    want = expected_matrix(c, kh, kw, h, w, boundary, threshold)
    assert np.abs(matrix_of(op) - want).max() < TOL
    assert np.abs(adjoint_matrix_of(op) - want.T).max() < TOL
    assert np.abs(basis_apply(op.svd_forward, n, shape) - want).max() < TOL
    assert np.abs(basis_apply(op.svd_adjoint, n, shape) - want.T).max() < TOL
    # singular values: the Kronecker products of the (thresholded) 1-D ones
    s_want = np.sort(np.linalg.svd(want, compute_uv=False))
    assert np.abs(np.sort(op.singular_values.numpy()) - s_want).max() < 1e-12
    if threshold > 0:
        assert (op.singular_values == 0).any(), "threshold should zero some singular values"
        exact = expected_matrix(c, kh, kw, h, w, boundary, 0.0)
        assert np.abs(want - exact).max() > 1e-4, "test case should make the threshold visible"


def pairing_error(op, want: np.ndarray) -> float:
    """max over i < k of |A v_i - s_i u_i| and |Aᵀ u_i - s_i v_i| (and A v_i = 0 for i >= k)."""
    n, m = op.in_numel, op.out_numel
    k = min(m, n)
    vmat = basis_apply(op.V, n, (n,))
    umat = basis_apply(op.U, m, (m,))
    s = op.singular_values.numpy()
    err = np.abs(want @ vmat[:, :k] - umat[:, :k] * s).max()
    err = max(err, np.abs(want.T @ umat[:, :k] - vmat[:, :k] * s).max())
    if n > k:
        err = max(err, np.abs(want @ vmat[:, k:]).max())
    return float(err)


@pytest.mark.parametrize("factory,kh,kw,boundary,threshold,shape", MATRIX_CASES, ids=MATRIX_IDS)
def test_singular_triples_pair_with_kron(factory, kh, kw, boundary, threshold, shape):
    op = factory(shape)
    c, h, w = shape
    want = expected_matrix(c, kh, kw, h, w, boundary, threshold)
    assert pairing_error(op, want) < TOL


class RepeatBugBlur(AnisotropicBlur):
    """The official DDRM mistake: singular values built with ``repeat`` where ``repeat_interleave`` was meant."""

    @property
    def singular_values(self):
        s_h, s_w = self.svd.s_h, self.svd.s_w
        wrong = s_h.repeat(s_w.shape[0]) * s_w.repeat_interleave(s_h.shape[0])
        return wrong.repeat(self.in_shape[0])


def test_pairing_bug_would_be_caught():
    """A wrong pairing keeps the sorted singular values (DenseSVD can't see it) but breaks H x."""
    shape = (1, 14, 18)
    params = dict(sigma_h=2.0, sigma_w=0.7, boundary="zero")
    good, bad = AnisotropicBlur(shape, **params), RepeatBugBlur(shape, **params)
    want = expected_matrix(1, gauss(2.0), gauss(0.7), 14, 18, "zero", 0.0)
    sorted_gap = np.abs(np.sort(good.singular_values.numpy()) - np.sort(bad.singular_values.numpy())).max()
    assert sorted_gap < 1e-14
    assert pairing_error(good, want) < TOL
    assert pairing_error(bad, want) > 1e-2
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    exact = torch.from_numpy(scipy_blur(x, gauss(2.0), gauss(0.7), "zero"))
    rel_bad = float((bad.svd_forward(x) - exact).norm() / exact.norm())
    rel_good = float((good.svd_forward(x) - exact).norm() / exact.norm())
    assert rel_good < 1e-13 and rel_bad > 1e-2


def test_orthogonality_and_ordering_float64():
    """V, U orthogonal; spectral coordinate i carries s_i, laid out as (c, i, j) with s = s_h[i] s_w[j]."""
    shape = (2, 9, 14)
    op = AnisotropicBlur(shape, sigma_h=1.0, sigma_w=2.0, boundary="reflect", threshold=3e-2)
    n = op.in_numel
    vmat = basis_apply(op.V, n, (n,))
    umat = basis_apply(op.U, n, (n,))
    assert np.abs(vmat.T @ vmat - np.eye(n)).max() < TOL
    assert np.abs(umat.T @ umat - np.eye(n)).max() < TOL
    s = op.singular_values.numpy()
    assert s.shape == (n,) and op.singular_values.dtype == torch.float64
    # the documented order, from the test's own thresholded 1-D matrices (numpy: descending)
    s_h = np.linalg.svd(thresholded(conv_matrix(gauss(1.0), 9, "reflect"), 3e-2), compute_uv=False)
    s_w = np.linalg.svd(thresholded(conv_matrix(gauss(2.0), 14, "reflect"), 3e-2), compute_uv=False)
    assert np.abs(s - np.tile(np.outer(s_h, s_w).ravel(), shape[0])).max() < 1e-12
    assert (s == 0).any() and (s > 0).any()
    # each spectral coordinate carries its own singular value: |A v_i| = s_i and A v_i = s_i u_i
    want = expected_matrix(2, gauss(1.0), gauss(2.0), 9, 14, "reflect", 3e-2)
    av = want @ vmat
    assert np.abs(np.linalg.norm(av, axis=0) - s).max() < 1e-12
    assert np.abs(av - umat * s).max() < TOL


def test_effective_matrix_is_the_factor_itself_when_nothing_is_thresholded():
    """No copy of a 1-D factor is kept when no singular value is cut (128 MB per factor at 12 MP)."""
    exact = AnisotropicBlur((1, 9, 14), sigma_h=1.0, sigma_w=2.0, boundary="reflect")
    a_h, a_w = exact.factors
    assert np.shares_memory(exact.svd.a_h.numpy(), a_h) and np.shares_memory(exact.svd.a_w.numpy(), a_w)
    cut = AnisotropicBlur((1, 9, 14), sigma_h=1.0, sigma_w=2.0, boundary="reflect", threshold=3e-2)
    assert not np.shares_memory(cut.svd.a_h.numpy(), cut.factors[0])
    assert (cut.svd.s_h == 0).any() and np.abs(cut.svd.a_h.numpy() - cut.factors[0]).max() > 1e-3


@pytest.mark.parametrize("band_pixels", [1, 2 * 3 * 20 * 20, 10**9])
def test_correlation_in_bands_of_rows_equals_one_call(band_pixels):
    """Bands of 16 rows (the least), 20 rows (the last partial) and one band: kornia's numbers; the
    values and the gradient also equal the explicit valid-correlation matrices ``M_h x M_wᵀ``."""
    from kornia.filters import filter2d_separable

    from invkit_operators.blur import correlate_valid

    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 60, 26, generator=g, dtype=torch.float64)
    k_w, k_h = torch.rand(1, 7, generator=g, dtype=torch.float64), torch.rand(1, 5, generator=g, dtype=torch.float64)
    whole = filter2d_separable(x, k_w, k_h, border_type="constant", padding="valid")
    got = correlate_valid(x, k_w, k_h, band_pixels=band_pixels)
    assert got.shape == whole.shape == (2, 3, 56, 20)
    torch.testing.assert_close(got, whole, rtol=0, atol=1e-14)

    def valid(k: torch.Tensor, n: int) -> torch.Tensor:  # (n - K + 1, n): out[i] = sum_t k[t] x[i + t]
        m = torch.zeros(n - k.shape[-1] + 1, n, dtype=torch.float64)
        for i in range(m.shape[0]):
            m[i, i : i + k.shape[-1]] = k[0]
        return m

    m_h, m_w = valid(k_h, 60), valid(k_w, 26)
    torch.testing.assert_close(got, m_h @ x @ m_w.T, rtol=0, atol=1e-13)
    xg = x.clone().requires_grad_(True)
    weights = torch.rand(whole.shape, generator=g, dtype=torch.float64)
    (correlate_valid(xg, k_w, k_h, band_pixels=band_pixels) * weights).sum().backward()
    torch.testing.assert_close(xg.grad, m_h.T @ weights @ m_w, rtol=0, atol=1e-13)


# ---------------------------------------------------------------------------- kernels and defaults
def test_gaussian_kernel_and_defaults():
    op = GaussianBlur((1, 20, 24))
    assert op.config == {"sigma": 3.0, "size": None, "boundary": "reflect", "threshold": 0.0}
    assert op.kernel_h.shape == (19,)  # 2 * ceil(3 * 3) + 1: every tap kept
    t = np.arange(19) - 9.0
    assert np.abs(op.kernel_h - np.exp(-t**2 / 18.0) / np.exp(-t**2 / 18.0).sum()).max() < 1e-15
    # the default boundary is reflect (edge pixel repeated): scipy 'reflect', not zero padding
    x = torch.rand(1, 1, 20, 24, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = op.forward(x).numpy()
    assert np.abs(y - scipy_blur(x, gauss(3.0), gauss(3.0), "reflect")).max() < TOL
    assert np.abs(y - scipy_blur(x, gauss(3.0), gauss(3.0), "zero")).max() > 1e-2
    uni = UniformBlur((3, 10, 12))
    assert uni.config["size"] == 9 and np.abs(uni.kernel_h - 1 / 9).max() < 1e-16
    aniso = AnisotropicBlur((3, 10, 20))
    assert aniso.kernel_h.shape == (7,) and aniso.kernel_w.shape == (19,)
    assert np.abs(aniso.kernel_h - gauss(1.0)).max() < 1e-15 and np.abs(aniso.kernel_w - gauss(3.0)).max() < 1e-15


def test_float32_svd_maps():
    op = GaussianBlur((3, 9, 13), sigma=1.0, boundary="mirror", threshold=3e-2)
    x = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(0))
    z = op.Vt(x)
    assert z.dtype == torch.float32
    torch.testing.assert_close(op.V(z), x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(op.forward(x), op.svd_forward(x), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("threshold", [0.0, 3e-2])
def test_cuda_matches_cpu(threshold):
    op = AnisotropicBlur((3, 32, 48), sigma_h=1.0, sigma_w=2.5, boundary="reflect", threshold=threshold)
    x = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    xc = x.cuda()
    for fn in ("forward", "adjoint", "svd_forward", "pinv"):
        got = getattr(op, fn)(xc)
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), getattr(op, fn)(x), rtol=1e-10, atol=1e-10)
    z = op.Vt(xc.float())
    torch.testing.assert_close(op.V(z).cpu(), x.float(), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------- parameter errors
@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: GaussianBlur((1, 20, 24), sigma=0.0), ParamError, "sigma"),
        (lambda: GaussianBlur((1, 20, 24), sigma=1.0, size=6), ValueError, "size 6 must be odd"),
        (lambda: GaussianBlur((1, 16, 24)), ValueError, "kernel height 19 px exceeds the image height 16"),
        (lambda: GaussianBlur((1, 24, 16)), ValueError, "kernel width 19 px exceeds the image width 16"),
        (lambda: GaussianBlur((1, 20, 24), boundary="circular"), ParamError, "boundary"),
        (lambda: GaussianBlur((1, 20, 24), threshold=-0.1), ParamError, "threshold"),
        (lambda: GaussianBlur((1, 20, 24), sigma=1.0, threshold=2.0), ValueError, "threshold 2.0"),
        (lambda: UniformBlur((3, 8, 12)), ValueError, "use a smaller size"),
        (lambda: UniformBlur((3, 10, 12), size=0), ParamError, "size"),
        (lambda: AnisotropicBlur((3, 10, 20), size_w=8), ValueError, "size_w 8 must be odd"),
        (lambda: AnisotropicBlur((3, 10, 20), sigma_h=-1.0), ParamError, "sigma_h"),
        (lambda: AnisotropicBlur((3, 10, 10)), ValueError, "width 19 px exceeds .* smaller sigma_w or size_w"),
        (lambda: AnisotropicBlur((3, 6, 20)), ValueError, "height 7 px exceeds .* smaller sigma_h or size_h"),
    ],
)
def test_bad_parameters(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: GaussianBlur((1, 20, 24), sigma=1e10), r"'sigma' = 10000000000.0 is out of range; expected 0.0 < float <= 256"),
        (lambda: GaussianBlur((1, 20, 24), sigma=2.0, size=10**9 + 1), r"'size' = 1000000001 is out of range"),
        (lambda: UniformBlur((1, 20, 24), size=10**9), r"'size' = 1000000000 is out of range"),
        (lambda: AnisotropicBlur((1, 20, 24), sigma_w=1e9), r"'sigma_w' = 1000000000.0 is out of range"),
        (lambda: AnisotropicBlur((1, 20, 24), size_h=10**7 + 1), r"'size_h' = 10000001 is out of range"),
    ],
)
def test_huge_sizes_fail_in_the_schema(make, match):
    """Absurd sigma/size fail with a one-line ParamError, not a numpy memory error."""
    with pytest.raises(ParamError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_kernel_size_checked_before_the_kernel_is_built(monkeypatch):
    import invkit_operators.blur as blur

    def boom(*args, **kwargs):
        raise AssertionError("kernel built before its size was checked against the image")

    monkeypatch.setattr(blur, "gaussian_kernel_1d", boom)
    monkeypatch.setattr(blur, "box_kernel_1d", boom)
    with pytest.raises(ValueError, match=r"kernel height 1537 px exceeds the image height 20 px; use a smaller sigma or size"):
        GaussianBlur((1, 20, 24), sigma=256.0)
    with pytest.raises(ValueError, match=r"kernel width 4001 px exceeds the image width 24 px; use a smaller size"):
        UniformBlur((1, 4001, 24), size=4001)
    with pytest.raises(ValueError, match=r"kernel width 601 px exceeds the image width 24 px; use a smaller sigma_w or size_w"):
        AnisotropicBlur((1, 20, 24), sigma_h=1.0, sigma_w=100.0)


def test_wrong_shapes_refused():
    op = UniformBlur((3, 10, 12), size=3)
    with pytest.raises(ValueError, match="shape"):
        op.Vt(torch.zeros(1, 3, 12, 10))
    with pytest.raises(ValueError, match="shape"):
        op.V(torch.zeros(1, 359))
    with pytest.raises(ValueError, match="shape"):
        op.adjoint(torch.zeros(1, 1, 10, 12))
