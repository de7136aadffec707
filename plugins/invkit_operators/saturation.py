"""A nonlinear forward model: a camera whose response saturates, after a Gaussian blur.

``A(x) = tanh(γ · (k ∗ x)) / tanh(γ)``: the blur ``k ∗ x`` of :class:`~invkit_operators.blur.GaussianBlur`
(same ``sigma`` and reflect boundary), then a smooth saturating response that maps 0 to 0 and 1
to 1 and compresses the highlights (``γ → 0`` is the plain blur; large ``γ`` clips). It has no
SVD and no adjoint, only ``forward`` and its exact VJP

    J_A(x)ᵀ v = Kᵀ (γ (1 − tanh²(γ k ∗ x)) / tanh(γ) ⊙ v),

where ``Kᵀ`` is the blur's adjoint. It is the built-in example of "your own differentiable
forward model": solvers that need only gradients (``dps``) solve it, SVD-based ones refuse it,
and ``invkit check-operator saturated_blur`` checks the VJP against finite differences. For
``x >= 0`` the output is ``>= 0`` (a non-negative kernel and an increasing response), so Poisson
noise applies.

Example:
    >>> import torch
    >>> op = SaturatedBlur((1, 8, 8), sigma=1.0, gamma=2.0)
    >>> y = op.forward(torch.ones(1, 1, 8, 8, dtype=torch.float64))
    >>> round(float(y.min()), 12), round(float(y.max()), 12)  # white stays white
    (1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

import torch
from torch import Tensor

from invkit.forward import ForwardModel
from invkit.params import Arg

from .blur import GaussianBlur
from .kernels import MAX_SIGMA

__all__ = ["SaturatedBlur", "OPERATORS"]


class SaturatedBlur(ForwardModel):
    """``y = tanh(γ · (k ∗ x)) / tanh(γ)``, a Gaussian blur seen through a saturating camera response.

    Args:
        in_shape: Image shape ``(C, H, W)``.
        sigma: Standard deviation of the Gaussian blur in pixels.
        gamma: Steepness ``γ`` of the response (its slope at 0 is ``γ / tanh(γ)``).
    """

    name = "saturated_blur"
    check_shape = (3, 16, 18)
    check_cases = (((1, 9, 11), {"sigma": 1.0, "gamma": 0.5}), ((2, 14, 15), {"sigma": 2.0, "gamma": 6.0}))
    #: A(x) >= 0 for x >= 0: Poisson noise applies.
    nonnegative = True

    def __init__(
        self,
        in_shape: Sequence[int] | str,
        sigma: Annotated[float, Arg("Gaussian blur std in pixels", min=0.0, max=MAX_SIGMA, min_inclusive=False)] = 2.0,
        gamma: Annotated[float, Arg("steepness of the saturating response tanh(γ·)/tanh(γ)", min=0.0, max=50.0, min_inclusive=False)] = 3.0,
    ) -> None:
        super().__init__(in_shape)
        self.blur = GaussianBlur(self.in_shape, sigma=sigma)
        self.gamma = float(gamma)
        self._norm = math.tanh(self.gamma)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return self.in_shape

    def forward(self, x: Tensor) -> Tensor:
        """``tanh(γ · (k ∗ x)) / tanh(γ)``."""
        return torch.tanh(self.gamma * self.blur.forward(x)) / self._norm

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """``Kᵀ (γ (1 − tanh²(γ k ∗ x)) / tanh(γ) ⊙ v)``: exact, one blur and one adjoint blur."""
        t = torch.tanh(self.gamma * self.blur.forward(x))
        return self.blur.adjoint((self.gamma / self._norm) * (1.0 - t * t) * v)


OPERATORS = (SaturatedBlur,)
