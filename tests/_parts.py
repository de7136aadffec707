"""Small forward models, a non-Gaussian noise model and a call-counting prior shared by the tests."""

from __future__ import annotations

import math

import torch

from invkit import ForwardModel, LinearOperator, NoiseModel, Prior

__all__ = ["Square", "Saturate", "Doubling", "LaplaceNoise", "CountingPrior"]


class Square(ForwardModel):
    """y = x², elementwise; autograd's VJP."""

    name = "test_square"

    @property
    def out_shape(self):
        return self.in_shape

    def forward(self, x):
        self.check_image(x)
        return x * x


class Saturate(ForwardModel):
    """Nonlinear forward model: a saturating response ``1 - exp(-2 x)`` (autograd VJP)."""

    name = "test_saturate"

    @property
    def out_shape(self):
        return self.in_shape

    def forward(self, x):
        self.check_image(x)
        return -torch.expm1(-2.0 * x)


class Doubling(LinearOperator):
    """``H = 2 I`` as a plain linear operator: an adjoint, but no SVD of its own."""

    name = "test_doubling"

    @property
    def out_shape(self):
        return self.in_shape

    def forward(self, x):
        self.check_image(x)
        return 2.0 * x

    def adjoint(self, y):
        self.check_measurement(y)
        return 2.0 * y


class LaplaceNoise(NoiseModel):
    """Additive Laplace noise of scale ``b``: not Gaussian (and no ``sigma``)."""

    def __init__(self, b: float):
        self.b = b

    def sample(self, clean, generator=None):
        u = torch.rand(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device) - 0.5
        return clean - self.b * torch.sign(u) * torch.log1p(-2 * u.abs())

    def nll(self, y, clean):
        r = (y - clean).reshape(y.shape[0], -1)
        return r.abs().sum(1) / self.b + r.shape[1] * math.log(2 * self.b)

    def nll_grad(self, y, clean):
        return torch.sign(clean - y) / self.b


class CountingPrior(Prior):
    """Wraps a prior, counts ``denoise`` calls, and can hide its gradients or its Gaussian form."""

    def __init__(self, inner: Prior, *, differentiable: bool | None = None, gaussian_form: bool = True):
        self.inner = inner
        self.calls = 0
        self.differentiable = inner.differentiable if differentiable is None else differentiable
        self._has_form = gaussian_form
        self.sigma_grid = inner.sigma_grid
        self.data_center = inner.data_center
        self.channels = inner.channels
        self.image_size = inner.image_size

    def denoise(self, x, sigma):
        self.calls += 1
        return self.inner.denoise(x, sigma)

    def gaussian_form(self, shape):
        return self.inner.gaussian_form(shape) if self._has_form else None
