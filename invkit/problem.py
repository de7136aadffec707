"""The inverse problem a solver solves: forward model, measurements, noise model."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .dense import DEFAULT_MAX_SIZE, DenseSizeError, DenseSVD
from .forward import ForwardModel, LinearOperator, SVDOperator
from .noise import GaussianNoise, NoiseModel

__all__ = ["Problem"]


@dataclass
class Problem:
    """An inverse problem ``y = H x + noise``.

    Args:
        operator: The degradation ``H``.
        y: Measurements ``(B, *operator.out_shape)``; one per image to restore.
        noise: The noise model (default: noiseless Gaussian).

    Raises:
        ValueError: ``y`` has the wrong shape or holds NaN/inf.
    """

    operator: ForwardModel
    y: Tensor
    noise: NoiseModel = field(default_factory=GaussianNoise)

    def __post_init__(self) -> None:
        self.operator.check_measurement(self.y)
        if not torch.isfinite(self.y).all():
            raise ValueError("measurement contains NaN or inf values; clean or crop the input first")

    @property
    def sigma_y(self) -> float:
        """Measurement noise std in [0, 1] pixel units.

        Raises:
            ValueError: The noise model has no standard deviation (e.g. Poisson noise).
        """
        sigma = self.noise.sigma
        if sigma is None:
            raise ValueError(f"{type(self.noise).__name__} has no noise standard deviation; this needs Gaussian noise")
        return float(sigma)

    @classmethod
    def simulate(
        cls,
        operator: ForwardModel,
        x: Tensor,
        noise: NoiseModel | float = 0.0,
        generator: torch.Generator | None = None,
    ) -> "Problem":
        """Measure clean images ``x``: ``Problem(operator, noise.sample(operator(x)), noise)``.

        Args:
            operator: The forward model.
            x: Clean images ``(B, *operator.in_shape)``.
            noise: A noise model, or a Gaussian ``sigma_y`` in [0, 1] pixel units.
            generator: Source of the noise draw.
        """
        model = noise if isinstance(noise, NoiseModel) else GaussianNoise(float(noise))
        with torch.no_grad():
            clean = operator.forward(x)
        return cls(operator, model.sample(clean, generator), model)

    def residual_norms(self, x: Tensor) -> Tensor:
        """``‖y_b − A(x_b)‖`` for each row ``b`` of ``x`` (Euclidean, shape ``(B,)``, no gradients).

        The one computation of a solver's data fit that solvers report in ``Result.info["residual"]``.
        """
        with torch.no_grad():
            return (self.y - self.operator.forward(x)).reshape(self.y.shape[0], -1).norm(dim=1)

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
        if not isinstance(self.operator, LinearOperator):
            raise ValueError(f"{self.operator.label} is not linear, so it has no SVD")
        try:
            return DenseSVD(self.operator, max_size=max_dense)
        except DenseSizeError as exc:
            raise ValueError(f"{self.operator.label} has no efficient SVD and {exc}") from None
