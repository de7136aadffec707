"""Conformance of every registered operator, over every case it declares (n <= 1024).

Parametrized over the registry, so a built-in operator is covered as soon as it is registered.
"""

from __future__ import annotations

import inspect
from typing import Annotated

import pytest
import torch

from invkit.checks import check_adjoint, check_autograd_adjoint, check_svd, check_vjp, conformance_cases
from invkit.forward import ForwardModel, LinearOperator, SVDOperator
from invkit.params import Arg, Param, signature_params
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


def _declared_twice(cls: type[ForwardModel]) -> list[str]:
    """What an operator class declares other than once (empty when each parameter has one declaration).

    Either the ``__init__`` signature declares the parameters, each with its Arg (doc and
    constraints), and ``params`` is derived from it (``ForwardModel.__init_subclass__`` wrapped
    that ``__init__``); or a ``params`` tuple declares them and ``__init__`` takes them as
    ``**params``, naming none of them (so no default is written twice).
    """
    owner = next(k for k in cls.__mro__ if "__init__" in vars(k))
    init = vars(owner)["__init__"]
    after_shape = list(inspect.signature(init).parameters.values())[2:]
    named = [p.name for p in after_shape if p.kind is not inspect.Parameter.VAR_KEYWORD]
    if hasattr(init, "__wrapped__"):  # declared in the signature
        problems = []
        if cls.params != signature_params(owner, exclude=list(inspect.signature(init).parameters)[1:2]):
            problems.append(f"{cls.__name__}.params differs from the schema its {owner.__name__}.__init__ signature declares")
        undocumented = [p.name for p in cls.params if not p.doc]
        if undocumented:
            problems.append(f"{cls.__name__}: {', '.join(undocumented)} declared without Arg (no doc, no constraints)")
        return problems
    if named:
        return [f"{cls.__name__}: its params tuple declares {', '.join(p.name for p in cls.params) or 'nothing'} and {owner.__name__}.__init__ "
                f"names {', '.join(named)} again; declare them in the signature only, or take **params"]
    return []


@pytest.mark.parametrize("name", NAMES)
def test_parameters_are_declared_once(name):
    """One declaration per parameter: the signature (params derived from it) or a params tuple taken as **params."""
    cls = REGISTRY.operator_class(name)
    assert not _declared_twice(cls)
    assert cls.__doc__, f"{name}: operator class needs a docstring (shown by `invkit plugins`)"


def test_a_parameter_declared_twice_is_caught():
    """The check above fails on the two ways of declaring a parameter twice, or without its doc."""
    from _parts import Doubling

    class Twice(Doubling):  # the old style: a params tuple and the same defaults in the signature
        params = (Param("gain", float, 2.0, "multiplier"),)

        def __init__(self, in_shape, *, gain=2.0):  # noqa: ANN001
            super().__init__(in_shape, gain=gain)

    class Plain(Doubling):  # derived from a signature without Arg: inferred, undocumented
        def __init__(self, in_shape, gain=2.0):  # noqa: ANN001
            super().__init__(in_shape)

    class Once(Doubling):
        def __init__(self, in_shape, gain: Annotated[float, Arg("multiplier")] = 2.0):  # noqa: ANN001
            super().__init__(in_shape)

    class Shared(Doubling):
        params = (Param("gain", float, 2.0, "multiplier"),)

        def __init__(self, in_shape, **params):  # noqa: ANN001, ANN003
            super().__init__(in_shape, **params)

    assert _declared_twice(Twice) == [
        "Twice: its params tuple declares gain and Twice.__init__ names gain again; declare them in the signature only, or take **params"
    ]
    assert _declared_twice(Plain) == ["Plain: gain declared without Arg (no doc, no constraints)"]
    assert _declared_twice(Once) == _declared_twice(Shared) == []
    assert Once((1, 2, 2), gain="3").config == Shared((1, 2, 2), gain="3").config == {"gain": 3.0}
