"""Blur with any 2-D kernel under circular boundaries, with an exact real SVD from the 2-D FFT.

``H`` is the circular **true** convolution (kernel flipped, as :func:`scipy.ndimage.convolve`
with ``mode='wrap'`` and ``origin=0``: odd kernels anchored at their centre, even ones at
index ``k // 2``) with the same kernel in every channel. Such an ``H`` is diagonalised by the
DFT, ``H = F* diag(λ) F`` with the transfer function ``λ = fft2(psf)`` (the kernel wrapped
around the ``H × W`` torus with its anchor at ``(0, 0)``).

The real SVD (per channel; every spectral coordinate carries a singular value, ``m = n = k``):

* ``V`` is the real, orthonormal Fourier basis. With ``X = fft2(x, norm='ortho')`` (unitary)
  and ``x`` real, ``X[-f] = conj(X[f])``. Frequencies ``f ≠ -f`` come in pairs; one
  representative ``f`` of each pair gives the two coordinates ``√2 Re X[f]`` and ``√2 Im X[f]``
  (the cosine and sine vectors ``√(2/HW) cos(2π f·p)`` and ``-√(2/HW) sin(2π f·p)``). The
  self-conjugate frequencies ``f = -f`` -- ``{0, H/2} × {0, W/2}``, the ``H/2`` / ``W/2`` ones
  only for even sizes -- give one coordinate ``Re X[f]`` each (``X[f]`` is real there).
* On a pair, ``H`` multiplies ``X[f]`` by ``λ_f = |λ_f| e^{iφ_f}``: ``|λ_f|`` times a rotation by
  ``φ_f`` of the (cos, sin) plane. So ``s = |λ_f|`` (twice) and ``U``'s two columns are ``V``'s
  rotated by ``φ_f``. At a self-conjugate ``f``, ``λ_f`` is real, possibly negative or zero:
  ``s = |λ_f|`` and ``U``'s column is ``sign(λ_f)`` times ``V``'s, with ``sign(0) = +1``.

Coordinates are computed from ``rfft2`` (half the spectrum). In its layout the columns
``k_w = 0`` and (even ``W``) ``k_w = W/2`` hold both ``k_h`` and ``-k_h``, so there only the rows
``1 .. (H-1)//2`` represent pairs, the rows ``0`` and (even ``H``) ``H/2`` are self-conjugate, and
the remaining rows are conjugates of represented entries (they are filled in, not stored, by
``V``/``U``). Every other ``rfft2`` entry represents one pair.

Spectral order (within each channel; channels are concatenated, channel 0 first): the
self-conjugate coordinates (``rfft2`` row-major order), then ``√2 Re`` of every pair
representative, then ``√2 Im`` in the same order.

Transfer-function values with ``|λ| <= 1e-13 max |λ|`` (FFT round-off level) are set to exactly 0,
so singular values that are mathematically zero (e.g. a 2-tap box at the Nyquist frequency of an
even width) are exactly 0 and the operator is that cleaned ``H``.

Example:
    >>> import torch
    >>> from invkit_operators.fft_blur import CircularBlur
    >>> op = CircularBlur((1, 4, 6), kernel="box", size="1x2")
    >>> x = torch.zeros(1, 1, 4, 6, dtype=torch.float64); x[0, 0, 1, 3] = 1.0
    >>> [round(abs(v), 12) for v in op.forward(x)[0, 0, 1].tolist()]  # FFT: exact to ~1e-16
    [0.0, 0.0, 0.5, 0.5, 0.0, 0.0]
    >>> sorted(set(round(v, 6) for v in op.singular_values.tolist()))[:2]
    [0.0, 0.5]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from invkit.forward import SVDOperator

from .kernels import KERNEL_PARAMS, kernel_anchor, kernel_from_params

__all__ = ["CircularBlur", "circular_psf", "rfft2_layout", "OPERATORS"]

#: Relative level below which transfer-function values are treated as exact zeros.
ZERO_TOL = 1e-13

_SQRT2 = math.sqrt(2.0)


def circular_psf(kernel: Tensor, size: tuple[int, int]) -> Tensor:
    """Wrap ``kernel`` onto an ``(H, W)`` torus with its anchor ``(kh // 2, kw // 2)`` at ``(0, 0)``.

    Tap ``(i, j)`` lands on ``((i - kh // 2) mod H, (j - kw // 2) mod W)``, so that the circular
    convolution with the result is ``scipy.ndimage.convolve(x, kernel, mode='wrap')``.

    Raises:
        ValueError: The kernel is larger than ``(H, W)`` in either dimension.
    """
    h, w = size
    kh, kw = kernel.shape
    if kh > h or kw > w:
        raise ValueError(f"kernel {kh}x{kw} is larger than the image {h}x{w}")
    psf = torch.zeros(h, w, dtype=torch.float64)
    psf[:kh, :kw] = kernel.to(torch.float64)
    a_h, a_w = kernel_anchor((kh, kw))
    return torch.roll(psf, shifts=(-a_h, -a_w), dims=(0, 1))


def rfft2_layout(h: int, w: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Classify the entries of an ``(H, W // 2 + 1)`` ``rfft2`` grid (flat row-major indices).

    Returns:
        ``(self_idx, pair_idx, conj_idx, conj_src)``: the self-conjugate entries, one
        representative per conjugate pair, the redundant entries of the columns ``k_w = 0`` and
        ``k_w = W/2`` (conjugates of represented ones), and for each of those the position in
        ``pair_idx`` of the entry it is the conjugate of. ``len(self_idx) + 2 len(pair_idx) = H W``.
    """
    wr = w // 2 + 1
    kh = torch.arange(h)[:, None].expand(h, wr)
    kw = torch.arange(wr)[None, :].expand(h, wr)
    special = kw == 0
    if w % 2 == 0:
        special = special | (kw == w // 2)
    self_row = kh == 0
    if h % 2 == 0:
        self_row = self_row | (kh == h // 2)
    is_self = special & self_row
    is_pair = ~special | ((kh >= 1) & (kh <= (h - 1) // 2))
    is_conj = special & ~is_self & ~is_pair
    self_idx = is_self.reshape(-1).nonzero().reshape(-1)
    pair_idx = is_pair.reshape(-1).nonzero().reshape(-1)
    conj_idx = is_conj.reshape(-1).nonzero().reshape(-1)
    src_flat = ((h - conj_idx // wr) % h) * wr + conj_idx % wr
    where = torch.full((h * wr,), -1, dtype=torch.long)
    where[pair_idx] = torch.arange(pair_idx.numel())
    conj_src = where[src_flat]
    assert self_idx.numel() + 2 * pair_idx.numel() == h * w and bool((conj_src >= 0).all())
    return self_idx, pair_idx, conj_idx, conj_src


class CircularBlur(SVDOperator):
    """Blur with any 2-D kernel, circular boundaries; exact real SVD from the 2-D FFT.

    ``forward`` is the circular true convolution ``irfft2(rfft2(x) λ)`` (exact, any device), and
    ``adjoint`` the circular correlation with the same kernel (``conj(λ)``). ``Vt``/``V``/
    ``Ut``/``U`` are one FFT plus an O(n) gather or scatter each (see the module docstring).

    Memory O(n): the transfer function (``H × (W//2+1)`` complex) and a few index vectors of the
    same size; per apply O(n log n). No ``H³`` SVD build, so this is the operator of choice for
    big photos and for motion blur. The price is the circular boundary: a real photo is not
    periodic, and restoring one with this operator shows wrap-around artefacts near the borders
    unless it is padded first (the CLI will offer ``--pad``).

    Its parameters are :data:`~invkit_operators.kernels.KERNEL_PARAMS`, declared once, in
    :func:`~invkit_operators.kernels.kernel_from_params`'s signature; ``__init__`` takes them
    as ``**params``.

    Args:
        in_shape: Image shape ``(C, H, W)``; any number of channels (same kernel in each).
        kernel: ``gaussian``, ``box`` (alias ``uniform``), ``motion``, ``disk`` or ``file``.
        sigma: Gaussian standard deviation in pixels, ``0 < sigma <= 256``.
        size: Gaussian/box size ``N`` or ``H,W`` (gaussian: odd, default
            ``2 ceil(3 sigma) + 1``; box: may be even, default 5).
        length: Motion segment length in pixels, ``1 <= length <= 2048``.
        angle: Motion direction in degrees counter-clockwise from horizontal (any value).
        radius: Disk radius in pixels, ``0 < radius <= 1024``.
        kernel_file: ``kernel=file``: a ``.npy`` 2-D array or 8/16-bit grayscale ``.png``.
        normalize: ``kernel=file``: scale the kernel to sum 1 (its sum must be positive);
            ``false`` uses the stored values (signed kernels are fine either way).

    Attributes:
        kernel: The ``(kh, kw)`` float64 kernel (CPU), as applied by true convolution.
        transfer_function: ``λ`` on the ``rfft2`` grid, complex128 ``(H, W // 2 + 1)`` (CPU),
            with round-off-level values set to 0.

    Raises:
        ValueError: Invalid kernel parameters or file, or a kernel larger than the image.
    """

    name = "blur"
    params = KERNEL_PARAMS
    check_shape = (1, 20, 27)
    check_cases = (
        ((3, 8, 12), {"sigma": 0.8}),
        ((3, 9, 12), {"kernel": "box", "size": "4"}),
        ((1, 8, 7), {"kernel": "box", "size": "2x6"}),
        ((3, 6, 10), {"kernel": "box", "size": "3"}),
        ((1, 10, 12), {"kernel": "uniform", "size": "1x2"}),
        ((1, 16, 21), {"kernel": "motion", "length": 9.0, "angle": 30.0}),
        ((1, 12, 10), {"kernel": "motion", "length": 6.0, "angle": 90.0}),
        ((2, 15, 14), {"kernel": "disk", "radius": 3.5}),
    )

    def __init__(self, in_shape: Sequence[int] | str, **params: Any) -> None:
        super().__init__(in_shape, **params)
        cfg = self.config
        c, h, w = self.in_shape
        self.kernel: Tensor = kernel_from_params(**cfg, owner=self.name)
        kh, kw = self.kernel.shape
        if kh > h or kw > w:
            raise ValueError(
                f"{self.name}: the {cfg['kernel']} kernel is {kh}x{kw} but the image is {h}x{w} (H x W); "
                "use a smaller kernel (sigma/size/length/radius) or a larger (padded) image"
            )
        self._hw = (h, w)
        self._wr = w // 2 + 1
        self._self_idx, self._pair_idx, self._conj_idx, self._conj_src = rfft2_layout(h, w)

        lam = torch.fft.rfft2(circular_psf(self.kernel, (h, w))).reshape(-1)
        lam = torch.where(lam.abs() <= ZERO_TOL * float(lam.abs().max()), torch.zeros_like(lam), lam)
        lam_self = lam[self._self_idx].real.contiguous()
        lam_pair = lam[self._pair_idx]
        # a clean Hermitian-consistent λ (self-conjugate entries real, conjugates exact)
        clean = torch.zeros_like(lam)
        clean[self._self_idx] = lam_self.to(lam.dtype)
        clean[self._pair_idx] = lam_pair
        clean[self._conj_idx] = lam_pair[self._conj_src].conj()
        self.transfer_function: Tensor = clean.reshape(h, self._wr)

        mag_pair = lam_pair.abs()
        phase = torch.where(mag_pair > 0, lam_pair / torch.where(mag_pair > 0, mag_pair, 1.0), torch.ones_like(lam_pair))
        self._lam_ri = torch.view_as_real(self.transfer_function).contiguous()  # (H, Wr, 2) float64
        self._phase_ri = torch.view_as_real(phase).contiguous()  # (P, 2) float64
        self._sign_self = torch.where(lam_self >= 0, 1.0, -1.0).to(torch.float64)  # sign(0) = +1
        s_chan = torch.cat([lam_self.abs(), mag_pair, mag_pair])
        self._s = s_chan.repeat(c).contiguous()

    # ------------------------------------------------------------------ shapes
    @property
    def out_shape(self) -> tuple[int, int, int]:
        return self.in_shape

    @property
    def singular_values(self) -> Tensor:
        return self._s

    # ------------------------------------------------------------------ direct maps
    def _lam(self, like: Tensor) -> Tensor:
        return torch.view_as_complex(self.const("lam", self._lam_ri, like))

    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        return torch.fft.irfft2(torch.fft.rfft2(x) * self._lam(x), s=self._hw)

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        return torch.fft.irfft2(torch.fft.rfft2(y) * self._lam(y).conj(), s=self._hw)

    # ------------------------------------------------------------------ SVD surface
    def _analyse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Self-conjugate coefficients (real) and √2 X[f] at the pair representatives (complex)."""
        b, c = x.shape[:2]
        spec = torch.fft.rfft2(x, norm="ortho").reshape(b, c, -1)
        self_c = spec[..., self.const("self_idx", self._self_idx, x)].real
        pair_c = spec[..., self.const("pair_idx", self._pair_idx, x)] * _SQRT2
        return self_c, pair_c

    def _synthesise(self, self_c: Tensor, pair_c: Tensor) -> Tensor:
        """Inverse of :meth:`_analyse`: fill a Hermitian-consistent ``rfft2`` grid and invert it."""
        b, c = self_c.shape[:2]
        h, w = self._hw
        pair_c = pair_c / _SQRT2
        grid = pair_c.new_zeros(b, c, h * self._wr)
        grid[..., self.const("self_idx", self._self_idx, self_c)] = self_c.to(grid.dtype)
        grid[..., self.const("pair_idx", self._pair_idx, self_c)] = pair_c
        conj_src = self.const("conj_src", self._conj_src, self_c)
        grid[..., self.const("conj_idx", self._conj_idx, self_c)] = pair_c[..., conj_src].conj()
        return torch.fft.irfft2(grid.reshape(b, c, h, self._wr), s=(h, w), norm="ortho")

    def _flat(self, self_c: Tensor, pair_c: Tensor) -> Tensor:
        return torch.cat([self_c, pair_c.real, pair_c.imag], dim=-1).reshape(self_c.shape[0], -1)

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if z.dim() != 2 or z.shape[1] != self.in_numel:
            raise ValueError(f"{self.label}: spectral vector has shape {tuple(z.shape)}; expected (B, {self.in_numel})")
        c = self.in_shape[0]
        ns, np_ = self._self_idx.numel(), self._pair_idx.numel()
        z = z.reshape(z.shape[0], c, -1)
        self_c, re, im = torch.split(z, [ns, np_, np_], dim=-1)
        return self_c, torch.complex(re.contiguous(), im.contiguous())

    def _phase(self, like: Tensor) -> Tensor:
        return torch.view_as_complex(self.const("phase", self._phase_ri, like))

    def Vt(self, x: Tensor) -> Tensor:
        self.check_image(x)
        return self._flat(*self._analyse(x))

    def V(self, z: Tensor) -> Tensor:
        return self._synthesise(*self._split(z))

    def Ut(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        self_c, pair_c = self._analyse(y)
        sign = self.const("sign", self._sign_self, self_c)
        return self._flat(self_c * sign, pair_c * self._phase(self_c).conj())

    def U(self, z: Tensor) -> Tensor:
        self_c, pair_c = self._split(z)
        sign = self.const("sign", self._sign_self, self_c)
        return self._synthesise(self_c * sign, pair_c * self._phase(self_c))


OPERATORS = (CircularBlur,)
