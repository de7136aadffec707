"""Posterior samples for one measurement: samples in solver calls of ``batch``, each sample
drawn from its own generator, so a sample depends on ``(seed, its index)`` and not on the batch;
then what is written of them (:func:`select_restoration`): their mean, or the sample with the
smallest residual ‖y − A(x)‖ (:func:`sample_residuals`), which needs no ground truth."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..forward import ForwardModel
from ..noise import GaussianNoise, NoiseModel
from ..problem import Problem
from ..random import sample_generators
from ..solver import Step

__all__ = ["Samples", "posterior_samples", "std_map", "sample_residuals", "default_select", "select_restoration"]

#: ``on_step(step, first, count)``: one solver step done in the call drawing samples
#: ``first, ..., first + count - 1`` (indices from 0).
StepCallback = Callable[[Step, int, int], None]


@dataclass
class Samples:
    """What :func:`posterior_samples` drew.

    Attributes:
        x: The samples ``(N, *op.in_shape)``, float32, CPU.
        steps: Prior evaluations per sample, as the solver reported them (None if it reported none).
    """

    x: Tensor
    steps: int | None


def posterior_samples(
    op: ForwardModel,
    y: Tensor,
    noise: float | NoiseModel,
    solver: Any,
    prior: Any,
    *,
    samples: int = 1,
    batch: int = 1,
    seed: int = 0,
    first: int = 0,
    steps: int | None = None,
    device: torch.device | str = "cpu",
    on_step: StepCallback | None = None,
) -> Samples:
    """Draw posterior samples ``first, ..., first + samples - 1`` of a run seeded with ``seed``.

    Sample ``i`` uses a generator seeded with ``invkit.sample_seed(seed, i)`` on ``device``, so
    it is the same whatever ``batch`` and ``first`` it is drawn with. A solver without
    ``row_generators`` gets the first generator of each call (its samples then depend on
    ``batch``).

    Args:
        op: The forward model.
        y: One measurement ``(1, *op.out_shape)``.
        noise: The measurement's noise model, or a Gaussian noise std in [0, 1] units.
        solver: A :class:`~invkit.Solver`.
        prior: A :class:`~invkit.Prior`.
        samples: How many samples.
        batch: Samples per solver call.
        seed: The run's seed.
        first: Index of the first sample.
        steps: Prior evaluations per sample (None: the solver's default).
        device: Where the measurement and the generators live (the prior's device).
        on_step: Called after every solver step.

    Returns:
        The samples on the CPU as float32, and the steps per sample.
    """
    batch = min(batch, samples)
    model = noise if isinstance(noise, NoiseModel) else GaussianNoise(noise)
    y = y.to(device)
    total: int | None = None
    outs = []
    for k in range(math.ceil(samples / batch)):
        start = first + k * batch
        b = min(batch, samples - k * batch)
        problem = Problem(op, y.expand(b, *y.shape[1:]).contiguous(), model)

        def callback(step: Step, start: int = start, b: int = b) -> None:
            nonlocal total
            if total is None:
                total = step.total
            if on_step is not None:
                on_step(step, start, b)

        gens = sample_generators(seed, start, b, device)
        generator = gens if getattr(solver, "row_generators", False) else gens[0]
        result = solver.solve(problem, prior, steps=steps, generator=generator, callback=callback)
        outs.append(result.x.detach().to("cpu", torch.float32))
    return Samples(torch.cat(outs), total)


def std_map(samples: Tensor) -> Tensor:
    """``(N, C, H, W) -> (1, 1, H, W)``: per-pixel std across samples (``N >= 2``), root mean square over channels."""
    var = samples.double().var(dim=0, correction=1)  # (C, H, W)
    return var.mean(dim=0, keepdim=True).sqrt()[None]


def sample_residuals(op: ForwardModel, y: Tensor, samples: Tensor) -> list[float]:
    """``‖y − A(x_i)‖`` for each sample ``x_i`` as it is written: clipped to [0, 1] (Euclidean,
    float64, on the CPU, one sample at a time), so ``--select residual`` ranks the files it writes.

    Args:
        op: The forward model the samples were drawn for.
        y: The measurement ``(1, *op.out_shape)``.
        samples: ``(N, *op.in_shape)`` (before any crop back: the operator's own size).

    Returns:
        N residual norms, in the measurement's [0, 1] units.
    """
    target = y.detach().to("cpu", torch.float64)
    out = []
    with torch.no_grad():
        for i in range(samples.shape[0]):
            fit = op.forward(samples[i : i + 1].to("cpu", torch.float64).clamp(0.0, 1.0))
            out.append(float((target - fit).norm()))
    return out


def default_select(op: Any) -> str:
    """The restoration an operator's samples make by default: ``"mean"``, or ``"residual"`` where the
    operator says its posterior mean is meaningless (``mean_is_meaningful = False``, e.g. phase
    retrieval, whose samples agree only up to its ambiguities: shifts, flips, global sign).

    Example:
        >>> class PhaseLike:
        ...     mean_is_meaningful = False
        >>> default_select(PhaseLike()), default_select(object())
        ('residual', 'mean')
    """
    return "residual" if getattr(op, "mean_is_meaningful", True) is False else "mean"


def select_restoration(samples: Tensor, residuals: list[float], select: str) -> tuple[Tensor, int | None]:
    """What is written as the restoration: the samples' mean, or the sample of smallest residual.

    Args:
        samples: ``(N, C, H, W)``.
        residuals: ``‖y − A(x_i)‖`` per sample (:func:`sample_residuals`).
        select: ``"mean"`` or ``"residual"``.

    Returns:
        ``(restoration (1, C, H, W), index)``: ``index`` (from 0) of the selected sample, the
        first of equal residuals; None for the mean.

    Example:
        >>> x = torch.arange(3.0).reshape(3, 1, 1, 1)
        >>> select_restoration(x, [0.5, 0.2, 0.2], "residual")[0].item(), select_restoration(x, [0.5, 0.2, 0.2], "residual")[1]
        (1.0, 1)
        >>> select_restoration(x, [0.5, 0.2, 0.2], "mean")
        (tensor([[[[1.]]]]), None)
    """
    if select == "residual":
        k = min(range(len(residuals)), key=lambda i: (residuals[i] if not math.isnan(residuals[i]) else math.inf, i))
        return samples[k : k + 1], k
    if select != "mean":
        raise ValueError(f"select must be 'mean' or 'residual', got {select!r}")
    return samples.mean(dim=0, keepdim=True), None
