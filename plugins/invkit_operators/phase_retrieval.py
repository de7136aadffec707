"""Fourier phase retrieval: per-channel magnitudes of the 2-D DFT of the zero-padded image.

The forward model, per channel ``c`` of an image ``x`` of shape ``(C, H, W)``::

    y_c = |F(pad(x_c))|,   F g[k] = (1/√(P P′)) Σ_n g[n] exp(−2πi (k_1 n_1 / P + k_2 n_2 / P′))

* ``pad`` puts the ``H × W`` image in the top-left corner of a ``P × P′`` grid of zeros, with
  ``P = round(oversample · H)`` and ``P′ = round(oversample · W)`` (rounded half up; zeros are
  black, the physical model of a non-negative object of known support). Where the image sits
  does not change ``y``: a circular shift of the grid changes only the phases of ``F``.
* ``F`` is the orthonormal DFT (``norm="ortho"``), so ``‖y_c‖ = ‖x_c‖`` (Parseval) and a white
  noise of std σ on ``y`` is as strong as one of std σ on the pixels: ``y`` is in image units.
  Its layout is numpy's (``numpy.fft.fft2``): the zero frequency at index ``(0, 0)``
  (``numpy.fft.fftshift`` centres it for viewing). Measurement shape ``(C, P, P′)``; ``y >= 0``.

**Oversampling.** The default ``oversample = 2`` gives ``P = 2H >= 2H − 1``, the support of the
autocorrelation of ``x_c``: ``y_c²`` is the DFT of the autocorrelation, so on this grid it
determines the whole (unaliased) autocorrelation, the Nyquist rate of the intensity, and Fourier
phase retrieval of generic images is unique up to the trivial ambiguities below (Hayes 1982;
Miao, Sayre and Chapman 1998). The official DPS code's configuration also says
``oversample: 2.0`` but pads ``oversample/8 · 256 = 64`` pixels on each side of its 256-pixel
images, i.e. ``P = 1.5 H`` (pass ``oversample=1.5`` for that grid): there the autocorrelation is
wrapped (aliased) and information is lost. (It also pads its [−1, 1] data with 0, which is mid-grey
in our [0, 1] units.)

**Ambiguities.** Exactly, ``|F g| = |F g′|`` for every circular shift ``g′ = S_a g`` of the
``P × P′`` grid and for the index reversal ``g′[n] = g[−n mod P]`` of a real ``g`` (``F g′ =
conj(F g)``), and for ``g′ = −g``. Mapped back to images of our shape, per channel:

* **the 180° rotation about the image centre**, ``x′_c[i, j] = x_c[H − 1 − i, W − 1 − j]``:
  ``A(x′) = A(x)`` for every image. The reversal alone moves the support to the mirrored
  window ``[−(H − 1), 0] × [−(W − 1), 0]`` (mod ``P``, ``P′``); the shift by ``(H − 1, W − 1)``
  brings it back onto the image window, and the composite is exactly this rotation.
* **translations within the window**, ``x′_c[i, j] = x_c[i − a, j − b]`` (zeros shifted in), when
  the rows and columns shifted out of the window are zero (an object on a black background
  smaller than the image): a circular shift of the grid that keeps the support inside the window.
  Composed with the rotation too. With ``oversample = 1`` (no padding) every circular shift of
  ``x_c`` is one.
* the sign, ``x′ = −x``, which non-negative images exclude.

Each channel is measured alone, so each has its own member (a colour image can come back with
its channels rotated or shifted differently). For generic 2-D images these are the only
ambiguities (Hayes 1982: images with reducible z-transforms are of measure zero).
:func:`align_to` picks the member of a reconstruction's set closest to a reference, for scoring.

**VJP.** ``J(x)ᵀ v = crop(Re F⁻¹(v · u))`` with the phases ``u = F g / |F g|`` (``g = pad(x)``),
computed directly (no autograd graph), float64 in float64. ``|·|`` is not differentiable where
``F g = 0``: there the guard ``u = F g / max(|F g|, tiny)`` gives ``u = 0``, the smallest
subgradient (``tiny`` the dtype's smallest normal number, so ``u`` is the exact phase wherever
``|F g| >= tiny``), and never a NaN. Autograd through :meth:`PhaseRetrieval.forward` (``torch.abs``
of a complex tensor, whose backward uses ``sgn(0) = 0``) agrees, zeros included.

Example:
    >>> import torch
    >>> from invkit_operators.phase_retrieval import PhaseRetrieval
    >>> op = PhaseRetrieval((1, 2, 2))
    >>> op.out_shape
    (1, 4, 4)
    >>> x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    >>> op.forward(x)[0, 0].tolist()  # a single pixel: flat magnitude 1/√(4·4)
    [[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from invkit.forward import ForwardModel, Shape, as_shape
from invkit.params import Arg

__all__ = ["PhaseRetrieval", "DEFAULT_OVERSAMPLE", "padded_size", "rotate180", "align_to", "OPERATORS"]

#: Padded size per axis over image size (see the module notes for the choice).
DEFAULT_OVERSAMPLE = 2.0


def padded_size(size: int, oversample: float) -> int:
    """``round(oversample · size)``, rounded half up: the padded grid's length along one axis.

    Example:
        >>> padded_size(16, 2.0), padded_size(7, 1.5), padded_size(256, 1.5)
        (32, 11, 384)
    """
    return int(math.floor(oversample * size + 0.5))


def rotate180(x: Tensor) -> Tensor:
    """The 180° rotation about the image centre, ``x′[..., i, j] = x[..., H − 1 − i, W − 1 − j]``.

    ``A(rotate180(x)) = A(x)`` for :class:`PhaseRetrieval` at any oversampling (module notes).
    """
    return torch.flip(x, dims=(-2, -1))


def _pad(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))


def _phase(z: Tensor, zero: float) -> Tensor:
    """``z / |z|`` where ``|z| >= tiny``; ``zero`` (0 or 1) where ``z = 0`` (``z / tiny`` in between: never NaN)."""
    mag = z.abs()
    u = z / mag.clamp_min(torch.finfo(mag.dtype).tiny)
    return u if zero == 0.0 else torch.where(mag > 0, u, torch.ones_like(u))


class PhaseRetrieval(ForwardModel):
    """Fourier phase retrieval: ``y_c = |F(pad(x_c))|`` per channel, orthonormal DFT; out ``(C, P, P′)``.

    ``P = round(oversample · H)``, ``P′ = round(oversample · W)``; the image sits in the top-left
    corner of the zero grid. Nonlinear (no adjoint); its VJP is explicit and guarded at zero
    magnitudes (module notes, with the ambiguities of the measurement). Memory O(C P P′) per
    image; cost per apply one FFT of the padded image, O(C P P′ log(P P′)).

    Args:
        in_shape: Image shape ``(C, H, W)``.
        oversample: Padded size over image size per axis, >= 1 (default 2: the whole
            autocorrelation; the official DPS code's grid is 1.5).
    """

    name = "phase_retrieval"
    #: Magnitudes are >= 0 (but Poisson noise is refused all the same: it clips to [0, 1], see image_like).
    nonnegative = True
    #: The posterior mean averages rotated/shifted copies (the ambiguities): `solve --samples K` writes the best-residual sample.
    mean_is_meaningful = False
    #: Fourier magnitudes are not pixels in [0, 1] (the zero frequency exceeds 1): `degrade` writes them losslessly only, and Poisson noise (clipped to [0, 1]) is refused.
    image_like = False
    check_shape = (1, 8, 12)
    check_cases = (
        ((3, 6, 5), {}),
        ((2, 7, 9), {"oversample": 1.5}),
        ((1, 6, 10), {"oversample": 1.0}),
    )

    def __init__(
        self,
        in_shape: Sequence[int] | str,
        *,
        oversample: Annotated[
            float,
            Arg("padded size per axis over image size, rounded half up (2: the whole autocorrelation; DPS's code: 1.5)", min=1.0, max=8.0),
        ] = DEFAULT_OVERSAMPLE,
    ) -> None:
        super().__init__(in_shape)
        self.oversample = oversample
        _, h, w = self.in_shape
        self.padded_shape: tuple[int, int] = (padded_size(h, oversample), padded_size(w, oversample))

    @classmethod
    def infer_in_shape(cls, out_shape: Sequence[int], params: dict[str, Any]) -> Shape:
        """``(C, P, P′) -> (C, H, W)``: the image size whose padded size is the measurement's.

        Raises:
            ValueError: ``out_shape`` is not ``(C, P, P′)``, or no single image size pads to it.
        """
        if len(out_shape) != 3:
            raise ValueError(f"operator '{cls.name}': a measurement has shape (C, P, P'), got {tuple(out_shape)}")
        o = float(params.get("oversample", DEFAULT_OVERSAMPLE))
        sizes = []
        for p in (int(out_shape[1]), int(out_shape[2])):
            found = [n for n in range(1, p + 1) if padded_size(n, o) == p]
            if len(found) != 1:
                raise ValueError(f"operator '{cls.name}': no single image size pads to {p} at oversample={o:g}; pass --size C,H,W")
            sizes.append(found[0])
        return as_shape((int(out_shape[0]), sizes[0], sizes[1]))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.in_shape[0], *self.padded_shape)

    # ------------------------------------------------------------------ the padded domain
    def pad(self, x: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` -> padded images ``(B, C, P, P′)`` (zeros right and below)."""
        self.check_image(x)
        return _pad(x, self.padded_shape)

    def crop(self, g: Tensor) -> Tensor:
        """Padded images ``(B, C, P, P′)`` -> their image window ``(B, C, H, W)`` (the support)."""
        _, h, w = self.in_shape
        return g[..., :h, :w]

    def support(self, like: Tensor) -> Tensor:
        """Boolean ``(P, P′)`` mask of the image window on ``like``'s device."""
        mask = torch.zeros(self.padded_shape, dtype=torch.bool, device=like.device)
        mask[: self.in_shape[1], : self.in_shape[2]] = True
        return mask

    def spectrum(self, x: Tensor) -> Tensor:
        """``F(pad(x))``: the complex orthonormal DFT ``(B, C, P, P′)`` of the padded images."""
        return torch.fft.fft2(self.pad(x), norm="ortho")

    def project_magnitude(self, g: Tensor, y: Tensor) -> Tensor:
        """The Fourier-magnitude projection of error reduction / HIO: ``Re F⁻¹(max(y, 0) · F g / |F g|)``.

        Keeps the phases of the padded images ``g`` and replaces their magnitudes by the
        measurement's (negative noisy magnitudes taken as 0; where ``F g = 0`` the phase is
        taken as 1). The real part is the nearest real image to the complex projection.

        Args:
            g: Padded images ``(B, C, P, P′)``.
            y: Measurements ``(B, C, P, P′)``.
        """
        self.check_measurement(y)
        z = torch.fft.fft2(g, norm="ortho")
        return torch.fft.ifft2(y.clamp_min(0.0) * _phase(z, 1.0), norm="ortho").real

    def align(self, x: Tensor, truth: Tensor, *, translations: bool = True) -> Tensor:
        """:func:`align_to` on this operator's padded grid: the member of ``x``'s ambiguity set closest to ``truth``."""
        return align_to(x, truth, oversample=self.oversample, translations=translations)

    # ------------------------------------------------------------------ maps
    def forward(self, x: Tensor) -> Tensor:
        return self.spectrum(x).abs()

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """``crop(Re F⁻¹(v · u))``, ``u = F g / max(|F g|, tiny)`` (0 where ``F g = 0``): module notes."""
        self.check_measurement(v)
        u = _phase(self.spectrum(x.detach()), 0.0)
        return self.crop(torch.fft.ifft2(v.to(x.dtype) * u, norm="ortho").real).contiguous()


def align_to(
    x: Tensor, truth: Tensor, *, oversample: float = DEFAULT_OVERSAMPLE, translations: bool = True, window_tolerance: float = 1e-3
) -> Tensor:
    """The member of each channel's phase-retrieval ambiguity set closest to ``truth``, for scoring.

    Per image and channel, over the transformations that leave :class:`PhaseRetrieval`'s ``A``
    unchanged (module notes): the identity and the 180° rotation about the image centre, each
    composed (with ``translations``) with the circular shifts of the ``P × P′`` padded grid that
    keep ``x_c``'s content inside the image window (a shift that moves more than
    ``window_tolerance`` of its energy out of the window is not an ambiguity: for a photo that
    fills the window only the identity and the rotation remain). The choice minimises
    ``‖S_a R^k pad(x_c) − pad(truth_c)‖`` over those candidates, and the chosen one is returned
    cropped to the window: a member of ``x``'s set up to that tolerance. Computed in float64 with
    FFT cross-correlations per candidate family; ties keep the earliest candidate (the identity
    first).

    Args:
        x: Reconstructions ``(B, C, H, W)``.
        truth: References, ``(B, C, H, W)`` or ``(1, C, H, W)`` (broadcast over ``B``).
        oversample: The operator's ``oversample`` (it fixes the padded grid of the shifts).
        translations: Also search the translations; False: only ``x`` and its rotation.
        window_tolerance: Fraction of ``x_c``'s energy a shift may move out of the window and
            still count as an ambiguity (float rounding, a sample's faint noise at the border).

    Returns:
        ``(B, C, H, W)`` in ``x``'s dtype.

    Raises:
        ValueError: Shapes that are not ``(B, C, H, W)`` and a matching reference.

    Example:
        >>> import torch
        >>> x = torch.arange(6.0).reshape(1, 1, 2, 3)
        >>> torch.equal(align_to(rotate180(x), x), x)
        True
    """
    if x.dim() != 4 or truth.dim() != 4 or truth.shape[1:] != x.shape[1:] or truth.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"align_to: x must be (B, C, H, W) and truth (B or 1, C, H, W) of the same image shape; got {tuple(x.shape)} and {tuple(truth.shape)}")
    h, w = x.shape[-2:]
    size = (padded_size(h, oversample), padded_size(w, oversample))
    g = _pad(x.detach().to(torch.float64), size)
    t = _pad(truth.detach().to(torch.float64), size).expand_as(g)
    # R g[n] = g[−n mod P] (the index reversal), then circular cross-correlations with the reference:
    # corr_k[a] = Σ_n (R^k g)[n − a] t[n] = F⁻¹(F t · conj(F R^k g))[a]; F R g = conj(F g) for real g.
    ft, fg = torch.fft.fft2(t), torch.fft.fft2(g)
    corr = torch.stack([torch.fft.ifft2(ft * fg.conj()).real, torch.fft.ifft2(ft * fg).real], dim=2)  # (B, C, 2, P, P')
    # A shift is an ambiguity only if it keeps the content inside the window: the energy of S_a R^k g
    # inside the window, Σ_n win[n] (R^k g)²[n − a], by the same correlation with q = g², must be all of it.
    win = torch.zeros(size, dtype=torch.float64, device=g.device)
    win[:h, :w] = 1.0
    fw, fq = torch.fft.fft2(win), torch.fft.fft2(g * g)
    inside = torch.stack([torch.fft.ifft2(fw * fq.conj()).real, torch.fft.ifft2(fw * fq).real], dim=2)
    total = (g * g).sum(dim=(-2, -1))[:, :, None, None, None]
    corr = torch.where(inside >= (1.0 - window_tolerance) * total, corr, torch.full_like(corr, -math.inf))
    if not translations:  # only a = 0 for x and a = (H − 1, W − 1) for R: the plain rotation
        keep = torch.zeros_like(corr, dtype=torch.bool)
        keep[:, :, 0, 0, 0] = True
        keep[:, :, 1, h - 1, w - 1] = True
        corr = torch.where(keep, corr, torch.full_like(corr, -math.inf))
    best = corr.flatten(2).argmax(dim=2)  # (B, C): index into (k, a_1, a_2)
    out = torch.empty_like(g)
    for b in range(g.shape[0]):
        for c in range(g.shape[1]):
            k, rest = divmod(int(best[b, c]), size[0] * size[1])
            a1, a2 = divmod(rest, size[1])
            gk = torch.roll(torch.flip(g[b, c], (-2, -1)), (1, 1), (-2, -1)) if k else g[b, c]
            out[b, c] = torch.roll(gk, (a1, a2), (-2, -1))
    return out[..., :h, :w].to(x.dtype)


OPERATORS = (PhaseRetrieval,)
