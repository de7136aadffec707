"""Image and measurement files <-> tensors.

* Images (PNG, JPEG, TIFF, BMP; 8-bit, and 16-bit grayscale) are read with Pillow into float
  tensors ``(1, C, H, W)`` in [0, 1]; the bit depth is reported so callers can default the
  measurement noise to the quantisation noise (``1 / ((2^b − 1) √12)``).
* Measurements that are not images (a compact vector of kept pixels, compressed-sensing
  coefficients), and any measurement that must stay lossless, are stored as a
  ``.safetensors`` file holding the tensor plus the operator's name, parameters and image
  shape, and the noise level, as metadata. safetensors never executes code on load.
* Every write is atomic: a temporary file in the same folder, then ``os.replace``. A path that
  is also an input is refused by the CLI before anything is written.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ImageData",
    "Measurement",
    "read_image",
    "write_image",
    "read_measurement",
    "write_measurement",
    "atomic_write",
    "IMAGE_SUFFIXES",
    "MEASUREMENT_SUFFIX",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MEASUREMENT_SUFFIX = ".safetensors"
_FORMAT = "invkit-measurement-v1"


@dataclass
class ImageData:
    """An image read from a file.

    Attributes:
        x: ``(1, C, H, W)`` float32 in [0, 1] (C = 1 or 3).
        bits: Bits per sample of the file (8 or 16); quantisation noise depends on it.
        path: Where it was read from.
    """

    x: Tensor
    bits: int
    path: Path


@dataclass
class Measurement:
    """A measurement with what is needed to interpret it.

    Attributes:
        y: ``(B, *out_shape)`` tensor.
        operator: Operator name (or None if unknown, e.g. a plain photo).
        params: Operator parameters (as given to the operator).
        in_shape: The image shape ``(C, H, W)`` the operator acts on, if known.
        sigma_y: Noise std in [0, 1] units, if known.
        bits: Quantisation bit depth, if the measurement was quantised (image files).
    """

    y: Tensor
    operator: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    in_shape: tuple[int, int, int] | None = None
    sigma_y: float | None = None
    bits: int | None = None


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` then move the file onto ``path`` atomically.

    The temporary file lives in the destination folder (so the rename is atomic) and keeps the
    destination's suffix (so format detection by suffix works). On any error it is removed and
    ``path`` is left untouched.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {folder} does not exist; create it first")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=folder)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_image(path: str | os.PathLike[str]) -> ImageData:
    """Read an image file into ``(1, C, H, W)`` float32 in [0, 1].

    Grayscale stays 1 channel; palette, RGBA and other modes are converted to RGB (alpha
    dropped). 16-bit grayscale PNG/TIFF keep their precision.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float64)
                bits = 16
                arr = arr / 65535.0
                arr = arr[None]
            else:
                if mode not in ("L", "RGB"):
                    img = img.convert("L" if mode in ("1", "LA") else "RGB")
                arr = np.asarray(img, dtype=np.float64) / 255.0
                bits = 8
                arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}; use a PNG, JPEG or TIFF file") from None
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)[None]
    return ImageData(x=x, bits=bits, path=path)


def write_image(path: str | os.PathLike[str], x: Tensor, bits: int = 8) -> Path:
    """Write one image ``(C, H, W)`` or ``(1, C, H, W)`` in [0, 1] (clipped), atomically.

    Args:
        path: Destination; the format follows the suffix (PNG, JPEG, TIFF, BMP).
        x: The image; C = 1 or 3.
        bits: 8, or 16 for grayscale PNG/TIFF.
    """
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot write an image to {path}: use one of {', '.join(IMAGE_SUFFIXES)}")
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"write_image takes one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"image must be (C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    arr = x.detach().to(torch.float64).clamp(0, 1).cpu().numpy()
    if bits == 16:
        if arr.shape[0] != 1:
            raise ValueError("16-bit output is supported for grayscale images only; use bits=8 for RGB")
        img = Image.fromarray(np.round(arr[0] * 65535.0).astype(np.uint16))
    elif bits == 8:
        q = np.round(arr * 255.0).astype(np.uint8)
        img = Image.fromarray(q[0]) if q.shape[0] == 1 else Image.fromarray(q.transpose(1, 2, 0))
    else:
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    return atomic_write(path, lambda tmp: img.save(tmp))


def write_measurement(path: str | os.PathLike[str], m: Measurement) -> Path:
    """Store a measurement losslessly as ``.safetensors`` with its operator metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != MEASUREMENT_SUFFIX:
        raise ValueError(f"measurement files must end in {MEASUREMENT_SUFFIX}, got {path.name}")
    meta = {
        "format": _FORMAT,
        "operator": json.dumps(m.operator),
        "params": json.dumps(m.params, default=_json_default),
        "in_shape": json.dumps(list(m.in_shape) if m.in_shape else None),
        "sigma_y": json.dumps(m.sigma_y),
        "bits": json.dumps(m.bits),
    }
    tensor = m.y.detach().to("cpu").contiguous()
    return atomic_write(path, lambda tmp: save_file({"y": tensor}, str(tmp), metadata=meta))


def read_measurement(path: str | os.PathLike[str]) -> Measurement:
    """Read a ``.safetensors`` measurement written by :func:`write_measurement`.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a (complete) invkit measurement file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"measurement file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            y = f.get_tensor("y")
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise ValueError(f"cannot read measurement {path}: {exc}; write it with `invkit degrade`") from None
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path} is not an invkit measurement file (format {meta.get('format')!r}); write it with `invkit degrade`")
    in_shape = json.loads(meta["in_shape"])
    return Measurement(
        y=y,
        operator=json.loads(meta["operator"]),
        params=json.loads(meta["params"]),
        in_shape=tuple(in_shape) if in_shape else None,
        sigma_y=json.loads(meta["sigma_y"]),
        bits=json.loads(meta["bits"]),
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store parameter value {value!r} in a measurement file")
