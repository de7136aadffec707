"""Image and measurement files: round trips, bit depths, atomic writes, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from invkit.io import Measurement, atomic_write, read_image, read_measurement, write_image, write_measurement


def test_png_round_trip_rgb_and_gray(tmp_path):
    g = torch.Generator().manual_seed(0)
    for c in (1, 3):
        x = torch.rand(1, c, 5, 7, generator=g)
        path = tmp_path / f"img{c}.png"
        write_image(path, x)
        back = read_image(path)
        assert back.bits == 8 and tuple(back.x.shape) == (1, c, 5, 7)
        assert float((back.x - x).abs().max()) <= 0.5 / 255 + 1e-6


def test_16bit_gray_keeps_precision(tmp_path):
    x = torch.rand(1, 1, 4, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    path = tmp_path / "g16.png"
    write_image(path, x, bits=16)
    back = read_image(path)
    assert back.bits == 16
    assert float((back.x.double() - x).abs().max()) <= 0.5 / 65535 + 1e-7


def test_other_modes_are_converted(tmp_path):
    rgba = np.zeros((3, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 10
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    back = read_image(tmp_path / "a.png")
    assert tuple(back.x.shape) == (1, 3, 3, 4) and float(back.x[0, 0].min()) == 1.0


def test_unreadable_and_missing_images(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="cannot read image .*bad.png"):
        read_image(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="use one of"):
        write_image(tmp_path / "x.gifx", torch.zeros(1, 3, 2, 2))


def test_measurement_round_trip(tmp_path):
    y = torch.randn(2, 17, generator=torch.Generator().manual_seed(2))
    m = Measurement(y=y, operator="inpainting", params={"fraction": 0.5, "seed": 3, "size": (1, 2)}, in_shape=(3, 4, 5), sigma_y=0.05)
    path = write_measurement(tmp_path / "m.safetensors", m)
    back = read_measurement(path)
    assert torch.equal(back.y, y)
    assert back.operator == "inpainting" and back.params == {"fraction": 0.5, "seed": 3, "size": [1, 2]}
    assert back.in_shape == (3, 4, 5) and back.sigma_y == 0.05 and back.bits is None


def test_measurement_errors(tmp_path):
    trunc = tmp_path / "t.safetensors"
    write_measurement(trunc, Measurement(y=torch.zeros(3, 4)))
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match="cannot read measurement"):
        read_measurement(trunc)
    from safetensors.torch import save_file

    other = tmp_path / "o.safetensors"
    save_file({"y": torch.zeros(2)}, str(other))
    with pytest.raises(ValueError, match="not an invkit measurement"):
        read_measurement(other)
    with pytest.raises(ValueError, match="must end in .safetensors"):
        write_measurement(tmp_path / "m.npy", Measurement(y=torch.zeros(1)))


def test_atomic_write_leaves_target_untouched_on_failure(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"original")

    def failing(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with pytest.raises(FileNotFoundError, match="output folder"):
        atomic_write(tmp_path / "nope" / "x.png", lambda t: None)
