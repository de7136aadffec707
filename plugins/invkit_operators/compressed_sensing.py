"""Compressed sensing: a seeded random subset of orthonormal Walsh–Hadamard coefficients.

Each channel's ``N = H W`` pixels, flattened row-major, go through the orthonormal
Walsh–Hadamard transform in natural (Sylvester) order, ``W_N = hadamard(N) / sqrt(N)`` with
``hadamard`` as in :func:`scipy.linalg.hadamard`; for power-of-two ``H`` and ``W`` this equals
the separable 2-D transform ``W_H X W_Wᵀ`` (``hadamard(H W) = hadamard(H) ⊗ hadamard(W)``).
``m = N // ratio`` rows are kept: the first ``m`` entries of ``torch.randperm(N)`` drawn with a
:class:`torch.Generator` seeded with ``seed``, sorted ascending (:attr:`CompressedSensing.rows`).
The same rows are used in every channel (one single-pixel-camera pattern set per colour).

Example:
    >>> import torch
    >>> from invkit_operators.compressed_sensing import fwht
    >>> fwht(torch.tensor([[1.0, 0.0, 0.0, 0.0]])).tolist()
    [[0.5, 0.5, 0.5, 0.5]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor

from invkit.forward import IdentityUOperator
from invkit.params import Arg

__all__ = ["CompressedSensing", "fwht", "OPERATORS"]


def fwht(x: Tensor) -> Tensor:
    """Orthonormal fast Walsh–Hadamard transform along the last dimension (natural order).

    Computes ``x @ hadamard(N) / sqrt(N)`` for every leading index in ``O(N log N)``; the
    transform is symmetric and orthonormal, hence its own inverse. Differentiable, any device,
    any floating dtype.

    Args:
        x: ``(..., N)`` with ``N`` a power of two.

    Returns:
        Tensor of the same shape and dtype.
    """
    n = x.shape[-1]
    if n < 1 or n & (n - 1):
        raise ValueError(f"fwht: last dimension {n} is not a power of two")
    lead = x.shape[:-1]
    out = x.reshape(-1, n)
    h = 1
    while h < n:
        # Index bits above h: groups of 2h; the bit h selects the pair partner.
        pairs = out.reshape(-1, n // (2 * h), 2, h)
        a, b = pairs[:, :, 0, :], pairs[:, :, 1, :]
        out = torch.stack((a + b, a - b), dim=2).reshape(-1, n)
        h *= 2
    return (out * (1.0 / n**0.5)).reshape(*lead, n)


class CompressedSensing(IdentityUOperator):
    """Compressed sensing: m = H W // ratio seeded random Walsh–Hadamard rows per channel; y = (C m,).

    ``y[c m + i] = (W_N x_c)[rows[i]]`` where ``x_c`` is channel ``c`` flattened row-major and
    ``W_N = hadamard(N) / sqrt(N)``, ``N = H W`` (see the module docstring). The measurement is
    the compact vector ``(C m,)``, channel-major. ``H`` and ``W`` must be powers of two.

    SVD: the kept rows of an orthonormal matrix are orthonormal, so every singular value is 1
    (``C m`` of them), ``U = I``, and ``Vᵀ`` is the full transform with the kept coefficients
    first (channel-major, ``rows`` order) followed by the unobserved ones (channel-major,
    ascending row index).

    Memory: three int64 index vectors of length ``N`` (rows, permutation, inverse); no matrix.
    Cost per apply: one fast Walsh–Hadamard transform per channel, ``O(C N log N)``, batched.

    Args:
        in_shape: Image shape ``(C, H, W)``, ``H`` and ``W`` powers of two.
        ratio: Undersampling factor: ``m = (H W) // ratio`` coefficients per channel.
        seed: Seed of the row draw (``torch.Generator``).

    Attributes:
        rows: ``(m,)`` int64, the kept Walsh–Hadamard rows (ascending).

    Raises:
        ValueError: ``H`` or ``W`` not a power of two; ``ratio > H W`` (no measurement left).
    """

    name = "compressed_sensing"
    #: A Gaussian random matrix: A(x) takes both signs, so Poisson noise is refused.
    nonnegative = False
    check_shape = (3, 8, 16)
    check_cases = (
        ((1, 16, 32), {"ratio": 2}),
        ((3, 16, 16), {"ratio": 8, "seed": 5}),
        ((1, 32, 8), {"ratio": 1}),
        ((3, 4, 2), {"ratio": 8}),
    )

    def __init__(
        self,
        in_shape: Sequence[int] | str,
        *,
        ratio: Annotated[int, Arg("undersampling factor: keep (H*W) // ratio Walsh-Hadamard coefficients per channel", min=1)] = 4,
        seed: Annotated[int, Arg("seed of the random row subset (torch.Generator)", min=0)] = 0,
    ) -> None:
        super().__init__(in_shape)
        c, h, w = self.in_shape
        bad = [f"{k}={v}" for k, v in (("H", h), ("W", w)) if v & (v - 1)]
        if bad:
            raise ValueError(
                f"{self.name}: H*W = {h}*{w} = {h * w} is not a power of two ({', '.join(bad)}); "
                f"pad or crop the image to power-of-two H and W (e.g. {_pow2_below(h)}x{_pow2_below(w)} or {_pow2_above(h)}x{_pow2_above(w)})"
            )
        npix = h * w
        m = npix // ratio
        if m < 1:
            raise ValueError(f"{self.name}: ratio {ratio} leaves no measurement for H*W = {npix} pixels; use ratio <= {npix}")
        gen = torch.Generator().manual_seed(seed)
        draw = torch.randperm(npix, generator=gen)
        self.rows: Tensor = torch.sort(draw[:m]).values
        rest = torch.sort(draw[m:]).values
        self._npix, self._m = npix, m
        self._perm = torch.cat([self.rows, rest])
        self._inv = torch.empty_like(self._perm)
        self._inv[self._perm] = torch.arange(npix)

    @property
    def out_shape(self) -> tuple[int]:
        return (self.in_shape[0] * self._m,)

    @property
    def singular_values(self) -> Tensor:
        return torch.ones(self.out_numel, dtype=torch.float64)

    def _transform(self, x: Tensor) -> Tensor:
        return fwht(x.reshape(x.shape[0], self.in_shape[0], self._npix))

    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        rows = self.const("rows", self.rows, x)
        return self._transform(x).index_select(2, rows).reshape(x.shape[0], -1)

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        rows = self.const("rows", self.rows, y)
        c = self.in_shape[0]
        full = y.new_zeros(y.shape[0], c, self._npix).index_copy(2, rows, y.reshape(y.shape[0], c, self._m))
        return fwht(full).reshape(y.shape[0], *self.in_shape)

    def Vt(self, x: Tensor) -> Tensor:
        self.check_image(x)
        perm = self.const("perm", self._perm, x)
        coef = self._transform(x).index_select(2, perm)
        b, m = x.shape[0], self._m
        return torch.cat((coef[:, :, :m].reshape(b, -1), coef[:, :, m:].reshape(b, -1)), dim=1)

    def V(self, z: Tensor) -> Tensor:
        self.check_spectral(z)
        inv = self.const("inv", self._inv, z)
        b, c, m = z.shape[0], self.in_shape[0], self._m
        kept = z[:, : c * m].reshape(b, c, m)
        other = z[:, c * m :].reshape(b, c, self._npix - m)
        coef = torch.cat((kept, other), dim=2).index_select(2, inv)
        return fwht(coef).reshape(b, *self.in_shape)


def _pow2_below(v: int) -> int:
    return 1 << (v.bit_length() - 1)


def _pow2_above(v: int) -> int:
    return 1 << (v - 1).bit_length()


OPERATORS = (CompressedSensing,)
