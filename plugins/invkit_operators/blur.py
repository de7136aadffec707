"""Separable blurs with explicit boundaries: Gaussian, uniform (box) and anisotropic Gaussian.

Convolution here is **true convolution** (the kernel flipped, as :func:`scipy.ndimage.convolve`
does): ``y[i] = sum_t k[t] x[i + K // 2 - t]`` along each axis. Odd kernels are centred and keep
every tap; an even kernel is anchored at index ``K // 2`` (scipy's ``origin=0``).
The output has the image's size; the ``boundary`` parameter says what lies outside the image:

* ``"zero"``: zero padding (the DDRM paper's deblurring matrices), scipy ``mode='constant'``;
* ``"reflect"`` (**default**, real photos' borders are not black): the image reflected with the
  edge pixel repeated, ``d c b a | a b c d | d c b a``, scipy ``mode='reflect'``
  (numpy ``pad(mode='symmetric')``);
* ``"mirror"``: reflected about the edge pixel, which is not repeated,
  ``d c b | a b c d | c b a``, scipy ``mode='mirror'`` (torch/kornia ``'reflect'``).

``threshold`` (default 0 = off): the DDRM paper zeroes the 1-D singular values below ``3e-2``.
With ``threshold > 0`` the operator *is* that thresholded matrix -- ``forward``/``adjoint`` are
its SVD form. With it off, ``forward`` is the exact convolution, computed with
:func:`kornia.filters.filter2d_separable` on an explicitly padded image (runs on any device) in
bands of rows (:func:`correlate_valid`: a whole-image call holds about six copies of the image
in its im2col buffers, 1.8 GB at 12 MP in float64), and ``adjoint`` is its exact transpose (the transposed convolution followed by folding the
padding back onto the pixels it copied).

Gaussian kernels follow invkit's one rule (:func:`invkit_operators.kernels.gaussian_kernel_1d`,
re-exported here): ``2 ceil(3 sigma) + 1`` taps by default, centred, normalised to sum 1. The
kernel sizes are checked against the image before any kernel is built, and the schema bounds
``sigma <= 256`` and ``size <= 4096`` (those of ``blur``), so an absurd value fails with a
one-line message instead of a memory error.

The SVD comes from the two 1-D SVDs (:mod:`invkit_operators.separable`). Memory O(H² + W²)
for the 1-D factors, built lazily (the threshold-free ``forward``/``adjoint`` never build them);
SVD maps cost O(C H W (H + W)) per image and the 1-D SVDs O(H³ + W³) to build once, so for
multi-megapixel photos the FFT-based ``blur`` operator (circular boundary) is the better choice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import numpy as np
import torch
import torch.nn.functional as F
from kornia.filters import filter2d_separable
from torch import Tensor

from invkit.bands import row_bands
from invkit.params import Arg

from .kernels import MAX_SIGMA, MAX_SIZE, gaussian_kernel_1d, gaussian_size
from .separable import SeparableOperator

__all__ = [
    "BOUNDARIES",
    "SeparableConvolution",
    "GaussianBlur",
    "UniformBlur",
    "AnisotropicBlur",
    "gaussian_kernel_1d",
    "box_kernel_1d",
    "convolution_matrix_1d",
    "correlate_valid",
    "CONV_BAND_PIXELS",
    "OPERATORS",
]

#: Output pixels (batch × channels × rows × width) of one :func:`correlate_valid` band.
CONV_BAND_PIXELS = 1 << 19


def correlate_valid(x: Tensor, k_w: Tensor, k_h: Tensor, band_pixels: int = CONV_BAND_PIXELS) -> Tensor:
    """Separable valid correlation of ``(B, C, H, W)`` with ``(1, K_w)`` and ``(1, K_h)`` kernels.

    :func:`kornia.filters.filter2d_separable` (``padding="valid"``) on bands of output rows,
    each reading its rows and the ``K_h − 1`` below them, written into one output tensor: the
    same numbers as one whole-image call (checked on the CPU), with temporaries bounded by
    ``band_pixels`` output pixels, bands at least ``4 (K_h − 1)`` rows (at 12 MP in float64:
    0.3 GB of temporaries against 1.8 GB; bands by :func:`invkit.bands.row_bands`). When a
    gradient is being recorded it is one whole-image call.
    """
    b, c, h, w = x.shape
    rows, cols = h - k_h.shape[-1] + 1, w - k_w.shape[-1] + 1
    halo = k_h.shape[-1] - 1
    bands = row_bands(rows, halo, b * c * cols, band_pixels)
    recording = torch.is_grad_enabled() and (x.requires_grad or k_w.requires_grad or k_h.requires_grad)
    if len(bands) == 1 or recording:
        # one call when a gradient is recorded: the backward of sliced bands would allocate a
        # whole-image gradient per band
        return filter2d_separable(x, k_w, k_h, border_type="constant", padding="valid")
    out = x.new_empty(b, c, rows, cols)
    for start, end in bands:
        out[..., start:end, :] = filter2d_separable(x[..., start : end + halo, :], k_w, k_h, border_type="constant", padding="valid")
    return out

BOUNDARIES = ("zero", "reflect", "mirror")

#: The default ``boundary`` of every separable blur (real photos' borders are not black).
DEFAULT_BOUNDARY = "reflect"
#: The default ``threshold`` of every separable blur: off, the exact convolution.
NO_THRESHOLD = 0.0

# The parameters every separable blur has, declared once: each blur's signature takes
# ``boundary: Boundary = DEFAULT_BOUNDARY, threshold: Threshold = NO_THRESHOLD``.
Boundary = Annotated[
    str,
    Arg(
        "what lies outside the image: zero (zero padding), reflect (edge pixel repeated, dcba|abcd), "
        "mirror (edge not repeated, dcb|abcd)",
        choices=BOUNDARIES,
    ),
]
Threshold = Annotated[float, Arg("zero the 1-D singular values below this (the DDRM paper uses 3e-2); 0 = exact convolution", min=0.0)]


def box_kernel_1d(size: int) -> np.ndarray:
    """Uniform 1-D kernel of ``size`` taps summing to one."""
    return np.full(size, 1.0 / size, dtype=np.float64)


def _source_index(q: np.ndarray, n: int, boundary: str) -> np.ndarray:
    """Map positions ``q`` (possibly outside ``[0, n)``) to pixel indices; -1 means zero."""
    q = np.asarray(q)
    if boundary == "zero":
        return np.where((q >= 0) & (q < n), q, -1)
    if boundary == "reflect":  # d c b a | a b c d | d c b a
        return np.where(q < 0, -q - 1, np.where(q >= n, 2 * n - 1 - q, q))
    if boundary == "mirror":  # d c b | a b c d | c b a
        return np.where(q < 0, -q, np.where(q >= n, 2 * n - 2 - q, q))
    raise ValueError(f"unknown boundary {boundary!r}; expected one of {', '.join(BOUNDARIES)}")


def convolution_matrix_1d(kernel: np.ndarray, n: int, boundary: str) -> np.ndarray:
    """The ``n × n`` matrix of 1-D true convolution with ``kernel`` under ``boundary``.

    ``(A x)[i] = sum_t kernel[t] x[i + K // 2 - t]`` with out-of-range indices mapped by the
    boundary (a single reflection, so ``K <= n`` is required for the reflecting boundaries).
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    size = kernel.shape[0]
    anchor = size // 2
    a = np.zeros((n, n), dtype=np.float64)
    rows = np.arange(n)
    for t in range(size):
        src = _source_index(rows + anchor - t, n, boundary)
        ok = src >= 0
        np.add.at(a, (rows[ok], src[ok]), kernel[t])
    return a


def _pad_axis(x: Tensor, dim: int, left: int, right: int, boundary: str) -> Tensor:
    """Pad one axis of ``x`` by ``left``/``right`` samples following ``boundary``."""
    n = x.shape[dim]
    if left == 0 and right == 0:
        return x
    if boundary == "zero":
        shape_l = list(x.shape)
        shape_l[dim] = left
        shape_r = list(x.shape)
        shape_r[dim] = right
        return torch.cat([x.new_zeros(shape_l), x, x.new_zeros(shape_r)], dim=dim)
    if boundary == "reflect":
        lo, hi = x.narrow(dim, 0, left), x.narrow(dim, n - right, right)
    else:  # mirror
        lo, hi = x.narrow(dim, 1, left), x.narrow(dim, n - 1 - right, right)
    return torch.cat([lo.flip(dim), x, hi.flip(dim)], dim=dim)


def _fold_axis(z: Tensor, dim: int, left: int, right: int, boundary: str) -> Tensor:
    """Adjoint of :func:`_pad_axis`: add the padding back onto the pixels it copied."""
    if left == 0 and right == 0:
        return z
    n = z.shape[dim] - left - right
    out = z.narrow(dim, left, n).clone()
    if boundary == "zero":
        return out
    lo = z.narrow(dim, 0, left).flip(dim)
    hi = z.narrow(dim, left + n, right).flip(dim)
    if boundary == "reflect":
        out.narrow(dim, 0, left).add_(lo)
        out.narrow(dim, n - right, right).add_(hi)
    else:  # mirror
        out.narrow(dim, 1, left).add_(lo)
        out.narrow(dim, n - 1 - right, right).add_(hi)
    return out


class SeparableConvolution(SeparableOperator):
    """Base of the separable blurs: true convolution with ``k_h ⊗ k_w`` under a named boundary.

    Subclasses call ``_setup`` from ``__init__`` with their two 1-D kernels.

    Boundary (:data:`BOUNDARIES`, see the module docstring): ``reflect`` (edge pixel repeated,
    scipy ``reflect``; the default of every blur), ``zero`` (scipy ``constant``) or ``mirror``
    (scipy ``mirror``). ``threshold > 0`` zeroes the 1-D singular values below it and the
    operator becomes that thresholded matrix.

    Memory O(K) for the exact ``forward``/``adjoint`` (O(C H W (K_h + K_w)) per image, kornia,
    any device); the SVD needs the 1-D matrices and their SVDs, O(H² + W²) memory built lazily
    in O(H³ + W³), then O(C H W (H + W)) per apply. The 1-D SVDs grow as H³ to build: for
    multi-megapixel photos the FFT-based ``blur`` operator (circular boundary) is the better
    choice.
    """

    def _setup(
        self,
        kernel_h: np.ndarray,
        kernel_w: np.ndarray,
        boundary: str,
        threshold: float,
        what: str | tuple[str, str],
    ) -> None:
        """Store the kernels and validate them against the image size.

        Args:
            kernel_h: 1-D kernel along the height axis (float64).
            kernel_w: 1-D kernel along the width axis (float64).
            boundary: One of :data:`BOUNDARIES`.
            threshold: 1-D singular values below it are zeroed (0 = off).
            what: How the user sets the kernel sizes (one phrase, or one per axis: height,
                width), for error messages.
        """
        self.kernel_h = np.ascontiguousarray(kernel_h, dtype=np.float64)
        self.kernel_w = np.ascontiguousarray(kernel_w, dtype=np.float64)
        self.boundary = boundary
        self.threshold = float(threshold)
        for axis, kernel in (("height", self.kernel_h), ("width", self.kernel_w)):
            if kernel.ndim != 1 or kernel.shape[0] < 1:
                raise ValueError(f"{self.name}: the {axis} kernel must be a non-empty 1-D array")
        self._check_kernel_fits(self.kernel_h.shape[0], self.kernel_w.shape[0], what)
        if self.threshold > 0:
            top = float(np.linalg.svd(self.factors[0], compute_uv=False)[0]), float(
                np.linalg.svd(self.factors[1], compute_uv=False)[0]
            )
            if self.threshold > min(top):
                raise ValueError(
                    f"{self.name}: threshold {self.threshold} is above the largest 1-D singular value "
                    f"({min(top):.3g}) and would zero the whole operator; use a smaller threshold (the paper uses 3e-2)"
                )

    def _check_kernel_fits(self, size_h: int, size_w: int, what: str | tuple[str, str]) -> None:
        """Refuse kernels longer than the image; call it *before* building the kernels.

        Args:
            size_h: Kernel taps along the height.
            size_w: Kernel taps along the width.
            what: How the user sets the sizes (one phrase, or one per axis), for the message.

        Raises:
            ValueError: A kernel longer than the image along its axis.
        """
        _, h, w = self.in_shape
        what_h, what_w = (what, what) if isinstance(what, str) else what
        for axis, k, n, phrase in (("height", size_h, h, what_h), ("width", size_w, w, what_w)):
            if k > n:
                raise ValueError(
                    f"{self.name}: kernel {axis} {k} px exceeds the image {axis} {n} px; "
                    f"use a smaller {phrase} or an image at least {k} px in {axis}"
                )

    # ------------------------------------------------------------------ separable hooks
    def _out_hw(self) -> tuple[int, int]:
        return self.in_shape[1], self.in_shape[2]

    def _build_factors(self) -> tuple[np.ndarray, np.ndarray]:
        _, h, w = self.in_shape
        return (
            convolution_matrix_1d(self.kernel_h, h, self.boundary),
            convolution_matrix_1d(self.kernel_w, w, self.boundary),
        )

    @property
    def svd_threshold(self) -> float:
        return self.threshold

    # ------------------------------------------------------------------ exact maps
    def _pads(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) padding for ``y[i] = sum_t k[t] x[i + K//2 - t]``."""
        kh, kw = self.kernel_h.shape[0], self.kernel_w.shape[0]
        return kh - 1 - kh // 2, kh // 2, kw - 1 - kw // 2, kw // 2

    def _kernels(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """The 1-D kernels as ``(1, K)`` tensors on ``like``'s device and dtype."""
        k_h = self.const("conv_k_h", torch.from_numpy(self.kernel_h)[None], like)
        k_w = self.const("conv_k_w", torch.from_numpy(self.kernel_w)[None], like)
        return k_h, k_w

    def convolve(self, x: Tensor) -> Tensor:
        """The exact convolution (no threshold): explicit padding + kornia valid correlation."""
        self.check_image(x)
        top, bottom, left, right = self._pads()
        xp = _pad_axis(_pad_axis(x, -2, top, bottom, self.boundary), -1, left, right, self.boundary)
        k_h, k_w = self._kernels(x)
        # kornia correlates: correlating with the flipped kernel is the true convolution.
        return correlate_valid(xp, k_w.flip(-1), k_h.flip(-1))

    def convolve_adjoint(self, y: Tensor) -> Tensor:
        """The exact transpose of :meth:`convolve`."""
        self.check_measurement(y)
        top, bottom, left, right = self._pads()
        kh, kw = self.kernel_h.shape[0], self.kernel_w.shape[0]
        # transpose of a valid correlation with the flipped kernel: zero-pad by K - 1 and
        # correlate with the kernel itself; then fold the boundary padding back.
        yp = F.pad(y, (kw - 1, kw - 1, kh - 1, kh - 1))
        k_h, k_w = self._kernels(y)
        z = correlate_valid(yp, k_w, k_h)
        return _fold_axis(_fold_axis(z, -1, left, right, self.boundary), -2, top, bottom, self.boundary)

    def forward(self, x: Tensor) -> Tensor:
        if self.threshold > 0:
            return self.matrix_forward(x)
        return self.convolve(x)

    def adjoint(self, y: Tensor) -> Tensor:
        if self.threshold > 0:
            return self.matrix_adjoint(y)
        return self.convolve_adjoint(y)


def _check_odd(owner: str, name: str, size: int | None) -> None:
    if size is not None and size % 2 == 0:
        raise ValueError(f"{owner}: {name} {size} must be odd (a centred Gaussian); use {size - 1} or {size + 1}")


class GaussianBlur(SeparableConvolution):
    """Gaussian blur (true convolution, boundary ``reflect`` by default); SVD from two 1-D SVDs.

    ``y = k * x`` with the sampled, normalised 2-D Gaussian ``k = g ⊗ g`` of std ``sigma`` px and
    ``size`` taps (default ``2 ceil(3 sigma) + 1``), per channel; out shape = in shape. Boundary
    ``reflect`` (the **default**), ``zero`` (the DDRM paper) or ``mirror``; ``threshold > 0``
    (paper: 3e-2) makes the operator the thresholded matrix. Boundaries, threshold, memory and
    cost as :class:`SeparableConvolution` (``K_h = K_w = size``).
    """

    name = "gaussian_blur"
    check_shape = (1, 20, 24)
    check_cases = (
        ((3, 9, 13), {"sigma": 1.0, "boundary": "zero"}),
        ((3, 10, 8), {"sigma": 1.0, "boundary": "mirror"}),
        ((3, 7, 11), {"sigma": 0.8, "size": 7}),
        ((1, 16, 24), {"sigma": 2.0, "boundary": "zero", "threshold": 3e-2}),
        ((1, 12, 18), {"sigma": 1.2, "size": 5, "boundary": "reflect", "threshold": 0.05}),
        ((2, 11, 14), {"sigma": 1.5, "boundary": "mirror", "threshold": 3e-2}),
    )

    def __init__(
        self,
        in_shape: Sequence[int] | str,
        *,
        sigma: Annotated[float, Arg("Gaussian std in pixels", min=0.0, max=MAX_SIGMA, min_inclusive=False)] = 3.0,
        size: Annotated[int | None, Arg("kernel taps per axis, odd; default 2*ceil(3*sigma)+1", min=1, max=MAX_SIZE)] = None,
        boundary: Boundary = DEFAULT_BOUNDARY,
        threshold: Threshold = NO_THRESHOLD,
    ) -> None:
        super().__init__(in_shape)
        _check_odd(self.name, "size", size)
        taps = size or gaussian_size(sigma)
        self._check_kernel_fits(taps, taps, "sigma or size")
        kernel = gaussian_kernel_1d(sigma, taps)
        self._setup(kernel, kernel, boundary, threshold, "sigma or size")


class UniformBlur(SeparableConvolution):
    """Uniform (box) blur, ``size × size`` taps (default 9, the DDRM paper's 9×9), boundary ``reflect`` by default.

    True convolution with the normalised box ``b ⊗ b`` per channel; out shape = in shape. An even
    ``size`` is anchored at index ``size // 2`` (scipy's convention). Boundary ``reflect`` (the
    **default**), ``zero`` (the DDRM paper) or ``mirror``; ``threshold > 0`` (paper: 3e-2) makes
    the operator the thresholded matrix. Boundaries, threshold, memory and cost as
    :class:`SeparableConvolution` (``K_h = K_w = size``).
    """

    name = "uniform_blur"
    check_shape = (3, 10, 12)
    check_cases = (
        ((1, 16, 20), {"size": 4, "boundary": "zero"}),
        ((3, 9, 12), {"size": 3, "boundary": "mirror"}),
        ((1, 14, 18), {"size": 9, "boundary": "zero", "threshold": 3e-2}),
        ((3, 8, 10), {"size": 8, "boundary": "reflect"}),
        ((1, 12, 9), {"size": 6, "boundary": "mirror", "threshold": 3e-2}),
    )

    def __init__(
        self,
        in_shape: Sequence[int] | str,
        *,
        size: Annotated[int, Arg("box side in pixels (an even size is anchored at size//2)", min=1, max=MAX_SIZE)] = 9,
        boundary: Boundary = DEFAULT_BOUNDARY,
        threshold: Threshold = NO_THRESHOLD,
    ) -> None:
        super().__init__(in_shape)
        self._check_kernel_fits(size, size, "size")
        kernel = box_kernel_1d(size)
        self._setup(kernel, kernel, boundary, threshold, "size")


class AnisotropicBlur(SeparableConvolution):
    """Anisotropic Gaussian blur: std ``sigma_h`` along the height, ``sigma_w`` along the width.

    True convolution with ``g_h ⊗ g_w`` (each a sampled, normalised 1-D Gaussian with
    ``size_h``/``size_w`` odd taps, default ``2 ceil(3 sigma) + 1``), per channel; out shape =
    in shape. Boundary ``reflect`` (the **default**), ``zero`` or ``mirror``; ``threshold > 0``
    makes the operator the thresholded matrix. Boundaries, threshold, memory and cost as
    :class:`SeparableConvolution` (``K_h = size_h``, ``K_w = size_w``).
    """

    name = "anisotropic_blur"
    check_shape = (3, 10, 20)
    check_cases = (
        ((1, 20, 12), {"sigma_h": 2.5, "sigma_w": 0.7, "boundary": "zero", "threshold": 2e-2}),
        ((3, 9, 14), {"sigma_h": 1.0, "sigma_w": 2.0, "size_h": 5, "size_w": 9, "boundary": "mirror"}),
        ((1, 15, 22), {"sigma_h": 2.0, "sigma_w": 0.5, "boundary": "reflect", "threshold": 3e-2}),
    )

    def __init__(
        self,
        in_shape: Sequence[int] | str,
        *,
        sigma_h: Annotated[float, Arg("Gaussian std along the height, pixels", min=0.0, max=MAX_SIGMA, min_inclusive=False)] = 1.0,
        sigma_w: Annotated[float, Arg("Gaussian std along the width, pixels", min=0.0, max=MAX_SIGMA, min_inclusive=False)] = 3.0,
        size_h: Annotated[int | None, Arg("kernel taps along the height, odd; default 2*ceil(3*sigma_h)+1", min=1, max=MAX_SIZE)] = None,
        size_w: Annotated[int | None, Arg("kernel taps along the width, odd; default 2*ceil(3*sigma_w)+1", min=1, max=MAX_SIZE)] = None,
        boundary: Boundary = DEFAULT_BOUNDARY,
        threshold: Threshold = NO_THRESHOLD,
    ) -> None:
        super().__init__(in_shape)
        _check_odd(self.name, "size_h", size_h)
        _check_odd(self.name, "size_w", size_w)
        taps_h = size_h or gaussian_size(sigma_h)
        taps_w = size_w or gaussian_size(sigma_w)
        what = ("sigma_h or size_h", "sigma_w or size_w")
        self._check_kernel_fits(taps_h, taps_w, what)
        self._setup(gaussian_kernel_1d(sigma_h, taps_h), gaussian_kernel_1d(sigma_w, taps_w), boundary, threshold, what)


OPERATORS = (GaussianBlur, UniformBlur, AnisotropicBlur)
