"""Conformance of every registered operator, over every case it declares (n <= 1024).

Parametrized over the registry, so a built-in operator is covered as soon as it is registered.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from invkit.checks import check_adjoint, check_autograd_adjoint, check_svd, check_vjp, conformance_cases
from invkit.forward import LinearOperator, SVDOperator
from invkit.registry import Registry

REGISTRY = Registry()
CASES = [
    pytest.param(reg.name, shape, params, id=f"{reg.name}-{'x'.join(map(str, shape))}-{'-'.join(f'{k}={v}' for k, v in params.items()) or 'default'}")
    for reg in REGISTRY.entries("operator")
    for shape, params in conformance_cases(reg.factory)
]
NAMES = REGISTRY.names("operator")


def test_registry_has_builtins():
    assert "denoising" in NAMES


@pytest.mark.parametrize("name,shape,params", CASES)
def test_case_is_small(name, shape, params):
    op = REGISTRY.build_operator(name, shape, params)
    assert max(op.in_numel, op.out_numel) <= 1024, "conformance cases must keep n, m <= 1024 (dense SVD cost)"


@pytest.mark.parametrize("name,shape,params", CASES)
def test_adjoint(name, shape, params):
    op = REGISTRY.build_operator(name, shape, params)
    if not isinstance(op, LinearOperator):
        pytest.skip("not linear: no adjoint")
    result = check_adjoint(op)
    assert result.passed, f"{result.name}: {result.error:.3e}"


@pytest.mark.parametrize("name,shape,params", CASES)
def test_vjp_matches_finite_differences(name, shape, params):
    """Every rung: the VJP (a linear operator's is its adjoint) against central differences of forward."""
    op = REGISTRY.build_operator(name, shape, params)
    result = check_vjp(op)
    assert result.passed, f"{result.name}: {result.error:.3e} ({result.detail})"


@pytest.mark.parametrize("name,shape,params", CASES)
def test_autograd_of_forward_is_adjoint(name, shape, params):
    """Gradient-based solvers differentiate forward: autograd's VJP must equal the adjoint."""
    op = REGISTRY.build_operator(name, shape, params)
    if not isinstance(op, LinearOperator):
        pytest.skip("not linear: no adjoint")
    result = check_autograd_adjoint(op)
    assert result.passed, f"{result.name}: {result.error:.3e} ({result.detail})"


@pytest.mark.parametrize("name,shape,params", CASES)
def test_svd_matches_dense(name, shape, params, dense_svd):
    op = REGISTRY.build_operator(name, shape, params)
    if not isinstance(op, SVDOperator):
        pytest.skip("no efficient SVD")
    failed = [f"{r.name}: {r.error:.3e}" for r in check_svd(op, dense_svd(op)) if not r.passed]
    assert not failed, failed


@pytest.mark.parametrize("name,shape,params", CASES)
def test_float32_batched(name, shape, params):
    """float32 in, float32 out, batch elements independent."""
    op = REGISTRY.build_operator(name, shape, params)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, *op.in_shape, generator=g)
    y = op.forward(x)
    assert y.dtype == torch.float32 and tuple(y.shape) == (3, *op.out_shape)
    y1 = op.forward(x[1:2])
    torch.testing.assert_close(y[1:2], y1, rtol=1e-5, atol=1e-6)
    x64 = x.double()
    torch.testing.assert_close(y.double(), op.forward(x64), rtol=1e-4, atol=1e-5)
    if isinstance(op, SVDOperator):
        z = op.Vt(x)
        assert z.dtype == torch.float32 and tuple(z.shape) == (3, op.in_numel)
        torch.testing.assert_close(op.V(z), x, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,shape,params", CASES)
def test_wrong_shape_is_refused(name, shape, params):
    op = REGISTRY.build_operator(name, shape, params)
    c, h, w = op.in_shape
    with pytest.raises(ValueError, match="shape"):
        op.forward(torch.zeros(1, c, h + 1, w + 2))


@pytest.mark.parametrize("name", NAMES)
def test_signature_defaults_match_schema(name):
    """The Python signature and the CLI schema must not drift apart."""
    cls = REGISTRY.operator_class(name)
    sig = inspect.signature(cls.__init__)
    for p in cls.params:
        assert p.name in sig.parameters, f"{name}: schema parameter {p.name!r} missing from __init__"
        default = sig.parameters[p.name].default
        if not p.required:
            assert default == p.default, f"{name}.{p.name}: signature default {default!r} != schema default {p.default!r}"
    extra = [k for k in sig.parameters if k not in ("self", "in_shape") and k not in {p.name for p in cls.params}]
    assert not extra, f"{name}: __init__ parameters not in the schema: {extra}"
    assert cls.__doc__, f"{name}: operator class needs a docstring (shown by `invkit plugins`)"
