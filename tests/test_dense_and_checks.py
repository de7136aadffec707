"""DenseSVD on random matrices against numpy, and the checks on deliberately broken operators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from invkit import DenseSizeError, DenseSVD, Operator, SVDOperator, check_adjoint, check_svd, run_checks
from invkit.dense import adjoint_matrix_of, matrix_of


class MatrixOp(Operator):
    """y = A x for an explicit matrix A (image (C, H, W) -> vector (m,))."""

    name = "matrix"

    def __init__(self, in_shape, a: np.ndarray, at: np.ndarray | None = None):
        super().__init__(in_shape)
        self.a = torch.from_numpy(a)
        self.at = torch.from_numpy(a.T.copy() if at is None else at)

    @property
    def out_shape(self):
        return (self.a.shape[0],)

    def forward(self, x):
        a = self.const("a", self.a, x)
        return x.reshape(x.shape[0], -1) @ a.T

    def adjoint(self, y):
        at = self.const("at", self.at, y)
        return (y @ at.T).reshape(y.shape[0], *self.in_shape)


@pytest.mark.parametrize("m,shape", [(5, (1, 3, 4)), (12, (1, 3, 4)), (30, (2, 3, 4))])
def test_dense_svd_matches_numpy(m, shape):
    rng = np.random.default_rng(m)
    n = int(np.prod(shape))
    a = rng.standard_normal((m, n))
    dense = DenseSVD(MatrixOp(shape, a))
    np.testing.assert_allclose(dense.matrix, a, atol=1e-14)
    np.testing.assert_allclose(dense.singular_values.numpy(), np.linalg.svd(a, compute_uv=False), rtol=1e-12)
    x = torch.from_numpy(rng.standard_normal((3, *shape)))
    y = torch.from_numpy(rng.standard_normal((3, m)))
    np.testing.assert_allclose(dense.svd_forward(x).numpy(), x.reshape(3, -1).numpy() @ a.T, atol=1e-12)
    np.testing.assert_allclose(dense.svd_adjoint(y).reshape(3, -1).numpy(), y.numpy() @ a, atol=1e-12)
    np.testing.assert_allclose(dense.pinv(y).reshape(3, -1).numpy(), y.numpy() @ np.linalg.pinv(a).T, atol=1e-10)
    results = check_svd(dense, dense)
    assert all(r.passed for r in results), [(r.name, r.error) for r in results]


def test_dense_pinv_guards_zero_singular_values():
    a = np.zeros((4, 6))
    a[0, 0], a[1, 1] = 2.0, 1e-30  # rank 1 numerically
    dense = DenseSVD(MatrixOp((1, 2, 3), a))
    out = dense.pinv(torch.ones(2, 4, dtype=torch.float64))
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out[0].flatten().numpy(), [0.5, 0, 0, 0, 0, 0], atol=1e-12)


def test_dense_refuses_large_operators():
    op = MatrixOp((1, 64, 65), np.zeros((1, 1)))  # matrix never built
    with pytest.raises(DenseSizeError, match=r"1 x 4160 \(limit 4096 per side\)"):
        DenseSVD(op)


def test_matrix_helpers():
    a = np.arange(12.0).reshape(3, 4)
    op = MatrixOp((1, 2, 2), a)
    np.testing.assert_array_equal(matrix_of(op), a)
    np.testing.assert_array_equal(adjoint_matrix_of(op), a.T)


def test_adjoint_check_catches_wrong_adjoint():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 8))
    good = check_adjoint(MatrixOp((2, 2, 2), a))
    bad = check_adjoint(MatrixOp((2, 2, 2), a, at=a.T + 1e-3 * rng.standard_normal((8, 6))))
    assert good.passed and good.error < 1e-14
    assert not bad.passed and bad.error > 1e-5


class Permute(SVDOperator):
    """Identity operator with a pluggable (possibly broken) V."""

    name = "permute"
    check_shape = (1, 2, 3)

    def __init__(self, in_shape, v: np.ndarray, s: np.ndarray | None = None, vt: np.ndarray | None = None):
        super().__init__(in_shape)
        self.v = torch.from_numpy(v)
        self.vt_mat = torch.from_numpy(v.T.copy() if vt is None else vt)
        self.s = torch.from_numpy(np.ones(self.in_numel) if s is None else s)

    @property
    def out_shape(self):
        return self.in_shape

    @property
    def singular_values(self):
        return self.s

    def forward(self, x):
        return x.clone()

    def adjoint(self, y):
        return y.clone()

    def Vt(self, x):
        return x.reshape(x.shape[0], -1) @ self.const("vt", self.vt_mat, x).T

    def V(self, z):
        return (z @ self.const("v", self.v, z).T).reshape(z.shape[0], *self.in_shape)

    def Ut(self, y):
        return self.Vt(y)

    def U(self, z):
        return self.V(z)


def _failed(op):
    return {r.name for r in run_checks(op).results if not r.passed}


def test_svd_checks_pass_for_a_correct_orthogonal_basis():
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((6, 6)))
    assert _failed(Permute((1, 2, 3), q)) == set()


def test_svd_checks_catch_non_orthogonal_v():
    v = np.eye(6)
    v[0, 1] = 0.3  # not orthogonal
    failed = _failed(Permute((1, 2, 3), v))
    assert "V^T V = I" in failed and "U^T U = I" in failed


def test_svd_checks_catch_vt_not_transpose():
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((6, 6)))
    failed = _failed(Permute((1, 2, 3), q, vt=q.copy()))  # Vt = V instead of V^T
    assert "Vt = V^T" in failed


def test_svd_checks_catch_wrong_singular_values():
    s = np.ones(6)
    s[2] = 0.5
    failed = _failed(Permute((1, 2, 3), np.eye(6), s=s))
    assert {"singular values = dense", "U S V^T = A (dense forward)", "forward = U S V^T x"} <= failed


def test_svd_checks_catch_mispaired_singular_values():
    """Right values, wrong vectors: sorted singular values agree, U S V^T does not."""

    class Diag(Permute):
        def forward(self, x):
            return x * torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], dtype=x.dtype).reshape(1, 1, 2, 3)

        adjoint = forward

    op = Diag((1, 2, 3), np.eye(6), s=np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0]))
    report = run_checks(op)
    by = {r.name: r for r in report.results}
    assert by["singular values = dense"].passed
    assert not by["U S V^T = A (dense forward)"].passed
    assert not report.passed
    assert "FAIL" in report.table()


def test_shape_check_catches_broadcasting_forward():
    """A forward that returns (B, 1, H, W) while declaring (3, H, W) must fail, not broadcast."""

    class Squash(Operator):
        name = "squash"

        def __init__(self, in_shape):
            super().__init__(in_shape)

        @property
        def out_shape(self):
            return self.in_shape

        def forward(self, x):
            return x.sum(1, keepdim=True)

        def adjoint(self, y):
            return y.sum(1, keepdim=True).expand(-1, 3, -1, -1)

    report = run_checks(Squash((3, 4, 5)))
    assert not report.passed
    shapes = report.results[0]
    assert shapes.name == "shapes" and "forward gave (2, 1, 4, 5), expected (2, 3, 4, 5)" in shapes.detail
    assert "FAIL shapes: forward gave" in report.table()


def test_shape_check_catches_wrong_spectral_length():
    class Short(Permute):
        def Vt(self, x):
            return super().Vt(x)[:, :-1]

    report = run_checks(Short((1, 2, 3), np.eye(6)))
    assert not report.passed and "Vt gave (2, 5), expected (2, 6)" in report.results[0].detail


def test_svd_checks_catch_wrong_ut_only():
    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((6, 6)))

    class BadUt(Permute):
        def Ut(self, y):
            return super().Ut(y) * 1.01

    failed = _failed(BadUt((1, 2, 3), q))
    assert "Ut = U^T" in failed and "adjoint = V S U^T y" in failed
    assert "Vt = V^T" not in failed and "U S V^T = A (dense forward)" not in failed


def test_svd_checks_catch_adjoint_disagreeing_with_svd_form():
    class BadAdjoint(Permute):
        def adjoint(self, y):
            return 1.5 * y

    failed = _failed(BadAdjoint((1, 2, 3), np.eye(6)))
    assert {"adjoint <Hx,y> = <x,H^T y>", "adjoint = V S U^T y"} <= failed


def test_svd_checks_catch_non_finite_pinv():
    class NaNPinv(Permute):
        def pinv(self, y, rcond=None):
            return torch.full((y.shape[0], *self.in_shape), float("nan"), dtype=y.dtype)

    assert _failed(NaNPinv((1, 2, 3), np.eye(6))) == {"pinv finite"}


def test_dense_svd_singular_values_against_numpy_via_checks():
    """check_svd's singular-value comparison is against the oracle, not the operator itself."""
    s = np.array([3.0, 2.0, 1.0, 0.5, 0.25, 0.125])
    q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((6, 6)))
    a = q @ np.diag(s) @ q.T
    wrong = Permute((1, 2, 3), q, s=s[::-1].copy() * 1.1)  # claims different values
    wrong.forward = lambda x: (x.reshape(x.shape[0], -1) @ torch.from_numpy(a).T.to(x)).reshape(x.shape)
    failed = {r.name for r in check_svd(wrong, DenseSVD(MatrixOp((1, 2, 3), a))) if not r.passed}
    assert "singular values = dense" in failed


def test_pinv_default_cutoff_keeps_float32_spectrum():
    """A dense-style max(m, n) * eps cut-off would drop most of a large blur's spectrum in float32."""
    from invkit_operators.fft_blur import CircularBlur

    op = CircularBlur((1, 256, 256), kernel="gaussian", sigma=1.0)
    x = torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0))
    y = op.forward(x)
    rel = float((op.pinv(y) - x).norm() / x.norm())
    assert rel < 1e-2, rel
