"""Conformance of every registered solver: output, seeds, per-row generators, refusals, schema.

Parametrized over the registry, like the operator suite (tests/test_conformance.py): a solver is
covered as soon as it is registered. The fixture third-party distribution's solver runs the same
checks twice: loaded here from its source tree (ids ``NAME@fixture-source``) and, installed as a
real distribution, by tests/test_third_party.py, which runs this file in a subprocess.

Each solver is run on small problems (images ``1 × 8 × 8``, a batch of 3, at most ``STEPS``
steps) that offer every capability it ``requires``: analytic priors (a Gaussian and a Gaussian
mixture: exact denoisers, differentiable, with a Gaussian form) and Gaussian noise. The contract
checked:

* ``x`` is ``(B, C, H, W)`` in ``y``'s dtype (float32 and float64) and on its device;
* the same seed gives the same bytes, different seeds give different samples;
* with one generator per row (``row_generators = True`` is required: "solvers draw one generator
  per row"), a row's sample depends neither on the other rows' measurements nor on the batch it
  is drawn in (to 1e-12 in float64, 1e-5 in float32);
* for each required capability, a problem or prior lacking it is refused by ``solve`` with a
  one-line :class:`~invkit.RequirementError` naming it, before any prior evaluation, exactly as
  ``Registry.check_solver`` refuses it (naming the solvers that would take it);
* ``requires`` holds :class:`~invkit.Capability` members and the parameter schema builds with
  its defaults through the registry.

Each check is a plain function (``check_output(subject, scenario, dtype)``, ...) that the tests
call; the last tests run them on deliberately broken solvers to show each one can fail.
Cost: a few seconds (small sizes, ≤ 10 steps).
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import invkit
from invkit import (
    Capability,
    ForwardModel,
    GaussianNoise,
    Prior,
    Problem,
    RequirementError,
    Result,
    Solver,
    capabilities,
    hookimpl,
    missing_capabilities,
    randn_rows,
    resolve_generator,
    sample_generators,
)
from invkit.dense import DEFAULT_MAX_SIZE
from invkit.registry import Registry, use_registry
from invkit_priors.analytic import GaussianMixturePrior, GaussianPrior

from _parts import CountingPrior, Doubling, LaplaceNoise, Saturate
from _scripts import load_module

BATCH = 3
STEPS = 10
SIGMA_Y = 0.05
#: How far a row may move when other rows (or the batch) change: float64 on analytic priors, float32.
ROW_TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
DTYPES = [pytest.param(torch.float64, id="float64"), pytest.param(torch.float32, id="float32")]
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]
FIXTURE_PLUGIN = Path(__file__).parent / "fixtures" / "acme_flip" / "acme_invkit_flip" / "plugin.py"


# ---------------------------------------------------------------------- test-local models
class NotAForwardModel:
    """Quacks like an operator (shapes, measurement check) but is no :class:`invkit.ForwardModel`."""

    linear = False

    def __init__(self, in_shape):
        self.in_shape = tuple(in_shape)
        self.out_shape = self.in_shape
        self.in_numel = self.out_numel = math.prod(self.in_shape)
        self.label = f"duck operator on {self.in_shape}"

    def check_measurement(self, y):
        if tuple(y.shape[1:]) != self.out_shape:
            raise ValueError(f"measurement has shape {tuple(y.shape)}")

    def forward(self, x):
        return x.clone()


# ---------------------------------------------------------------------- scenarios
def _isotropic() -> Prior:
    return GaussianPrior.isotropic(0.5, 0.04)


def _mixture() -> Prior:
    return GaussianMixturePrior([0.4, 0.6], [GaussianPrior.isotropic(0.3, 0.01), GaussianPrior.isotropic(0.7, 0.01)])


@dataclass(frozen=True)
class Scenario:
    """A small problem and prior: a registered operator (or a test-local model) on ``shape``."""

    id: str
    operator: str | Callable[[tuple[int, int, int]], ForwardModel]
    args: tuple[tuple[str, object], ...]
    prior: Callable[[], Prior]
    shape: tuple[int, int, int] = (1, 8, 8)
    sigma_y: float = SIGMA_Y

    def build_operator(self, registry: Registry) -> ForwardModel:
        if isinstance(self.operator, str):
            return registry.build_operator(self.operator, self.shape, dict(self.args))
        return self.operator(self.shape)

    def build(self, registry: Registry, dtype: torch.dtype = torch.float64, device: str = "cpu", batch: int = BATCH) -> tuple[Problem, CountingPrior]:
        """The problem (``y`` simulated in float64, then cast to ``dtype`` on ``device``) and a counting prior."""
        op = self.build_operator(registry)
        g = torch.Generator().manual_seed(1234)
        x = (0.5 + 0.15 * torch.randn((batch, *op.in_shape), generator=g, dtype=torch.float64)).clamp(0.0, 1.0)
        sim = Problem.simulate(op, x, GaussianNoise(self.sigma_y), generator=g)
        return Problem(op, sim.y.to(device=device, dtype=dtype), sim.noise), CountingPrior(self.prior())


SCENARIOS = [
    Scenario("inpainting-1x8x8-mixture", "inpainting", (("fraction", 0.5), ("seed", 0)), _mixture),
    Scenario("gaussian_blur-1x8x8-isotropic", "gaussian_blur", (("sigma", 1.0),), _isotropic),
    # a nonlinear problem, for solvers that need no more than a differentiable forward model
    Scenario("saturate-1x8x8-isotropic", Saturate, (), _isotropic),
    # Fourier magnitudes, the one problem of the phase-retrieval baseline (hio)
    Scenario("phase_retrieval-1x8x8-isotropic", "phase_retrieval", (), _isotropic),
    # noiseless measurements, for solvers that require them (ddnm) and the σ_y = 0 paths of the others
    Scenario("inpainting-1x8x8-mixture-noiseless", "inpainting", (("fraction", 0.5), ("seed", 0)), _mixture, sigma_y=0.0),
    # a linear model without an SVD, too large for the dense fallback (diffpir's conjugate-gradient path)
    Scenario("doubling-1x8x513-isotropic", Doubling, (), _isotropic, shape=(1, 8, DEFAULT_MAX_SIZE // 8 + 1)),
]


# ---------------------------------------------------------------------- subjects: (registry, solver name)
@dataclass(frozen=True)
class Subject:
    """A registered solver: its name in ``registry``."""

    id: str
    registry: Registry
    name: str

    @property
    def factory(self):
        return self.registry.get("solver", self.name).factory

    def build(self) -> Solver:
        return self.registry.build("solver", self.name)

    def max_dense(self) -> int:
        return int(getattr(self.build(), "max_dense", DEFAULT_MAX_SIZE))

    def scenarios(self) -> list[Scenario]:
        """The scenarios whose problem and prior offer everything the solver requires."""
        requires = getattr(self.factory, "requires", frozenset())
        max_dense = self.max_dense()
        out = []
        for sc in SCENARIOS:
            problem, prior = sc.build(self.registry)
            if not missing_capabilities(requires, problem, prior, max_dense=max_dense):
                out.append(sc)
        return out


def _need(scenario: Scenario | None, subject: Subject) -> Scenario:
    if scenario is None:
        requires = sorted(c.value if isinstance(c, Capability) else str(c) for c in getattr(subject.factory, "requires", ()))
        pytest.fail(f"solver '{subject.name}': no test scenario offers everything it requires ({', '.join(requires)}); add one to SCENARIOS")
    return scenario


def _solve(solver: Solver, problem: Problem, prior: Prior, generator) -> torch.Tensor:
    result = solver.solve(problem, prior, steps=STEPS, generator=generator)
    assert isinstance(result, Result), f"solve returned {type(result).__name__}, not invkit.Result"
    return result.x


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(torch.float64) - b.to(torch.float64)).abs().max())


# ---------------------------------------------------------------------- the checks (plain functions, reusable)
def check_requires(subject: Subject) -> None:
    """``requires`` is a frozenset of :class:`Capability` members."""
    requires = getattr(subject.factory, "requires", None)
    assert isinstance(requires, frozenset), f"solver '{subject.name}': requires must be a frozenset, got {type(requires).__name__}"
    strays = [c for c in requires if not isinstance(c, Capability)]
    assert not strays, f"solver '{subject.name}': requires holds non-Capability members {strays!r}"


def check_row_generators(subject: Subject) -> None:
    """The solver declares that it takes one generator per batch row."""
    flag = getattr(subject.factory, "row_generators", None)
    assert flag is True, (
        f"solver '{subject.name}' has row_generators = {flag!r}; the contract is that solvers draw one generator per row "
        "(accept a list of generators and draw row b from generator[b], e.g. with invkit.randn_rows)"
    )


def check_schema(subject: Subject) -> None:
    """The class is a documented Solver whose schema builds with its defaults through the registry."""
    reg = subject.registry.get("solver", subject.name)
    assert isinstance(reg.factory, type) and issubclass(reg.factory, Solver), f"solver '{subject.name}' is not an invkit.Solver subclass"
    assert reg.summary, f"solver '{subject.name}' needs a docstring (shown by `invkit plugins`)"
    solver = subject.registry.build("solver", subject.name)
    assert isinstance(solver, reg.factory)
    defaults = {p.name: p.default for p in reg.params if not p.required}
    again = subject.registry.build("solver", subject.name, defaults)  # the defaults pass their own validation
    assert type(again) is type(solver)
    sig = inspect.signature(reg.factory.__init__)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    for p in reg.params:
        assert takes_any or p.name in sig.parameters, f"solver '{subject.name}': schema parameter {p.name!r} missing from __init__"
        if p.name in sig.parameters and not p.required:
            default = sig.parameters[p.name].default
            assert default == p.default, f"solver '{subject.name}'.{p.name}: signature default {default!r} != schema default {p.default!r}"


def check_accepts(subject: Subject, scenario: Scenario | None) -> None:
    """``Registry.check_solver`` and ``solvers_for`` accept a problem that offers every requirement."""
    scenario = _need(scenario, subject)
    with use_registry(subject.registry):
        problem, prior = scenario.build(subject.registry)
        subject.registry.check_solver(subject.name, problem, prior)
        assert subject.name in subject.registry.solvers_for(problem, prior)


def check_output(subject: Subject, scenario: Scenario | None, dtype: torch.dtype, device: str = "cpu") -> None:
    """``x`` is ``(B, C, H, W)``, finite, in ``y``'s dtype and on its device."""
    scenario = _need(scenario, subject)
    with use_registry(subject.registry):
        problem, prior = scenario.build(subject.registry, dtype, device)
        x = _solve(subject.build(), problem, prior, sample_generators(0, 0, BATCH, device=device))
    assert tuple(x.shape) == (BATCH, *problem.operator.in_shape), f"x has shape {tuple(x.shape)}, expected {(BATCH, *problem.operator.in_shape)}"
    assert x.dtype == dtype, f"y is {dtype} but x is {x.dtype}"
    assert x.device.type == torch.device(device).type, f"y is on {device} but x is on {x.device}"
    assert bool(torch.isfinite(x).all()), "x holds NaN or inf"


def check_seeds(subject: Subject, scenario: Scenario | None, dtype: torch.dtype, device: str = "cpu") -> None:
    """Same seed: same bytes (per-row generators and one generator); other seeds: every sample differs."""
    scenario = _need(scenario, subject)
    with use_registry(subject.registry):
        problem, prior = scenario.build(subject.registry, dtype, device)
        solver = subject.build()
        a = _solve(solver, problem, prior, sample_generators(5, 0, BATCH, device=device))
        b = _solve(solver, problem, prior, sample_generators(5, 0, BATCH, device=device))
        assert torch.equal(a, b), f"same per-row seeds, different bytes (max difference {_max_diff(a, b):.3e})"
        c = _solve(solver, problem, prior, sample_generators(6, 0, BATCH, device=device))
        same = [i for i in range(BATCH) if torch.equal(a[i], c[i])]
        if getattr(subject.factory, "stochastic", True):
            assert not same, f"samples {same} are identical under different seeds: they ignore the generator"
        else:
            assert len(same) == BATCH, "a solver declared deterministic (stochastic = False) depends on the seed"
        one = _solve(solver, problem, prior, torch.Generator(device=device).manual_seed(5))
        again = _solve(solver, problem, prior, torch.Generator(device=device).manual_seed(5))
        assert torch.equal(one, again), "same single-generator seed, different bytes"


def check_rows_independent(subject: Subject, scenario: Scenario | None, dtype: torch.dtype) -> None:
    """Perturbing measurement 0 moves sample 0 and leaves the other samples where they were."""
    scenario = _need(scenario, subject)
    with use_registry(subject.registry):
        problem, prior = scenario.build(subject.registry, dtype)
        solver = subject.build()
        a = _solve(solver, problem, prior, sample_generators(9, 0, BATCH))
        y = problem.y.clone()
        y[0] = y[0] + 0.2
        b = _solve(solver, Problem(problem.operator, y, problem.noise), prior, sample_generators(9, 0, BATCH))
    assert _max_diff(a[0], b[0]) > 1e-3, "sample 0 ignores its own measurement"
    moved = _max_diff(a[1:], b[1:])
    assert moved <= ROW_TOL[dtype], f"changing measurement 0 moved the other samples by {moved:.3e} (tol {ROW_TOL[dtype]:.0e})"


def check_batch_independent(subject: Subject, scenario: Scenario | None, dtype: torch.dtype) -> None:
    """Sample b drawn alone (generator ``sample_seed(seed, b)``) equals sample b of the batch."""
    scenario = _need(scenario, subject)
    with use_registry(subject.registry):
        problem, prior = scenario.build(subject.registry, dtype)
        solver = subject.build()
        batch = _solve(solver, problem, prior, sample_generators(4, 0, BATCH))
        for b in range(BATCH):
            alone = _solve(solver, Problem(problem.operator, problem.y[b : b + 1], problem.noise), prior, sample_generators(4, b, 1))
            diff = _max_diff(alone[0], batch[b])
            assert diff <= ROW_TOL[dtype], f"sample {b} drawn alone differs from the batch's by {diff:.3e} (tol {ROW_TOL[dtype]:.0e})"


#: How a refusal message names each capability (the clauses of invkit.requirements.describe_missing).
CAPABILITY_WORDS = {
    Capability.SVD: r"an SVD",
    Capability.DENSE: r"dense matrix|materialise",
    Capability.LINEAR: r"a linear operator",
    Capability.DIFFERENTIABLE: r"a differentiable forward model",
    Capability.GAUSSIAN_NOISE: r"Gaussian measurement noise",
    Capability.NOISELESS: r"noiseless measurements \(sigma_y = 0\), got",
    Capability.LEAST_SQUARES_NOISE: r"Gaussian or Poisson measurement noise",
    Capability.PRIOR_GRADIENTS: r"gradients through the prior",
    Capability.GAUSSIAN_PRIOR: r"Gaussian \(mixture\) form",
    Capability.FOURIER_MAGNITUDES: r"the 'phase_retrieval' forward model",
}


def _big_shape(max_dense: int) -> tuple[int, int, int]:
    """A one-channel shape with more than ``max_dense`` pixels (too large for the dense fallback)."""
    return (1, 8, max_dense // 8 + 1)


def _breakers(registry: Registry, problem: Problem, prior: CountingPrior, max_dense: int) -> dict[str, Callable[[], tuple[Problem, CountingPrior]]]:
    """Ways to take one thing away from a conforming (problem, prior); each returns a fresh counting prior."""
    shape = problem.operator.in_shape
    batch = problem.y.shape[0]
    inner = prior.inner
    grey = torch.full((batch, *shape), 0.5, dtype=torch.float64)

    def nonlinear():
        op = Saturate(shape)
        return Problem(op, op.forward(grey), problem.noise), CountingPrior(inner)

    def large_linear_without_svd():
        op = Doubling(_big_shape(max_dense))
        return Problem(op, torch.zeros(batch, *op.out_shape, dtype=torch.float64), problem.noise), CountingPrior(inner)

    def large_svd_operator():
        op = registry.build_operator("denoising", _big_shape(max_dense))
        return Problem(op, torch.zeros(batch, *op.out_shape, dtype=torch.float64), problem.noise), CountingPrior(inner)

    def not_a_forward_model():
        return Problem(NotAForwardModel(shape), grey.clone(), problem.noise), CountingPrior(inner)

    def laplace_noise():
        return Problem(problem.operator, problem.y, LaplaceNoise(SIGMA_Y)), CountingPrior(inner)

    def noisy():
        return Problem(problem.operator, problem.y, GaussianNoise(SIGMA_Y)), CountingPrior(inner)

    def prior_without_gradients():
        return problem, CountingPrior(inner, differentiable=False)

    def prior_without_gaussian_form():
        return problem, CountingPrior(inner, gaussian_form=False)

    makers = (nonlinear, large_linear_without_svd, large_svd_operator, not_a_forward_model, laplace_noise, noisy, prior_without_gradients, prior_without_gaussian_form)
    return {f.__name__: f for f in makers}


def _lacking(cap: Capability, requires, registry: Registry, problem: Problem, prior: CountingPrior, max_dense: int):
    """The breakers that remove ``cap`` and as little else of ``requires`` as possible: ``[(name, problem, prior, missing)]``."""
    found = []
    for what, make in _breakers(registry, problem, prior, max_dense).items():
        p, q = make()
        missing = missing_capabilities(requires, p, q, max_dense=max_dense)
        if cap in missing:
            found.append((what, p, q, missing))
    fewest = min((len(f[3]) for f in found), default=0)
    return [f for f in found if len(f[3]) == fewest]


def check_refusal(subject: Subject, cap: Capability) -> None:
    """Every problem/prior lacking ``cap`` (and as little else as possible) is refused by ``solve`` before any
    prior evaluation, with a one-line RequirementError naming what is missing, exactly as ``check_solver`` refuses it."""
    with use_registry(subject.registry):
        scenario = _need(next(iter(subject.scenarios()), None), subject)
        solver = subject.build()
        max_dense = int(getattr(solver, "max_dense", DEFAULT_MAX_SIZE))
        base_problem, base_prior = scenario.build(subject.registry)
        found = _lacking(cap, subject.factory.requires, subject.registry, base_problem, base_prior, max_dense)
        assert found, f"no test problem lacks {cap.value}"
        for what, problem, prior, missing in found:
            _check_one_refusal(subject, solver, cap, what, problem, prior, missing)


def _check_one_refusal(subject, solver, cap, what, problem, prior, missing) -> None:
    try:
        solver.solve(problem, prior, steps=STEPS, generator=sample_generators(0, 0, problem.y.shape[0]))
    except RequirementError as exc:
        message = str(exc)
    except Exception as exc:  # noqa: BLE001 - any other failure is a conformance failure
        pytest.fail(f"solver '{subject.name}' refused a problem lacking {cap.value} ({what}) with {type(exc).__name__}, not RequirementError: {exc}")
    else:
        pytest.fail(f"solver '{subject.name}' solved a problem lacking {cap.value} ({what})")
    assert prior.calls == 0, f"the prior was evaluated {prior.calls} times before the refusal ({what})"
    assert "\n" not in message, f"the refusal is not one line: {message!r}"
    assert f"solver '{subject.name}'" in message, message
    for lack in missing:
        assert re.search(CAPABILITY_WORDS[lack], message), f"the refusal ({what}) does not name {lack.value}: {message}"

    try:
        subject.registry.check_solver(subject.name, problem, prior)
    except RequirementError as exc:
        assert str(exc) == message, f"Registry.check_solver and solve() refuse differently ({what}):\n{exc}\n{message}"
    else:
        pytest.fail(f"Registry.check_solver accepted a problem lacking {cap.value} ({what})")
    assert prior.calls == 0
    takers = [n for n in subject.registry.solvers_for(problem, prior) if n != subject.name]
    if takers:
        assert f"solvers that take it: {', '.join(takers)}" in message, message
    else:
        assert "no registered solver takes it" in message, message


def refusal_caps(subject: Subject) -> list[Capability]:
    """The capabilities a subject declares, in :class:`Capability` order (strays ignored: check_requires fails them)."""
    return [c for c in Capability if c in getattr(subject.factory, "requires", ())]


# ---------------------------------------------------------------------- parametrization
def _load_fixture_plugin():
    return load_module("acme_invkit_flip_source_plugin", FIXTURE_PLUGIN)


REGISTRY = Registry()


def _subjects() -> list[Subject]:
    subjects = [Subject(name, REGISTRY, name) for name in REGISTRY.names("solver")]
    module = _load_fixture_plugin()
    fixture_names: list[str] = []
    module.invkit_register_solvers(lambda name, factory: fixture_names.append(name))
    if not set(fixture_names) & set(REGISTRY.names("solver")):  # not installed here: load it from source
        local = Registry(plugins=[(module, "acme_flip_source", "acme-invkit-flip (source tree)")])
        subjects += [Subject(f"{name}@fixture-source", local, name) for name in fixture_names]
    return subjects


SUBJECTS = _subjects()
SUBJECT_PARAMS = [pytest.param(s, id=s.id) for s in SUBJECTS]


def _with_scenarios(subjects: list[Subject]) -> list:
    out = []
    for s in subjects:
        found = s.scenarios()
        out += [pytest.param(s, sc, id=f"{s.id}-{sc.id}") for sc in found]
        if not found:  # fails in the test, naming what is missing
            out.append(pytest.param(s, None, id=f"{s.id}-no-scenario"))
    return out


SUBJECT_SCENARIOS = _with_scenarios(SUBJECTS)
REFUSAL_CASES = [pytest.param(s, cap, id=f"{s.id}-without-{cap.value}") for s in SUBJECTS for cap in refusal_caps(s)]


# ---------------------------------------------------------------------- the suite
def test_every_solver_is_covered():
    names = {s.name for s in SUBJECTS}
    assert {"ddrm", "exact", "acme_backproject"} <= names, names


@pytest.mark.parametrize("subject", SUBJECT_PARAMS)
def test_requires_holds_capabilities(subject):
    check_requires(subject)


@pytest.mark.parametrize("subject", SUBJECT_PARAMS)
def test_draws_one_generator_per_row(subject):
    check_row_generators(subject)


@pytest.mark.parametrize("subject", SUBJECT_PARAMS)
def test_schema_builds_with_defaults(subject):
    check_schema(subject)


@pytest.mark.parametrize("subject,scenario", SUBJECT_SCENARIOS)
def test_check_solver_accepts_a_conforming_problem(subject, scenario):
    check_accepts(subject, scenario)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("subject,scenario", SUBJECT_SCENARIOS)
def test_output_shape_dtype_device(subject, scenario, dtype, device):
    check_output(subject, scenario, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("subject,scenario", SUBJECT_SCENARIOS)
def test_same_seed_same_bytes_other_seed_other_samples(subject, scenario, dtype, device):
    check_seeds(subject, scenario, dtype, device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("subject,scenario", SUBJECT_SCENARIOS)
def test_rows_do_not_see_other_measurements(subject, scenario, dtype):
    check_rows_independent(subject, scenario, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("subject,scenario", SUBJECT_SCENARIOS)
def test_row_does_not_depend_on_its_batch(subject, scenario, dtype):
    check_batch_independent(subject, scenario, dtype)


@pytest.mark.parametrize("subject,cap", REFUSAL_CASES)
def test_refuses_a_problem_lacking_a_requirement(subject, cap):
    check_refusal(subject, cap)


def test_every_capability_can_be_taken_away():
    """Each Capability is offered by a scenario and has a breaker that removes it alone (a new Capability needs both here)."""
    built = [sc.build(REGISTRY) for sc in SCENARIOS]
    for cap in Capability:
        offering = [(p, q) for p, q in built if cap in capabilities(p, q)]
        assert offering, f"no scenario offers {cap.value}"
        problem, prior = offering[0]
        found = _lacking(cap, {cap}, REGISTRY, problem, prior, DEFAULT_MAX_SIZE)
        assert found and all(f[3] == [cap] for f in found), f"no test problem or prior lacks {cap.value}"


def test_refusals_name_the_solvers_that_would_take_the_problem():
    """Both endings of a refusal, on built-in solvers: the alternatives named, or none."""
    problem, prior = SCENARIOS[1].build(REGISTRY)
    no_form = CountingPrior(prior.inner, gaussian_form=False)
    with use_registry(REGISTRY), pytest.raises(RequirementError, match=r"^solver 'exact' cannot take this problem: it needs a prior with a known Gaussian .*; solvers that take it: (.*, )?ddrm\b"):
        REGISTRY.build("solver", "exact").solve(problem, no_form, generator=torch.Generator().manual_seed(0))
    laplace = Problem(problem.operator, problem.y, LaplaceNoise(SIGMA_Y))
    with pytest.raises(RequirementError, match=r"^solver 'ddrm' .*Gaussian measurement noise, got LaplaceNoise; no registered solver takes it$"):
        REGISTRY.check_solver("ddrm", laplace, prior)


# ---------------------------------------------------------------------- the suite can fail
class Reference(Solver):
    """A small conforming solver: ``H⁺ y`` plus per-row noise, shrunk by the prior."""

    name = "test_reference"
    requires = frozenset({Capability.SVD, Capability.GAUSSIAN_NOISE})
    row_generators = True

    def noise(self, generator, y, shape):
        return randn_rows(generator, (y.shape[0], *shape), dtype=y.dtype, device=y.device)

    def solve(self, problem, prior, *, steps=None, generator=None, callback=None):
        self.check(problem, prior)
        op, y = problem.require_svd(), problem.y
        x = op.pinv(y)
        eps = self.noise(resolve_generator(generator, y.device), y, op.in_shape)
        return Result(x=prior.denoise(x + 0.1 * eps, 0.1))


class RowGeneratorsOff(Reference):
    """Declares no per-row generators."""

    name = "test_row_generators_off"
    row_generators = False


class StringRequires(Reference):
    """Declares its needs as strings, not Capability members."""

    name = "test_string_requires"
    requires = frozenset({"svd", "gaussian_noise"})


class GlobalRandom(Reference):
    """Draws from torch's global generator."""

    name = "test_global_random"

    def noise(self, generator, y, shape):
        return torch.randn((y.shape[0], *shape), dtype=y.dtype, device=y.device)


class IgnoresGenerator(Reference):
    """Deterministic: no noise at all."""

    name = "test_ignores_generator"

    def noise(self, generator, y, shape):
        return torch.zeros((y.shape[0], *shape), dtype=y.dtype, device=y.device)


class FirstGeneratorOnly(Reference):
    """Draws the whole batch from the first generator."""

    name = "test_first_generator_only"

    def noise(self, generator, y, shape):
        first = generator if isinstance(generator, torch.Generator) else generator[0]
        return torch.randn((y.shape[0], *shape), generator=first, dtype=y.dtype, device=y.device)


class MixesRows(Reference):
    """Lets the batch's mean measurement leak into every sample."""

    name = "test_mixes_rows"

    def solve(self, problem, prior, *, steps=None, generator=None, callback=None):
        out = super().solve(problem, prior, steps=steps, generator=generator, callback=callback)
        return Result(x=out.x + 1e-3 * problem.y.mean())


class AlwaysFloat64(Reference):
    """Returns float64 whatever y's dtype."""

    name = "test_always_float64"

    def solve(self, problem, prior, *, steps=None, generator=None, callback=None):
        out = super().solve(problem, prior, steps=steps, generator=generator, callback=callback)
        return Result(x=out.x.to(torch.float64))


class DenoisesFirst(Reference):
    """Evaluates the prior before checking the problem."""

    name = "test_denoises_first"

    def solve(self, problem, prior, *, steps=None, generator=None, callback=None):
        prior.denoise(torch.full((1, 1, 8, 8), 0.5), 0.1)
        return super().solve(problem, prior, steps=steps, generator=generator, callback=callback)


class OwnRefusal(Reference):
    """Refuses non-SVD problems with its own TypeError instead of calling check."""

    name = "test_own_refusal"

    def solve(self, problem, prior, *, steps=None, generator=None, callback=None):
        if not isinstance(problem.operator, invkit.SVDOperator):
            raise TypeError("needs an SVD operator")
        return super().solve(problem, prior, steps=steps, generator=generator, callback=callback)


class _MutantPlugin:
    @hookimpl
    def invkit_register_solvers(self, register):
        for cls in MUTANTS:
            register(cls.name, cls)


#: Each broken solver, the check that must catch it, and what that check must say.
MUTANTS = {
    Reference: None,
    RowGeneratorsOff: (lambda s: check_row_generators(s), "has row_generators = False"),
    StringRequires: (lambda s: check_requires(s), "requires holds non-Capability members"),
    GlobalRandom: (lambda s: check_seeds(s, SCENARIOS[0], torch.float64), "same per-row seeds, different bytes"),
    IgnoresGenerator: (lambda s: check_seeds(s, SCENARIOS[0], torch.float64), "identical under different seeds"),
    FirstGeneratorOnly: (lambda s: check_batch_independent(s, SCENARIOS[0], torch.float64), "drawn alone differs from the batch"),
    MixesRows: (lambda s: check_rows_independent(s, SCENARIOS[1], torch.float32), "changing measurement 0 moved the other samples"),
    AlwaysFloat64: (lambda s: check_output(s, SCENARIOS[1], torch.float32), "y is torch.float32 but x is torch.float64"),
    DenoisesFirst: (lambda s: check_refusal(s, Capability.GAUSSIAN_NOISE), "the prior was evaluated 1 times before the refusal"),
    OwnRefusal: (lambda s: check_refusal(s, Capability.SVD), "with TypeError, not RequirementError"),
}


@pytest.fixture(scope="module")
def mutant_registry() -> Registry:
    return Registry(plugins=[(_MutantPlugin(), "test_mutants", "test-mutants")])


def test_the_reference_solver_passes(mutant_registry):
    """The harness accepts a conforming solver (so the failures below are the mutants' own)."""
    s = Subject("test_reference", mutant_registry, "test_reference")
    check_requires(s)
    check_row_generators(s)
    check_schema(s)
    for scenario in s.scenarios():
        check_accepts(s, scenario)
        for dtype in (torch.float64, torch.float32):
            check_output(s, scenario, dtype)
            check_seeds(s, scenario, dtype)
            check_rows_independent(s, scenario, dtype)
            check_batch_independent(s, scenario, dtype)
    for cap in refusal_caps(s):
        check_refusal(s, cap)


@pytest.mark.parametrize("mutant", [pytest.param(cls, id=cls.name) for cls in MUTANTS if MUTANTS[cls] is not None])
def test_the_suite_catches_a_broken_solver(mutant, mutant_registry):
    check, message = MUTANTS[mutant]
    with pytest.raises((AssertionError, pytest.fail.Exception), match=re.escape(message)):
        check(Subject(mutant.name, mutant_registry, mutant.name))
