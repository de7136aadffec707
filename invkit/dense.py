"""DenseSVD: the explicit-matrix fallback and oracle.

``DenseSVD(op)`` materialises the ``m × n`` matrix of any operator by applying ``op.forward``
to the standard basis in float64, factors it with :func:`scipy.linalg.svd`, and offers the same
SVD surface as an efficient operator. It serves two purposes:

* a **fallback**: any small operator, even one with only ``forward``/``adjoint``, works with
  SVD-based solvers such as DDRM;
* the **oracle** the efficient SVDs are verified against (:mod:`invkit.checks`).

Cost: memory ``8 (m n + m² + n²)`` bytes and one full SVD (LAPACK ``gesdd``), cubic in the
size (timings in docs/measurements.md). Sizes with ``max(m, n) > max_size`` (default
:data:`DEFAULT_MAX_SIZE` = 4096) are refused with an error naming the size.

Example:
    >>> import torch
    >>> from invkit.dense import DenseSVD, matrix_of
    >>> from invkit_operators.denoising import Denoising
    >>> dense = DenseSVD(Denoising((1, 2, 3)))
    >>> dense.singular_values.tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

from .forward import Operator, Shape, SVDOperator

__all__ = ["DenseSVD", "MatrixOperator", "DenseSizeError", "matrix_of", "adjoint_matrix_of", "apply_to_basis", "DEFAULT_MAX_SIZE"]

#: Largest ``max(m, n)`` the dense fallback accepts unless told otherwise (``max_size``): the
#: memory is ``8 (m n + m² + n²)`` bytes and the SVD of n = 3072 takes about 12 s.
DEFAULT_MAX_SIZE = 4096


class DenseSizeError(ValueError):
    """The operator is too large to materialise as a dense matrix."""


def _check_size(op: Operator, max_size: int) -> None:
    m, n = op.out_numel, op.in_numel
    if max(m, n) > max_size:
        raise DenseSizeError(
            f"{op.label}: dense matrix would be {m} x {n} (limit {max_size} per side); "
            f"use the operator's efficient SVD or a smaller image (in Python: DenseSVD(op, max_size=...))"
        )


@torch.no_grad()
def apply_to_basis(fn: Callable[[Tensor], Tensor], shape: Sequence[int], count: int, chunk: int = 256) -> np.ndarray:
    """The float64 matrix of a batched linear map, column j = ``fn(e_j)`` flattened.

    ``fn`` is applied (without autograd) to the ``count`` standard basis vectors of
    ``R^count`` reshaped to ``(k, *shape)``, ``chunk`` of them per call; this is how
    :func:`matrix_of`, :func:`adjoint_matrix_of` and the SVD checks of :mod:`invkit.checks`
    build their dense matrices.

    Args:
        fn: A batched map ``(k, *shape) -> (k, ...)`` (e.g. ``op.forward`` or ``op.V``).
        shape: The shape of one input, with ``prod(shape) == count``.
        count: The input dimension (number of columns).
        chunk: Basis vectors per call of ``fn`` (memory ``8 * chunk * count`` bytes per call).

    Returns:
        A ``(rows, count)`` float64 numpy array, ``rows`` the size of one flattened output.

    Example:
        >>> apply_to_basis(lambda x: x.cumsum(1), (2,), 2).tolist()  # running sums: lower triangle
        [[1.0, 0.0], [1.0, 1.0]]
    """
    cols = []
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        basis = torch.zeros(stop - start, count, dtype=torch.float64)
        basis[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
        out = fn(basis.reshape(stop - start, *shape))
        cols.append(out.reshape(stop - start, -1).to(torch.float64).cpu().numpy())
    return np.concatenate(cols, axis=0).T.copy()


def matrix_of(op: Operator, max_size: int = DEFAULT_MAX_SIZE) -> np.ndarray:
    """The ``m × n`` float64 matrix of ``op.forward`` (column j = ``forward(e_j)``)."""
    _check_size(op, max_size)
    return apply_to_basis(op.forward, op.in_shape, op.in_numel)


def adjoint_matrix_of(op: Operator, max_size: int = DEFAULT_MAX_SIZE) -> np.ndarray:
    """The ``n × m`` float64 matrix of ``op.adjoint`` (column j = ``adjoint(e_j)``)."""
    _check_size(op, max_size)
    return apply_to_basis(op.adjoint, op.out_shape, op.out_numel)


class DenseSVD(SVDOperator):
    """Explicit SVD of any operator (small sizes only).

    Args:
        op: The operator to factor (only its ``forward`` is used).
        max_size: Refuse when ``max(m, n)`` exceeds this.

    Attributes:
        matrix: The float64 ``m × n`` matrix ``A`` as a numpy array.
        u, s, vh: The factors from ``scipy.linalg.svd(A)`` (``A = u[:, :k] diag(s) vh[:k]``).
    """

    name = "dense"

    def __init__(self, op: Operator, max_size: int = DEFAULT_MAX_SIZE) -> None:
        super().__init__(op.in_shape)
        self.source = op
        self._out_shape = tuple(op.out_shape)
        self.matrix = matrix_of(op, max_size)
        u, s, vh = scipy.linalg.svd(self.matrix, full_matrices=True, lapack_driver="gesdd")
        self.u, self.s, self.vh = u, s, vh
        self._U = torch.from_numpy(u)
        self._Vh = torch.from_numpy(vh)
        self._s = torch.from_numpy(s.copy())

    @property
    def label(self) -> str:
        return f"DenseSVD of {self.source.label}"

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self._out_shape

    @property
    def singular_values(self) -> Tensor:
        return self._s

    def Vt(self, x: Tensor) -> Tensor:
        vh = self.const("vh", self._Vh, x)
        return x.reshape(x.shape[0], -1) @ vh.T

    def V(self, z: Tensor) -> Tensor:
        vh = self.const("vh", self._Vh, z)
        return (z @ vh).reshape(z.shape[0], *self.in_shape)

    def Ut(self, y: Tensor) -> Tensor:
        u = self.const("u", self._U, y)
        return y.reshape(y.shape[0], -1) @ u

    def U(self, z: Tensor) -> Tensor:
        u = self.const("u", self._U, z)
        return (z @ u.T).reshape(z.shape[0], *self.out_shape)

    def forward(self, x: Tensor) -> Tensor:
        a = self.const("a", torch.from_numpy(self.matrix), x)
        return (x.reshape(x.shape[0], -1) @ a.T).reshape(x.shape[0], *self.out_shape)

    def adjoint(self, y: Tensor) -> Tensor:
        a = self.const("a", torch.from_numpy(self.matrix), y)
        return (y.reshape(y.shape[0], -1) @ a).reshape(y.shape[0], *self.in_shape)


class MatrixOperator(Operator):
    """``y = A x`` for an explicit ``m × n`` matrix (images ``(C, H, W)`` -> vectors ``(m,)``).

    For small custom degradations known only as a matrix, and for tests. It has no SVD of its
    own: SVD-based solvers use :class:`DenseSVD` through :meth:`invkit.Problem.require_svd`.

    Args:
        in_shape: Image shape ``(C, H, W)`` with ``C H W = n``.
        matrix: The ``m × n`` matrix (numpy array or tensor); kept in float64.

    Example:
        >>> import numpy as np, torch
        >>> op = MatrixOperator((1, 1, 2), np.array([[1.0, 1.0]]))
        >>> op.forward(torch.tensor([[[[2.0, 3.0]]]])).tolist()
        [[5.0]]
    """

    name = "matrix"
    #: Not a registered plugin: the matrix is a Python object, not a ``--arg`` (no parameter schema).
    params = ()

    def __init__(self, in_shape: Shape | str, matrix: np.ndarray | Tensor) -> None:
        super().__init__(in_shape)
        a = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
        if a.dim() != 2 or a.shape[1] != self.in_numel:
            raise ValueError(f"matrix has shape {tuple(a.shape)}; expected (m, {self.in_numel}) for images {self.in_shape}")
        self.a = a

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.a.shape[0],)

    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        return x.reshape(x.shape[0], -1) @ self.const("a", self.a, x).T

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        return (y @ self.const("a", self.a, y)).reshape(y.shape[0], *self.in_shape)
