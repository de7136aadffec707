"""What a solver needs from a problem and a prior, declared as data and checked before any work.

A solver class lists its needs in ``requires`` (a frozenset of :class:`Capability`).
:func:`capabilities` says which a given (problem, prior) pair offers; :func:`check_requirements`
refuses a pair that lacks one with a single line naming the missing capability and, when
given, the solvers that would take the problem. Nothing here runs a solver or the prior's network.

Example:
    >>> import torch, invkit
    >>> from invkit.requirements import Capability, missing_capabilities
    >>> op = invkit.get_registry().build_operator("denoising", (1, 4, 4))
    >>> problem = invkit.Problem(op, torch.zeros(1, 1, 4, 4))
    >>> class Flat(invkit.Prior):
    ...     def denoise(self, x, sigma):
    ...         return torch.full_like(x, 0.5)
    >>> [c.value for c in missing_capabilities({Capability.SVD, Capability.GAUSSIAN_PRIOR}, problem, Flat())]
    ['gaussian_prior']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import Enum
from typing import TYPE_CHECKING

from .dense import DEFAULT_MAX_SIZE
from .forward import ForwardModel, LinearOperator, SVDOperator
from .noise import GaussianNoise, PoissonNoise

if TYPE_CHECKING:
    from .prior import Prior
    from .problem import Problem

__all__ = ["Capability", "FOURIER_MAGNITUDE_SURFACE", "RequirementError", "capabilities", "missing_capabilities", "check_requirements", "describe_missing"]


class Capability(str, Enum):
    """A property of a (problem, prior) pair that a solver may require."""

    #: An SVD ``H = U Σ Vᵀ``: the operator's own (an :class:`~invkit.SVDOperator`) or the dense
    #: fallback (:class:`~invkit.DenseSVD`) for a linear operator with ``max(m, n) <= max_dense``.
    SVD = "svd"
    #: A linear operator small enough (``max(m, n) <= max_dense``) to materialise as a dense matrix.
    DENSE = "dense"
    #: A linear forward model (it has an ``adjoint``).
    LINEAR = "linear"
    #: A differentiable forward model (every :class:`~invkit.ForwardModel`: autograd or its own ``vjp``).
    DIFFERENTIABLE = "differentiable"
    #: Gaussian measurement noise (:class:`~invkit.GaussianNoise`).
    GAUSSIAN_NOISE = "gaussian_noise"
    #: Noiseless measurements: Gaussian noise with σ = 0 (``--sigma-y 0`` on the command line).
    NOISELESS = "noiseless"
    #: Noise whose likelihood is a (weighted) least squares: Gaussian, or Poisson through its
    #: shot-noise approximation (:class:`~invkit.GaussianNoise`, :class:`~invkit.PoissonNoise`).
    LEAST_SQUARES_NOISE = "least_squares_noise"
    #: Gradients through the prior's ``denoise`` (``prior.differentiable``).
    PRIOR_GRADIENTS = "prior_gradients"
    #: A prior that states its exact Gaussian or Gaussian-mixture form (``prior.gaussian_form``).
    GAUSSIAN_PRIOR = "gaussian_prior"
    #: A forward model measuring Fourier magnitudes of a zero-padded image that offers the padded-domain
    #: surface of alternating-projection methods (:data:`FOURIER_MAGNITUDE_SURFACE`): the
    #: ``phase_retrieval`` operator (duck-typed, so a third party's equivalent qualifies).
    FOURIER_MAGNITUDES = "fourier_magnitudes"


#: The methods a forward model offers for :attr:`Capability.FOURIER_MAGNITUDES`: ``pad(x)`` and
#: ``crop(g)`` between images and the padded grid, ``support(like)`` (the image window) and
#: ``project_magnitude(g, y)`` (the Fourier-magnitude projection of error reduction / HIO).
FOURIER_MAGNITUDE_SURFACE = ("pad", "crop", "support", "project_magnitude")


class RequirementError(ValueError, TypeError):
    """A solver was given a problem or prior that lacks a capability it requires.

    Both a ``ValueError`` and a ``TypeError``: callers that caught either for a wrong kind of
    operator, noise or prior (the solvers raised those before requirements were declared) still do.
    """


def _is_dense_size(op: ForwardModel, max_dense: int) -> bool:
    return isinstance(op, LinearOperator) and max(op.in_numel, op.out_numel) <= max_dense


def capabilities(problem: "Problem", prior: "Prior | None" = None, *, max_dense: int = DEFAULT_MAX_SIZE) -> frozenset[Capability]:
    """The capabilities ``problem`` (and ``prior``, when given) offer.

    Args:
        problem: The inverse problem.
        prior: The prior, or None to judge the problem alone (no prior capability is then offered).
        max_dense: Largest ``max(m, n)`` for the dense fallback SVD / dense matrices.
    """
    op = problem.operator
    have: set[Capability] = set()
    if isinstance(op, ForwardModel):
        have.add(Capability.DIFFERENTIABLE)
    if isinstance(op, LinearOperator):
        have.add(Capability.LINEAR)
    if _is_dense_size(op, max_dense):
        have.add(Capability.DENSE)
    if isinstance(op, SVDOperator) or _is_dense_size(op, max_dense):
        have.add(Capability.SVD)
    if all(callable(getattr(op, attr, None)) for attr in FOURIER_MAGNITUDE_SURFACE):
        have.add(Capability.FOURIER_MAGNITUDES)
    if isinstance(problem.noise, GaussianNoise):
        have.add(Capability.GAUSSIAN_NOISE)
    if isinstance(problem.noise, (GaussianNoise, PoissonNoise)):
        have.add(Capability.LEAST_SQUARES_NOISE)
    if isinstance(problem.noise, GaussianNoise) and float(problem.noise.sigma) == 0.0:
        have.add(Capability.NOISELESS)
    if prior is not None:
        if getattr(prior, "differentiable", False):
            have.add(Capability.PRIOR_GRADIENTS)
        form_of = getattr(prior, "gaussian_form", None)  # duck-typed priors need not have it
        try:
            has_form = form_of is not None and form_of(op.in_shape) is not None
        except ValueError:  # a closed form, but not for this shape: the solver says exactly why
            has_form = True
        if has_form:
            have.add(Capability.GAUSSIAN_PRIOR)
    return frozenset(have)


def missing_capabilities(
    requires: Iterable[Capability], problem: "Problem", prior: "Prior | None" = None, *, max_dense: int = DEFAULT_MAX_SIZE
) -> list[Capability]:
    """The required capabilities that ``problem``/``prior`` lack, in declaration order of :class:`Capability`."""
    need = set(requires)
    if prior is None:
        need -= {Capability.PRIOR_GRADIENTS, Capability.GAUSSIAN_PRIOR}
    have = capabilities(problem, prior, max_dense=max_dense)
    return [c for c in Capability if c in need and c not in have]


#: What each capability asks for, as the object of "it needs ...".
_NEEDS = {
    Capability.SVD: "an SVD",
    Capability.DENSE: "a dense matrix of the operator",
    Capability.LINEAR: "a linear operator",
    Capability.DIFFERENTIABLE: "a differentiable forward model",
    Capability.GAUSSIAN_NOISE: "Gaussian measurement noise",
    Capability.NOISELESS: "noiseless measurements (sigma_y = 0)",
    Capability.LEAST_SQUARES_NOISE: "Gaussian or Poisson measurement noise",
    Capability.PRIOR_GRADIENTS: "gradients through the prior",
    Capability.GAUSSIAN_PRIOR: "a prior with a known Gaussian (mixture) form",
    Capability.FOURIER_MAGNITUDES: "the 'phase_retrieval' forward model (Fourier magnitudes of a zero-padded image)",
}


def describe_missing(cap: Capability, problem: "Problem", prior: "Prior | None", max_dense: int) -> str:
    """One clause saying what is missing and why, for an error message."""
    op = problem.operator
    if not isinstance(op, ForwardModel):
        return f"{_NEEDS[cap]}, but the operator is a {type(op).__name__}, not an invkit.ForwardModel"
    size = f"max(m, n) = {max(op.in_numel, op.out_numel)}"
    if cap is Capability.SVD:
        if not isinstance(op, LinearOperator):
            return f"an SVD, but {op.label} is not linear"
        return (f"an SVD, but {op.label} has no efficient one and is too large for the dense fallback ({size} > {max_dense}; "
                "use a smaller image or raise the solver's dense limit)")
    if cap is Capability.DENSE:
        if not isinstance(op, LinearOperator):
            return f"a linear operator it can materialise, but {op.label} is not linear"
        return f"a dense matrix of the operator, but {op.label} is too large ({size} > {max_dense}; use a smaller image or raise the solver's dense limit)"
    if cap is Capability.LINEAR:
        return f"a linear operator, but {op.label} is not linear"
    if cap is Capability.DIFFERENTIABLE:
        return f"a differentiable forward model (an invkit.ForwardModel), got {type(op).__name__}"
    if cap is Capability.GAUSSIAN_NOISE:
        return f"Gaussian measurement noise, got {type(problem.noise).__name__}"
    if cap is Capability.NOISELESS:
        sigma = getattr(problem.noise, "sigma", None)
        got = f"sigma_y = {float(sigma):g}" if isinstance(sigma, (int, float)) else type(problem.noise).__name__
        return f"noiseless measurements (sigma_y = 0), got {got} (if the measurement has no noise, say so: --sigma-y 0)"
    if cap is Capability.LEAST_SQUARES_NOISE:
        return f"Gaussian or Poisson measurement noise, got {type(problem.noise).__name__}"
    if cap is Capability.PRIOR_GRADIENTS:
        return f"gradients through the prior, but {type(prior).__name__} is not differentiable"
    if cap is Capability.FOURIER_MAGNITUDES:
        return f"{_NEEDS[cap]}, got {op.label}"
    return f"a prior with a known Gaussian (mixture) form, got {type(prior).__name__} (use the analytic priors 'gaussian' or 'gaussian_mixture')"


def check_requirements(
    solver: str,
    requires: Iterable[Capability],
    problem: "Problem",
    prior: "Prior | None" = None,
    *,
    max_dense: int = DEFAULT_MAX_SIZE,
    alternatives: Sequence[str] | None = None,
) -> None:
    """Refuse, before any work, a problem/prior that lacks a capability ``solver`` requires.

    Args:
        solver: The solver's name (for the message).
        requires: Its declared capabilities.
        problem: The problem it was given.
        prior: The prior it was given (None: check the problem only).
        max_dense: Its dense-fallback limit.
        alternatives: Names of solvers that would take the problem, to name in the message.

    Raises:
        RequirementError: One line: every missing capability and why, and the alternatives.
    """
    lack = missing_capabilities(requires, problem, prior, max_dense=max_dense)
    if not lack:
        return
    what = "; ".join(describe_missing(c, problem, prior, max_dense) for c in lack)
    if alternatives is None:
        tail = ""
    elif alternatives:
        tail = f"; solvers that take it: {', '.join(alternatives)}"
    else:
        tail = "; no registered solver takes it"
    raise RequirementError(f"solver '{solver}' cannot take this problem: it needs {what}{tail}")
