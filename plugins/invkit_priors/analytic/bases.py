"""Orthogonal bases of image space, for priors that are diagonal in some basis.

A *basis* is any object with the same two maps as an :class:`invkit.SVDOperator`'s right
singular vectors:

* ``Vt(x)``: images ``(B, C, H, W)`` -> coefficients ``(B, n)``, i.e. ``Qᵀ x`` per image;
* ``V(z)``: coefficients ``(B, n)`` -> images ``(B, C, H, W)``, i.e. ``Q z``;

with ``Q`` an orthogonal ``n × n`` matrix (``n = C H W``; images flattened in C order over
``(C, H, W)``, as :func:`invkit.dense.matrix_of` does) and a shape attribute, ``shape`` here
or ``in_shape`` on an operator (see :func:`basis_shape`). Any ``SVDOperator`` therefore also
serves as a basis: its ``V`` is orthogonal by contract.

Bases are device- and dtype-agnostic: their constants are built once in float64 on the CPU
and cast to the input's device and dtype on first use, then cached.

Example:
    >>> import torch
    >>> from invkit_priors.analytic.bases import DCTBasis
    >>> basis = DCTBasis((1, 4, 4))
    >>> x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    >>> z = basis.Vt(x)
    >>> z.shape
    torch.Size([2, 16])
    >>> bool(torch.allclose(basis.V(z), x))
    True
    >>> abs(float(z[0, 0] - x[0].mean() * 4)) < 1e-12  # coefficient 0 = sum / sqrt(H W)
    True
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from invkit.forward import Shape, as_shape

__all__ = [
    "Basis",
    "OrthogonalBasis",
    "IdentityBasis",
    "DCTBasis",
    "MatrixBasis",
    "dct_matrix",
    "basis_shape",
    "basis_matrix",
]


@runtime_checkable
class Basis(Protocol):
    """Structural type of a basis: ``Vt`` and ``V`` (an :class:`invkit.SVDOperator` qualifies)."""

    def Vt(self, x: Tensor) -> Tensor:  # pragma: no cover - protocol
        """``Qᵀ x``: ``(B, C, H, W)`` -> ``(B, n)``."""

    def V(self, z: Tensor) -> Tensor:  # pragma: no cover - protocol
        """``Q z``: ``(B, n)`` -> ``(B, C, H, W)``."""


def basis_shape(basis: Any) -> Shape:
    """The image shape ``(C, H, W)`` a basis acts on: its ``shape``, or an operator's ``in_shape``.

    Raises:
        TypeError: The object has neither attribute, or no ``Vt``/``V``.
    """
    if not (callable(getattr(basis, "Vt", None)) and callable(getattr(basis, "V", None))):
        raise TypeError(f"a basis needs methods Vt(x) and V(z); got {type(basis).__name__}")
    shape = getattr(basis, "shape", None)
    if shape is None:
        shape = getattr(basis, "in_shape", None)
    if shape is None:
        raise TypeError(f"basis {type(basis).__name__} has no 'shape' (or operator 'in_shape') attribute")
    return as_shape(shape)


@torch.no_grad()
def basis_matrix(basis: Any) -> Tensor:
    """The explicit float64 CPU ``n × n`` matrix ``Q`` of a basis (column j = ``V(e_j)``).

    Costs one ``V`` on an ``n × n`` identity batch; meant for small ``n``.
    """
    shape = basis_shape(basis)
    n = math.prod(shape)
    eye = torch.eye(n, dtype=torch.float64)
    return basis.V(eye).reshape(n, n).to(device="cpu", dtype=torch.float64).T.contiguous()


def dct_matrix(size: int) -> Tensor:
    """Orthonormal DCT-II matrix ``D`` (``size × size``, float64): ``(D x)_k = c_k Σ_i x_i cos(π (2i+1) k / 2N)``.

    ``c_0 = sqrt(1/N)``, ``c_k = sqrt(2/N)``; equals ``scipy.fft.dct(eye, norm="ortho", axis=0)``.
    """
    if size < 1:
        raise ValueError(f"dct_matrix: size must be positive, got {size}")
    k = np.arange(size)[:, None]
    i = np.arange(size)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * size)) * np.sqrt(2.0 / size)
    d[0, :] = np.sqrt(1.0 / size)
    return torch.from_numpy(d)


class OrthogonalBasis(ABC):
    """Base class of the bases here: shape checks and a per-(device, dtype) constant cache.

    Args:
        shape: Image shape ``(C, H, W)`` (or ``"C,H,W"``).

    Attributes:
        shape: The validated image shape.
        n: ``C H W``.
    """

    def __init__(self, shape: Sequence[int] | str) -> None:
        self.shape: Shape = as_shape(shape)
        self.n: int = math.prod(self.shape)
        self._cache: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    def const(self, key: str, value: Tensor, like: Tensor) -> Tensor:
        """``value`` on ``like``'s device and dtype, cached under ``key``."""
        slot = (key, like.device, like.dtype)
        hit = self._cache.get(slot)
        if hit is None:
            hit = value.to(device=like.device, dtype=like.dtype)
            self._cache[slot] = hit
        return hit

    def _check_image(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{type(self).__name__}: image has shape {tuple(x.shape)}; expected (B, {', '.join(map(str, self.shape))})")

    def _check_coeffs(self, z: Tensor) -> None:
        if z.dim() != 2 or z.shape[1] != self.n:
            raise ValueError(f"{type(self).__name__}: coefficients have shape {tuple(z.shape)}; expected (B, {self.n})")

    @abstractmethod
    def Vt(self, x: Tensor) -> Tensor:
        """``Qᵀ x``: images ``(B, C, H, W)`` -> coefficients ``(B, n)``."""

    @abstractmethod
    def V(self, z: Tensor) -> Tensor:
        """``Q z``: coefficients ``(B, n)`` -> images ``(B, C, H, W)``."""

    def matrix(self) -> Tensor:
        """The explicit float64 ``n × n`` matrix ``Q`` (small ``n`` only)."""
        return basis_matrix(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.shape})"


class IdentityBasis(OrthogonalBasis):
    """The pixel basis ``Q = I``: ``Vt`` and ``V`` only reshape.

    Example:
        >>> import torch
        >>> IdentityBasis((1, 1, 2)).Vt(torch.tensor([[[[1.0, 2.0]]]])).tolist()
        [[1.0, 2.0]]
    """

    def Vt(self, x: Tensor) -> Tensor:
        self._check_image(x)
        return x.reshape(x.shape[0], self.n)

    def V(self, z: Tensor) -> Tensor:
        self._check_coeffs(z)
        return z.reshape(z.shape[0], *self.shape)

    def matrix(self) -> Tensor:
        return torch.eye(self.n, dtype=torch.float64)


class DCTBasis(OrthogonalBasis):
    """Separable orthonormal 2-D DCT-II per channel (channels are not mixed).

    ``Vt(x)[b, (c, k, l)] = (D_H x[b, c] D_Wᵀ)[k, l]`` with :func:`dct_matrix` ``D``, flattened
    in C order over ``(C, H, W)``: coefficient ``(c, k, l)`` has vertical frequency index ``k``
    and horizontal ``l`` (0 = DC). This is ``scipy.fft.dctn(x, norm="ortho", axes=(-2, -1))``.
    Applied with two matmuls per image (``O(n (H + W))``), differentiable, any device and
    floating dtype.

    Args:
        shape: Image shape ``(C, H, W)``.
    """

    def __init__(self, shape: Sequence[int] | str) -> None:
        super().__init__(shape)
        _, h, w = self.shape
        self._dh = dct_matrix(h)
        self._dw = dct_matrix(w)

    def Vt(self, x: Tensor) -> Tensor:
        self._check_image(x)
        dh = self.const("dh", self._dh, x)
        dw = self.const("dw", self._dw, x)
        return (dh @ x @ dw.T).reshape(x.shape[0], self.n)

    def V(self, z: Tensor) -> Tensor:
        self._check_coeffs(z)
        dh = self.const("dh", self._dh, z)
        dw = self.const("dw", self._dw, z)
        return dh.T @ z.reshape(z.shape[0], *self.shape) @ dw

    def frequencies(self) -> tuple[Tensor, Tensor]:
        """Frequencies of the coefficients in cycles per pixel, each ``(n,)`` float64.

        DCT index ``k`` of an axis of length ``N`` has ``k / (2 N)`` cycles per pixel
        (0 to just under 0.5).
        """
        c, h, w = self.shape
        fh = (torch.arange(h, dtype=torch.float64) / (2 * h))[:, None].expand(h, w)
        fw = (torch.arange(w, dtype=torch.float64) / (2 * w))[None, :].expand(h, w)
        return fh.expand(c, h, w).reshape(-1).clone(), fw.expand(c, h, w).reshape(-1).clone()


class MatrixBasis(OrthogonalBasis):
    """The columns of an explicit orthogonal ``n × n`` matrix ``Q`` (small ``n``).

    ``Vt(x) = x_flat @ Q`` (that is ``Qᵀ x`` per image), ``V(z) = z @ Qᵀ``.

    Args:
        Q: Orthogonal matrix, torch tensor or numpy array; stored as float64.
        shape: Image shape ``(C, H, W)`` with ``C H W = n``.
        atol: Largest accepted entry of ``|Qᵀ Q - I|``.

    Raises:
        ValueError: ``Q`` is not square of side ``n`` or not orthogonal to ``atol``.

    Example:
        >>> import torch
        >>> q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
        >>> basis = MatrixBasis(q, (1, 2, 3))
        >>> x = torch.rand(1, 1, 2, 3, dtype=torch.float64)
        >>> bool(torch.allclose(basis.V(basis.Vt(x)), x))
        True
    """

    def __init__(self, Q: Tensor | np.ndarray, shape: Sequence[int] | str, atol: float = 1e-6) -> None:
        super().__init__(shape)
        q = torch.as_tensor(np.asarray(Q) if not isinstance(Q, Tensor) else Q).detach().to(device="cpu", dtype=torch.float64)
        if q.shape != (self.n, self.n):
            raise ValueError(f"MatrixBasis: Q has shape {tuple(q.shape)}; expected ({self.n}, {self.n}) for images {self.shape}")
        err = float((q.T @ q - torch.eye(self.n, dtype=torch.float64)).abs().max()) if self.n else 0.0
        if not err <= atol:
            raise ValueError(f"MatrixBasis: Q is not orthogonal (max |QᵀQ - I| = {err:.3g} > atol = {atol:g}); orthonormalise it, e.g. with torch.linalg.qr")
        self.Q: Tensor = q

    def Vt(self, x: Tensor) -> Tensor:
        self._check_image(x)
        return x.reshape(x.shape[0], self.n) @ self.const("q", self.Q, x)

    def V(self, z: Tensor) -> Tensor:
        self._check_coeffs(z)
        return (z @ self.const("q", self.Q, z).T).reshape(z.shape[0], *self.shape)

    def matrix(self) -> Tensor:
        return self.Q.clone()
