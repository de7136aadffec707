"""The Solver protocol and the Result it returns.

A :class:`~invkit.Problem` holds the forward model, the measurement ``y`` and the noise model.
A solver declares what it needs as data (``requires``, a set of
:class:`~invkit.requirements.Capability`: DDRM an SVD, efficient or dense, and Gaussian noise;
DPS a differentiable forward model) and :meth:`Solver.check` refuses a problem that lacks it
before any work, naming the registered solvers that would take it. Progress goes through a callback that receives a
:class:`Step` after every iteration (the CLI turns it into a progress bar).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from .dense import DEFAULT_MAX_SIZE
from .params import Param, declare_from_init
from .prior import Prior
from .problem import Problem
from .random import Generators, randn_rows, resolve_generator, sample_generators, sample_seed  # noqa: F401 - their old home
from .requirements import Capability, check_requirements

__all__ = ["Result", "Solver", "Step", "Callback"]


@dataclass
class Result:
    """What a solver returns.

    Attributes:
        x: Restored images ``(B, C, H, W)`` in [0, 1] units (not clipped).
        info: Solver-specific extras (schedule used, timings, ...).
    """

    x: Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Step:
    """Progress report passed to the callback after each iteration.

    Attributes:
        index: 0-based step index.
        total: Number of steps.
        sigma: Noise level of the state after this step (0 at the end).
        x: Current state ``(B, C, H, W)``.
        x0_hat: The prior's current estimate of the clean images.
    """

    index: int
    total: int
    sigma: float
    x: Tensor
    x0_hat: Tensor


#: A solver's ``callback``: called with a :class:`Step` after every iteration.
Callback = Callable[[Step], None]


def _solver_label(solver: Solver) -> str:
    """How parameter errors name a solver: ``solver 'ddrm'``."""
    return f"solver '{solver.name or type(solver).__name__}'"


class Solver(ABC):
    """A posterior sampler / restoration method.

    Attributes:
        name: Registry name.
        params: Parameter schema (``--solver-arg k=v``). Declared once: a subclass that defines
            ``__init__`` without declaring ``params`` gets them from the ``__init__`` signature,
            each parameter annotated ``Annotated[T, Arg("doc", ...)]`` (a plain parameter gets an
            inferred schema, see :func:`~invkit.params.signature_params`), and its direct calls
            are validated by that schema like ``--solver-arg`` strings (messages name
            ``solver '<name>'``). A subclass may instead declare a ``params`` tuple and validate
            in ``__init__`` itself; an ``__init__`` taking ``**kwargs`` passes them on and keeps
            the ``params`` it inherits (see :func:`~invkit.params.declare_from_init`).
        requires: The capabilities it needs from a problem and prior
            (:class:`~invkit.requirements.Capability`); checked by :meth:`check` before any work.
        row_generators: ``solve`` accepts one generator per batch row (draw with
            :func:`~invkit.randn_rows`). ``invkit solve`` then passes one per sample, so samples do not
            depend on ``--batch``; otherwise it passes one generator per batch.
        stochastic: ``solve`` draws random numbers (a sampler). A deterministic method (a
            classical baseline) sets False; the conformance suite then checks that the seed
            changes nothing, instead of that it changes every sample.
        default_steps: Steps ``solve`` takes when ``steps`` is None (for the runner's up-front
            cost estimate; None: unknown, the runner assumes 20).
        evaluations_per_step: Cost of one step in plain prior evaluations (1: one ``denoise``
            without gradients; a solver that differentiates through the prior costs more, about
            3; 0: the prior is never evaluated). Only the cost estimate reads it.
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    requires: ClassVar[frozenset[Capability]] = frozenset()
    row_generators: ClassVar[bool] = False
    stochastic: ClassVar[bool] = True
    default_steps: ClassVar[int | None] = None
    evaluations_per_step: ClassVar[float] = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Derive ``params`` from a new ``__init__`` and validate its calls (see the class docstring).

        Raises:
            SchemaError: That ``__init__``'s signature contradicts itself (at class creation).
        """
        super().__init_subclass__(**kwargs)
        declare_from_init(cls, owner=_solver_label)

    def check(self, problem: Problem, prior: Prior | None = None) -> None:
        """Refuse ``problem``/``prior`` if they lack a required capability (before any work).

        The message names the missing capability and the registered solvers that would take
        the problem (the registry is consulted only when something is missing).

        Raises:
            RequirementError: Something in :attr:`requires` is missing.
        """
        from .requirements import missing_capabilities

        max_dense = int(getattr(self, "max_dense", DEFAULT_MAX_SIZE))
        if not missing_capabilities(self.requires, problem, prior, max_dense=max_dense):
            return
        from .registry import get_registry

        others = [n for n in get_registry().solvers_for(problem, prior) if n != self.name]
        check_requirements(self.name or type(self).__name__, self.requires, problem, prior, max_dense=max_dense, alternatives=others)

    @abstractmethod
    def solve(
        self,
        problem: Problem,
        prior: Prior,
        *,
        steps: int | None = None,
        generator: Generators | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """Restore the images measured in ``problem`` using ``prior``.

        Implementations call :meth:`check` first. ``generator`` is one ``torch.Generator`` or
        one per batch row (see :data:`~invkit.Generators` and :func:`~invkit.randn_rows`);
        ``None`` means a fresh randomly seeded one.
        """
