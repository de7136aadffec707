"""Conformance checks for forward models and operators (public API; ``invkit check-operator`` runs them).

Every check returns numbers, not just a verdict: a :class:`CheckResult` holds the measured error,
the tolerance it was held to and whether it passed. All checks run in float64 on the CPU. Each
rung of the ladder (:mod:`invkit.forward`) is checked for what it claims:

* :func:`check_shapes` (every rung): every map returns the shape it declares (a broadcasting bug
  would otherwise slip through the numeric checks).
* :func:`check_vjp` (every rung): ``vjp`` against central finite differences of ``forward``:
  ``<v, J w> = <Jᵀ v, w>`` with ``J w ≈ (A(x + h w) − A(x − h w)) / 2h``.
* :func:`check_adjoint` (linear): ``<H x, y> = <x, Hᵀ y>`` on random vectors, relative to ``‖Hx‖‖y‖``.
* :func:`check_autograd_adjoint` (linear): autograd's VJP of ``forward`` equals ``adjoint``
  (gradient-based solvers differentiate ``forward`` and rely on it).
* :func:`check_svd` (SVD): the efficient SVD against :class:`~invkit.dense.DenseSVD` — sorted singular
  values, ``U Σ Vᵀ`` equal to the dense matrix of ``forward``, ``VᵀV = I``, ``UᵀU = I``,
  ``Vt``/``Ut`` equal to the transposes of ``V``/``U``, ``forward``/``adjoint`` equal to the SVD
  form, and a finite pseudo-inverse.

Example:
    >>> from invkit.checks import run_checks
    >>> from invkit_operators.denoising import Denoising
    >>> report = run_checks(Denoising((1, 4, 5)))
    >>> report.passed
    True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from .dense import DEFAULT_MAX_SIZE, DenseSVD, apply_to_basis
from .forward import ForwardModel, LinearOperator, SVDOperator, autograd_vjp

__all__ = [
    "CheckResult",
    "CheckReport",
    "check_shapes",
    "check_vjp",
    "check_adjoint",
    "check_autograd_adjoint",
    "check_svd",
    "run_checks",
    "conformance_cases",
    "DEFAULT_TOL",
    "VJP_TOL",
]

DEFAULT_TOL = 1e-9
#: Tolerance of the finite-difference VJP check: central differences with step ``h = 1e-6`` in
#: float64 have a truncation error O(h²) ~ 1e-12 (times the third derivative) and a rounding
#: error ~eps/h ~ 1e-10, both relative.
VJP_TOL = 1e-6


@dataclass
class CheckResult:
    """One measured check.

    Attributes:
        name: What was checked.
        error: The measured (relative or max-abs) error.
        tol: The tolerance it was held to.
        passed: ``error <= tol`` (and finite).
        detail: How the error is defined.
    """

    name: str
    error: float
    tol: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.error) and self.error <= self.tol)


@dataclass
class CheckReport:
    """All checks for one operator instance."""

    operator: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def table(self) -> str:
        """Aligned text table: check, error, tolerance, verdict."""
        rows = [("check", "error", "tol", "result")]
        rows += [(r.name, f"{r.error:.3e}", f"{r.tol:.0e}", "ok" if r.passed else "FAIL") for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines += [f"FAIL {r.name}: {r.detail}" for r in self.results if not r.passed and r.detail]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "operator": self.operator,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            "passed": self.passed,
            "results": [dict(asdict(r), passed=r.passed) for r in self.results],
        }


def _rand(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64)


@torch.no_grad()
def check_shapes(op: ForwardModel, *, generator: torch.Generator | None = None) -> CheckResult:
    """Every map returns the shape it declares (``forward``, ``vjp``, ``adjoint``, and the SVD surface).

    The error is the number of maps with a wrong output shape (or that raised); the detail names them.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(2)
    b = 2
    n, m = op.in_numel, op.out_numel
    at = torch.full((b, *op.in_shape), 0.5, dtype=torch.float64)  # where the VJP is taken
    probes: list[tuple[str, Any, tuple[int, ...], tuple[int, ...]]] = [
        ("forward", op.forward, (b, *op.in_shape), (b, *op.out_shape)),
        ("vjp", lambda v: op.vjp(at, v), (b, *op.out_shape), (b, *op.in_shape)),
    ]
    if isinstance(op, LinearOperator):
        probes.append(("adjoint", op.adjoint, (b, *op.out_shape), (b, *op.in_shape)))
    if isinstance(op, SVDOperator):
        probes += [
            ("Vt", op.Vt, (b, *op.in_shape), (b, n)),
            ("V", op.V, (b, n), (b, *op.in_shape)),
            ("Ut", op.Ut, (b, *op.out_shape), (b, m)),
            ("U", op.U, (b, m), (b, *op.out_shape)),
        ]
    wrong: list[str] = []
    for name, fn, shape_in, shape_out in probes:
        try:
            got = tuple(fn(_rand(shape_in, g)).shape)
        except Exception as exc:  # noqa: BLE001 - report, don't crash the checker
            wrong.append(f"{name} raised {type(exc).__name__}: {exc}")
            continue
        if got != shape_out:
            wrong.append(f"{name} gave {got}, expected {shape_out}")
    if isinstance(op, SVDOperator):
        s_shape = tuple(op.singular_values.shape)
        if s_shape != (min(m, n),):
            wrong.append(f"singular_values has shape {s_shape}, expected ({min(m, n)},)")
    return CheckResult("shapes", float(len(wrong)), 0.0, "; ".join(wrong) or "all maps return their declared shapes")


def check_vjp(
    op: ForwardModel, *, trials: int = 2, h: float = 1e-6, tol: float = VJP_TOL, generator: torch.Generator | None = None
) -> CheckResult:
    """Measure ``max |<v, J w> − <vjp(x, v), w>| / (‖v‖ ‖J w‖ + ‖vjp‖ ‖w‖)`` with ``J w`` by central differences.

    ``x`` is drawn in [0.1, 0.9] (inside the image range, away from kinks at 0 and 1), ``v`` and
    ``w`` standard normal; ``J w ≈ (A(x + h w) − A(x − h w)) / (2h)`` in float64.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(3)
    x = 0.1 + 0.8 * torch.rand((trials, *op.in_shape), generator=g, dtype=torch.float64)
    w = _rand((trials, *op.in_shape), g)
    v = _rand((trials, *op.out_shape), g)
    worst = 0.0
    try:
        with torch.no_grad():
            jw = (op.forward(x + h * w).to(torch.float64) - op.forward(x - h * w).to(torch.float64)) / (2 * h)
        jtv = op.vjp(x, v).to(torch.float64)
        for i in range(trials):
            lhs = float((v[i] * jw[i]).sum())
            rhs = float((jtv[i] * w[i]).sum())
            scale = float(v[i].norm() * jw[i].norm() + jtv[i].norm() * w[i].norm()) or 1.0
            worst = max(worst, abs(lhs - rhs) / scale)
    except Exception as exc:  # noqa: BLE001 - report, don't crash the checker
        return CheckResult("vjp = finite differences", float("inf"), tol, f"vjp or forward failed: {type(exc).__name__}: {exc}")
    return CheckResult("vjp = finite differences", worst, tol, f"max |<v,Jw>_fd - <J^T v,w>| / scale, central differences h={h:g}")


def check_autograd_adjoint(
    op: LinearOperator, *, trials: int = 2, tol: float = DEFAULT_TOL, generator: torch.Generator | None = None
) -> CheckResult:
    """Measure ``max ‖autograd VJP of forward − adjoint(v)‖ / ‖adjoint(v)‖`` (float64)."""
    g = generator if generator is not None else torch.Generator().manual_seed(4)
    x = _rand((trials, *op.in_shape), g)
    v = _rand((trials, *op.out_shape), g)
    try:
        auto = autograd_vjp(op.forward, x, v).to(torch.float64)
    except Exception as exc:  # noqa: BLE001 - report, don't crash the checker
        return CheckResult("autograd VJP of forward = adjoint", float("inf"), tol, f"autograd through forward failed: {type(exc).__name__}: {exc}")
    with torch.no_grad():
        adj = op.adjoint(v).to(torch.float64)
    err = max(float((auto[i] - adj[i]).norm() / (adj[i].norm() + 1e-300)) for i in range(trials))
    return CheckResult("autograd VJP of forward = adjoint", err, tol, "max |autograd(J^T v) - H^T v| / |H^T v|")


@torch.no_grad()
def check_adjoint(
    op: LinearOperator, *, trials: int = 3, tol: float = DEFAULT_TOL, generator: torch.Generator | None = None
) -> CheckResult:
    """Measure ``max |<Hx, y> - <x, Hᵀy>| / (‖Hx‖ ‖y‖)`` over ``trials`` random pairs."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    worst = 0.0
    x = _rand((trials, *op.in_shape), g)
    y = _rand((trials, *op.out_shape), g)
    hx = op.forward(x).to(torch.float64)
    hty = op.adjoint(y).to(torch.float64)
    for i in range(trials):
        lhs = float((hx[i] * y[i]).sum())
        rhs = float((x[i] * hty[i]).sum())
        scale = float(hx[i].norm() * y[i].norm()) or float(x[i].norm() * hty[i].norm()) or 1.0
        worst = max(worst, abs(lhs - rhs) / scale)
    return CheckResult("adjoint <Hx,y> = <x,H^T y>", worst, tol, "max over trials of |<Hx,y>-<x,H^T y>| / (|Hx| |y|)")


def _maxabs(a: np.ndarray) -> float:
    return float(np.max(np.abs(a))) if a.size else 0.0


@torch.no_grad()
def check_svd(
    op: SVDOperator,
    dense: DenseSVD | None = None,
    *,
    tol: float = DEFAULT_TOL,
    max_size: int = DEFAULT_MAX_SIZE,
    generator: torch.Generator | None = None,
) -> list[CheckResult]:
    """Compare the efficient SVD of ``op`` with the dense oracle.

    Args:
        op: An operator with an SVD surface.
        dense: A precomputed ``DenseSVD(op)`` (tests cache one per operator and shape).
        tol: Tolerance for every relative error.
        max_size: Size limit for materialising matrices.
        generator: Randomness for the forward/adjoint comparisons.

    Returns:
        One :class:`CheckResult` per property (see the module docstring).
    """
    if not isinstance(op, SVDOperator):
        raise TypeError(f"{op.label} has no SVD surface (V, Vt, U, Ut, singular_values); wrap it in DenseSVD")
    g = generator if generator is not None else torch.Generator().manual_seed(1)
    dense = dense if dense is not None else DenseSVD(op, max_size=max_size)
    m, n = op.out_numel, op.in_numel
    k = min(m, n)
    a = dense.matrix
    a_scale = _maxabs(a) or 1.0
    results: list[CheckResult] = []

    s = op.singular_values.detach().to(torch.float64).cpu().numpy()
    if s.shape != (k,):
        results.append(CheckResult("singular values length", float("inf"), tol, f"expected {k} = min(m, n), got {s.shape}"))
        return results
    s_err = _maxabs(np.sort(s)[::-1] - dense.s) / (float(dense.s.max()) if k and dense.s.max() > 0 else 1.0)
    results.append(CheckResult("singular values = dense", s_err, tol, "max |sorted(s) - s_dense| / s_max"))

    vmat = apply_to_basis(op.V, (n,), n)  # columns V e_j, shape n x n
    umat = apply_to_basis(op.U, (m,), m)  # columns U e_j, shape m x m
    vtmat = apply_to_basis(op.Vt, op.in_shape, n)  # columns Vt e_j  -> should be V^T
    utmat = apply_to_basis(op.Ut, op.out_shape, m)
    results.append(CheckResult("V^T V = I", _maxabs(vmat.T @ vmat - np.eye(n)), tol, "max |V^T V - I|"))
    results.append(CheckResult("U^T U = I", _maxabs(umat.T @ umat - np.eye(m)), tol, "max |U^T U - I|"))
    results.append(CheckResult("Vt = V^T", _maxabs(vtmat - vmat.T), tol, "max |Vt - V^T|"))
    results.append(CheckResult("Ut = U^T", _maxabs(utmat - umat.T), tol, "max |Ut - U^T|"))
    recon = umat[:, :k] @ (s[:, None] * vmat[:, :k].T)
    results.append(CheckResult("U S V^T = A (dense forward)", _maxabs(recon - a) / a_scale, tol, "max |U S V^T - A| / max |A|"))

    x = _rand((2, *op.in_shape), g)
    y = _rand((2, *op.out_shape), g)
    fx = op.forward(x).to(torch.float64)
    fx_svd = op.svd_forward(x).to(torch.float64)
    aty = op.adjoint(y).to(torch.float64)
    aty_svd = op.svd_adjoint(y).to(torch.float64)
    results.append(CheckResult("forward = U S V^T x", float((fx - fx_svd).norm() / (fx.norm() + 1e-300)), tol, "|Hx - USV^T x| / |Hx|"))
    results.append(CheckResult("adjoint = V S U^T y", float((aty - aty_svd).norm() / (aty.norm() + 1e-300)), tol, "|H^T y - VSU^T y| / |H^T y|"))
    pinv_y = op.pinv(y)
    finite = bool(torch.isfinite(pinv_y).all())
    results.append(CheckResult("pinv finite", 0.0 if finite else float("inf"), tol, "H^+ y has no inf/NaN"))
    return results


def run_checks(
    op: ForwardModel,
    dense: DenseSVD | None = None,
    *,
    tol: float = DEFAULT_TOL,
    vjp_tol: float = VJP_TOL,
    max_size: int = DEFAULT_MAX_SIZE,
    generator: torch.Generator | None = None,
) -> CheckReport:
    """Run every check ``op``'s rung claims and collect a :class:`CheckReport`.

    Every forward model: shapes and VJP vs finite differences. Linear operators also: adjointness
    and autograd's VJP of ``forward`` = ``adjoint``. SVD operators also: the SVD against the dense
    matrix. (A linear operator without an SVD still works with DDRM through
    :class:`~invkit.dense.DenseSVD` at small sizes.) ``tol`` holds every exact identity;
    ``vjp_tol`` the finite-difference comparison, whose own error is ~1e-10 (see :data:`~invkit.checks.VJP_TOL`).
    """
    report = CheckReport(op.name or type(op).__name__, tuple(op.in_shape), tuple(op.out_shape))
    shapes = check_shapes(op, generator=generator)
    report.results.append(shapes)
    if not shapes.passed:  # the other checks would only crash or broadcast their way to nonsense
        return report
    report.results.append(check_vjp(op, tol=vjp_tol, generator=generator))
    if not isinstance(op, LinearOperator):
        return report
    report.results.append(check_adjoint(op, tol=tol, generator=generator))
    report.results.append(check_autograd_adjoint(op, tol=tol, generator=generator))
    if isinstance(op, SVDOperator):
        report.results.extend(check_svd(op, dense, tol=tol, max_size=max_size, generator=generator))
    return report


def conformance_cases(cls: type[ForwardModel]) -> list[tuple[tuple[int, int, int], dict[str, Any]]]:
    """The ``(shape, params)`` cases an operator class asks to be checked with.

    ``(cls.check_shape, {})`` first, then ``cls.check_cases``. Third-party test suites can
    parametrize over these exactly as invkit's own conformance tests do.
    """
    cases: list[tuple[tuple[int, int, int], dict[str, Any]]] = [(tuple(cls.check_shape), {})]
    cases.extend((tuple(shape), dict(params)) for shape, params in getattr(cls, "check_cases", ()))
    return cases
