"""Classical phase retrieval: error reduction (ER) and hybrid input-output (HIO), Fienup 1982.

Alternating between the Fourier constraint and the object constraint on the zero-padded grid of
the ``phase_retrieval`` forward model (``y = |F(pad(x))|`` per channel; see
:mod:`invkit_operators.phase_retrieval`). One iteration from the padded image ``g_k``::

    g′_k    = Re F⁻¹(y · F g_k / |F g_k|)                 (Fourier magnitudes replaced: P_M)
    ER:  g_k+1 = P_C(g′_k)
    HIO: g_k+1 = g′_k                   where g′_k satisfies the object constraint (P_C(g′_k) = g′_k)
         g_k+1 = g_k − β (g′_k − P_C(g′_k))  elsewhere

``P_C`` is the projection onto the object constraint: zero outside the image window (the known
support), and inside it non-negative and, with ``upper`` (default), at most 1 (invkit images are
in [0, 1], so the bound is known a priori). For the support and non-negativity constraints alone
``g′ − P_C(g′) = g′`` where they are violated, and the HIO line is Fienup's ``g_k − β g′_k``; the
box bound generalises it in the same way. ER is a projected steepest descent on the magnitude
misfit ``B = Σ (|F g| − y)²`` (Fienup 1982: ``∂B/∂g = 2 (g − g′)``, and ER steps to ``g′`` and
projects), i.e. a least-squares fit of the magnitudes, which is why the solver asks for
least-squares noise (Gaussian, or Poisson through its shot-noise approximation). ER never
increases ``‖|F g_k| − y‖`` for a noiseless ``y`` (Fienup's error-reduction property; a noisy ``y``
enters through its symmetric part ``(y[k] + y[−k]) / 2``, the magnitudes a real image can have).

Schedule: ``steps`` (or ``iterations``) iterations; every ``er_every``-th is an ER step (0:
never), and the last ``final_er`` are ER steps, which settle HIO's iterate into the constraint
set. The result is ``crop(P_C(g′))`` of the last iteration (equal to the last ER iterate).

The start is the object projection of the measurement with uniformly random phases,
``g_0 = P_C(Re F⁻¹(y · e^{iφ}))``, the phases drawn per row from ``generator`` (as the phase of a
circular standard normal). The prior is not used (a classical baseline). Where the result sits
in the measurement's ambiguity set (rotation, translations) is arbitrary: score it with
:func:`invkit_operators.phase_retrieval.align_to`.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor

from invkit.prior import Prior
from invkit.problem import Problem
from invkit.params import Arg
from invkit.random import Generators, randn_rows, resolve_generator
from invkit.requirements import Capability
from invkit.solver import Callback, Result, Solver, Step

__all__ = ["HIO", "hio_step", "constraint_projection"]

def constraint_projection(g: Tensor, support: Tensor, upper: bool) -> Tensor:
    """``P_C``: zero outside ``support``, clamped to ``[0, 1]`` (``[0, ∞)`` without ``upper``) inside it."""
    inside = g.clamp(0.0, 1.0) if upper else g.clamp_min(0.0)
    return torch.where(support, inside, torch.zeros_like(g))


def hio_step(g: Tensor, g_prime: Tensor, projected: Tensor, beta: float) -> Tensor:
    """One HIO object step: ``g′`` where it meets the constraint (``P_C(g′) = g′``), ``g − β (g′ − P_C(g′))`` elsewhere.

    Args:
        g: The current padded iterate ``g_k``.
        g_prime: ``g′_k``, its Fourier-magnitude projection.
        projected: ``P_C(g′_k)`` (:func:`constraint_projection`).
        beta: The feedback β.
    """
    return torch.where(projected == g_prime, g_prime, g - beta * (g_prime - projected))


class HIO(Solver):
    """Hybrid input-output phase retrieval with error-reduction steps (Fienup 1982), a classical baseline.

    Only for the ``phase_retrieval`` forward model (Fourier magnitudes of a zero-padded image with
    the image window as known support: :attr:`~invkit.Capability.FOURIER_MAGNITUDES`); others are
    refused in one line before any work. Deterministic
    given the generator (random initial phases); ignores the prior. See the module notes.

    Args:
        iterations: Number of iterations when ``solve`` gets no ``steps``.
        beta: HIO feedback β (Fienup's 0.5–1; 0.9 is common).
        er_every: Every ``er_every``-th iteration is an ER step instead (0: never; 1: pure ER).
        final_er: The last ``final_er`` iterations are ER steps (all of them when fewer).
        upper: Also enforce ``x <= 1`` (invkit images are in [0, 1]).

    Example:
        >>> import torch, invkit
        >>> from invkit_operators.phase_retrieval import PhaseRetrieval
        >>> op = PhaseRetrieval((1, 4, 4))
        >>> problem = invkit.Problem(op, op.forward(torch.full((1, 1, 4, 4), 0.5)))
        >>> out = HIO(final_er=5).solve(problem, None, steps=20, generator=torch.Generator().manual_seed(0))
        >>> tuple(out.x.shape), out.info["iterations"]
        ((1, 1, 4, 4), 20)
    """

    name = "hio"
    evaluations_per_step = 0.0  # the prior is never evaluated
    requires = frozenset({Capability.DIFFERENTIABLE, Capability.FOURIER_MAGNITUDES, Capability.LEAST_SQUARES_NOISE})
    row_generators = True
    stochastic = True

    def __init__(
        self,
        *,
        iterations: Annotated[int, Arg("iterations when no steps are given", min=1)] = 500,
        beta: Annotated[float, Arg("HIO feedback beta", min=0.0, max=1.0, min_inclusive=False)] = 0.9,
        er_every: Annotated[int, Arg("every er_every-th iteration is error reduction (0: never, 1: pure ER)", min=0)] = 0,
        final_er: Annotated[int, Arg("the last final_er iterations are error reduction", min=0)] = 50,
        upper: Annotated[bool, Arg("also enforce x <= 1 (images are in [0, 1])")] = True,
    ) -> None:
        self.iterations = iterations
        self.beta = beta
        self.er_every = er_every
        self.final_er = final_er
        self.upper = upper

    @property  # type: ignore[override]
    def default_steps(self) -> int:  # the cost estimate reads it: this instance's iterations
        return self.iterations

    def solve(
        self,
        problem: Problem,
        prior: Prior | None,
        *,
        steps: int | None = None,
        generator: Generators | None = None,
        callback: Callback | None = None,
        sigmas: Sequence[float] | None = None,
    ) -> Result:
        """Retrieve one image per measurement in ``problem.y``.

        Args:
            problem: A ``phase_retrieval`` forward model, its measurements ``(B, C, P, P′)`` and noise model.
            prior: Not used (accepted for the solver protocol).
            steps: Number of iterations (default: ``iterations``).
            generator: Source of the initial phases: one generator, or one per batch row.
            callback: Called with a :class:`~invkit.solver.Step` after every iteration (``sigma = 0``;
                ``x`` and ``x0_hat`` are the current image window).
            sigmas: Refused: HIO has no noise levels.

        Returns:
            ``Result(x, info={"solver", "iterations", "beta", "residual"})``: ``residual`` is
            ``‖y − A(x)‖`` per row.

        Raises:
            RequirementError: Not a phase-retrieval problem, or noise that is not least squares.
            ValueError: ``steps < 1``, or ``sigmas`` given.
        """
        self.check(problem, prior)
        if sigmas is not None:
            raise ValueError(f"solver '{self.name}' has no noise schedule; pass steps (iterations), not sigmas")
        total = self.iterations if steps is None else operator.index(steps)
        if total < 1:
            raise ValueError(f"solver '{self.name}': steps must be >= 1, got {total}")
        op, y = problem.operator, problem.y
        generator = resolve_generator(generator, y.device)
        support = op.support(y)
        # uniform phases: the phase of a circular standard normal, two normal draws per entry and row
        z = randn_rows(generator, (y.shape[0], 2, *y.shape[1:]), dtype=y.dtype, device=y.device)
        start = torch.fft.ifft2(y.clamp_min(0.0) * torch.sgn(torch.complex(z[:, 0], z[:, 1])), norm="ortho").real
        g = constraint_projection(start, support, self.upper)
        first_final = total - min(self.final_er, total)
        for k in range(total):
            g_prime = op.project_magnitude(g, y)
            projected = constraint_projection(g_prime, support, self.upper)
            er = k >= first_final or (self.er_every > 0 and (k + 1) % self.er_every == 0)
            g = projected if er else hio_step(g, g_prime, projected, self.beta)
            if callback is not None:
                window = op.crop(projected)
                callback(Step(index=k, total=total, sigma=0.0, x=window, x0_hat=window))
        x = op.crop(projected).contiguous()
        residual = problem.residual_norms(x)
        return Result(x=x, info={"solver": self.name, "iterations": total, "beta": self.beta, "residual": residual.tolist()})
