"""Super-resolution degradations: block averaging and anti-aliased bicubic downsampling.

Block averaging acts on disjoint ``r × r`` patches, so its SVD is one small per-patch SVD
(Θ(n) memory and cost, see :class:`SuperResolution`). The bicubic kernel overlaps neighbouring
patches; it is separable (``Y_c = A_h X_c A_wᵀ`` with 1-D downsampling matrices), so its SVD
comes from two 1-D SVDs through :class:`~invkit_operators.separable.SeparableOperator`. The
factor ``r`` must divide both the height and the width; the measurement is the low-resolution
image ``(C, H / r, W / r)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from invkit.forward import IdentityUOperator, Shape, SVDOperator, as_shape
from invkit.params import Param, parse_params

from .separable import SeparableOperator

__all__ = ["SuperResolution", "BicubicSuperResolution", "block_average_matrix_1d", "bicubic_matrix_1d", "keys_cubic", "OPERATORS"]


#: The schema of both super-resolution operators, the downsampling factor: one declaration they
#: share as their ``params`` (their ``__init__`` takes ``**params``, so no default is repeated).
_FACTOR_PARAMS: tuple[Param, ...] = (Param("factor", int, 4, "downsampling factor r; must divide H and W", min=1),)


def block_average_matrix_1d(n: int, factor: int) -> np.ndarray:
    """``(n / factor) × n`` matrix averaging consecutive blocks of ``factor`` samples."""
    return np.kron(np.eye(n // factor), np.full((1, factor), 1.0 / factor))


def keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (``a = -0.5``: the Catmull-Rom cubic of PIL and torch's antialias path)."""
    t = np.abs(np.asarray(t, dtype=np.float64))
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = ((a * t - 5.0 * a) * t + 8.0 * a) * t - 4.0 * a
    return np.where(t <= 1.0, near, np.where(t < 2.0, far, 0.0))


def bicubic_matrix_1d(n: int, factor: int) -> np.ndarray:
    """``(n / factor) × n`` anti-aliased bicubic downsampling matrix (torch/PIL convention).

    Output sample ``i`` sits at ``factor (i + 1/2)`` in input coordinates; input sample ``j``
    (centre ``j + 1/2``) gets weight ``keys((j + 1/2 - factor (i + 1/2)) / factor)`` -- the cubic
    stretched by the factor, support ``4 factor`` taps -- and each row is divided by its sum.
    Near the borders the taps that fall outside the image are dropped and the remaining ones
    renormalised, which is what ``F.interpolate(mode='bicubic', antialias=True)`` and PIL's
    ``BICUBIC`` reduce do.
    """
    centres = factor * (np.arange(n // factor, dtype=np.float64) + 0.5)
    t = (np.arange(n, dtype=np.float64)[None, :] + 0.5 - centres[:, None]) / factor
    w = keys_cubic(t)
    return w / w.sum(axis=1, keepdims=True)


def _upscaled_shape(cls: type[SVDOperator], out_shape: Sequence[int], params: dict[str, Any]) -> Shape:
    """``(C, h, w) -> (C, r h, r w)``: the image shape behind a low-resolution measurement."""
    if len(out_shape) != 3:
        raise ValueError(f"operator '{cls.name}': a measurement must be an image (C, h, w), got shape {tuple(out_shape)}")
    factor = parse_params(cls.params, params, owner=cls.name)["factor"]
    c, h, w = out_shape
    return as_shape((c, h * factor, w * factor))


def _check_divides(owner: str, factor: int, shape: tuple[int, int, int]) -> None:
    """Refuse a size the factor does not divide, suggesting the nearest sizes that work.

    The suggestion pads up to the next multiple of ``factor``; cropping down to the previous
    multiple is offered too when that leaves a non-empty image.
    """
    _, h, w = shape
    if h % factor or w % factor:
        bad = " and ".join(f"{name}={v}" for name, v in (("H", h), ("W", w)) if v % factor)
        lo = (h // factor * factor, w // factor * factor)
        hi = (-(-h // factor) * factor, -(-w // factor) * factor)
        fix = f"pad it to {hi[0]}x{hi[1]}"
        if min(lo) > 0:
            fix = f"crop the image to {lo[0]}x{lo[1]} or {fix}"
        else:
            small = " and ".join(f"{name}={v}" for name, v in (("H", h), ("W", w)) if v < factor)
            fix = f"{small} < {factor}, so cropping cannot help: {fix}"
        raise ValueError(
            f"{owner}: factor {factor} must divide both H={h} and W={w} ({bad} not divisible); "
            f"{fix}, or choose a factor that divides both"
        )


class SuperResolution(IdentityUOperator):
    """Super-resolution by block averaging: each ``factor × factor`` block becomes its mean.

    ``y[c, i, j] = mean(x[c, r i : r (i + 1), r j : r (j + 1)])`` with ``r = factor`` (default 4),
    which must divide both H and W (non-square images are fine); out shape
    ``(C, H / r, W / r)``. The same as ``F.avg_pool2d(x, r)``.

    Per-patch SVD: on one ``r × r`` patch (flattened row-major to ``r²`` values) ``H`` is the
    ``1 × r²`` row ``(1 / r²) 1ᵀ``, whose SVD is ``1 · (1 / r) · qᵀ`` with ``q = 1 / r`` (the
    normalised ones vector). ``V`` per patch is a fixed orthonormal ``r² × r²`` matrix ``Q``
    whose first column is ``q``: the Householder reflection ``Q = I - 2 w wᵀ / (wᵀ w)`` with
    ``w = e₁ - q`` (symmetric, so ``Q = Qᵀ`` and ``V``/``Vᵀ`` apply the same map), applied
    implicitly as ``p - (2 / wᵀw) (p · w) w``. Spectral order: first the ``m = C H W / r²``
    observed coordinates ``q · patch`` (``r`` times the patch mean), in the measurement's
    ``(c, i, j)`` row-major order, each with singular value ``1 / r``; then the other
    ``r² - 1`` coordinates of every patch, ``(c, i, j, t)`` row-major. ``U`` is the identity on
    the measurement (``Uᵀ y`` is ``y`` flattened).

    Memory O(r²) (the vector ``w``; no ``H × H`` factors). Cost per apply O(C H W) for every map:
    ``forward``/``adjoint`` are a reshape-mean and a repeat, ``Vt``/``V`` a reshape, one
    reflection per patch and a concatenation.
    """

    name = "super_resolution"
    params = _FACTOR_PARAMS
    check_shape = (3, 16, 20)
    check_cases = (
        ((1, 12, 18), {"factor": 2}),
        ((3, 9, 15), {"factor": 3}),
        ((1, 16, 24), {"factor": 8}),
        ((2, 6, 10), {"factor": 1}),
    )

    def __init__(self, in_shape: Sequence[int] | str, **params: Any) -> None:
        super().__init__(in_shape, **params)
        self.factor: int = self.config["factor"]
        _check_divides(self.name, self.factor, self.in_shape)
        r2 = self.factor * self.factor
        w = torch.full((r2,), -1.0 / self.factor, dtype=torch.float64)
        w[0] += 1.0
        self._householder: Tensor = w  # w = e1 - q; all zero when r = 1 (then Q = I)
        self._householder_scale = 0.0 if self.factor == 1 else 2.0 / float(w @ w)

    @classmethod
    def infer_in_shape(cls, out_shape: Sequence[int], params: dict[str, Any]) -> Shape:
        """``(C, h, w) -> (C, factor h, factor w)``."""
        return _upscaled_shape(cls, out_shape, params)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        c, h, w = self.in_shape
        return (c, h // self.factor, w // self.factor)

    @property
    def singular_values(self) -> Tensor:
        return torch.full((self.out_numel,), 1.0 / self.factor, dtype=torch.float64)

    def _reflect(self, p: Tensor) -> Tensor:
        """``p Q`` for patches ``p`` of shape ``(..., r²)`` (``Q`` symmetric: also ``p Qᵀ``)."""
        if self.factor == 1:
            return p
        w = self.const("sr_householder", self._householder, p)
        return p - (self._householder_scale * (p @ w)).unsqueeze(-1) * w

    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        b, c, h, w = x.shape
        r = self.factor
        return x.reshape(b, c, h // r, r, w // r, r).mean(dim=(3, 5))

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        b, c, hr, wr = y.shape
        r = self.factor
        up = (y / (r * r))[:, :, :, None, :, None].expand(b, c, hr, r, wr, r)
        return up.reshape(b, c, hr * r, wr * r)

    def Vt(self, x: Tensor) -> Tensor:
        self.check_image(x)
        b, c, h, w = x.shape
        r = self.factor
        patches = x.reshape(b, c, h // r, r, w // r, r).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h // r, w // r, r * r)
        z = self._reflect(patches)
        observed = z[..., 0].reshape(b, -1)
        rest = z[..., 1:].reshape(b, -1)
        return torch.cat([observed, rest], dim=1)

    def V(self, z: Tensor) -> Tensor:
        self.check_spectral(z)
        b = z.shape[0]
        c, h, w = self.in_shape
        r = self.factor
        hr, wr, m = h // r, w // r, self.out_numel
        observed = z[:, :m].reshape(b, c, hr, wr, 1)
        rest = z[:, m:].reshape(b, c, hr, wr, r * r - 1)
        patches = self._reflect(torch.cat([observed, rest], dim=-1))
        return patches.reshape(b, c, hr, wr, r, r).permute(0, 1, 2, 4, 3, 5).reshape(b, c, h, w)



class BicubicSuperResolution(SeparableOperator):
    """Bicubic super-resolution: anti-aliased cubic (Keys, a = -0.5) downsampling by ``factor``.

    The kernel of ``F.interpolate(x, scale_factor=1/r, mode='bicubic', antialias=True,
    align_corners=False)`` and of PIL's ``BICUBIC`` reduce: the cubic stretched by ``r`` (support
    ``4 r`` taps), sampled at stride ``r``, weights normalised per output pixel. Boundary: taps
    outside the image are dropped and the remaining weights renormalised (torch/PIL's
    convention), so the operator equals ``F.interpolate`` everywhere, borders included.
    ``factor`` (default 4; 2, 4, 8 are the usual choices) must divide H and W; out shape
    ``(C, H / r, W / r)``.

    Memory O(H² + W²) for the 1-D factors and SVDs (built lazily, O(H³ + W³)); every map, forward
    included, costs O(C H W (H + W)) per apply. The 1-D SVDs grow as H³ to build, so for
    multi-megapixel photos mind that cost.
    """

    name = "bicubic_super_resolution"
    #: The cubic kernel has negative lobes (A(x) < 0 next to sharp edges): Poisson noise is refused.
    nonnegative = False
    params = _FACTOR_PARAMS
    check_shape = (3, 16, 20)
    check_cases = (
        ((1, 12, 18), {"factor": 2}),
        ((3, 9, 12), {"factor": 3}),
        ((1, 16, 24), {"factor": 8}),
    )

    def __init__(self, in_shape: Sequence[int] | str, **params: Any) -> None:
        super().__init__(in_shape, **params)
        self.factor: int = self.config["factor"]
        _check_divides(self.name, self.factor, self.in_shape)

    @classmethod
    def infer_in_shape(cls, out_shape: Sequence[int], params: dict[str, Any]) -> Shape:
        """``(C, h, w) -> (C, factor h, factor w)``."""
        return _upscaled_shape(cls, out_shape, params)

    def _out_hw(self) -> tuple[int, int]:
        _, h, w = self.in_shape
        return h // self.factor, w // self.factor

    def _build_factors(self) -> tuple[np.ndarray, np.ndarray]:
        _, h, w = self.in_shape
        return bicubic_matrix_1d(h, self.factor), bicubic_matrix_1d(w, self.factor)


OPERATORS = (SuperResolution, BicubicSuperResolution)
