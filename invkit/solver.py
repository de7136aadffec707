"""The Solver protocol, the Problem it solves and the Result it returns.

A :class:`Problem` holds the operator, the measurement ``y`` and the noise model. A solver
states what it needs (DDRM: an SVD, efficient or dense; DPS: a differentiable forward) and
refuses clearly when it is missing. Progress goes through a callback that receives a
:class:`Step` after every iteration (the CLI turns it into a progress bar).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from .dense import DEFAULT_MAX_SIZE, DenseSizeError, DenseSVD
from .noise import GaussianNoise
from .operator import Operator, SVDOperator
from .params import Param
from .prior import Prior

__all__ = ["Problem", "Result", "Solver", "Step", "Callback", "resolve_generator"]


@dataclass
class Problem:
    """An inverse problem ``y = H x + noise``.

    Args:
        operator: The degradation ``H``.
        y: Measurements ``(B, *operator.out_shape)``; one per image to restore.
        noise: The noise model (default: noiseless).

    Raises:
        ValueError: ``y`` has the wrong shape or holds NaN/inf.
    """

    operator: Operator
    y: Tensor
    noise: GaussianNoise = field(default_factory=GaussianNoise)

    def __post_init__(self) -> None:
        self.operator.check_measurement(self.y)
        if not torch.isfinite(self.y).all():
            raise ValueError("measurement contains NaN or inf values; clean or crop the input first")

    @property
    def sigma_y(self) -> float:
        """Measurement noise std in [0, 1] pixel units."""
        return float(self.noise.sigma)

    def repeat(self, count: int) -> "Problem":
        """The same problem with every measurement repeated ``count`` times, consecutively.

        Solvers return one sample per measurement, so this is how to draw ``count`` posterior
        samples of each in one batch: sample ``b * count + j`` belongs to measurement ``b``.
        """
        if count < 1:
            raise ValueError(f"Problem.repeat: count must be >= 1, got {count}")
        return Problem(self.operator, self.y.repeat_interleave(count, dim=0), self.noise)

    def require_svd(self, max_dense: int = DEFAULT_MAX_SIZE) -> SVDOperator:
        """The operator's SVD surface: its own, or a :class:`DenseSVD` for small operators.

        Raises:
            ValueError: The operator has no efficient SVD and is too large for the dense one.
        """
        if isinstance(self.operator, SVDOperator):
            return self.operator
        try:
            return DenseSVD(self.operator, max_size=max_dense)
        except DenseSizeError as exc:
            raise ValueError(f"{self.operator.label} has no efficient SVD and {exc}") from None


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


Callback = Callable[[Step], None]


def resolve_generator(generator: torch.Generator | None, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator a solver draws from: the one passed, or a fresh randomly seeded one on ``device``.

    Solvers never touch torch's global random state; pass a seeded generator for reproducible output.
    """
    if generator is not None:
        return generator
    fresh = torch.Generator(device=device)
    fresh.seed()
    return fresh


class Solver(ABC):
    """A posterior sampler / restoration method.

    Attributes:
        name: Registry name.
        params: Parameter schema (``--solver-arg k=v``).
    """

    name: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()

    @abstractmethod
    def solve(
        self,
        problem: Problem,
        prior: Prior,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        callback: Callback | None = None,
    ) -> Result:
        """Restore the images measured in ``problem`` using ``prior``."""
