"""Inpainting: forward/adjoint against numpy boolean indexing, mask kinds, seeds, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from invkit.checks import run_checks
from invkit.params import ParamError
from invkit_operators.inpainting import Inpainting


def _image(shape, seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *shape, generator=g, dtype=torch.float64)


def _expected_forward(x: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """numpy boolean indexing of each (C, H, W) image, C order."""
    return np.stack([xi[mask] for xi in x.numpy()])


@pytest.mark.parametrize(
    "shape,params",
    [
        ((3, 8, 12), {}),
        ((3, 8, 12), {"per_channel": True, "fraction": 0.3, "seed": 7}),
        ((1, 16, 20), {"fraction": 0.8}),
        ((3, 10, 14), {"mask": "box"}),
        ((2, 9, 7), {"mask": "box", "top": 1, "left": 0, "height": 3, "width": 7}),
    ],
)
def test_forward_adjoint_are_gather_and_scatter(shape, params):
    op = Inpainting(shape, **params)
    mask = op.mask.numpy()
    assert mask.shape == shape and mask.dtype == np.bool_
    x = _image(shape)
    y = op.forward(x)
    np.testing.assert_array_equal(y.numpy(), _expected_forward(x, mask))
    assert op.out_shape == (int(mask.sum()),)

    g = torch.Generator().manual_seed(3)
    yy = torch.randn(2, *op.out_shape, generator=g, dtype=torch.float64)
    expected = np.zeros((2, *shape))
    for b in range(2):
        expected[b][mask] = yy[b].numpy()
    np.testing.assert_array_equal(op.adjoint(yy).numpy(), expected)
    # the mask multiply: H^T H x = mask * x
    np.testing.assert_array_equal(op.adjoint(y).numpy(), x.numpy() * mask)


def test_embed_fills_missing_pixels():
    op = Inpainting((3, 6, 5), fraction=0.4, seed=2)
    x = _image((3, 6, 5))
    out = op.embed(op.forward(x), fill=0.25).numpy()
    mask = op.mask.numpy()
    np.testing.assert_array_equal(out[:, mask], x.numpy()[:, mask])
    assert np.all(out[:, ~mask] == 0.25)
    with pytest.raises(ValueError, match="shape"):
        op.embed(torch.zeros(1, op.out_shape[0] + 1))


def test_singular_values_and_permutation_order():
    op = Inpainting((2, 4, 5), fraction=0.35, seed=1)
    m = op.out_shape[0]
    assert torch.equal(op.singular_values, torch.ones(m, dtype=torch.float64))
    x = _image((2, 4, 5), batch=1)
    z = op.Vt(x)[0].numpy()
    mask = op.mask.numpy()
    np.testing.assert_array_equal(z[:m], x[0].numpy()[mask])
    np.testing.assert_array_equal(z[m:], x[0].numpy()[~mask])


def test_same_seed_same_mask_different_seed_differs():
    a = Inpainting((3, 16, 16), seed=11).mask
    b = Inpainting((3, 16, 16), seed=11).mask
    c = Inpainting((3, 16, 16), seed=12).mask
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_random_mask_does_not_touch_global_rng():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    Inpainting((1, 8, 8), seed=5)
    after = torch.rand(3)
    assert torch.equal(before, after)


@pytest.mark.parametrize("hw,fraction", [((8, 12), 0.5), ((7, 9), 0.3), ((5, 5), 0.9), ((16, 10), 0.01), ((3, 3), 0.05)])
def test_fraction_removes_exact_count(hw, fraction):
    h, w = hw
    op = Inpainting((3, h, w), fraction=fraction, seed=4)
    removed = (~op.mask).reshape(3, -1).sum(dim=1)
    assert removed.tolist() == [round(fraction * h * w)] * 3
    # shared mask: the same pixels in every channel
    assert torch.equal(op.mask[0], op.mask[1]) and torch.equal(op.mask[0], op.mask[2])
    assert op.out_shape == (3 * (h * w - round(fraction * h * w)),)


def test_per_channel_masks_differ_and_keep_the_count():
    op = Inpainting((3, 12, 10), per_channel=True, fraction=0.5, seed=0)
    removed = (~op.mask).reshape(3, -1).sum(dim=1)
    assert removed.tolist() == [60, 60, 60]
    assert not torch.equal(op.mask[0], op.mask[1])
    assert not torch.equal(op.mask[1], op.mask[2])
    assert not torch.equal(op.mask[0], op.mask[2])


def test_box_default_is_centred_half_size():
    op = Inpainting((2, 10, 14), mask="box")
    expected = np.ones((2, 10, 14), dtype=bool)
    expected[:, 2:7, 3:10] = False  # height 10 // 2 = 5 from row (10 - 5) // 2 = 2; width 7 from column 3
    np.testing.assert_array_equal(op.mask.numpy(), expected)


def test_box_explicit_geometry():
    op = Inpainting((1, 9, 11), mask="box", top=4, left=6, height=5, width=2)
    expected = np.ones((1, 9, 11), dtype=bool)
    expected[0, 4:9, 6:8] = False
    np.testing.assert_array_equal(op.mask.numpy(), expected)
    # only some of the box given: the rest defaults (height 9 // 2 = 4, centred vertically at row 2)
    op = Inpainting((1, 9, 11), mask="box", left=0, width=3)
    expected = np.ones((1, 9, 11), dtype=bool)
    expected[0, 2:6, 0:3] = False
    np.testing.assert_array_equal(op.mask.numpy(), expected)


def _write_gray(path, array):
    Image.fromarray(array).save(path)
    return str(path)


def test_file_mask_from_png(tmp_path):
    rng = np.random.default_rng(0)
    plane = rng.integers(0, 256, size=(6, 10)).astype(np.uint8)
    plane[0, 0], plane[0, 1] = 127, 128  # threshold: half of full scale is kept
    path = _write_gray(tmp_path / "mask.png", plane)
    op = Inpainting((3, 6, 10), mask="file", mask_file=path)
    expected = np.broadcast_to(plane >= 128, (3, 6, 10))
    np.testing.assert_array_equal(op.mask.numpy(), expected)
    assert not op.mask[0, 0, 0] and op.mask[0, 0, 1]
    x = _image((3, 6, 10))
    np.testing.assert_array_equal(op.forward(x).numpy(), _expected_forward(x, expected))
    report = run_checks(op)
    assert report.passed, report.table()


def test_file_mask_rgb_and_16bit(tmp_path):
    plane = np.zeros((4, 5), dtype=np.uint8)
    plane[1:3, 2:] = 255
    rgb = np.stack([plane] * 3, axis=-1)
    op = Inpainting((1, 4, 5), mask="file", mask_file=_write_gray(tmp_path / "rgb.png", rgb))
    np.testing.assert_array_equal(op.mask[0].numpy(), plane > 0)

    deep = np.array([[0, 32767, 32768, 65535]], dtype=np.uint16)
    op = Inpainting((2, 1, 4), mask="file", mask_file=_write_gray(tmp_path / "deep.png", deep))
    np.testing.assert_array_equal(op.mask[1, 0].numpy(), [False, False, True, True])


def test_file_mask_errors(tmp_path):
    path = _write_gray(tmp_path / "small.png", np.full((5, 7), 255, dtype=np.uint8))
    with pytest.raises(ValueError, match=r"5x7 .*8x7"):
        Inpainting((3, 8, 7), mask="file", mask_file=path)
    with pytest.raises(ValueError, match="cannot read mask_file"):
        Inpainting((3, 5, 7), mask="file", mask_file=str(tmp_path / "missing.png"))
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    with pytest.raises(ValueError, match="cannot read mask_file") as info:
        Inpainting((3, 5, 7), mask="file", mask_file=str(junk))
    assert "\n" not in str(info.value)
    black = _write_gray(tmp_path / "black.png", np.zeros((5, 7), dtype=np.uint8))
    with pytest.raises(ValueError, match="keeps no pixel"):
        Inpainting((3, 5, 7), mask="file", mask_file=black)
    with pytest.raises(ValueError, match="mask_file=PATH"):
        Inpainting((3, 5, 7), mask="file")


@pytest.mark.parametrize(
    "params,match",
    [
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.0}, "fraction"),
        ({"mask": "circle"}, "mask"),
        ({"seed": -1}, "seed"),
        ({"height": 0, "mask": "box"}, "height"),
        ({"fraction": 0.99}, "keeps no pixel"),  # 2 x 3 image: round(5.94) = 6 pixels removed
        ({"mask": "box", "top": 0, "left": 0, "height": 2, "width": 3}, "keeps no pixel"),
        ({"mask": "box", "top": 1, "height": 2}, "top=1 .*height=2 .*H=2"),
        ({"mask": "box", "left": 2, "width": 2}, "left=2 .*width=2 .*W=3"),
        ({"top": 0}, "mask=box"),
        ({"mask_file": "m.png"}, "mask=file"),
        ({"mask": "box", "per_channel": True}, "per_channel"),
    ],
)
def test_parameter_errors(params, match):
    with pytest.raises(ValueError, match=match):
        Inpainting((3, 2, 3), **params)


def test_schema_errors_are_param_errors():
    with pytest.raises(ParamError, match="fraction"):
        Inpainting((1, 4, 4), fraction=1.5)


def test_no_dense_matrix_is_stored():
    op = Inpainting((3, 32, 32), per_channel=True)
    n = op.in_numel
    sizes = [v.numel() for v in vars(op).values() if isinstance(v, torch.Tensor)]
    assert sizes and max(sizes) <= n
