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


def test_measurement_v2_records_the_noise_model(tmp_path):
    import json

    from safetensors import safe_open

    from invkit.noise import GaussianNoise, PoissonNoise

    y = torch.tensor([[0.0, 3 / 255, 1.0]])
    path = write_measurement(tmp_path / "p.safetensors", Measurement(y=y, operator="denoising", in_shape=(1, 1, 3), noise=PoissonNoise(255.0)))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "invkit-measurement-v2"
    assert json.loads(meta["noise"]) == {"name": "poisson", "rate": 255.0} and json.loads(meta["sigma_y"]) is None
    back = read_measurement(path)
    assert back.noise == PoissonNoise(255.0) and back.sigma_y is None and torch.equal(back.y, y)
    # sigma_y alone means Gaussian noise; a model alone gives sigma_y; the two must agree
    gauss = read_measurement(write_measurement(tmp_path / "g.safetensors", Measurement(y=y, sigma_y=0.05)))
    assert gauss.noise == GaussianNoise(0.05) and gauss.sigma_y == 0.05
    assert Measurement(y=y, noise=GaussianNoise(0.1)).sigma_y == 0.1
    unknown = read_measurement(write_measurement(tmp_path / "u.safetensors", Measurement(y=y)))
    assert unknown.noise is None and unknown.sigma_y is None
    with pytest.raises(ValueError, match="disagrees with its noise model"):
        Measurement(y=y, sigma_y=0.05, noise=PoissonNoise(255.0))


def _write_v1(path, y, sigma_y):
    """A measurement file in the v1 layout, exactly as `write_measurement` wrote it before v2 (no `noise` key)."""
    import json

    from safetensors.torch import save_file

    meta = {
        "format": "invkit-measurement-v1",
        "operator": json.dumps("inpainting"),
        "params": json.dumps({"fraction": 0.5, "seed": 3}),
        "in_shape": json.dumps([3, 4, 5]),
        "sigma_y": json.dumps(sigma_y),
        "bits": json.dumps(None),
    }
    save_file({"y": y}, str(path), metadata=meta)
    return path


def test_measurement_v1_is_read_as_gaussian_with_its_sigma(tmp_path):
    from invkit.noise import GaussianNoise

    y = torch.randn(1, 30, generator=torch.Generator().manual_seed(0))
    old = read_measurement(_write_v1(tmp_path / "v1.safetensors", y, 0.02))
    assert old.noise == GaussianNoise(0.02) and old.sigma_y == 0.02 and torch.equal(old.y, y)
    assert old.operator == "inpainting" and old.params == {"fraction": 0.5, "seed": 3} and old.in_shape == (3, 4, 5)
    none = read_measurement(_write_v1(tmp_path / "v1none.safetensors", y, None))
    assert none.noise is None and none.sigma_y is None  # unknown level: the runner's sigma_y policy decides, as before


def test_measurement_with_a_broken_noise_record_is_refused(tmp_path):
    import json

    from safetensors.torch import save_file

    meta = {"format": "invkit-measurement-v2", "operator": "null", "params": "{}", "in_shape": "null", "sigma_y": "null", "bits": "null",
            "noise": json.dumps({"name": "laplace", "b": 1.0})}
    save_file({"y": torch.zeros(1, 2)}, str(tmp_path / "b.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="b.safetensors: field 'noise' is broken .*unknown noise model 'laplace'"):
        read_measurement(tmp_path / "b.safetensors")


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


# ---------------------------------------------------------------------------- 16-bit colour, float, orientation
def _png16_with_filters(path, hwc: np.ndarray) -> None:
    """A reference 16-bit PNG encoder that cycles through all five row filters (0-4), as real encoders mix them."""
    import struct
    import zlib

    h, w, c = hwc.shape
    bpp = 2 * c
    rows = hwc.astype(">u2").view(np.uint8).reshape(h, w * bpp).astype(np.int64)
    out = []
    for i in range(h):
        cur = rows[i]
        prev = rows[i - 1] if i else np.zeros_like(cur)
        left = np.concatenate([np.zeros(bpp, dtype=np.int64), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, dtype=np.int64), prev[:-bpp]])
        kind = i % 5
        if kind == 0:
            f = cur
        elif kind == 1:
            f = cur - left
        elif kind == 2:
            f = cur - prev
        elif kind == 3:
            f = cur - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            f = cur - pred
        out.append(bytes([kind]) + (f % 256).astype(np.uint8).tobytes())

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    color = {3: 2, 4: 6}[c]
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(b"".join(out))) + chunk(b"IEND", b"")
    path.write_bytes(data)


def test_16bit_rgb_png_keeps_precision_through_every_filter(tmp_path):
    rng = np.random.default_rng(3)
    rgb = (rng.random((11, 9, 3)) * 65535).astype(np.uint16)
    rgb[5:] = np.cumsum(rgb[5:] // 64, axis=1, dtype=np.uint16)  # smooth rows too, not only noise
    path = tmp_path / "rgb16.png"
    _png16_with_filters(path, rgb)
    assert Image.open(path).mode == "RGB"  # what Pillow alone gives: 8 bits per sample
    back = read_image(path)
    assert back.bits == 16 and tuple(back.x.shape) == (1, 3, 11, 9)
    expected = torch.from_numpy(rgb.astype(np.float64) / 65535).permute(2, 0, 1)
    assert float((back.x[0].double() - expected).abs().max()) < 1e-7
    rgba = np.concatenate([rgb, np.full((11, 9, 1), 1234, dtype=np.uint16)], axis=2)
    _png16_with_filters(tmp_path / "rgba16.png", rgba)
    back = read_image(tmp_path / "rgba16.png")
    assert back.bits == 16 and float((back.x[0].double() - expected).abs().max()) < 1e-7  # alpha dropped


def test_16bit_rgb_write_round_trips(tmp_path):
    x = torch.rand(1, 3, 6, 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    path = write_image(tmp_path / "o16.png", x, bits=16)
    assert Image.open(path).size == (10, 6)  # a valid PNG for other readers
    back = read_image(path)
    assert back.bits == 16 and float((back.x.double() - x).abs().max()) <= 0.5 / 65535 + 1e-7
    with pytest.raises(ValueError, match="8 bits per sample"):
        write_image(tmp_path / "o16.jpg", x, bits=16)
    tifffile = pytest.importorskip("tifffile")
    path = write_image(tmp_path / "o16.tif", x, bits=16)
    raw = tifffile.imread(path)
    assert raw.dtype == np.uint16 and raw.shape == (6, 10, 3)
    back = read_image(path)
    assert back.bits == 16 and float((back.x.double() - x).abs().max()) <= 0.5 / 65535 + 1e-7


@pytest.mark.parametrize("compression,byteorder", [(None, "<"), (None, ">"), ("zlib", "<"), ("zlib", ">")])
def test_16bit_rgb_tiff_read(tmp_path, compression, byteorder):
    tifffile = pytest.importorskip("tifffile")
    rgb = (np.random.default_rng(5).random((7, 12, 3)) * 65535).astype(np.uint16)
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", compression=compression, byteorder=byteorder)
    back = read_image(path)
    assert back.bits == 16
    assert float((back.x[0].double() - torch.from_numpy(rgb / 65535.0).permute(2, 0, 1)).abs().max()) < 1e-7


def test_float_tiff_is_read_as_is_and_keeps_nan(tmp_path):
    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    arr[1, 2] = np.nan
    Image.fromarray(arr, mode="F").save(tmp_path / "f.tif")
    back = read_image(tmp_path / "f.tif")
    assert back.bits == 32 and tuple(back.x.shape) == (1, 1, 3, 4)
    assert int(torch.isnan(back.x).sum()) == 1 and float(back.x[0, 0, 2, 3]) == 1.0


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((4, 6, 3), dtype=np.uint8)
    arr[0, :, 0] = 255  # top row red
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    img.save(tmp_path / "p.jpg", exif=exif, quality=100)
    back = read_image(tmp_path / "p.jpg")
    assert tuple(back.x.shape) == (1, 3, 6, 4)  # upright: width and height swap
    red = back.x[0, 0]
    assert float(red[:, -1].mean()) > float(red[:, 0].mean()) + 0.3  # the red top row became the right column


def test_list_images_and_figure(tmp_path):
    from invkit.io import list_images, write_figure

    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt", "m.safetensors"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.png"]
    assert [p.name for p in list_images(tmp_path, (".png", ".safetensors"))] == ["b.png", "m.safetensors"]
    fig = write_figure(tmp_path / "fig.png", [("clean", torch.rand(3, 10, 20)), ("grey", torch.rand(1, 10, 20)), ("small", torch.rand(3, 5, 10))])
    w, h = Image.open(fig).size
    assert Image.open(fig).mode == "RGB"
    assert w == 7 * 20 * 2 + 7 * 10 + 4 * 6 and h == 7 * 10 + 16 + 12  # enlarged 7x so panels are >= 128 px
