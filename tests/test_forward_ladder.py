"""The forward-model ladder: forward model ▸ linear operator ▸ SVD operator, and the checks of each rung.

Each check is shown to pass on a correct model and to fail, with a measured error, on a broken
one; ``run_checks`` runs exactly the checks a rung claims; the registry, ``Problem`` and the
solvers treat a nonlinear forward model as what it is.
"""

from __future__ import annotations

import math
from typing import Annotated

import pytest
import torch

import invkit
from invkit import (
    Capability,
    ForwardModel,
    GaussianNoise,
    LinearOperator,
    Operator,
    PluginWarning,
    Problem,
    RequirementError,
    SVDOperator,
    autograd_vjp,
    capabilities,
    hookimpl,
)
from invkit.params import Arg, Param, ParamError
from invkit.checks import VJP_TOL, check_adjoint, check_autograd_adjoint, check_shapes, check_svd, check_vjp, run_checks
from invkit.registry import Registry
from invkit_operators.denoising import Denoising
from invkit_priors.analytic import GaussianPrior
from invkit_solvers.ddrm import DDRM
from invkit_solvers.exact import ExactSolver

from _parts import Doubling, Square

SHAPE = (2, 3, 4)


# ---------------------------------------------------------------------- models
class RowSums(ForwardModel):
    """y_c = log(1 + Σ_hw exp(x_chw)) per channel: nonlinear, mixing pixels, compact measurement (C,)."""

    name = "test_rowsums"

    @property
    def out_shape(self):
        return (self.in_shape[0],)

    def forward(self, x):
        self.check_image(x)
        return torch.nn.functional.softplus(torch.logsumexp(x.flatten(2), dim=2))


class Camera(ForwardModel):
    """y = 1 - exp(-k x) with a hand-written VJP ``k exp(-k x) v``."""

    name = "test_camera"

    def __init__(self, in_shape, k=2.0):
        super().__init__(in_shape)
        self.k = k

    @property
    def out_shape(self):
        return self.in_shape

    def forward(self, x):
        self.check_image(x)
        return -torch.expm1(-self.k * x)

    def vjp(self, x, v):
        return self.k * torch.exp(-self.k * x) * v


class WrongCamera(Camera):
    """The camera with a VJP that forgot the chain rule's factor k."""

    def vjp(self, x, v):
        return torch.exp(-self.k * x) * v


class NumpyDoubling(Doubling):
    """H = 2 I computed in numpy: right values and adjoint, but no autograd graph."""

    def forward(self, x):
        self.check_image(x)
        return torch.from_numpy(2.0 * x.detach().cpu().numpy()).to(x.device)


class HalfDetachedDoubling(Doubling):
    """H = 2 I as ``x + x.detach()``: right values, but autograd sees only I."""

    def forward(self, x):
        self.check_image(x)
        return x + x.detach()


def _x(shape=SHAPE, batch=2, seed=0):
    return torch.rand((batch, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------------- the rungs
def test_the_ladder():
    assert Operator is LinearOperator
    assert issubclass(SVDOperator, LinearOperator) and issubclass(LinearOperator, ForwardModel)
    assert (Square.linear, Doubling.linear, Denoising.linear) == (False, True, True)
    assert Square(SHAPE).label == f"forward model 'test_square' on {SHAPE}"
    assert Doubling(SHAPE).label == f"operator 'test_doubling' on {SHAPE}"
    with pytest.raises(TypeError):
        LinearOperator(SHAPE)  # abstract: forward, adjoint, out_shape


def test_forward_model_vjp_is_autograd():
    op, x = RowSums(SHAPE), _x()
    v = torch.randn(2, *op.out_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = op.vjp(x, v)
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(op.forward(xr), xr, v)
    assert got.shape == x.shape and torch.allclose(got, ref, rtol=0, atol=1e-15)
    assert not x.requires_grad
    with torch.no_grad():  # the VJP works whatever the caller's grad mode
        assert torch.allclose(op.vjp(x, v), ref, rtol=0, atol=1e-15)
    # rows do not mix: row b of a batched VJP is the VJP of row b alone
    assert torch.allclose(op.vjp(x[1:], v[1:]), got[1:], rtol=0, atol=1e-15)


def test_linear_operator_vjp_is_its_adjoint():
    """A guard against subclasses overriding vjp (the base class returns adjoint(v)); the
    substantive checks are check_vjp (finite differences) and check_autograd_adjoint."""
    for op in (Doubling(SHAPE), Denoising(SHAPE)):
        x = _x()
        v = torch.randn(2, *op.out_shape, dtype=torch.float64)
        assert torch.equal(op.vjp(x, v), op.adjoint(v))
        assert torch.equal(op.vjp(torch.zeros_like(x), v), op.adjoint(v))  # x is not used


def test_linear_operator_vjp_is_adjoint_for_every_registered_operator():
    reg = Registry()
    for name in reg.names("operator"):
        cls = reg.operator_class(name)
        op = reg.build_operator(name, cls.check_shape)
        if not isinstance(op, LinearOperator):
            continue
        g = torch.Generator().manual_seed(0)
        x = torch.rand((2, *op.in_shape), generator=g, dtype=torch.float64)
        v = torch.randn((2, *op.out_shape), generator=g, dtype=torch.float64)
        assert torch.equal(op.vjp(x, v), op.adjoint(v)), name


def test_autograd_vjp_refuses_a_forward_without_graph():
    op = NumpyDoubling(SHAPE)
    with pytest.raises(ValueError, match="no autograd graph"):
        autograd_vjp(op.forward, _x(), _x())


# ---------------------------------------------------------------------- check_vjp
@pytest.mark.parametrize("model", [Square, RowSums, Camera, Doubling, Denoising], ids=lambda c: c.__name__)
def test_check_vjp_passes(model):
    result = check_vjp(model(SHAPE))
    assert result.passed, f"{result.error:.3e}"
    assert result.error < 1e-8 and result.tol == VJP_TOL


def test_check_vjp_fails_a_wrong_vjp():
    result = check_vjp(WrongCamera(SHAPE))
    assert not result.passed and result.error > 1e-3, f"{result.error:.3e}"  # measured 8e-2 (tol 1e-6)
    assert check_vjp(Camera(SHAPE)).passed


def test_check_vjp_reports_a_vjp_that_raises():
    class Raises(Square):
        def vjp(self, x, v):
            raise RuntimeError("boom")

    result = check_vjp(Raises(SHAPE))
    assert not result.passed and math.isinf(result.error) and "RuntimeError: boom" in result.detail


# ---------------------------------------------------------------------- check_autograd_adjoint
@pytest.mark.parametrize("broken", [NumpyDoubling, HalfDetachedDoubling], ids=lambda c: c.__name__)
def test_forward_that_breaks_autograd_fails_autograd_check_but_not_adjoint(broken):
    op = broken(SHAPE)
    assert check_adjoint(op).passed  # the values are right ...
    auto = check_autograd_adjoint(op)  # ... but gradient-based solvers would get the wrong gradient
    assert not auto.passed
    if broken is NumpyDoubling:
        assert math.isinf(auto.error) and "no autograd graph" in auto.detail
    else:
        assert auto.error == pytest.approx(0.5, abs=1e-12)  # autograd's I v against the adjoint's 2 v
    report = run_checks(op)
    assert not report.passed
    failed = [r.name for r in report.results if not r.passed]
    assert failed == ["autograd VJP of forward = adjoint"], report.table()


def test_check_autograd_adjoint_passes_a_correct_operator():
    for op in (Doubling(SHAPE), Denoising(SHAPE)):
        result = check_autograd_adjoint(op)
        assert result.passed and result.error < 1e-15


# ---------------------------------------------------------------------- run_checks by rung
LINEAR_CHECKS = ["adjoint <Hx,y> = <x,H^T y>", "autograd VJP of forward = adjoint"]
MODEL_CHECKS = ["shapes", "vjp = finite differences"]


def test_run_checks_forward_model_runs_shapes_and_vjp():
    for op in (Square(SHAPE), RowSums(SHAPE), Camera(SHAPE)):
        report = run_checks(op)
        assert [r.name for r in report.results] == MODEL_CHECKS
        assert report.passed, report.table()
        assert report.out_shape == tuple(op.out_shape)


def test_run_checks_linear_operator_adds_adjoint_and_autograd():
    report = run_checks(Doubling(SHAPE))
    assert [r.name for r in report.results] == MODEL_CHECKS + LINEAR_CHECKS
    assert report.passed, report.table()


def test_run_checks_svd_operator_adds_the_svd_checks():
    op = Denoising(SHAPE)
    report = run_checks(op)
    svd_names = [r.name for r in check_svd(op)]
    assert [r.name for r in report.results] == MODEL_CHECKS + LINEAR_CHECKS + svd_names
    assert len(svd_names) > 5 and report.passed, report.table()


def test_check_shapes_probes_only_what_the_rung_has():
    class NoAdjointNeeded(Square):
        def adjoint(self, y):  # not part of a forward model's contract: never probed
            raise AssertionError("probed")

    assert check_shapes(NoAdjointNeeded(SHAPE)).passed

    class WrongShape(Square):
        def forward(self, x):
            return x[..., :-1]

    result = check_shapes(WrongShape(SHAPE))
    assert not result.passed and "forward gave" in result.detail
    assert [r.name for r in run_checks(WrongShape(SHAPE)).results] == ["shapes"]  # nothing else runs on a wrong shape


# ---------------------------------------------------------------------- registry
class _GoodPlugin:
    @hookimpl
    def invkit_register_operators(self, register):
        register("test_square", Square)
        register("test_camera", Camera)


class NotAModel:
    """Has forward and shapes, but is no ForwardModel."""

    def __init__(self, in_shape):
        self.in_shape = in_shape

    def forward(self, x):
        return x


class _BadPlugin:
    @hookimpl
    def invkit_register_operators(self, register):
        register("test_not_a_model", NotAModel)


def test_registry_accepts_forward_models_and_refuses_other_classes():
    with pytest.warns(PluginWarning, match=r"operator 'test_not_a_model' must be a subclass of invkit.ForwardModel"):
        reg = Registry(entry_points=False, plugins=[(_GoodPlugin(), "good", "good-dist"), (_BadPlugin(), "bad", "bad-dist")])
        names = reg.names("operator")
    assert names == ["test_camera", "test_square"]
    assert any("bad-dist" in w and "ForwardModel" in w for w in reg.warnings)
    op = reg.build_operator("test_square", "1,3,3")
    assert isinstance(op, Square) and run_checks(op).passed


# ---------------------------------------------------------------------- parameters, declared once
class Gain(Doubling):
    """y = 2 k x, its parameters declared in its signature."""

    name = "test_gain"

    def __init__(
        self,
        in_shape,
        *,
        k: Annotated[float, Arg("multiplier", min=0.0, min_inclusive=False)] = 1.0,
        tag: Annotated[str | None, Arg("label")] = None,
    ):
        super().__init__(in_shape)
        self.seen = dict(self.config)  # the validated values are the config before the body runs
        self.k = k

    def forward(self, x):
        return self.k * super().forward(x)

    def adjoint(self, y):
        return self.k * super().adjoint(y)


def test_a_signature_declares_an_operators_parameters():
    assert Gain.params == (Param("k", float, 1.0, "multiplier", min=0.0, min_inclusive=False), Param("tag", str, None, "label"))
    op = Gain("1,2,2", k="2.5")
    assert op.k == 2.5 and op.config == op.seen == {"k": 2.5, "tag": None} and op.in_shape == (1, 2, 2)
    assert repr(op) == "Gain((1, 2, 2), k=2.5, tag=None)"
    assert Gain(in_shape=(1, 2, 2)).config == {"k": 1.0, "tag": None}  # the shape by keyword too
    with pytest.raises(ParamError) as direct:
        Gain(SHAPE, k=0)
    with pytest.raises(ParamError) as cli:
        invkit.parse_params(Gain.params, ["k=0"], owner="test_gain")  # what an --arg string gets
    assert str(direct.value) == str(cli.value) == "test_gain: parameter 'k' = 0.0 is out of range; expected 0.0 < float"
    with pytest.raises(TypeError, match=r"^test_gain: got an unexpected keyword argument 'gain'"):
        Gain(SHAPE, gain=2)
    with pytest.raises(ValueError, match="three positive integers"):
        Gain((2, 3))

    class Sub(Gain):  # no __init__ of its own: the schema and the validated __init__ are inherited
        name = "test_sub"

    assert Sub.params is Gain.params and Sub(SHAPE, k="3").config == {"k": 3.0, "tag": None}

    class Narrower(Gain):  # its own signature is its own schema; the base validates what it is passed
        name = "test_narrower"

        def __init__(self, in_shape, *, k: Annotated[float, Arg("multiplier, at most 4", max=4.0)] = 2.0):
            super().__init__(in_shape, k=k)

    assert [p.name for p in Narrower.params] == ["k"] and Narrower(SHAPE).config == {"k": 2.0}
    with pytest.raises(ParamError, match=r"^test_narrower: parameter 'k' = 5.0 is out of range; expected float <= 4.0$"):
        Narrower(SHAPE, k=5)
    with pytest.raises(ParamError, match=r"^test_narrower: parameter 'k' = -1.0 is out of range; expected 0.0 < float$"):
        Narrower(SHAPE, k=-1)  # the base's own declaration still holds

    class PassesOn(Gain):  # **params passed on: keeps the schema it inherits
        def __init__(self, in_shape, **params):
            super().__init__(in_shape, **params)

    assert PassesOn.params is Gain.params and PassesOn(SHAPE, tag="x").config == {"k": 1.0, "tag": "x"}


def test_a_params_tuple_is_the_declaration_of_an_operator_taking_params():
    class Explicit(Doubling):  # the third-party style: a params tuple, a keyword signature passing it on
        name = "test_explicit"
        params = (Param("k", float, 1.0, "multiplier", min=0.0),)

        def __init__(self, in_shape, *, k=1.0):
            super().__init__(in_shape, k=k)

    assert Explicit.params[0].doc == "multiplier" and Explicit(SHAPE, k="2").config == {"k": 2.0}
    with pytest.raises(ParamError, match=r"^test_explicit: parameter 'k' = -1.0 is out of range"):
        Explicit(SHAPE, k=-1)

    class Extended(Gain):  # a subclass adding a parameter with its own params tuple
        params = (*Gain.params, Param("bias", float, 0.0, "offset"))

        def __init__(self, in_shape, *, bias=0.0, **params):
            super().__init__(in_shape, **params)
            self.bias = bias

    assert Extended(SHAPE, k=3).config == {"k": 3.0, "tag": None, "bias": 0.0}  # one config over its whole schema


def test_an_operator_declaring_its_parameters_passes_none_to_the_base():
    class Twice(Doubling):
        name = "test_twice"

        def __init__(self, in_shape, *, k: Annotated[float, Arg("multiplier")] = 1.0):
            super().__init__(in_shape, k=k)

    with pytest.raises(TypeError, match=r"^test_twice: k passed to ForwardModel.__init__, but Twice declares its parameters in its __init__ signature"):
        Twice(SHAPE)


def test_a_plain_operator_signature_gets_an_inferred_schema():
    assert Camera.params == (Param("k", float, 2.0),) and Camera(SHAPE, k="3").k == 3.0  # test_camera: a plain k=2.0

    class Matrix(Doubling):  # a value of no basic type (a matrix) is passed as given
        def __init__(self, in_shape, a, scale=1.0):
            super().__init__(in_shape)
            self.a = a

    a = torch.eye(2)
    op = Matrix(SHAPE, a, scale="2")
    assert op.a is a and op.config["scale"] == 2.0 and [p.type.__name__ for p in Matrix.params] == ["str", "float"]


# ---------------------------------------------------------------------- problems and solvers
def test_problem_with_a_nonlinear_model():
    op = Square(SHAPE)
    x = _x(batch=3)
    problem = Problem.simulate(op, x, 0.05, generator=torch.Generator().manual_seed(0))
    assert problem.y.shape == (3, *SHAPE) and isinstance(problem.noise, GaussianNoise) and problem.sigma_y == 0.05
    resid = (problem.y - x * x) / 0.05
    assert 0.5 < float(resid.std()) < 1.5
    assert torch.equal(Problem.simulate(op, x).y, x * x)  # noiseless by default
    compact = Problem(RowSums(SHAPE), torch.zeros(2, SHAPE[0]), GaussianNoise(0.1))
    assert compact.repeat(2).y.shape == (4, SHAPE[0])
    with pytest.raises(ValueError, match="shape"):
        Problem(op, torch.zeros(1, 2, 3, 5))
    with pytest.raises(ValueError, match="not linear"):
        problem.require_svd()


def test_capabilities_of_a_nonlinear_problem():
    problem = Problem.simulate(Square((1, 4, 4)), _x((1, 4, 4)), 0.05)
    prior = GaussianPrior.isotropic(0.5, 0.04)
    have = capabilities(problem, prior)
    assert have == {
        Capability.DIFFERENTIABLE, Capability.GAUSSIAN_NOISE, Capability.LEAST_SQUARES_NOISE, Capability.PRIOR_GRADIENTS, Capability.GAUSSIAN_PRIOR
    }
    reg = Registry()
    takers = [n for n in reg.names("solver") if reg.get("solver", n).factory.requires <= have]
    assert reg.solvers_for(problem, prior) == takers
    assert "ddrm" not in takers and "exact" not in takers


def test_ddrm_and_exact_refuse_a_nonlinear_problem():
    problem = Problem.simulate(Square((1, 4, 4)), _x((1, 4, 4)), 0.05)

    class Counting(GaussianPrior):
        calls = 0

        def denoise(self, x, sigma):
            Counting.calls += 1
            return super().denoise(x, sigma)

    prior = Counting(0.5, 0.04)
    with pytest.raises(RequirementError, match=r"^solver 'ddrm' cannot take this problem: it needs an SVD, but forward model 'test_square' on \(1, 4, 4\) is not linear"):
        DDRM().solve(problem, prior, steps=3, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RequirementError, match=r"^solver 'exact' cannot take this problem: it needs a linear operator it can materialise"):
        ExactSolver().solve(problem, prior, generator=torch.Generator().manual_seed(0))
    assert Counting.calls == 0
    with pytest.raises(RequirementError, match=r"^solver 'ddrm' .*is not linear"):
        Registry().check_solver("ddrm", problem, prior)
    # RequirementError is both a ValueError and a TypeError, for callers written before it existed
    assert issubclass(RequirementError, ValueError) and issubclass(RequirementError, TypeError)


def test_numpy_forward_still_solves_with_ddrm_through_the_dense_svd():
    """A linear operator without a graph is still a linear operator: DDRM needs no autograd."""
    op = NumpyDoubling((1, 4, 4))
    problem = Problem.simulate(op, _x((1, 4, 4)), 0.05, generator=torch.Generator().manual_seed(0))
    out = DDRM().solve(problem, GaussianPrior.isotropic(0.5, 0.04), steps=3, generator=torch.Generator().manual_seed(0))
    assert out.x.shape == (2, 1, 4, 4) and bool(torch.isfinite(out.x).all())


def test_a_vjp_of_the_wrong_shape_is_reported_not_raised():
    class FlatVJP(Square):
        def vjp(self, x, v):
            return v.reshape(v.shape[0], -1)

    report = run_checks(FlatVJP(SHAPE))
    assert not report.passed
    shapes = report.results[0]
    assert shapes.name == "shapes" and not shapes.passed and "vjp gave" in shapes.detail


def test_gaussian_forms_are_validated():
    from invkit.prior import GaussianComponent, GaussianForm

    mean = torch.zeros(1, 2, 2, dtype=torch.float64)
    lam = torch.ones(4, dtype=torch.float64)
    comp = GaussianComponent((1, 2, 2), mean, lam, None, 1.0, 0.0)
    with pytest.raises(ValueError, match="do not fit the shape"):
        GaussianComponent((1, 2, 3), mean, lam, None, 1.0, 0.0)
    with pytest.raises(ValueError, match="a basis"):
        GaussianComponent((1, 2, 2), mean, lam, None, None, 0.0)
    with pytest.raises(ValueError, match="one weight per component"):
        GaussianForm(torch.ones(2, dtype=torch.float64), (comp,))
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianForm(torch.tensor([0.7], dtype=torch.float64), (comp,))


def test_a_prior_without_gaussian_form_still_works_with_ddrm():
    """The hookspec allows duck-typed priors (not Prior subclasses): capabilities() must not need gaussian_form."""

    class Duck:
        sigma_grid = invkit.ddpm_sigma_grid()
        data_center = 0.5

        def denoise(self, x, sigma):
            return torch.full_like(x, 0.5)

    op = Denoising((1, 4, 4))
    out = DDRM().solve(Problem(op, torch.zeros(1, 1, 4, 4), GaussianNoise(0.1)), Duck(), steps=2, generator=torch.Generator().manual_seed(0))
    assert out.x.shape == (1, 1, 4, 4)
