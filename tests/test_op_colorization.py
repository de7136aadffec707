"""Colorization: forward against the explicit weighted channel sum, weights parsing, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invkit.params import ParamError
from invkit_operators.colorization import Colorization, color_weights


def _image(shape, seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize(
    "weights,expected",
    [
        ("average", (1 / 3, 1 / 3, 1 / 3)),
        ("rec601", (0.299, 0.587, 0.114)),
        ("0.2,0.7,0", (0.2, 0.7, 0.0)),
        (" 1, 2 ,3 ", (1.0, 2.0, 3.0)),
        ((0.5, 0.25, 0.25), (0.5, 0.25, 0.25)),
    ],
)
def test_forward_is_weighted_channel_sum(weights, expected):
    shape = (3, 7, 10)
    op = Colorization(shape, weights=weights)
    x = _image(shape)
    xn = x.numpy()
    gray = expected[0] * xn[:, 0] + expected[1] * xn[:, 1] + expected[2] * xn[:, 2]
    y = op.forward(x)
    assert tuple(y.shape) == (2, 1, 7, 10)
    np.testing.assert_allclose(y.numpy()[:, 0], gray, rtol=0, atol=1e-14)
    # adjoint: each channel gets its weight times y
    yy = _image((1, 7, 10), seed=5)
    aty = op.adjoint(yy).numpy()
    for c in range(3):
        np.testing.assert_allclose(aty[:, c], expected[c] * yy.numpy()[:, 0], rtol=0, atol=1e-15)


def test_default_is_paper_average():
    op = Colorization((3, 4, 4))
    assert op.config["weights"] == "average"
    np.testing.assert_allclose(op.weights.numpy(), [1 / 3] * 3, rtol=0, atol=1e-16)


def test_svd_structure():
    shape = (3, 5, 6)
    w = np.array([0.299, 0.587, 0.114])
    op = Colorization(shape, weights="rec601")
    npix = 5 * 6
    s = op.singular_values.numpy()
    assert s.shape == (npix,)
    np.testing.assert_allclose(s, np.linalg.norm(w), rtol=0, atol=1e-15)
    x = _image(shape)
    z = op.Vt(x).numpy()
    # the first H*W spectral coordinates are the normalised observation w/|w| . x per pixel, row-major
    observed = np.einsum("c,bchw->bhw", w / np.linalg.norm(w), x.numpy()).reshape(2, -1)
    np.testing.assert_allclose(z[:, :npix], observed, rtol=0, atol=1e-14)
    # the remaining 2*H*W are in the null space: H V (0, z_null) = 0
    znull = z.copy()
    znull[:, :npix] = 0
    back = op.V(torch.from_numpy(znull))
    assert float(op.forward(back).abs().max()) < 1e-14


@pytest.mark.parametrize("shape", [(1, 4, 4), (4, 4, 4), (2, 3, 5)])
def test_needs_three_channels(shape):
    with pytest.raises(ValueError, match=rf"C=3.*C={shape[0]}"):
        Colorization(shape)


@pytest.mark.parametrize(
    "weights,match",
    [
        ("gray", "unknown weights"),
        ("1,2", "3 numbers"),
        ("1,2,3,4", "3 numbers"),
        ("-0.1,0.5,0.6", "non-negative"),
        ("0,0,0", "all zero"),
        ("a,b,c", "three numbers"),
        ("nan,1,1", "finite"),
        ("inf,1,1", "finite"),
    ],
)
def test_bad_weights(weights, match):
    with pytest.raises(ParamError, match=rf"weights.*{match}"):
        Colorization((3, 4, 4), weights=weights)


def test_weights_type_is_idempotent():
    assert color_weights("REC601") == "rec601"
    assert color_weights(color_weights("0.1,0.2,0.3")) == (0.1, 0.2, 0.3)


def test_no_dense_matrix_is_stored():
    op = Colorization((3, 32, 32))
    sizes = [v.numel() for v in vars(op).values() if isinstance(v, torch.Tensor)]
    assert sizes and max(sizes) <= 9


def test_infer_in_shape_from_gray_photo():
    """A real grayscale photo (1, H, W) is the measurement of an RGB image (3, H, W)."""
    assert Colorization.infer_in_shape((1, 7, 10), {}) == (3, 7, 10)
    assert Colorization.infer_in_shape((1, 4, 5), {"weights": "rec601"}) == (3, 4, 5)
    op = Colorization(Colorization.infer_in_shape((1, 7, 10), {}))
    assert op.out_shape == (1, 7, 10)
    for bad in [(3, 7, 10), (2, 7, 10), (70,)]:
        with pytest.raises(ValueError, match=r"one-channel gray image \(1, H, W\)"):
            Colorization.infer_in_shape(bad, {})
