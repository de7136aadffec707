"""Noise-level schedules shared by the solvers, in [0, 1] units (see :mod:`invkit.prior`).

A schedule is a list of Python floats ``[σ_T, ..., σ_1, 0.0]``: strictly decreasing, finite and
ending at 0. A solver that makes ``steps`` prior evaluations walks ``steps`` transitions
``σ_{i} -> σ_{i+1}``, evaluating the prior at ``σ_i``; the final 0 is where the last transition
lands (the clean estimate).

* :func:`ddrm_schedule` — the rule of the official DDRM code (``skip = L // steps``); kept bit for
  bit because published numbers depend on it.
* :func:`respaced_sigmas` — ``steps`` timesteps spread evenly over the whole trained grid, both
  ends included, for any ``1 <= steps <= L`` (the indices: :func:`respaced_timesteps`).
* :func:`check_schedule` — validates and normalises a user-given schedule.
* :func:`jump_schedule` — the order in which a time-travelling sampler (DDNM⁺, RePaint) visits
  the levels of a schedule: forward (denoising) moves with periodic jumps back.

For a continuous-sigma prior (``sigma_grid is None``) the first two share one rule: ``steps``
levels spaced geometrically from ``sigma_max`` down to ``sigma_min``.

Example:
    >>> from invkit.prior import ddpm_sigma_grid
    >>> class P:
    ...     sigma_grid = ddpm_sigma_grid()
    >>> s = respaced_sigmas(P(), 3)  # timesteps 999, 500, 0
    >>> len(s), s[-1], round(s[0], 1), round(s[-2], 4)
    (4, 0.0, 78.7, 0.005)
    >>> check_schedule([2.0, 1.0])
    [2.0, 1.0, 0.0]
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable

from .prior import Prior

__all__ = ["ddrm_schedule", "sampler_schedule", "respaced_timesteps", "respaced_sigmas", "check_schedule", "jump_schedule"]


def _geometric(hi: float, lo: float, steps: int) -> list[float]:
    """``steps`` levels from ``hi`` down to ``lo``, evenly spaced in log; ``[hi]`` when ``steps == 1``."""
    if steps == 1:
        return [hi]
    return [math.exp(math.log(hi) + (math.log(lo) - math.log(hi)) * i / (steps - 1)) for i in range(steps)]


def ddrm_schedule(prior: Prior, steps: int = 20) -> list[float]:
    """Descending noise levels ``[σ_T, ..., σ_1, 0]`` for ``steps`` prior evaluations.

    For a prior with a trained grid of L levels, the timesteps are ``0, L//steps, 2 L//steps, ...``
    (``steps`` of them) as in the official code — for L = 1000 and 20 steps: 0, 50, ..., 950.
    For a continuous-sigma prior: ``steps`` levels spaced geometrically from ``sigma_max`` down to
    ``sigma_min``.

    Args:
        prior: Anything with ``sigma_grid`` (ascending levels, or ``None``) and, when that is
            ``None``, ``sigma_max`` and ``sigma_min``.
        steps: Number of prior evaluations, ``1 <= steps <= L``.

    Returns:
        ``steps + 1`` Python floats, strictly decreasing, the last one 0.0.

    Raises:
        ValueError: ``steps < 1``, or ``steps`` larger than the number of trained levels.

    Example:
        >>> from invkit.prior import ddpm_sigma_grid
        >>> class P:
        ...     sigma_grid = ddpm_sigma_grid()
        >>> s = ddrm_schedule(P(), 20)
        >>> len(s), s[-1], round(s[-2], 4)
        (21, 0.0, 0.005)
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    grid = getattr(prior, "sigma_grid", None)
    if grid is not None:
        levels = len(grid)
        if steps > levels:
            raise ValueError(f"steps = {steps} exceeds the prior's {levels} trained noise levels; use steps <= {levels}")
        skip = levels // steps
        timesteps = [i * skip for i in range(steps)]
        sigmas = [float(grid[t]) for t in reversed(timesteps)]
    else:
        sigmas = _geometric(float(prior.sigma_max), float(prior.sigma_min), steps)
    return sigmas + [0.0]


def sampler_schedule(prior: Prior, steps: int | None, sigmas: Iterable[float] | None, *, default_steps: int, solver: str) -> list[float]:
    """The schedule of a sampler that starts from pure noise on the official DDRM rule (DDNM, ΠGDM).

    ``sigmas`` given: :func:`check_schedule`. Otherwise :func:`ddrm_schedule` with ``steps``
    (``default_steps`` when None) — except ``steps = 1``, refused: that rule puts a single step at
    the lowest trained level (σ ≈ 0.005 for DDPM), where a start from pure noise cannot be denoised.

    Raises:
        ValueError: ``steps = 1`` (naming ``solver``), or what the two rules raise.
    """
    if sigmas is not None:
        return check_schedule(sigmas)
    if steps == 1:
        raise ValueError(f"solver '{solver}' needs steps >= 2: a single step of the official schedule starts at the lowest noise level")
    return ddrm_schedule(prior, default_steps if steps is None else steps)


def respaced_timesteps(levels: int, steps: int) -> list[int]:
    """Ascending indices of ``steps`` distinct levels spread evenly over ``[0, levels - 1]``.

    Rounding rule (exact integer arithmetic, round half up):
    ``t_i = floor(i (L - 1) / (steps - 1) + 1/2)`` for ``i = 0, ..., steps - 1``, so ``t_0 = 0``
    and ``t_{steps-1} = L - 1``. The spacing ``(L - 1)/(steps - 1)`` is at least 1 when
    ``steps <= L``, hence the indices are distinct. ``steps == 1`` gives ``[L - 1]`` (the top
    level: a one-step sampler starts from the noisiest level). ``steps == L`` gives ``0..L-1``.

    Args:
        levels: L, the number of trained levels (>= 1).
        steps: How many to pick, ``1 <= steps <= L``.

    Returns:
        ``steps`` ascending distinct ints.

    Raises:
        ValueError: ``steps`` outside ``[1, L]``.

    Example:
        >>> respaced_timesteps(1000, 4)
        [0, 333, 666, 999]
    """
    steps = operator.index(steps)
    if steps < 1 or steps > levels:
        raise ValueError(f"steps = {steps} is outside 1..{levels} (the prior's trained noise levels); use 1 <= steps <= {levels}")
    if steps == 1:
        return [levels - 1]
    span, den = levels - 1, steps - 1
    return [(2 * i * span + den) // (2 * den) for i in range(steps)]


def respaced_sigmas(prior: Prior, steps: int) -> list[float]:
    """Descending levels ``[σ_T, ..., σ_1, 0]`` for ``steps`` prior evaluations over the whole range.

    For a prior with a trained grid of L levels: the grid values at
    :func:`respaced_timesteps` ``(L, steps)`` — ``steps`` distinct timesteps spread evenly over
    ``[0, L - 1]`` with both ends included, ``t_i = floor(i (L-1)/(steps-1) + 1/2)``; ``steps = L``
    is the whole grid and ``steps = 1`` is the top level alone. Unlike :func:`ddrm_schedule`, the
    top trained level is always used. For a continuous-sigma prior: the same geometric spacing
    from ``sigma_max`` to ``sigma_min`` as :func:`ddrm_schedule`.

    Args:
        prior: Anything with ``sigma_grid`` (ascending levels, or ``None``) and, when that is
            ``None``, ``sigma_max`` and ``sigma_min``.
        steps: Number of prior evaluations, ``1 <= steps <= L`` (any ``steps >= 1`` when
            continuous).

    Returns:
        ``steps + 1`` Python floats, strictly decreasing, the last one 0.0.

    Raises:
        ValueError: ``steps < 1``, or ``steps > L``.

    Example:
        >>> from invkit.prior import ddpm_sigma_grid
        >>> class P:
        ...     sigma_grid = ddpm_sigma_grid()
        >>> respaced_sigmas(P(), 1000) == [float(v) for v in P.sigma_grid.flip(0)] + [0.0]
        True
    """
    steps = operator.index(steps)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}; use steps >= 1")
    grid = getattr(prior, "sigma_grid", None)
    if grid is None:
        return _geometric(float(prior.sigma_max), float(prior.sigma_min), steps) + [0.0]
    timesteps = respaced_timesteps(len(grid), steps)
    return [float(grid[t]) for t in reversed(timesteps)] + [0.0]


def check_schedule(sigmas: Iterable[float]) -> list[float]:
    """Validate an explicit descending schedule and return it as Python floats ending in 0.0.

    Each entry goes through ``float()`` (lists, tuples, 1-D tensors and arrays all work); a final
    0.0 is appended if the last entry is not 0. The result must have at least 2 entries, all
    finite, strictly decreasing.

    Args:
        sigmas: ``[σ_T, ..., σ_1]`` or ``[σ_T, ..., σ_1, 0]`` in [0, 1] units.

    Returns:
        The normalised schedule ``[σ_T, ..., σ_1, 0.0]``.

    Raises:
        ValueError: ``"sigmas must be finite and strictly decreasing to 0, got ..."``.

    Example:
        >>> check_schedule([3, 2.0, 0])
        [3.0, 2.0, 0.0]
    """
    sched = [float(v) for v in sigmas]
    if sched and sched[-1] != 0.0:
        sched.append(0.0)
    if len(sched) < 2 or any(not math.isfinite(v) for v in sched) or any(a <= b for a, b in zip(sched, sched[1:])):
        raise ValueError(f"sigmas must be finite and strictly decreasing to 0, got {sigmas}")
    return sched


def jump_schedule(steps: int, travel_length: int = 1, travel_repeat: int = 1, travel_interval: int | None = None) -> list[int]:
    """Positions in a schedule ``[σ_T, ..., σ_1, 0]`` visited by a time-travelling sampler.

    Positions index the schedule: ``0`` is σ_T (where sampling starts) and ``steps`` is the final
    0. Consecutive entries differ by ±1: ``p -> p + 1`` is a reverse (denoising) step that
    evaluates the prior at level ``p``; ``p -> p - 1`` is a forward (noising) step
    ``q(x_{t+1} | x_t)``, no prior evaluation. The jumps are those of DDNM⁺ (Wang et al. 2023,
    time travel: travel length ``l``, repeat count ``r``, interval ``s``) and of RePaint
    (Lugmayr et al. 2022, "resampling": jump length and jump count). Counting the timesteps
    ``k = steps - 1 - p`` from the clean end as those papers do: when the reverse walk reaches a
    ``k`` in ``range(0, steps - l, s)`` it goes back ``l`` levels and comes down again, ``r - 1``
    times in all per such ``k``. With ``s = l`` (the default) this is the official codes'
    ``get_schedule_jump(T_sampling, travel_length, travel_repeat)``; ``r = 1`` is plain sampling
    (``0, 1, ..., steps``).

    Args:
        steps: Number of levels with a prior evaluation (``len(schedule) - 1``), >= 1.
        travel_length: ``l``, how many levels a jump goes back, >= 1.
        travel_repeat: ``r``, how many times each jump's stretch is walked down in all, >= 1
            (1: no time travel).
        travel_interval: ``s``, the spacing of the jump points in levels, >= 1 (default ``l``).

    Returns:
        The positions visited, starting at 0 and ending at ``steps``.

    Raises:
        ValueError: A count below 1.

    Example:
        >>> jump_schedule(4)
        [0, 1, 2, 3, 4]
        >>> jump_schedule(5, travel_length=2, travel_repeat=2)  # jumps at k = 0 and k = 2
        [0, 1, 2, 1, 0, 1, 2, 3, 4, 3, 2, 3, 4, 5]
    """
    interval = travel_length if travel_interval is None else travel_interval
    for name, value in (("steps", steps), ("travel_length", travel_length), ("travel_repeat", travel_repeat), ("travel_interval", interval)):
        if operator.index(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}; use {name} >= 1")
    jumps = {k: travel_repeat - 1 for k in range(0, steps - travel_length, interval)}
    k = steps
    ks: list[int] = []
    while k >= 1:
        k -= 1
        ks.append(k)
        if jumps.get(k, 0) > 0:
            jumps[k] -= 1
            for _ in range(travel_length):
                k += 1
                ks.append(k)
    return [steps - 1 - k for k in ks] + [steps]
