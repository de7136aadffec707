"""Compressed sensing: forward against explicit scipy Hadamard rows, fwht, seeds, size errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from invkit.params import ParamError
from invkit_operators.compressed_sensing import CompressedSensing, fwht


def _image(shape, seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=g, dtype=torch.float64)


def _explicit(shape, rows):
    """The measurement matrix of one channel: kept rows of hadamard(N) / sqrt(N)."""
    n = shape[1] * shape[2]
    return scipy.linalg.hadamard(n).astype(np.float64)[np.asarray(rows)] / np.sqrt(n)


@pytest.mark.parametrize(
    "shape,params",
    [
        ((1, 8, 8), {}),
        ((3, 8, 16), {}),
        ((3, 16, 8), {"ratio": 2, "seed": 9}),
        ((1, 4, 32), {"ratio": 8}),
        ((3, 2, 4), {"ratio": 1}),
    ],
)
def test_forward_is_subset_of_hadamard_rows(shape, params):
    op = CompressedSensing(shape, **params)
    c, h, w = shape
    ratio = params.get("ratio", 4)
    m = (h * w) // ratio
    rows = op.rows.numpy()
    assert rows.shape == (m,) and op.out_shape == (c * m,)
    a = _explicit(shape, rows)
    x = _image(shape)
    expected = np.stack([np.concatenate([a @ xi[ch].reshape(-1) for ch in range(c)]) for xi in x.numpy()])
    np.testing.assert_allclose(op.forward(x).numpy(), expected, rtol=0, atol=1e-13)
    # adjoint: A^T per channel, channel-major blocks of y
    y = _image((c * m,), seed=1)
    expected_t = np.stack([np.stack([(a.T @ yi[ch * m : (ch + 1) * m]).reshape(h, w) for ch in range(c)]) for yi in y.numpy()])
    np.testing.assert_allclose(op.adjoint(y).numpy(), expected_t, rtol=0, atol=1e-13)


def test_flattened_transform_equals_separable_2d():
    h, w = 8, 16
    op = CompressedSensing((1, h, w), ratio=1)
    x = _image((1, h, w), batch=1)
    hh = scipy.linalg.hadamard(h) / np.sqrt(h)
    hw = scipy.linalg.hadamard(w) / np.sqrt(w)
    coef = (hh @ x[0, 0].numpy() @ hw.T).reshape(-1)
    np.testing.assert_allclose(op.forward(x)[0].numpy(), coef[op.rows.numpy()], rtol=0, atol=1e-13)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 32, 256])
def test_fwht_matches_scipy_hadamard(n):
    x = _image((3, n), batch=2)
    expected = x.numpy() @ (scipy.linalg.hadamard(n) / np.sqrt(n))
    out = fwht(x)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-13)
    np.testing.assert_allclose(fwht(out).numpy(), x.numpy(), rtol=0, atol=1e-13)
    assert fwht(x.float()).dtype == torch.float32


def test_fwht_refuses_non_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        fwht(torch.zeros(2, 12))


def test_rows_seeded():
    a = CompressedSensing((1, 16, 16), seed=3).rows
    b = CompressedSensing((1, 16, 16), seed=3).rows
    c = CompressedSensing((1, 16, 16), seed=4).rows
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert a.numel() == 64 and len(set(a.tolist())) == 64
    assert torch.all(a[1:] > a[:-1]) and 0 <= int(a.min()) and int(a.max()) < 256


def test_ratio_one_is_invertible():
    op = CompressedSensing((3, 4, 8), ratio=1)
    x = _image((3, 4, 8))
    np.testing.assert_allclose(op.pinv(op.forward(x)).numpy(), x.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(op.adjoint(op.forward(x)).numpy(), x.numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("shape,size", [((3, 12, 8), "96"), ((1, 8, 6), "48"), ((1, 3, 3), "9")])
def test_non_power_of_two_is_refused(shape, size):
    with pytest.raises(ValueError, match=rf"{size} is not a power of two.*pad or crop"):
        CompressedSensing(shape)


def test_ratio_errors():
    with pytest.raises(ValueError, match=r"ratio 64 .*ratio <= 32"):
        CompressedSensing((1, 4, 8), ratio=64)
    with pytest.raises(ParamError, match="ratio"):
        CompressedSensing((1, 4, 8), ratio=0)
    with pytest.raises(ParamError, match="seed"):
        CompressedSensing((1, 4, 8), seed=-2)


def test_no_dense_matrix_is_stored():
    op = CompressedSensing((3, 64, 64))
    sizes = [v.numel() for v in vars(op).values() if isinstance(v, torch.Tensor)]
    assert sizes and max(sizes) <= 64 * 64
