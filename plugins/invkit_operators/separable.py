"""Separable operators ``H = A_h ⊗ A_w`` (applied per channel) and their SVD from two 1-D SVDs.

A separable operator acts on every channel ``X`` (an ``H × W`` image) as ``Y = A_h X A_wᵀ`` with
two float64 1-D matrices ``A_h`` (``m_h × H``) and ``A_w`` (``m_w × W``). In row-major
(``vec``) order that is ``vec(Y) = (A_h ⊗ A_w) vec(X)``, and the SVD follows from the two 1-D
SVDs ``A_h = U_h S_h V_hᵀ`` and ``A_w = U_w S_w V_wᵀ``::

    A_h ⊗ A_w = (U_h ⊗ U_w) (S_h ⊗ S_w) (V_h ⊗ V_w)ᵀ

so the spectral coordinate ``(c, i, j)`` of an image is ``(V_hᵀ X_c V_w)[i, j]``, it is paired
with the measurement coordinate ``(c, i, j)`` of ``U_hᵀ Y_c U_w``, and its singular value is
``s_h[i] * s_w[j]`` -- the product **indexed by the same (i, j) as the singular vectors**. (The
official DDRM code builds that vector with ``repeat`` where ``repeat_interleave`` was meant, which
pairs ``s_h[i] s_w[j]`` with the vectors of ``(j, i)``: its ``H x`` is about 10 % off the blur
it claims to be. The tests of this module compare against ``np.kron`` to catch exactly that.)

Ordering of the flat spectral vectors: the ``C * k_h * k_w`` coordinates
``(c, i < k_h, j < k_w)`` with ``k_h = min(m_h, H)`` and ``k_w = min(m_w, W)`` come first, in
``(c, i, j)`` row-major order, in both the image and the measurement spectral space; the other
coordinates follow in row-major order. When ``m < n`` (e.g. super-resolution) the first
``k = min(m, n)`` coordinates therefore carry every singular value, as the SVD protocol asks.
When ``m_h = H`` and ``m_w = W`` (blurs) no permutation is needed at all.

Cost: memory O(H² + W²) for the 1-D factors and their SVDs (built lazily, on first use, in
O(H³ + W³)); every map (``forward``, ``adjoint``, ``Vt``, ``V``, ``Ut``, ``U``) is two matrix
products per channel, O(C H W (H + W)) per image, plus an O(n) gather when a permutation is
needed.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from invkit.forward import SVDOperator

__all__ = ["SeparableOperator", "SeparableSVD", "separable_svd"]


@dataclass(frozen=True)
class SeparableSVD:
    """The SVD of ``A_h ⊗ A_w`` (per channel), as torch float64 tensors on the CPU.

    Attributes:
        u_h: ``m_h × m_h`` left singular vectors of ``A_h`` (columns).
        v_h: ``H × H`` right singular vectors of ``A_h`` (columns).
        u_w: ``m_w × m_w`` left singular vectors of ``A_w``.
        v_w: ``W × W`` right singular vectors of ``A_w``.
        s_h: the ``k_h = min(m_h, H)`` singular values of ``A_h`` (thresholded if asked).
        s_w: the ``k_w = min(m_w, W)`` singular values of ``A_w`` (thresholded if asked).
        a_h: ``U_h S_h V_hᵀ`` -- the effective (thresholded) 1-D matrix; when no singular
            value is cut, the input matrix itself (shared memory: never modify it).
        a_w: ``U_w S_w V_wᵀ``.
    """

    u_h: Tensor
    v_h: Tensor
    u_w: Tensor
    v_w: Tensor
    s_h: Tensor
    s_w: Tensor
    a_h: Tensor
    a_w: Tensor


def _svd_1d(a: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full SVD of one 1-D factor; singular values below ``threshold`` set to 0.

    The effective matrix returned is ``a`` itself (not a copy) when no singular value was
    zeroed: at 4000 pixels a side a copy is 128 MB.
    """
    u, s, vh = np.linalg.svd(a, full_matrices=True)
    s = s.copy()
    cut = s < threshold
    if not cut.any():
        return u, s, vh.T.copy(), a
    s[cut] = 0.0
    k = s.shape[0]
    a_eff = (u[:, :k] * s) @ vh[:k]
    return u, s, vh.T.copy(), a_eff


def separable_svd(a_h: np.ndarray, a_w: np.ndarray, threshold: float = 0.0) -> SeparableSVD:
    """Factor the two 1-D matrices (float64) and return a :class:`SeparableSVD`.

    Args:
        a_h: ``m_h × H`` matrix acting on the rows (height axis).
        a_w: ``m_w × W`` matrix acting on the columns (width axis).
        threshold: 1-D singular values strictly below this are set to zero (0 = off).
    """
    u_h, s_h, v_h, e_h = _svd_1d(np.asarray(a_h, dtype=np.float64), threshold)
    u_w, s_w, v_w, e_w = _svd_1d(np.asarray(a_w, dtype=np.float64), threshold)
    t = torch.from_numpy
    return SeparableSVD(t(u_h), t(v_h), t(u_w), t(v_w), t(s_h), t(s_w), t(e_h), t(e_w))


def _core_permutation(c: int, rows: int, cols: int, k_rows: int, k_cols: int) -> tuple[Tensor, Tensor] | None:
    """Permutation putting the ``(c, i < k_rows, j < k_cols)`` entries first (None if identity)."""
    if k_rows == rows and k_cols == cols:
        return None
    core = np.zeros((c, rows, cols), dtype=bool)
    core[:, :k_rows, :k_cols] = True
    flat = core.ravel()
    perm = np.concatenate([np.flatnonzero(flat), np.flatnonzero(~flat)])
    return torch.from_numpy(perm), torch.from_numpy(np.argsort(perm))


class SeparableOperator(SVDOperator):
    """Base class: ``Y_c = A_h X_c A_wᵀ`` for every channel ``c``, with an efficient SVD.

    Subclasses implement ``_out_hw`` (``(m_h, m_w)``) and ``_build_factors`` (the two
    float64 numpy matrices), and may override :attr:`svd_threshold` (1-D singular values below it
    are zeroed, and the operator *is* the thresholded matrix). ``forward``/``adjoint`` default to
    the two matrix products with the effective (thresholded) 1-D matrices, which equals the SVD
    form ``U Σ Vᵀ``; subclasses with a faster exact implementation (a kornia convolution, a
    reshape-mean) override them when no threshold is set.

    Memory O(H² + W²) for the 1-D factors and their SVDs, built lazily on first use in
    O(H³ + W³) time; per-apply cost O(C H W (H + W)) for every map. The cubic build and the
    quadratic memory make this the wrong tool for multi-megapixel photos: there the FFT-based
    ``blur`` operator (circular boundary) is the better choice.
    """

    def __init__(self, in_shape: Sequence[int] | str, **params: Any) -> None:
        super().__init__(in_shape, **params)
        self._factors_np: tuple[np.ndarray, np.ndarray] | None = None
        self._svd: SeparableSVD | None = None
        self._perms: dict[str, tuple[Tensor, Tensor] | None] = {}
        self._s: Tensor | None = None

    # ------------------------------------------------------------------ subclass hooks
    @abstractmethod
    def _out_hw(self) -> tuple[int, int]:
        """``(m_h, m_w)``: the number of rows of ``A_h`` and ``A_w``."""

    @abstractmethod
    def _build_factors(self) -> tuple[np.ndarray, np.ndarray]:
        """The 1-D matrices ``(A_h, A_w)`` as float64 numpy arrays, ``m_h × H`` and ``m_w × W``."""

    @property
    def svd_threshold(self) -> float:
        """1-D singular values strictly below this are zeroed (0.0 = exact operator)."""
        return 0.0

    # ------------------------------------------------------------------ shapes
    @property
    def out_shape(self) -> tuple[int, int, int]:
        m_h, m_w = self._out_hw()
        return (self.in_shape[0], m_h, m_w)

    # ------------------------------------------------------------------ lazily built pieces
    @property
    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """The exact (unthresholded) 1-D matrices ``(A_h, A_w)``, float64 numpy arrays."""
        if self._factors_np is None:
            a_h, a_w = self._build_factors()
            a_h = np.ascontiguousarray(a_h, dtype=np.float64)
            a_w = np.ascontiguousarray(a_w, dtype=np.float64)
            _, h, w = self.in_shape
            m_h, m_w = self._out_hw()
            if a_h.shape != (m_h, h) or a_w.shape != (m_w, w):
                raise RuntimeError(
                    f"{self.label}: 1-D factors have shapes {a_h.shape}, {a_w.shape}; expected {(m_h, h)}, {(m_w, w)}"
                )
            self._factors_np = (a_h, a_w)
        return self._factors_np

    @property
    def svd(self) -> SeparableSVD:
        """The two 1-D SVDs (computed on first use, O(H³ + W³))."""
        if self._svd is None:
            a_h, a_w = self.factors
            self._svd = separable_svd(a_h, a_w, self.svd_threshold)
        return self._svd

    def _effective_factors(self) -> tuple[Tensor, Tensor]:
        """``(A_h, A_w)`` as float64 tensors: thresholded when a threshold is set."""
        if self.svd_threshold > 0:
            return self.svd.a_h, self.svd.a_w
        a_h, a_w = self.factors
        return torch.from_numpy(a_h), torch.from_numpy(a_w)

    def _perm(self, which: str) -> tuple[Tensor, Tensor] | None:
        if which not in self._perms:
            c, h, w = self.in_shape
            m_h, m_w = self._out_hw()
            k_h, k_w = min(m_h, h), min(m_w, w)
            rows, cols = (h, w) if which == "in" else (m_h, m_w)
            self._perms[which] = _core_permutation(c, rows, cols, k_h, k_w)
        return self._perms[which]

    # ------------------------------------------------------------------ SVD surface
    @property
    def singular_values(self) -> Tensor:
        if self._s is None:
            svd = self.svd
            c = self.in_shape[0]
            core = torch.outer(svd.s_h, svd.s_w).reshape(-1)  # index i * k_w + j  <->  (i, j)
            core = core.repeat(c)  # channel-major: (c, i, j)
            k = min(self.in_numel, self.out_numel)
            s = torch.zeros(k, dtype=torch.float64)
            s[: core.shape[0]] = core
            self._s = s
        return self._s

    def _to_spectral(self, t: Tensor, side: str) -> Tensor:
        """``Lᵀ t R`` per channel, flattened and put in spectral order: ``Vᵀ x`` (``side="in"``,
        ``L, R = V_h, V_w``) or ``Uᵀ y`` (``side="out"``, ``L, R = U_h, U_w``)."""
        f = "v" if side == "in" else "u"
        left = self.const(f"sep_{f}_h", getattr(self.svd, f"{f}_h"), t)
        right = self.const(f"sep_{f}_w", getattr(self.svd, f"{f}_w"), t)
        z = (left.T @ t @ right).reshape(t.shape[0], -1)
        perm = self._perm(side)
        if perm is not None:
            z = z.index_select(1, self.const(f"sep_perm_{side}", perm[0], z))
        return z

    def _from_spectral(self, z: Tensor, side: str) -> Tensor:
        """Inverse of :meth:`_to_spectral`: ``V z`` (``side="in"``) or ``U z`` (``side="out"``)."""
        f = "v" if side == "in" else "u"
        perm = self._perm(side)
        if perm is not None:
            z = z.index_select(1, self.const(f"sep_iperm_{side}", perm[1], z))
        left = self.const(f"sep_{f}_h", getattr(self.svd, f"{f}_h"), z)
        right = self.const(f"sep_{f}_w", getattr(self.svd, f"{f}_w"), z)
        shape = self.in_shape if side == "in" else self.out_shape
        return left @ z.reshape(z.shape[0], *shape) @ right.T

    def Vt(self, x: Tensor) -> Tensor:
        self.check_image(x)
        return self._to_spectral(x, "in")

    def V(self, z: Tensor) -> Tensor:
        self.check_spectral(z)
        return self._from_spectral(z, "in")

    def Ut(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        return self._to_spectral(y, "out")

    def U(self, z: Tensor) -> Tensor:
        self.check_coordinates(z)
        return self._from_spectral(z, "out")

    # ------------------------------------------------------------------ maps
    def matrix_forward(self, x: Tensor) -> Tensor:
        """``A_h X A_wᵀ`` per channel with the effective (thresholded) 1-D matrices."""
        self.check_image(x)
        a_h, a_w = self._effective_factors()
        a_h = self.const("sep_a_h", a_h, x)
        a_w = self.const("sep_a_w", a_w, x)
        return a_h @ x @ a_w.T

    def matrix_adjoint(self, y: Tensor) -> Tensor:
        """``A_hᵀ Y A_w`` per channel with the effective (thresholded) 1-D matrices."""
        self.check_measurement(y)
        a_h, a_w = self._effective_factors()
        a_h = self.const("sep_a_h", a_h, y)
        a_w = self.const("sep_a_w", a_w, y)
        return a_h.T @ y @ a_w

    def forward(self, x: Tensor) -> Tensor:
        return self.matrix_forward(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return self.matrix_adjoint(y)
