"""Blur kernels: construction helpers shared by the convolution operators.

Every builder returns a 2-D float64 CPU tensor ``(kh, kw)`` that sums to 1 (except a file kernel
read with ``normalize=False``). A kernel is applied as a **true convolution** (flipped, as
:func:`scipy.ndimage.convolve` does) anchored at index ``(kh // 2, kw // 2)``: the centre of an
odd kernel, and for an even size the entry just after the middle (what ``scipy.ndimage.convolve``
does with ``origin=0``). Tap ``(i, j)`` therefore moves a pixel by ``(i - kh // 2, j - kw // 2)``.

Kinds (see :func:`kernel_from_params`, whose parameters :data:`KERNEL_PARAMS` describes):

* ``gaussian``: samples of ``exp(-(r² + c²) / (2 sigma²))`` on an odd grid, by default of radius
  ``ceil(3 sigma)`` (the same default as the ``gaussian_blur`` operator), normalised to sum 1. A
  2-D Gaussian is separable: this kernel equals the outer product of normalised 1-D ones.
* ``box`` (alias ``uniform``): ``ones(kh, kw) / (kh kw)``; sizes may be even (the mean is then
  shifted by half a pixel towards the top/left, exactly as in scipy).
* ``motion``: a centred line segment of ``length`` pixels at ``angle`` degrees, rasterised with
  anti-aliasing: each tap is the area of its pixel covered by a ``length × 1`` rectangle along the
  segment (measured with 16 × 16 sub-samples per pixel), normalised to sum 1. ``angle`` is
  counter-clockwise from the +column axis as the image is displayed (row 0 on top), so 0° is
  horizontal and 90° vertical; a centred segment is point-symmetric, so ``angle`` and
  ``angle + 180`` give the same kernel. At 0° an odd integer length gives exactly ``length``
  equal taps in one row; an even length gives ``length - 1`` full taps and two half taps.
* ``trajectory``: camera shake, a seeded random trajectory rasterised into a ``size × size`` kernel
  (default 61 and ``intensity = 0.5``, the numbers of DPS's motion-deblurring setting; the
  generator is our own parametrisation of Boracchi & Foi's trajectories, so ``intensity = 0.5``
  here is not the official code's kernel at 0.5; see :func:`trajectory_kernel`).
* ``disk``: the area of each pixel covered by a disk of ``radius`` pixels centred on the anchor
  (16 × 16 sub-samples on the boundary pixels), normalised to sum 1.
* ``file``: a kernel read from ``.npy`` (2-D numeric array) or ``.png`` (8- or 16-bit grayscale,
  read with Pillow). Colour PNGs are refused rather than converted: a colour PSF is ambiguous
  (one kernel per channel, or a luma mix?), so save a single-channel PNG or a ``.npy``
  (``inpainting``'s mask files, by contrast, are converted to grayscale: a mask is a yes/no
  picture). NaN or infinite entries and all-zero kernels are refused. With
  ``normalize=True`` (default) the kernel is divided by its sum, which must be positive;
  negative entries are allowed (a measured PSF after background subtraction has some), they are
  kept as they are. ``normalize=False`` uses the values as stored, e.g. for a signed or zero-sum
  filter.

Motion and disk kernels are trimmed to the smallest odd, centred support that holds their non-zero
taps, so they stay anchored at their centre.

Example:
    >>> from invkit_operators.kernels import box_kernel, motion_kernel
    >>> box_kernel((1, 2)).tolist()
    [[0.5, 0.5]]
    >>> k = motion_kernel(5, 0.0)
    >>> tuple(k.shape), round(float(k.sum()), 12)
    ((1, 5), 1.0)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import numpy as np
import torch
from torch import Tensor

from invkit.params import Arg, Param, ParamError, int_tuple, signature_params

__all__ = [
    "KERNEL_KINDS",
    "KERNEL_PARAMS",
    "kernel_size",
    "gaussian_size",
    "gaussian_kernel_1d",
    "gaussian_kernel",
    "box_kernel",
    "motion_kernel",
    "disk_kernel",
    "trajectory_kernel",
    "load_kernel",
    "kernel_from_params",
    "kernel_anchor",
]

#: Names accepted by the ``kernel`` parameter (``uniform`` is an alias of ``box``).
KERNEL_KINDS = ("gaussian", "box", "uniform", "motion", "trajectory", "disk", "file")

#: Default size of a ``trajectory`` kernel (DPS's motion blur: 61 × 61).
DEFAULT_TRAJECTORY_SIZE = 61

#: Sub-samples per pixel side used to measure the area covered by motion and disk kernels.
SUBSAMPLES = 16

#: Default box size when ``size`` is not given.
DEFAULT_BOX_SIZE = 5

# Schema bounds keep the construction cheap (a few million taps at most); the operators refuse
# kernels larger than the image anyway.
MAX_SIGMA = 256.0
MAX_SIZE = 4096
MAX_LENGTH = 2048.0
MAX_RADIUS = 1024.0


def kernel_size(value: Any) -> tuple[int, int]:
    """Parse a kernel size: ``5``, ``"5"``, ``"2,6"``, ``"2x6"`` or ``(2, 6)`` -> ``(kh, kw)``.

    Raises:
        ValueError: Not one or two integers, or an entry below 1.
    """
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, np.integer)):
        parts: tuple[int, ...] = (int(value),)
    elif isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value} is not an integer")
        parts = (int(value),)
    else:
        parts = int_tuple(value)
    if len(parts) == 1:
        parts = (parts[0], parts[0])
    if len(parts) != 2:
        raise ValueError(f"expected N or H,W, got {len(parts)} numbers")
    if min(parts) < 1 or max(parts) > MAX_SIZE:
        raise ValueError(f"sizes must be between 1 and {MAX_SIZE}, got {parts[0]}x{parts[1]}")
    return (parts[0], parts[1])


# ---------------------------------------------------------------------------------- builders
def kernel_anchor(shape: Sequence[int]) -> tuple[int, int]:
    """The tap that sits on the output pixel: ``(kh // 2, kw // 2)`` (scipy's ``origin=0``)."""
    return (int(shape[0]) // 2, int(shape[1]) // 2)


def gaussian_size(sigma: float) -> int:
    """The default Gaussian kernel size, ``2 * ceil(3 sigma) + 1`` (odd; every tap within 3 sigma).

    Cheap to compute, so callers can check a kernel against the image before building it.
    """
    return 2 * math.ceil(3.0 * sigma) + 1


def _check_gaussian_sigma(sigma: float) -> None:
    if not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"gaussian kernel: sigma must be a positive number, got {sigma}")


def gaussian_kernel_1d(sigma: float, size: int | None = None) -> np.ndarray:
    """Sampled 1-D Gaussian centred on its middle tap, normalised to sum 1 (float64 numpy).

    The one Gaussian rule of invkit: :func:`gaussian_kernel` (2-D, the ``blur`` operator) is the
    outer product of two of these, and the separable blurs use them directly.

    Args:
        sigma: Standard deviation in pixels (> 0).
        size: Odd number of taps; default :func:`gaussian_size` ``(sigma)``.

    Raises:
        ValueError: ``sigma`` not a positive number, or ``size`` even or below 1.
    """
    _check_gaussian_sigma(sigma)
    if size is None:
        size = gaussian_size(sigma)
    if size < 1 or size % 2 == 0:
        raise ValueError(f"gaussian kernel: size {size} must be odd and >= 1 (the Gaussian is centred on the middle tap)")
    t = np.arange(size, dtype=np.float64) - size // 2
    with np.errstate(over="ignore"):  # tiny sigma: (t / sigma)**2 = inf -> exp(-inf) = 0, a delta
        k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def gaussian_kernel(sigma: float, size: int | Sequence[int] | None = None) -> Tensor:
    """Sampled isotropic Gaussian, normalised to sum 1: the outer product of two :func:`gaussian_kernel_1d`.

    Args:
        sigma: Standard deviation in pixels (> 0).
        size: Odd kernel size ``N`` or ``(kh, kw)``; default ``2 * ceil(3 * sigma) + 1``.

    Raises:
        ValueError: ``sigma`` not positive or a size that is even or below 1.
    """
    _check_gaussian_sigma(sigma)
    if size is None:
        kh = kw = gaussian_size(sigma)
    else:
        kh, kw = kernel_size(size)
        if kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(
                f"gaussian kernel: size {kh}x{kw} must be odd (the Gaussian is centred on the middle tap); "
                f"use e.g. size={kh | 1}x{kw | 1} or leave size unset"
            )
    return torch.from_numpy(np.outer(gaussian_kernel_1d(sigma, kh), gaussian_kernel_1d(sigma, kw)))


def box_kernel(size: int | Sequence[int] = DEFAULT_BOX_SIZE) -> Tensor:
    """Uniform ``kh × kw`` kernel, ``1 / (kh kw)`` everywhere; even sizes are allowed."""
    kh, kw = kernel_size(size)
    return torch.full((kh, kw), 1.0 / (kh * kw), dtype=torch.float64)


def _cos_sin_deg(angle: float) -> tuple[float, float]:
    """cos and sin of ``angle`` degrees, exact at multiples of 90°."""
    a = math.fmod(angle, 360.0)
    if a < 0:
        a += 360.0
    exact = {0.0: (1.0, 0.0), 90.0: (0.0, 1.0), 180.0: (-1.0, 0.0), 270.0: (0.0, -1.0)}
    if a in exact:
        return exact[a]
    t = math.radians(a)
    return math.cos(t), math.sin(t)


def _coverage(sdf: Callable[[Tensor, Tensor], Tensor], rad_r: int, rad_c: int) -> Tensor:
    """Area of each pixel of a ``(2 rad_r + 1) × (2 rad_c + 1)`` grid inside ``{sdf <= 0}``.

    ``sdf(r, c)`` is a signed distance (negative inside) in pixel units, with the grid centre at
    ``(0, 0)`` and rows growing downwards. Pixels whose centre is farther than half a diagonal
    from the boundary are 0 or 1; the others are measured with ``SUBSAMPLES²`` sub-samples.
    """
    r = torch.arange(-rad_r, rad_r + 1, dtype=torch.float64)[:, None].expand(2 * rad_r + 1, 2 * rad_c + 1)
    c = torch.arange(-rad_c, rad_c + 1, dtype=torch.float64)[None, :].expand(2 * rad_r + 1, 2 * rad_c + 1)
    d = sdf(r, c)
    half_diag = math.sqrt(0.5) + 1e-9
    out = (d <= -half_diag).to(torch.float64)
    edge = (d.abs() < half_diag).nonzero(as_tuple=True)
    if edge[0].numel():
        # sub-sample offsets (j + 1/2) / S - 1/2: symmetric and exact in binary (S is a power of 2)
        off = (torch.arange(SUBSAMPLES, dtype=torch.float64) + 0.5) / SUBSAMPLES - 0.5
        rr = r[edge][:, None, None] + off[None, :, None]
        cc = c[edge][:, None, None] + off[None, None, :]
        inside = (sdf(rr, cc) <= 0).to(torch.float64).mean(dim=(1, 2))
        out[edge] = inside
    return out


def _trim_centred(k: Tensor) -> Tensor:
    """Crop all-zero borders symmetrically, keeping the centre tap in the middle (odd sizes)."""
    nz = k.nonzero()
    if nz.numel() == 0:
        raise ValueError("kernel has no non-zero tap")
    ch, cw = k.shape[0] // 2, k.shape[1] // 2
    rad_r = int((nz[:, 0] - ch).abs().max())
    rad_c = int((nz[:, 1] - cw).abs().max())
    return k[ch - rad_r : ch + rad_r + 1, cw - rad_c : cw + rad_c + 1].clone()


def motion_kernel(length: float = 15.0, angle: float = 0.0) -> Tensor:
    """Linear motion blur: a centred, anti-aliased segment, normalised to sum 1.

    Each tap is the fraction of its pixel covered by the ``length × 1`` rectangle whose axis is
    the segment (see the module docstring for the angle convention).

    Args:
        length: Segment length in pixels (>= 1; 1 gives the identity kernel ``[[1]]``).
        angle: Degrees, counter-clockwise from horizontal as displayed (rows grow downwards).
    """
    if not (length >= 1.0 and math.isfinite(length)):
        raise ValueError(f"motion kernel: length must be a number >= 1 pixel, got {length}")
    if not math.isfinite(angle):
        raise ValueError(f"motion kernel: angle must be a finite number of degrees, got {angle}")
    cos, sin = _cos_sin_deg(angle)
    d_r, d_c = -sin, cos  # unit vector along the segment in (row, col); row axis points down
    n_r, n_c = cos, sin  # unit normal
    half_len, half_wid = 0.5 * length, 0.5

    def sdf(r: Tensor, c: Tensor) -> Tensor:
        along = (r * d_r + c * d_c).abs() - half_len
        across = (r * n_r + c * n_c).abs() - half_wid
        outside = torch.sqrt(along.clamp(min=0) ** 2 + across.clamp(min=0) ** 2)
        return outside + torch.minimum(torch.maximum(along, across), torch.zeros_like(along))

    ext_r = half_len * abs(sin) + half_wid * abs(cos)
    ext_c = half_len * abs(cos) + half_wid * abs(sin)
    k = _coverage(sdf, math.ceil(ext_r) + 1, math.ceil(ext_c) + 1)
    k = _trim_centred(k)
    return k / k.sum()


def trajectory_kernel(size: int = DEFAULT_TRAJECTORY_SIZE, intensity: float = 0.5, seed: int = 0) -> Tensor:
    """Camera-shake blur: a seeded random trajectory rasterised into ``size × size`` taps, sum 1.

    The path has ``T = 2000`` points and total length ``L = size - 1`` pixels: a constant speed
    ``L / (T - 1)`` along a heading that starts at a random angle and, at each step, turns by a
    Gaussian angle of std ``0.1 · intensity`` rad (a smooth wander whose persistence length is
    ``≈ 2 L / (T 0.01 intensity²)``, about ``L / 2`` at 0.5), and with probability
    ``3 · intensity / T`` per step (about ``3 · intensity`` times in all) turns back by ``π ± 1/2``
    rad, an abrupt shake. This follows the random camera-shake trajectories of Boracchi & Foi
    (2012), which the motion-blur generator of the official DPS code also implements, with our
    own simpler parametrisation: ``intensity`` (0 to 1) sets how erratic the path is and 0 is a
    straight segment. The path is centred on its mean position, shrunk if needed to fit the
    support with a one-pixel margin, and each point splats bilinear weights on its four pixels.

    Args:
        size: Odd kernel side in pixels (>= 3).
        intensity: The anxiety in [0, 1] (0: straight; 1: the most erratic).
        seed: Seed of the trajectory (the kernel is a deterministic function of the arguments).

    Example:
        >>> k = trajectory_kernel(31, 0.5, seed=3)
        >>> tuple(k.shape), round(float(k.sum()), 12), bool((k >= 0).all())
        ((31, 31), 1.0, True)
    """
    if not (isinstance(size, int) and size >= 3 and size % 2 == 1):
        raise ValueError(f"trajectory kernel: size must be an odd integer >= 3, got {size}")
    if not (0.0 <= intensity <= 1.0):
        raise ValueError(f"trajectory kernel: intensity must be in [0, 1], got {intensity}")
    gen = torch.Generator().manual_seed(int(seed))

    def rand() -> float:
        return float(torch.rand((), generator=gen, dtype=torch.float64))

    steps, length = 2000, float(size - 1)
    unit = length / (steps - 1)
    turns = torch.randn(steps - 1, generator=gen, dtype=torch.float64) * (0.1 * intensity)  # heading noise per step
    jumps = torch.rand(steps - 1, generator=gen, dtype=torch.float64) < 3.0 * intensity / steps  # ~3·intensity shakes
    kicks = math.pi + (torch.rand(steps - 1, generator=gen, dtype=torch.float64) - 0.5)
    heading = 2.0 * math.pi * rand() + torch.cumsum(turns + torch.where(jumps, kicks, torch.zeros_like(kicks)), 0)
    heading = torch.cat([heading.new_tensor([float(heading[0]) - float(turns[0])]), heading])
    x = torch.cumsum(torch.stack([torch.sin(heading), torch.cos(heading)], 1) * unit, 0)
    path = x - x.mean(0)  # (row, col), centred on the mean position
    half = (size - 1) / 2.0 - 1.0  # keep a one-pixel margin for the bilinear splat
    extent = float(path.abs().max())
    if extent > half:
        path = path * (half / extent)
    pos = path + (size - 1) / 2.0
    base = pos.floor()
    frac = pos - base
    k = torch.zeros(size * size, dtype=torch.float64)
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
        w = (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
        idx = (base[:, 0].long() + dr) * size + (base[:, 1].long() + dc)
        k.index_add_(0, idx, w)
    k = k.reshape(size, size)
    return k / k.sum()


def disk_kernel(radius: float = 4.0) -> Tensor:
    """Uniform disk (defocus) of ``radius`` pixels, anti-aliased by pixel area, sum 1."""
    if not (radius > 0 and math.isfinite(radius)):
        raise ValueError(f"disk kernel: radius must be a positive number of pixels, got {radius}")

    def sdf(r: Tensor, c: Tensor) -> Tensor:
        return torch.sqrt(r * r + c * c) - radius

    rad = math.ceil(radius) + 1
    k = _trim_centred(_coverage(sdf, rad, rad))
    return k / k.sum()


def load_kernel(path: str | os.PathLike[str], normalize: bool = True, owner: str = "kernel") -> Tensor:
    """Read a kernel from ``.npy`` or ``.png`` (see the module docstring for the rules).

    Args:
        path: A ``.npy`` file holding a 2-D real array, or an 8-/16-bit grayscale ``.png``.
        normalize: Divide by the sum (which must be positive); ``False`` keeps the stored values.
        owner: Name used in error messages.

    Raises:
        ValueError: Missing/unreadable file, other extension, not 2-D, colour PNG, NaN/inf
            entries, all zeros, or a non-positive sum with ``normalize=True``.
    """
    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    if ext not in (".npy", ".png"):
        raise ParamError(f"{owner}: kernel_file {p!r} must be a .npy array or a .png grayscale image (got {ext or 'no extension'})")
    try:
        if ext == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(p) as img:
                img.load()
                if img.mode not in ("L", "I", "I;16", "I;16B", "I;16L", "I;16N"):
                    raise ParamError(
                        f"PNG mode {img.mode} is not 8/16-bit grayscale; a colour PSF is ambiguous, "
                        "save the kernel as a single-channel (grayscale) PNG or a 2-D .npy array"
                    )
                arr = np.asarray(img)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        raise ParamError(f"{owner}: cannot read kernel_file {p!r} ({reason})") from None
    if arr.dtype.kind not in "biuf":
        raise ParamError(f"{owner}: kernel_file {p!r} holds {arr.dtype} data; expected a real numeric 2-D array")
    if arr.ndim != 2 or 0 in arr.shape:
        raise ParamError(f"{owner}: kernel_file {p!r} holds an array of shape {arr.shape}; expected a non-empty 2-D kernel")
    k = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    if not bool(torch.isfinite(k).all()):
        raise ParamError(f"{owner}: kernel_file {p!r} has NaN or infinite entries")
    if not bool(k.any()):
        raise ParamError(f"{owner}: kernel_file {p!r} is all zeros")
    if normalize:
        total = float(k.sum())
        if not total > 1e-12 * float(k.abs().sum()):
            raise ParamError(
                f"{owner}: kernel_file {p!r} sums to {total:.3g}, cannot normalise to sum 1; "
                "fix the kernel or pass normalize=false to use it as stored"
            )
        k = k / total
    return k


def kernel_from_params(
    kernel: Annotated[
        str, Arg("kernel kind: gaussian, box (= uniform), motion, trajectory (random camera shake), disk, or file (kernel_file)", choices=KERNEL_KINDS)
    ] = "gaussian",
    *,
    sigma: Annotated[float, Arg("gaussian: standard deviation in pixels", min=0.0, max=MAX_SIGMA, min_inclusive=False)] = 3.0,
    size: Annotated[
        int | Sequence[int] | None,
        Arg(
            "gaussian/box/trajectory: kernel size N or H,W in pixels (gaussian: odd, default 2*ceil(3*sigma)+1; box: may be even, "
            f"default {DEFAULT_BOX_SIZE}; trajectory: odd N, default {DEFAULT_TRAJECTORY_SIZE})",
            type=kernel_size,
        ),
    ] = None,
    length: Annotated[float, Arg("motion: segment length in pixels (1 = no blur)", min=1.0, max=MAX_LENGTH)] = 15.0,
    angle: Annotated[float, Arg("motion: degrees counter-clockwise from horizontal (90 = vertical)")] = 0.0,
    radius: Annotated[float, Arg("disk: radius in pixels", min=0.0, max=MAX_RADIUS, min_inclusive=False)] = 4.0,
    intensity: Annotated[float, Arg("trajectory: camera-shake anxiety, 0 (straight) to 1 (erratic)", min=0.0, max=1.0)] = 0.5,
    seed: Annotated[int, Arg("trajectory: seed of the random trajectory", min=0)] = 0,
    kernel_file: Annotated[str | None, Arg("kernel=file: .npy (2-D array) or .png (8/16-bit grayscale)")] = None,
    normalize: Annotated[bool, Arg("kernel=file: divide the kernel by its sum (which must be > 0); false = use as stored")] = True,
    owner: str = "kernel",
) -> Tensor:
    """Build the kernel that :data:`KERNEL_PARAMS` describes.

    Its signature declares :data:`KERNEL_PARAMS` (all but ``owner``, the name used in error
    messages). Parameters that do not belong to the chosen kind are ignored, except ``size``
    (gaussian, box and trajectory only) and ``kernel_file`` (file only), which raise when given to another
    kind. A direct call takes values as given (the operators pass values validated by the schema).

    Raises:
        ValueError: A mismatch of kind and parameters, or an invalid kernel (see the builders).
    """
    if kernel not in KERNEL_KINDS:
        raise ParamError(f"{owner}: unknown kernel {kernel!r}; expected one of {', '.join(KERNEL_KINDS)}")
    if kernel_file is not None and kernel != "file":
        raise ParamError(f"{owner}: kernel_file is only used with kernel=file (got kernel={kernel}); add kernel=file")
    if size is not None and kernel not in ("gaussian", "box", "uniform", "trajectory"):
        raise ParamError(f"{owner}: size only applies to kernel=gaussian, box or trajectory (got kernel={kernel}); drop size")
    try:
        if kernel == "gaussian":
            return gaussian_kernel(sigma, size)
        if kernel in ("box", "uniform"):
            return box_kernel(DEFAULT_BOX_SIZE if size is None else size)
        if kernel == "motion":
            return motion_kernel(length, angle)
        if kernel == "disk":
            return disk_kernel(radius)
        if kernel == "trajectory":
            side = DEFAULT_TRAJECTORY_SIZE if size is None else size
            if side[0] != side[1] if isinstance(side, tuple) else False:
                raise ParamError(f"a trajectory kernel is square; give size=N, got {side[0]},{side[1]}")
            return trajectory_kernel(side[0] if isinstance(side, tuple) else int(side), intensity, seed)
    except ValueError as exc:
        raise ParamError(f"{owner}: {exc}") from None
    if kernel_file is None:
        raise ParamError(f"{owner}: kernel=file needs kernel_file=PATH (.npy or grayscale .png)")
    return load_kernel(kernel_file, normalize=normalize, owner=owner)


#: Typed parameter schema of :func:`kernel_from_params`, read off its signature: the one
#: declaration of the kernel parameters, which the ``blur`` operator takes as its ``params``.
KERNEL_PARAMS: tuple[Param, ...] = signature_params(kernel_from_params, exclude=("owner",))
