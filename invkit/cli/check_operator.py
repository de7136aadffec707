"""``invkit check-operator``: the conformance checks its rung claims (VJP against finite
differences; adjointness and autograd = adjoint; SVD against the dense matrix) on a registered operator."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ..checks import run_checks
from ..forward import LinearOperator, SVDOperator, as_shape
from ..params import format_schema
from ..registry import Registry
from .exits import EXIT_FAIL

__all__ = ["add_check_operator_command"]


def add_check_operator_command(sub: Any, registry: Registry) -> None:
    """Add ``check-operator`` to the ``invkit`` subcommand parser ``sub``."""
    p = sub.add_parser(
        "check-operator",
        help="check a registered operator for what its rung claims (VJP, adjoint, SVD vs dense)",
        description="Every forward model: shapes and its VJP against central finite differences. Linear "
        "operators also: <Hx,y> = <x,H^T y> and autograd's VJP of forward = adjoint. SVD operators also: the "
        "efficient SVD against the dense matrix (singular values, U S V^T = A, V^T V = I, U^T U = I, forward = "
        "SVD form). Exit 1 on failure.",
    )
    p.add_argument("name", help="operator name (see `invkit plugins`)")
    p.add_argument("--size", type=_shape_arg, default=None, metavar="C,H,W", help="image shape (default: the operator's check size)")
    p.add_argument("--arg", action="append", default=[], metavar="K=V", help="operator parameter (repeatable)")
    p.add_argument("--tol", type=_tol_arg, default=1e-9, help="tolerance for every exact identity (default 1e-9; the "
                   "finite-difference VJP check has its own, 1e-6)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--list-params", action="store_true", help="show the operator's parameters and exit")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    p.set_defaults(handler=lambda a: _cmd_check_operator(a, registry))


def _cmd_check_operator(args: argparse.Namespace, registry: Registry) -> int:
    cls = registry.operator_class(args.name)
    if args.list_params:
        print(f"operator '{args.name}' parameters:\n{format_schema(cls.params)}")
        return 0
    shape = args.size if args.size is not None else cls.check_shape
    op = registry.build_operator(args.name, shape, args.arg)
    report = run_checks(op, tol=args.tol)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        params = ", ".join(f"{k}={v!r}" for k, v in op.config.items()) or "defaults"
        rung = "SVD operator" if isinstance(op, SVDOperator) else ("linear operator" if isinstance(op, LinearOperator) else "forward model")
        print(f"operator {args.name} ({registry.get('operator', args.name).distribution}), {rung}: in {op.in_shape} -> out {op.out_shape}; {params}")
        print(report.table())
        print("PASSED" if report.passed else "FAILED")
    return 0 if report.passed else EXIT_FAIL


def _shape_arg(text: str) -> tuple[int, ...]:
    try:
        return as_shape(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not three positive integers C,H,W (e.g. 3,16,24)") from None


def _tol_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"tolerance {text!r} is not a positive number (e.g. 1e-9)")
    return value
