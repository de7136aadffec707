"""Image and measurement files <-> tensors.

* Images (PNG, JPEG, TIFF, BMP; 8- and 16-bit, grayscale and RGB; 32-bit float TIFF) are read
  with Pillow into float tensors ``(1, C, H, W)`` in [0, 1]; the bit depth is reported so
  callers can default the measurement noise to the quantisation noise (``1 / ((2^b − 1) √12)``).
  Pillow itself reduces 16-bit RGB(A) PNG/TIFF to 8 bits; :func:`read_image` recovers the low
  byte by decoding the file a second time with the opposite byte order, so no precision is lost.
* 16-bit output: grayscale through Pillow; RGB PNG through a small built-in encoder (Pillow
  cannot write it); RGB TIFF through ``tifffile`` when it is installed (a clear error otherwise).
  JPEG is 8-bit only. JPEG/TIFF orientation tags are applied on reading (photos come out upright).
* Measurements that are not images (a compact vector of kept pixels, compressed-sensing
  coefficients), and any measurement that must stay lossless, are stored as a
  ``.safetensors`` file holding the tensor plus the operator's name, parameters and image
  shape, and the noise model, as metadata. safetensors never executes code on load.

  The measurement file, format ``invkit-measurement-v2``: one tensor ``y`` and the text metadata
  ``format``, ``operator`` (JSON string or null), ``params`` (JSON object), ``in_shape`` (JSON
  ``[C, H, W]`` or null), ``noise`` (JSON ``{"name": "gaussian", "sigma": 0.05}`` or
  ``{"name": "poisson", "rate": 255.0}``, see :func:`invkit.noise.noise_spec`; null when unknown),
  ``sigma_y`` (JSON number: the Gaussian sigma, null otherwise) and ``bits`` (JSON number or null).
  Format ``invkit-measurement-v1`` (no ``noise``) is still read: its noise is Gaussian with its
  ``sigma_y`` (unknown when that is null), as before.
* Every write is atomic: a temporary file in the same folder, then ``os.replace``. A path that
  is also an input is refused by the CLI before anything is written.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import warnings
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .noise import MAX_SIGMA_Y, GaussianNoise, NoiseModel, build_noise, is_noise_sigma, noise_spec

__all__ = [
    "ImageData",
    "list_images",
    "write_figure",
    "Measurement",
    "read_image",
    "image_size",
    "write_image",
    "read_measurement",
    "write_measurement",
    "atomic_write",
    "output_transaction",
    "IMAGE_SUFFIXES",
    "READ_SUFFIXES",
    "MEASUREMENT_SUFFIX",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Suffixes of image files read as inputs: the written ones plus further formats Pillow reads.
READ_SUFFIXES = (*IMAGE_SUFFIXES, ".webp", ".ppm", ".pgm", ".pnm", ".gif")
MEASUREMENT_SUFFIX = ".safetensors"
#: Name ending of the viewable image ``invkit degrade`` writes beside a mask measurement (``m.safetensors`` -> ``m_view.png``).
VIEW_SUFFIX = "_view.png"
_FIGURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
_FORMAT = "invkit-measurement-v2"
_FORMAT_V1 = "invkit-measurement-v1"


@dataclass
class ImageData:
    """An image read from a file.

    Attributes:
        x: ``(1, C, H, W)`` float32 in [0, 1] (C = 1 or 3).
        bits: Bits per sample of the file (8 or 16); quantisation noise depends on it.
        path: Where it was read from.
        alpha: Whether the file had an alpha channel (dropped: the colour channels are used as
            they are, not composited on a background).
    """

    x: Tensor
    bits: int
    path: Path
    alpha: bool = False


@dataclass
class Measurement:
    """A measurement with what is needed to interpret it.

    Attributes:
        y: ``(B, *out_shape)`` tensor.
        operator: Operator name (or None if unknown, e.g. a plain photo).
        params: Operator parameters (as given to the operator).
        in_shape: The image shape ``(C, H, W)`` the operator acts on, if known.
        sigma_y: Gaussian noise std in [0, 1] units, if known (None for other noise models).
        bits: Quantisation bit depth, if the measurement was quantised (image files).
        noise: The noise model, if known. Given ``sigma_y`` alone it is ``GaussianNoise(sigma_y)``;
            given a model alone, ``sigma_y`` is its ``sigma`` (None for Poisson noise).

    Raises:
        ValueError: ``sigma_y`` and ``noise`` that disagree.
    """

    y: Tensor
    operator: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    in_shape: tuple[int, int, int] | None = None
    sigma_y: float | None = None
    bits: int | None = None
    noise: NoiseModel | None = None

    def __post_init__(self) -> None:
        if self.noise is None:
            if is_noise_sigma(self.sigma_y):  # a bad one stays as it is, for the reader's check to name
                self.noise = GaussianNoise(float(self.sigma_y))  # type: ignore[arg-type]
        elif self.sigma_y is None:
            self.sigma_y = self.noise.sigma
        elif self.noise.sigma != self.sigma_y:
            raise ValueError(f"measurement sigma_y={self.sigma_y!r} disagrees with its noise model {self.noise!r}; give one of them")


#: The transaction :func:`atomic_write` stages into, when one is open (:func:`output_transaction`).
_TRANSACTION: contextvars.ContextVar["_Transaction | None"] = contextvars.ContextVar("invkit_output_transaction", default=None)


class _Transaction:
    """Files written completely to temporaries, then put in place all together (or none)."""

    def __init__(self, overwrite: bool) -> None:
        self.overwrite = overwrite
        self.staged: list[tuple[Path, Path]] = []  # (temporary, destination)

    def discard(self) -> None:
        for tmp, _ in self.staged:
            tmp.unlink(missing_ok=True)
        self.staged.clear()

    def commit(self) -> None:
        """Move every staged file onto its destination; on any failure undo the ones already moved
        (restoring an overwritten file from its hard-linked backup) and remove the rest."""
        done: list[tuple[Path, Path | None]] = []
        try:
            for tmp, path in self.staged:
                backup = None
                if self.overwrite:
                    if path.exists():
                        backup = tmp.with_name(tmp.name + ".old")
                        try:
                            os.link(path, backup)
                        except OSError:  # no hard links here: overwrite without a way back
                            backup = None
                    os.replace(tmp, path)
                else:
                    _place_exclusive(tmp, path)
                done.append((path, backup))
        except BaseException as exc:
            failed = self.staged[len(done)][1] if len(done) < len(self.staged) else None
            for path, backup in reversed(done):
                if backup is not None:
                    os.replace(backup, path)
                else:
                    path.unlink(missing_ok=True)
            self.discard()
            if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
                raise OSError(f"cannot write {failed or 'the outputs'}: {exc.strerror or exc}; none of the files written with it were kept") from None
            raise
        for _, backup in done:
            if backup is not None:
                backup.unlink(missing_ok=True)
        self.staged.clear()


def _place_exclusive(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` only if ``path`` does not exist, atomically (no check-then-write)."""
    try:
        os.link(tmp, path)  # fails if path exists, whoever created it and when
    except FileExistsError:
        raise FileExistsError(f"output {path} exists (another run wrote it meanwhile?); pass --force to overwrite it") from None
    except OSError:  # a file system without hard links: reserve the name exclusively, then replace it
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            raise FileExistsError(f"output {path} exists (another run wrote it meanwhile?); pass --force to overwrite it") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


@contextlib.contextmanager
def output_transaction(overwrite: bool) -> Iterator[None]:
    """Make the files written inside the block (by :func:`atomic_write`: images, figures,
    measurements) appear all together when the block ends, or none of them.

    Each file is written completely to a temporary in its folder first. When the block ends
    normally they are moved into place: with ``overwrite`` replacing what is there (and put
    back if a later move fails), otherwise created exclusively, so that a file that appeared
    meanwhile (another run) is never clobbered. An exception in the block, or a failed move,
    removes every temporary and every file this block created, and restores files it
    overwrote. Blocks do not nest (the inner one would commit on its own).

    Raises:
        FileExistsError: Without ``overwrite``, a destination that exists at the end.
        OSError: A file could not be written or moved (the message names it).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with output_transaction(overwrite=False):
        ...     _ = atomic_write(d / "a.txt", lambda tmp: tmp.write_text("a"))
        ...     (d / "a.txt").exists()
        False
        >>> (d / "a.txt").read_text()
        'a'
    """
    if _TRANSACTION.get() is not None:
        raise RuntimeError("output_transaction blocks do not nest")
    tx = _Transaction(overwrite)
    token = _TRANSACTION.set(tx)
    try:
        yield
    except BaseException:
        tx.discard()
        raise
    finally:
        _TRANSACTION.reset(token)
    tx.commit()


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` then move the file onto ``path`` atomically.

    The temporary file lives in the destination folder (so the rename is atomic) and keeps the
    destination's suffix (so format detection by suffix works). On any error it is removed and
    ``path`` is left untouched. Inside :func:`output_transaction` the move waits for the end of
    the block (all the block's files, or none).
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"output folder {folder} does not exist; create it first")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=folder)
    except OSError as exc:
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    tx = _TRANSACTION.get()
    try:
        write(tmp)
        os.chmod(tmp, _new_file_mode(path))  # mkstemp makes 0600; give the file the usual mode
        if tx is None:
            os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.errno is not None:
            kept = "; none of the files written with it were kept" if tx is not None else ""
            raise OSError(f"cannot write {path}: {exc.strerror or exc}{kept}") from None
        raise
    if tx is not None:
        tx.staged.append((tmp, path))
    return path


def _new_file_mode(path: Path) -> int:
    """The mode a plainly created file would get: the old file's when overwriting, else 0666 & ~umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


#: Pillow's 16- and 32-bit single-channel modes (read at their precision, never through 8 bits).
_WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _image_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, refused unless it is an existing file (the check of every image reader).

    Raises:
        FileNotFoundError: No such file, or a folder.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist" if not path.is_dir() else f"{path} is a folder, not an image file")
    return path


def image_size(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image file as :func:`read_image` would return it, from its header only.

    Nothing is decoded (no pixel memory is allocated), whatever the image's size: the size checks
    of a run use it before reading. ``C`` is 1 for grayscale modes, else 3; ``H`` and ``W`` follow
    the EXIF orientation that :func:`read_image` applies (tags 5-8 swap them; of a
    PNG, only an eXIf chunk before the pixel data is seen here, so the pixel count is exact and
    the sides may come out swapped).

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = _image_file(path)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        Image.MAX_IMAGE_PIXELS = None  # the header of any size; read_image keeps Pillow's bomb check
        with Image.open(path) as img:
            w, h = img.size
            mode = img.mode
            orientation = _orientation(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}; use a PNG, JPEG or TIFF file") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    c = 1 if mode in ("1", "L", "LA", "La", "F", *_WIDE_GREY_MODES) else 3
    return (c, w, h) if orientation in (5, 6, 7, 8) else (c, h, w)


def read_image(path: str | os.PathLike[str]) -> ImageData:
    """Read an image file into ``(1, C, H, W)`` float32 in [0, 1].

    Grayscale stays 1 channel; palette, RGBA and other modes are converted to RGB (alpha
    dropped). 16-bit files (grayscale, RGB, RGBA) keep their precision (``bits = 16``); a
    32-bit float TIFF is read as is (``bits = 32``; values are not clipped, NaN stays NaN so
    the caller can refuse it). The EXIF orientation of photos is applied, at every bit depth.

    Raises:
        FileNotFoundError: No such file.
        ValueError: The file is not a readable image.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = _image_file(path)
    try:
        with warnings.catch_warnings(), Image.open(path) as img:
            # between Pillow's limit and twice it Pillow only warns (with a source line); the run
            # has size-checked the image from its header already, and above twice it refuses below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            raw16 = _rawmode16(img)
            img.load()
            mode = img.mode
            alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in img.info)
            if raw16 is not None:
                arr, bits = _oriented(_read_wide(path, img), img), 16
            elif mode in _WIDE_GREY_MODES:
                arr = _oriented(np.asarray(img, dtype=np.float64)[None] / 65535.0, img)
                bits = 16
            elif mode == "F":
                arr = _oriented(np.asarray(img, dtype=np.float64)[None], img)
                bits = 32
            else:
                img = ImageOps.exif_transpose(img)
                mode = img.mode
                if mode not in ("L", "RGB"):
                    img = img.convert("L" if mode in ("1", "LA", "La") else "RGB")
                arr = np.asarray(img, dtype=np.float64) / 255.0
                bits = 8
                arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    except Image.DecompressionBombError as exc:
        raise ValueError(f"cannot read image {path}: {exc} Downscale it with an image editor first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}; use a PNG, JPEG or TIFF file") from None
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"cannot read image {path}: it is empty ({arr.shape[2]}x{arr.shape[1]} pixels)")
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32)[None]
    return ImageData(x=x, bits=bits, path=path, alpha=alpha)


def _orientation(img: Any) -> int:
    """The EXIF orientation tag (1-8) of an opened image, 1 when absent; read from the header only."""
    from PIL import Image

    if img.format == "PNG":  # Pillow's PNG getexif() decodes the image: read a header eXIf chunk only
        exif = Image.Exif()
        if raw := img.info.get("exif"):
            exif.load(raw)
    else:
        exif = img.getexif()
    value = exif.get(0x0112, 1)
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented(arr: np.ndarray, img: Any) -> np.ndarray:
    """``(C, H, W)`` turned upright by the image's EXIF orientation, as ``ImageOps.exif_transpose``
    does for 8-bit images (Pillow's transposes do not take the wide modes)."""
    o = _orientation(img)
    if o == 2:
        arr = arr[..., ::-1]
    elif o == 3:
        arr = arr[..., ::-1, ::-1]
    elif o == 4:
        arr = arr[..., ::-1, :]
    elif o == 5:
        arr = arr.transpose(0, 2, 1)
    elif o == 6:
        arr = np.rot90(arr, k=-1, axes=(1, 2))
    elif o == 7:
        arr = arr.transpose(0, 2, 1)[..., ::-1, ::-1]
    elif o == 8:
        arr = np.rot90(arr, k=1, axes=(1, 2))
    return np.ascontiguousarray(arr)


def _rawmode16(img: Any) -> str | None:
    """The 16-bit raw mode of a multi-channel image that Pillow would reduce to 8 bits, else None."""
    if img.mode not in ("RGB", "RGBA", "LA") or not img.tile:
        return None
    args = img.tile[0][3]
    raw = args[0] if isinstance(args, tuple) else args
    return raw if isinstance(raw, str) and ";16" in raw else None


def _swap_tiles(img: Any) -> None:
    """Decode with the opposite byte order: the same unfiltering, but the other byte of each sample."""
    import sys

    other = {"B": "L", "L": "B", "N": "B" if sys.byteorder == "little" else "L"}
    tiles = []
    for tile in img.tile:
        args = tile[3]
        raw = args[0] if isinstance(args, tuple) else args
        head, _, order = raw.rpartition(";16")
        swapped = f"{head};16{other.get(order[:1], 'B')}{order[1:]}"
        new_args = (swapped, *args[1:]) if isinstance(args, tuple) else swapped
        tiles.append(tile._replace(args=new_args) if hasattr(tile, "_replace") else (tile[0], tile[1], tile[2], new_args))
    img.tile = tiles


def _read_wide(path: Path, img: Any) -> np.ndarray:
    """16-bit RGB/RGBA/LA -> ``(C, H, W)`` in [0, 1] (alpha dropped): high byte from ``img``, low byte from a second decode."""
    from PIL import Image

    hi = np.asarray(img, dtype=np.uint32)
    with Image.open(path) as again:
        _swap_tiles(again)
        again.load()
        lo = np.asarray(again, dtype=np.uint32)
    if lo.shape != hi.shape:  # pragma: no cover - a decoder that ignores the raw mode
        raise ValueError("inconsistent 16-bit decode")
    arr = (hi * 256 + lo).astype(np.float64) / 65535.0
    if arr.ndim == 2:
        arr = arr[..., None]
    channels = 1 if img.mode == "LA" else 3
    return arr[..., :channels].transpose(2, 0, 1)


def list_images(folder: str | os.PathLike[str], suffixes: tuple[str, ...] | None = IMAGE_SUFFIXES) -> list[Path]:
    """The files directly in ``folder`` whose suffix is in ``suffixes`` (case-insensitive; None:
    every file), sorted; hidden files skipped."""
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and (suffixes is None or p.suffix.lower() in suffixes)
    )


def write_image(path: str | os.PathLike[str], x: Tensor, bits: int = 8) -> Path:
    """Write one image ``(C, H, W)`` or ``(1, C, H, W)`` in [0, 1] (clipped), atomically.

    Args:
        path: Destination; the format follows the suffix (PNG, JPEG, TIFF, BMP).
        x: The image; C = 1 or 3.
        bits: 8, or 16 for PNG and TIFF (grayscale or RGB; RGB TIFF needs ``tifffile``).
    """
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(f"cannot write an image to {path}: use one of {', '.join(IMAGE_SUFFIXES)}")
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"write_image takes one image, got a batch of {x.shape[0]}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"image must be (C, H, W) with C = 1 or 3, got {tuple(x.shape)}")
    arr = np.nan_to_num(x.detach().to(torch.float64).cpu().numpy(), nan=0.0).clip(0, 1)
    if bits == 16:
        if suffix not in (".png", ".tif", ".tiff"):
            raise ValueError(f"{path.name}: {suffix} files hold 8 bits per sample; write 16 bits to .png or .tiff, or use 8 bits")
        q16 = np.round(arr * 65535.0).astype(np.uint16)
        if q16.shape[0] == 1:
            img = Image.fromarray(q16[0])
        elif suffix == ".png":
            data = _png16_rgb(q16.transpose(1, 2, 0))
            return atomic_write(path, lambda tmp: tmp.write_bytes(data))
        else:
            try:
                import tifffile
            except ImportError:
                raise ValueError(
                    f"{path.name}: writing a 16-bit RGB TIFF needs the tifffile package (pip install tifffile); "
                    "or write a 16-bit RGB .png"
                ) from None
            hwc = np.ascontiguousarray(q16.transpose(1, 2, 0))
            return atomic_write(path, lambda tmp: tifffile.imwrite(tmp, hwc, photometric="rgb"))
    elif bits == 8:
        q = np.round(arr * 255.0).astype(np.uint8)
        img = Image.fromarray(q[0]) if q.shape[0] == 1 else Image.fromarray(q.transpose(1, 2, 0))
    else:
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    options = {"quality": 95} if suffix in (".jpg", ".jpeg") else {}
    return atomic_write(path, lambda tmp: img.save(tmp, **options))


def _png16_rgb(hwc: np.ndarray) -> bytes:
    """Encode ``(H, W, 3)`` uint16 as a 16-bit RGB PNG (Pillow cannot): 'Up' filter on every row, zlib."""
    import struct
    import zlib

    h, w, _ = hwc.shape
    rows = np.ascontiguousarray(hwc.astype(">u2")).view(np.uint8).reshape(h, w * 6)
    up = rows.copy()
    up[1:] = rows[1:] - rows[:-1]  # uint8 arithmetic wraps modulo 256, as the PNG filter does
    raw = np.concatenate([np.full((h, 1), 2, dtype=np.uint8), up], axis=1).tobytes()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def write_figure(path: str | os.PathLike[str], panels: list[tuple[str, Tensor]], min_width: int = 128) -> Path:
    """Write a side-by-side picture of labelled panels (each ``(C, H, W)`` in [0, 1]; grey shown as grey).

    Panels of different sizes are top-aligned; small images are enlarged by an integer factor
    (nearest neighbour, so pixels stay visible) until the widest panel is at least ``min_width``.
    The format follows the suffix (PNG, JPEG at quality 95, TIFF, BMP).

    Raises:
        ValueError: A suffix that is not one of ``IMAGE_SUFFIXES``.
    """
    from PIL import Image, ImageDraw, ImageFont

    path = Path(path)
    fmt = _FIGURE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"figure {path.name}: use one of {', '.join(IMAGE_SUFFIXES)} as its suffix")

    arrays = []
    for _, x in panels:
        if x.dim() == 4:
            x = x[0]
        a = np.nan_to_num(x.detach().to(torch.float64).cpu().numpy(), nan=0.0).clip(0, 1)
        a = np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a
        arrays.append(np.round(a.transpose(1, 2, 0) * 255).astype(np.uint8))
    widest = max(a.shape[1] for a in arrays)
    scale = max(1, -(-min_width // widest))
    if scale > 1:
        arrays = [a.repeat(scale, axis=0).repeat(scale, axis=1) for a in arrays]
    gap, label_h = 6, 16
    width = sum(a.shape[1] for a in arrays) + gap * (len(arrays) + 1)
    height = max(a.shape[0] for a in arrays) + label_h + gap * 2
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    try:
        font: Any = ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    left = gap
    for (label, _), a in zip(panels, arrays):
        canvas.paste(Image.fromarray(a), (left, gap + label_h))
        draw.text((left, gap), label, fill="black", font=font)
        left += a.shape[1] + gap
    extra: dict[str, Any] = {"quality": 95} if fmt == "JPEG" else {}
    return atomic_write(path, lambda tmp: canvas.save(tmp, format=fmt, **extra))


def write_measurement(path: str | os.PathLike[str], m: Measurement) -> Path:
    """Store a measurement losslessly as ``.safetensors`` (format v2, see the module notes) with its operator and noise model.

    Raises:
        ValueError: A path not ending in ``.safetensors``, a parameter that cannot be stored, or
            a noise model that is not one of :data:`invkit.noise.NOISE_MODELS`.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != MEASUREMENT_SUFFIX:
        raise ValueError(f"measurement files must end in {MEASUREMENT_SUFFIX}, got {path.name}")
    meta = {
        "format": _FORMAT,
        "operator": json.dumps(m.operator),
        "params": json.dumps(m.params, default=_json_default),
        "in_shape": json.dumps(list(m.in_shape) if m.in_shape else None),
        "noise": json.dumps(noise_spec(m.noise) if m.noise is not None else None),
        "sigma_y": json.dumps(m.sigma_y),
        "bits": json.dumps(m.bits),
    }
    tensor = m.y.detach().to("cpu").contiguous()
    return atomic_write(path, lambda tmp: save_file({"y": tensor}, str(tmp), metadata=meta))


def read_measurement(path: str | os.PathLike[str]) -> Measurement:
    """Read a ``.safetensors`` measurement written by :func:`write_measurement` (format v2, or v1: Gaussian noise with its ``sigma_y``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a (complete) invkit measurement file, or a noise record that does not build.
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
    version = meta.get("format")
    if version not in (_FORMAT, _FORMAT_V1):
        raise ValueError(f"{path} is not an invkit measurement file (format {version!r}); write it with `invkit degrade`")
    fields = {name: _meta_field(path, meta, name) for name in ("operator", "params", "in_shape", "sigma_y", "bits")}
    operator, params, in_shape, sigma_y, bits = (fields[k] for k in ("operator", "params", "in_shape", "sigma_y", "bits"))
    if operator is not None and not (isinstance(operator, str) and operator):
        _bad_field(path, "operator", operator, "an operator name (a string)")
    if params is None:
        params = {}
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        _bad_field(path, "params", params, 'an object of parameter values, like {"sigma": 2.0}')
    if in_shape is not None and not (
        isinstance(in_shape, list) and len(in_shape) == 3 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in in_shape)
    ):
        _bad_field(path, "in_shape", in_shape, "the image shape [C, H, W] (three positive integers) or null")
    if sigma_y is not None and not (is_noise_sigma(sigma_y) and sigma_y <= MAX_SIGMA_Y):
        _bad_field(path, "sigma_y", sigma_y, f"a noise std in [0, 1] units (a number from 0 to {MAX_SIGMA_Y:g}) or null")
    if bits is not None and bits not in (8, 16, 32):
        _bad_field(path, "bits", bits, "8, 16, 32 or null")
    if not y.is_floating_point():
        raise ValueError(f"measurement {path}: its tensor 'y' is {y.dtype}, not floating point; write it again with `invkit degrade`")
    try:
        noise = _read_noise(json.loads(meta["noise"])) if version == _FORMAT and "noise" in meta else None
        return Measurement(
            y=y, operator=operator, params=params, in_shape=tuple(in_shape) if in_shape else None, sigma_y=sigma_y, bits=bits, noise=noise
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"measurement {path}: field 'noise' is broken ({exc}); write it again with `invkit degrade`") from None


def _meta_field(path: Path, meta: dict[str, str], name: str) -> Any:
    """One JSON field of a measurement file's metadata (absent: None)."""
    if name not in meta:
        return None
    try:
        return json.loads(meta[name])
    except ValueError:
        raise ValueError(f"measurement {path}: field {name!r} is not JSON ({meta[name][:60]!r}); write it again with `invkit degrade`") from None


def _bad_field(path: Path, name: str, value: Any, expected: str) -> None:
    shown = json.dumps(value)
    raise ValueError(f"measurement {path}: field {name!r} is {shown[:60]}, expected {expected}; write it again with `invkit degrade`")


def _read_noise(spec: Any) -> NoiseModel | None:
    """A v2 file's ``noise`` record as a model (None when the file records none)."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or "name" not in spec:
        raise ValueError(f"noise record {spec!r} is not an object with a name")
    values = dict(spec)
    return build_noise(values.pop("name"), values)


def _json_default(value: Any) -> Any:
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store parameter value {value!r} in a measurement file")
