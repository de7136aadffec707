"""Denoising: the identity operator ``H = I``."""

from __future__ import annotations

import torch
from collections.abc import Sequence

from torch import Tensor

from invkit.forward import IdentityUOperator

__all__ = ["Denoising", "OPERATORS"]


class Denoising(IdentityUOperator):
    """Identity degradation (pure denoising): ``y = x + noise``.

    The SVD is trivial: ``U = V = I``, every singular value 1. Memory O(1), cost O(n) per apply.
    """

    name = "denoising"
    check_shape = (3, 8, 12)
    check_cases = (((1, 9, 14), {}),)

    def __init__(self, in_shape: Sequence[int] | str) -> None:
        super().__init__(in_shape)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return self.in_shape

    @property
    def singular_values(self) -> Tensor:
        return torch.ones(self.in_numel, dtype=torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        self.check_image(x)
        return x.clone()

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        return y.clone()

    def Vt(self, x: Tensor) -> Tensor:
        self.check_image(x)
        return x.reshape(x.shape[0], -1).clone()

    def V(self, z: Tensor) -> Tensor:
        return z.reshape(z.shape[0], *self.in_shape).clone()


OPERATORS = (Denoising,)
